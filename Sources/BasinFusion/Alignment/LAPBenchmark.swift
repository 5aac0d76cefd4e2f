import BasinNet
import BasinTensor
import Foundation

/// The cost matrices `basin bench lap` times. `scripts/alignment_reference.py lap` draws the same matrices
/// (the same SplitMix64 stream and recipes) to time SciPy on them.
public enum LAPCostKind: String, Sendable, Codable, CaseIterable {
    /// Uniform [0, 1) doubles: no ties.
    case uniform
    /// Integers 0..<100: every row and column has dozens of zeros, so ties everywhere.
    case integer
    /// 1 - Pearson correlation of 64 samples of two sets of n units, the second a noisy permuted copy of the
    /// first, with 10% dead (constant) units on each side: what activation matching solves, dead units'
    /// constant rows and columns included.
    case correlation

    /// Samples behind each correlation.
    public static let correlationSamples = 64
    /// Fraction of dead units on each side of a correlation matrix.
    public static let deadFraction = 0.1
}

/// One size of the linear assignment benchmark.
public struct LAPBenchResult: Sendable, Equatable, Codable {
    /// The matrix is n x n.
    public var n: Int
    /// Wall-clock seconds for `LinearAssignment.solve`, the best of the repeats (the matrix is generated
    /// beforehand, untimed).
    public var seconds: Double
    /// CPU seconds of the solving thread in that run (the solver is single-threaded, so this is the time
    /// the machine's load did not steal).
    public var cpuSeconds: Double
    /// The optimal (minimal) total.
    public var total: Double

    public init(n: Int, seconds: Double, cpuSeconds: Double, total: Double) {
        self.n = n
        self.seconds = seconds
        self.cpuSeconds = cpuSeconds
        self.total = total
    }
}

extension LinearAssignment {
    /// The n x n costs of a benchmark kind, drawn from `generator` (row-major).
    public static func benchmarkCosts(_ kind: LAPCostKind, n: Int, generator: inout SeededGenerator) -> [Double] {
        switch kind {
        case .uniform:
            return (0..<(n * n)).map { _ in generator.nextUnit() }
        case .integer:
            return (0..<(n * n)).map { _ in (generator.nextUnit() * 100).rounded(.down) }
        case .correlation:
            let m = LAPCostKind.correlationSamples
            var x = (0..<(m * n)).map { _ in generator.nextUnit() - 0.5 }
            let perm = generator.permutation(n)
            var y = [Double](repeating: 0, count: m * n)
            for s in 0..<m {
                for j in 0..<n { y[s * n + j] = x[s * n + perm[j]] + (generator.nextUnit() - 0.5) }
            }
            for j in 0..<n where generator.nextUnit() < LAPCostKind.deadFraction { for s in 0..<m { x[s * n + j] = 0 } }
            for j in 0..<n where generator.nextUnit() < LAPCostKind.deadFraction { for s in 0..<m { y[s * n + j] = 0 } }
            // Centre each unit and scale it to unit norm (dead units stay 0), then cost = 1 - X^T Y.
            func standardise(_ z: inout [Double]) {
                for j in 0..<n {
                    var mean = 0.0
                    for s in 0..<m { mean += z[s * n + j] }
                    mean /= Double(m)
                    var squares = 0.0
                    for s in 0..<m {
                        z[s * n + j] -= mean
                        squares += z[s * n + j] * z[s * n + j]
                    }
                    let scale = squares > 0 ? 1 / squares.squareRoot() : 0
                    for s in 0..<m { z[s * n + j] *= scale }
                }
            }
            standardise(&x)
            standardise(&y)
            var cost = [Double](repeating: 1, count: n * n)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeBufferPointer { yp in
                    cost.withUnsafeMutableBufferPointer { cp in
                        BLAS.dgemm(transA: true, transB: false, m: n, n: n, k: m, alpha: -1, a: xp.baseAddress!, lda: n,
                                   b: yp.baseAddress!, ldb: n, beta: 1, c: cp.baseAddress!, ldc: n)
                    }
                }
            }
            return cost
        }
    }

    /// Times the solver on square matrices of the given kind drawn from one `SeededGenerator(seed:)` stream,
    /// size after size, minimising; each size is solved `repeats` times and the fastest run kept. Meant for
    /// `basin bench lap`; run it from a release build.
    public static func benchmark(kind: LAPCostKind = .uniform, sizes: [Int] = [256, 512, 1024, 2048, 4096],
                                 seed: UInt64 = 0, repeats: Int = 1) -> [LAPBenchResult] {
        var generator = SeededGenerator(seed: seed)
        var results: [LAPBenchResult] = []
        for n in sizes {
            let cost = benchmarkCosts(kind, n: n, generator: &generator)
            var best: LAPBenchResult?
            for _ in 0..<max(1, repeats) {
                let cpu = threadCPUTime(), start = Benchmarks.now()
                // Finite costs are always feasible and valid.
                let assignment = try! solve(cost: cost, rows: n, columns: n)
                let seconds = Benchmarks.now() - start, cpuSeconds = threadCPUTime() - cpu
                if best == nil || seconds < best!.seconds {
                    best = LAPBenchResult(n: n, seconds: seconds, cpuSeconds: cpuSeconds, total: assignment.total)
                }
            }
            results.append(best!)
        }
        return results
    }

    /// CPU seconds used by the calling thread so far.
    static func threadCPUTime() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
}
