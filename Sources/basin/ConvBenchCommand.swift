import ArgumentParser
import BasinIO
import BasinNet
import BasinTensor
import Foundation

struct ConvBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conv",
        abstract: "Forward throughput of a ResNet-20 (CIFAR layout: 3x32x32, widths 16/32/64, random weights, eval mode) against the machine's sgemm rate.")

    @OptionGroup var options: BenchOptions

    @Option(help: "Images per forward pass.")
    var batch: Int = 256

    @Option(help: "Timed repetitions (the best is kept).")
    var repeats: Int = 3

    struct Report: Encodable {
        var threads: Int
        var sgemm: Benchmarks.SgemmFigure
        var conv: ConvBenchmark.Figure
        var fractionOfSgemm: Double
    }

    func validate() throws {
        try Check.range(batch, 1...65536, "--batch")
        try Check.range(repeats, 1...1000, "--repeats")
    }

    func run() throws {
        options.apply()
        // ResNet-20 on 3x32x32 holds about 0.75 MB of activations per image and its widest im2col buffer
        // (3x3x16 x 32x32 floats) another 0.6 MB: 2 MiB per image is a safe upper estimate.
        try MemoryBudget.check(MemoryBudget.product(batch, 2 << 20), for: "bench conv --batch \(batch)")
        // Best sgemm rate from before and after, so a busy moment during its measurement cannot flatter the ratio.
        let before = Benchmarks.sgemmRate()
        let c = try ConvBenchmark.run(batch: batch, repeats: repeats)
        let after = Benchmarks.sgemmRate()
        let s = after.gflops > before.gflops ? after : before
        let report = Report(threads: BLAS.threads, sgemm: s, conv: c, fractionOfSgemm: c.gflops / s.gflops)
        if options.json { return try printJSON(report) }
        print("OpenBLAS threads: \(report.threads)")
        print(String(format: "sgemm %dx%d: %.1f GFLOP/s", s.n, s.n, s.gflops))
        print(String(format: "%@, batch %d, %d parameters, %.1f MFLOP per image: %.1f ms per batch, %.0f images/s, %.1f GFLOP/s",
                     c.network, c.batch, c.parameters, c.flopsPerImage / 1e6, c.seconds * 1e3, c.imagesPerSecond, c.gflops))
        print(String(format: "effective rate / sgemm rate: %.0f%%", report.fractionOfSgemm * 100))
    }
}
