import ArgumentParser
import BasinFusion
import BasinIO
import Foundation

extension LAPCostKind: ExpressibleByArgument {}

struct LAPBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lap",
        abstract: "Time the exact linear assignment solver on n x n random costs (uniform, integer or correlation).",
        discussion: """
        uniform: [0, 1) doubles. integer: integers 0..<100 (ties everywhere). correlation: 1 - Pearson correlation \
        of 64 samples of two sets of units, one a noisy permuted copy of the other, 10% dead units on each side. \
        scripts/alignment_reference.py lap draws the same matrices and times SciPy's linear_sum_assignment on them.
        """)

    @OptionGroup var options: BenchOptions

    @Option(help: "uniform, integer or correlation.")
    var kind: LAPCostKind = .uniform

    @Option(parsing: .upToNextOption, help: "Matrix sizes n.")
    var sizes: [Int] = [256, 512, 1024, 2048, 4096]

    @Option(help: "Seed of the random costs.")
    var seed: UInt64 = 0

    @Option(help: "Solve each matrix this many times and keep the fastest run.")
    var repeats: Int = 3

    func validate() throws {
        guard !sizes.isEmpty else { throw ValidationError("--sizes needs at least one size") }
        for n in sizes { try Check.range(n, 1...65_536, "each of --sizes") }
        try Check.range(repeats, 1...1000, "--repeats")
        // The n x n cost matrix (Double) and the solver's working copies.
        try MemoryBudget.check(MemoryBudget.product(sizes.max()!, sizes.max()!, 8, 2), for: "--sizes \(sizes.max()!)")
    }

    struct Report: Encodable {
        var kind: LAPCostKind
        var seed: UInt64
        var results: [LAPBenchResult]
    }

    func run() throws {
        options.apply()
        let results = LinearAssignment.benchmark(kind: kind, sizes: sizes, seed: seed, repeats: repeats)
        if options.json { return try printJSON(Report(kind: kind, seed: seed, results: results)) }
        print("exact linear assignment (JV shortest augmenting paths), \(kind.rawValue) costs, seed \(seed), best of \(repeats)")
        for r in results {
            print(String(format: "n = %5d  %9.4f s  (cpu %9.4f s)  optimal total %.6f", r.n, r.seconds, r.cpuSeconds, r.total))
        }
    }
}

struct MatchBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "match",
        abstract: "Time weight matching of two randomly initialised MLPs (target: under a second for 784-512-512-10), or with --transformer of two GPT-2-shaped transformers (default GPT-2 small: 12 layers, 768 wide, 12 heads, vocabulary 50257).",
        discussion: """
        Prints the whole call and the coordinate descent alone (similarities, solver). \
        scripts/alignment_reference.py match runs a numpy + SciPy weight matching on the same two MLPs over the \
        same steps (give it the --json output). With --transformer: attention heads, MLP units and the residual \
        stream (--no-residual-stream leaves it out) of two random GPT-2-style models.
        """)

    @OptionGroup var options: BenchOptions

    @Option(parsing: .upToNextOption, help: "Layer sizes of the MLPs.")
    var sizes: [Int] = [784, 512, 512, 10]

    @Option(help: "Seed of the weights and of the sweep order.")
    var seed: UInt64 = 0

    @Option(help: "Most sweeps over all permutations.")
    var maxSweeps: Int = 100

    @Flag(help: "Match two random GPT-2-style transformers instead of MLPs (--layers, --width, --heads, --vocabulary).")
    var transformer = false

    @Option(help: "With --transformer: layers.") var layers: Int = 12
    @Option(help: "With --transformer: model width.") var width: Int = 768
    @Option(help: "With --transformer: attention heads.") var heads: Int = 12
    @Option(help: "With --transformer: vocabulary size.") var vocabulary: Int = 50257

    @Flag(help: "With --transformer: leave the residual stream out (heads and MLP units only).")
    var noResidualStream = false

    func validate() throws {
        try Check.range(maxSweeps, 1...Check.maxIterations, "--max-sweeps")
        if transformer {
            try Check.range(layers, 1...1024, "--layers")
            try Check.range(width, 1...65536, "--width")
            try Check.range(heads, 1...width, "--heads")
            try Check.range(vocabulary, 1...(1 << 24), "--vocabulary")
            if width % heads != 0 { throw ValidationError("--heads \(heads) must divide --width \(width)") }
            // Two models and their Float32 copies (~12 d^2 per layer plus the embeddings), and the similarity
            // matrices (Double) of the widest group.
            let m = MemoryBudget.self
            let parameters = m.sum([m.product(layers, 12, width, width), m.product(vocabulary + 1024, width)])
            try MemoryBudget.check(m.sum([m.product(parameters, 4, 4), m.product(4 * width, 4 * width, 8, 4)]),
                                   for: "bench match --transformer with these sizes")
            return
        }
        if sizes.count < 3 || sizes.contains(where: { $0 < 1 }) {
            throw ValidationError("--sizes needs at least three positive layer sizes (one hidden layer)")
        }
        try Check.range(maxSweeps, 1...Check.maxIterations, "--max-sweeps")
        for n in sizes { try Check.range(n, 1...65_536, "each of --sizes") }
        // Two MLPs (Float32) and a similarity matrix per hidden layer (Double).
        let hidden = sizes.dropFirst().dropLast().max() ?? 1
        try MemoryBudget.check(MemoryBudget.sum([MemoryBudget.product(MemoryEstimate.mlpParameters(sizes), 4, 4),
                                                 MemoryBudget.product(hidden, hidden, 8, 4)]), for: "--sizes \(sizes.map(String.init).joined(separator: " "))")
    }

    func run() throws {
        options.apply()
        let r: WeightMatchingBenchResult
        if transformer {
            let config = TransformerBenchmark.gpt2Small(layers: layers, width: width, heads: heads, vocabulary: vocabulary)
            r = try WeightMatching.transformerBenchmark(config: config, seed: seed, maxSweeps: maxSweeps, residualStream: !noResidualStream)
        } else {
            r = try WeightMatching.benchmark(sizes: sizes, seed: seed, maxSweeps: maxSweeps)
        }
        if options.json { return try printJSON(r) }
        let what = r.model.map { "\($0) (\(r.parameters ?? 0) parameters, \(r.groups ?? 0) groups)" } ?? "MLP " + sizes.map(String.init).joined(separator: "-")
        print(String(format: "weight matching %@: %.3f s, %d sweeps (%d exact assignments), objective %.6g -> %.6g",
                     what, r.seconds, r.sweeps, r.steps, r.objectiveBefore, r.objectiveAfter))
        let t = r.timing
        if r.model != nil {
            // The transformer matcher (head blocks under the GQA constraint) is timed as a whole.
            return print(String(format: "  cpu (all threads) %.3f s; groups solved in this order: %@", t.otherCPUSeconds,
                                r.order.prefix(r.groups ?? 0).joined(separator: ", ")))
        }
        print(String(format: "  coordinate descent %.3f s = similarities %.3f s + solver %.3f s (%d of %d solves skipped: matrix unchanged)",
                     t.computeSeconds, t.similaritySeconds, t.solverSeconds, t.skippedSolves, r.steps))
        print(String(format: "  cpu (all threads) %.3f s = similarities %.3f s + solver %.3f s; validation, report and permuted B %.3f s (cpu %.3f s)",
                     t.computeCPUSeconds, t.similarityCPUSeconds, t.solverCPUSeconds, t.otherSeconds, t.otherCPUSeconds))
    }
}
