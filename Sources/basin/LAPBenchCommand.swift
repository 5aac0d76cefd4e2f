import ArgumentParser
import BasinFusion
import Foundation

struct LAPBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lap",
        abstract: "Time the exact linear assignment solver on n x n uniform random costs.")

    @OptionGroup var options: BenchOptions

    @Option(parsing: .upToNextOption, help: "Matrix sizes n.")
    var sizes: [Int] = [256, 512, 1024, 2048, 4096]

    @Option(help: "Seed of the random costs.")
    var seed: UInt64 = 0

    func validate() throws {
        if let bad = sizes.first(where: { $0 < 1 }) { throw ValidationError("size \(bad) must be positive") }
    }

    func run() throws {
        options.apply()
        let results = LinearAssignment.benchmark(sizes: sizes, seed: seed)
        if options.json { return try printJSON(results) }
        print("exact linear assignment (JV shortest augmenting paths), uniform [0, 1) costs, seed \(seed)")
        for r in results {
            print(String(format: "n = %5d  %9.4f s  optimal total %.6f", r.n, r.seconds, r.total))
        }
    }
}

struct MatchBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "match",
        abstract: "Time weight matching of two randomly initialised MLPs (target: under a second for 784-512-512-10).")

    @OptionGroup var options: BenchOptions

    @Option(parsing: .upToNextOption, help: "Layer sizes of the MLPs.")
    var sizes: [Int] = [784, 512, 512, 10]

    @Option(help: "Seed of the weights and of the sweep order.")
    var seed: UInt64 = 0

    func validate() throws {
        if sizes.count < 3 || sizes.contains(where: { $0 < 1 }) {
            throw ValidationError("--sizes needs at least three positive layer sizes (one hidden layer)")
        }
    }

    func run() throws {
        options.apply()
        let r = try WeightMatching.benchmark(sizes: sizes, seed: seed)
        if options.json { return try printJSON(r) }
        print(String(format: "weight matching MLP %@: %.3f s, %d sweeps (%d exact assignments), objective %.6g -> %.6g",
                     sizes.map(String.init).joined(separator: "-"), r.seconds, r.sweeps, r.steps, r.objectiveBefore, r.objectiveAfter))
    }
}
