import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Weight matching (Ainsworth, Hayase & Srinivasa, "Git Re-Basin", ICLR 2023, Algorithm 1).
///
/// Maximises the sum over permuted parameters of <W_A, P_l W_B P_{l-1}^T> (biases included) by coordinate
/// descent: in a seeded random order, each permutation is re-solved exactly (a linear assignment on the
/// similarity matrix of its units, the others held fixed), until a full sweep improves nothing or
/// `maxSweeps` is reached. The objective after every step is recorded in the report.
/// Setting `cancel` stops it between steps with a `CancellationError`.
public enum WeightMatching {
    public static func match(reference a: ParameterSet, model b: ParameterSet, spec: PermutationSpec,
                             seed: UInt64 = 0, maxSweeps: Int = 100, cancel: CancellationFlag? = nil) throws -> AlignmentResult {
        let start = Benchmarks.now()
        try a.checkCompatible(with: b, "weight matching")
        try spec.validate(a)
        let byParam = spec.axesByParameter
        var perms = spec.identity
        // A's tensors unfolded along each permuted axis, once.
        // A's tensors unfolded along each permuted axis, once; the columns of a matrix are used as they are
        // (S += A^T B, no transposes).
        let unfoldedA: [[(param: String, axis: Int, matrix: Tensor)]] = spec.groups.map { g in
            g.axes.map { axis in
                let t = a[axis.param]!
                return (axis.param, axis.axis, t.rank == 2 && axis.axis == 1 ? t : PermutationSpec.unfold(t, axis: axis.axis))
            }
        }

        func objective(_ perms: [[Int]]) -> Double {
            byParam.keys.sorted().reduce(0) { sum, name in
                sum + a[name]!.dot(spec.applied(perms, to: b[name]!, name: name, byParam: byParam))
            }
        }

        /// S[i, j] = similarity of unit i of A and unit j of B given the other permutations.
        /// Terms of parameters with no other permuted axis never change, so they are computed once.
        func similarity(_ gi: Int, _ perms: [[Int]], constant: Bool? = nil) -> Tensor {
            let n = spec.groups[gi].size
            var s = Tensor.zeros([n, n])
            for (param, axis, ua) in unfoldedA[gi] {
                if let constant, constant != (byParam[param]!.count == 1) { continue }
                let pb = spec.applied(perms, to: b[param]!, name: param, skipAxis: axis, byParam: byParam)
                if pb.rank == 2 && axis == 1 {
                    s.addScaled(ua.matmul(pb, transposeSelf: true), 1)
                } else {
                    s.addScaled(ua.matmul(PermutationSpec.unfold(pb, axis: axis), transposeOther: true), 1)
                }
            }
            return s
        }
        let constantTerms = spec.groups.indices.map { similarity($0, perms, constant: true) }
        func currentSimilarity(_ gi: Int, _ perms: [[Int]]) -> [Double] {
            var s = similarity(gi, perms, constant: false)
            s.addScaled(constantTerms[gi], 1)
            return s.storage.map(Double.init)
        }

        let before = objective(perms)
        // A step changes only the terms of its own group, by (new - old) assignment totals, unless a parameter
        // has two axes in the group (a residual stream's square weight); then the objective is recomputed.
        let quadratic = spec.groups.map { g in Set(g.axes.map(\.param)).count < g.axes.count }
        var current = before
        var steps: [MatchReport.Step] = []
        var generator = SeededGenerator(seed: seed)
        var sweeps = 0
        while sweeps < maxSweeps {
            sweeps += 1
            var improvedAny = false
            for gi in generator.permutation(spec.groups.count) {
                if cancel?.isCancelled == true { throw CancellationError() }
                let n = spec.groups[gi].size
                let s = currentSimilarity(gi, perms)
                var old = 0.0
                for i in 0..<n { old += s[i * n + perms[gi][i]] }
                let solution = try LinearAssignment.solve(cost: s, rows: n, columns: n, maximize: true)
                let improved = solution.total > old + 1e-12 * max(1, abs(old)) && solution.columnForRow != perms[gi]
                if improved {
                    perms[gi] = solution.columnForRow
                    improvedAny = true
                    current = quadratic[gi] ? objective(perms) : current + (solution.total - old)
                }
                steps.append(.init(step: steps.count + 1, sweep: sweeps, permutation: spec.groups[gi].name,
                                   objective: current, improved: improved))
            }
            if !improvedAny { break }
        }

        let layers = spec.groups.indices.map { gi in
            MatchReport.Layer(name: spec.groups[gi].name, similarity: currentSimilarity(gi, perms), size: spec.groups[gi].size,
                              permutation: perms[gi])
        }
        let report = MatchReport(method: .weight, seed: seed, layers: layers, objectiveBefore: before, steps: steps,
                                 sweeps: sweeps, seconds: Benchmarks.now() - start)
        return AlignmentResult(permutations: perms, aligned: spec.apply(perms, to: b), report: report, spec: spec)
    }
}

/// The time of weight matching two randomly initialised MLPs, for `basin bench match`.
public struct WeightMatchingBenchResult: Sendable, Codable, Equatable {
    public var sizes: [Int]
    public var seconds: Double
    public var sweeps: Int
    public var steps: Int
    public var objectiveBefore: Double
    public var objectiveAfter: Double
}

extension WeightMatching {
    /// Weight-matches two independently initialised MLPs of the given sizes (seeds `seed + 1` and `seed + 2`).
    /// Target for 784-512-512-10: under a second (release build).
    public static func benchmark(sizes: [Int] = [784, 512, 512, 10], seed: UInt64 = 0) throws -> WeightMatchingBenchResult {
        let (network, a, _) = Benchmarks.syntheticMLP(sizes: sizes, samples: 1, seed: seed &+ 1)
        let (_, b, _) = Benchmarks.syntheticMLP(sizes: sizes, samples: 1, seed: seed &+ 2)
        let spec = try PermutationSpec.make(for: network.architecture, params: a)
        let result = try match(reference: a, model: b, spec: spec, seed: seed)
        let r = result.report
        return WeightMatchingBenchResult(sizes: sizes, seconds: r.seconds, sweeps: r.sweeps, steps: r.steps.count,
                                         objectiveBefore: r.objectiveBefore, objectiveAfter: r.objectiveAfter)
    }
}
