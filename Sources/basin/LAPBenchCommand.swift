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
