import BasinNet
import BasinTensor
import Foundation

/// One size of the linear assignment benchmark.
public struct LAPBenchResult: Sendable, Equatable, Codable {
    /// The matrix is n x n.
    public var n: Int
    /// Wall-clock seconds for `LinearAssignment.solve` (the matrix is generated beforehand, untimed).
    public var seconds: Double
    /// The optimal (minimal) total.
    public var total: Double

    public init(n: Int, seconds: Double, total: Double) {
        self.n = n
        self.seconds = seconds
        self.total = total
    }
}

extension LinearAssignment {
    /// Times the solver on square matrices of uniform [0, 1) costs drawn from `SeededGenerator(seed:)`,
    /// minimising. Meant for `basin bench lap`; run it from a release build.
    public static func benchmark(sizes: [Int] = [256, 512, 1024, 2048, 4096], seed: UInt64 = 0) -> [LAPBenchResult] {
        var generator = SeededGenerator(seed: seed)
        var results: [LAPBenchResult] = []
        for n in sizes {
            var cost = [Double](repeating: 0, count: n * n)
            for k in 0..<cost.count { cost[k] = generator.nextUnit() }
            let start = Benchmarks.now()
            // Uniform finite costs are always feasible and valid.
            let assignment = try! solve(cost: cost, rows: n, columns: n)
            let seconds = Benchmarks.now() - start
            results.append(LAPBenchResult(n: n, seconds: seconds, total: assignment.total))
        }
        return results
    }
}
