import ArgumentParser
import BasinIO
import BasinNet
import BasinTensor
import Foundation

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Print speed and memory figures for this machine.",
        subcommands: [EvalBench.self, PathBench.self, ConvBench.self, LAPBench.self, MatchBench.self, MergeBench.self, UIBench.self, TransformerBench.self],
        defaultSubcommand: EvalBench.self)
}

struct BenchOptions: ParsableArguments {
    @Option(help: "OpenBLAS threads (default: all cores).")
    var threads: Int?

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if let threads { try Check.range(threads, 1...Check.maxThreads, "--threads") }
    }

    func apply() {
        if let threads { BLAS.setThreads(threads) }
    }
}

struct EvalBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "The sgemm rate of large square matrices and the evaluation throughput of an MLP 784-512-512-10 on 10k synthetic samples.")

    @OptionGroup var options: BenchOptions

    @Option(help: "Evaluation batch size.")
    var batch: Int = 2048

    struct Report: Encodable {
        var threads: Int
        var sgemm: Benchmarks.SgemmFigure
        var eval: Benchmarks.EvalFigure
        var evalFractionOfSgemm: Double
    }

    func validate() throws {
        try Check.range(batch, 1...10_000, "--batch")
    }

    func run() throws {
        options.apply()
        let s = Benchmarks.sgemmRate()
        let e = Benchmarks.evalThroughput(batchSize: batch)
        let report = Report(threads: BLAS.threads, sgemm: s, eval: e, evalFractionOfSgemm: e.gflops / s.gflops)
        if options.json { return try printJSON(report) }
        print("OpenBLAS threads: \(report.threads)")
        print(String(format: "sgemm %dx%d: %.1f GFLOP/s (%.2f ms)", s.n, s.n, s.gflops, s.seconds * 1e3))
        print(String(format: "eval MLP %@ on %d samples (batch %d): %.0f samples/s, %.1f GFLOP/s, %.1f ms",
                     e.sizes.map(String.init).joined(separator: "-"), e.samples, e.batchSize, e.samplesPerSecond, e.gflops, e.seconds * 1e3))
        print(String(format: "  the same sgemm calls alone: %.1f ms (%.1f GFLOP/s)", e.sgemmOnlySeconds * 1e3,
                     Benchmarks.mlpFlopsPerSample(e.sizes) * Double(e.samples) / e.sgemmOnlySeconds / 1e9))
        print(String(format: "eval rate / sgemm rate: %.1f%% (target >= 85%%)", report.evalFractionOfSgemm * 100))
    }
}
