import XCTest
@testable import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport

/// The similarity cache behind weight matching against the plain definition (permuted copies of B), on
/// parameters of every rank with permuted axes anywhere.
final class WeightMatchingTests: XCTestCase {
    private func random(_ shape: [Int], _ g: inout SeededGenerator) -> Tensor {
        Tensor(shape: shape, storage: (0..<Tensor.elementCount(shape)).map { _ in Float(g.normal()) })
    }

    /// Groups of 6, 8 and 5 units over: a convolution [out, in, kh, kw]; a middle axis of a rank-3 tensor;
    /// rows of a matrix; a square matrix with both axes in one group (a residual stream); a bias; a tensor with
    /// three permuted axes; an axis-first and an axis-last matrix; and an unpermuted tensor.
    private func makeModels(seed: UInt64) -> (ParameterSet, ParameterSet, PermutationSpec) {
        var g = SeededGenerator(seed: seed)
        let shapes: [(String, [Int])] = [("conv", [8, 6, 3, 3]), ("mid", [4, 8, 5]), ("lin", [6, 10]), ("sq", [8, 8]),
                                         ("bias", [8]), ("tri", [6, 8, 5]), ("tail", [5, 7]), ("last", [7, 5]), ("free", [3, 3])]
        let a = ParameterSet(shapes.map { ($0.0, random($0.1, &g)) })
        let b = ParameterSet(shapes.map { ($0.0, random($0.1, &g)) })
        typealias Axis = PermutationSpec.Axis
        let spec = PermutationSpec(groups: [
            .init(name: "g0", size: 6, axes: [Axis(param: "conv", axis: 1), Axis(param: "lin", axis: 0), Axis(param: "tri", axis: 0)]),
            .init(name: "g1", size: 8, axes: [Axis(param: "conv", axis: 0), Axis(param: "mid", axis: 1), Axis(param: "sq", axis: 0),
                                              Axis(param: "sq", axis: 1), Axis(param: "bias", axis: 0), Axis(param: "tri", axis: 1)]),
            .init(name: "g2", size: 5, axes: [Axis(param: "mid", axis: 2), Axis(param: "tri", axis: 2), Axis(param: "tail", axis: 0),
                                              Axis(param: "last", axis: 1)]),
        ])
        return (a, b, spec)
    }

    /// S_g by the definition: sum over the group's axes of unfold(A) unfold(B with the other axes permuted)^T.
    private func plainSimilarity(_ a: ParameterSet, _ b: ParameterSet, _ spec: PermutationSpec, _ gi: Int, _ perms: [[Int]]) -> [Double] {
        let n = spec.groups[gi].size
        let byParam = spec.axesByParameter
        var s = [Double](repeating: 0, count: n * n)
        for axis in spec.groups[gi].axes {
            let ua = PermutationSpec.unfold(a[axis.param]!, axis: axis.axis)
            let pb = spec.applied(perms, to: b[axis.param]!, name: axis.param, skipAxis: axis.axis, byParam: byParam)
            let ub = PermutationSpec.unfold(pb, axis: axis.axis)
            let r = ua.count / n
            for i in 0..<n {
                for j in 0..<n {
                    var sum = 0.0
                    for k in 0..<r { sum += Double(ua.storage[i * r + k]) * Double(ub.storage[j * r + k]) }
                    s[i * n + j] += sum
                }
            }
        }
        return s
    }

    private func plainObjective(_ a: ParameterSet, _ b: ParameterSet, _ spec: PermutationSpec, _ perms: [[Int]]) -> Double {
        let permuted = spec.apply(perms, to: b)
        return spec.axesByParameter.keys.reduce(0) { sum, name in
            zip(a[name]!.storage, permuted[name]!.storage).reduce(sum) { $0 + Double($1.0) * Double($1.1) }
        }
    }

    func testSimilarityCacheFollowsPermutationChanges() throws {
        let (a, b, spec) = makeModels(seed: 3)
        let cache = try SimilarityCache(reference: a, model: b, spec: spec)
        var g = SeededGenerator(seed: 8)
        var perms = spec.identity
        for step in 0..<60 {
            // Whole new permutations, single swaps (the incremental path) and no change at all.
            let gi = Int(g.next() % 3)
            switch step % 3 {
            case 0: perms[gi] = g.permutation(spec.groups[gi].size)
            case 1: perms[gi].swapAt(0, spec.groups[gi].size - 1)
            default: break
            }
            for check in 0..<3 {
                let want = plainSimilarity(a, b, spec, check, perms)
                let got = cache.similarity(check, perms)
                let scale = want.map(abs).max()!
                for k in want.indices {
                    XCTAssertEqual(Double(got[k]), want[k], accuracy: 1e-5 * scale, "step \(step) group \(check) entry \(k)")
                }
            }
            let objective = plainObjective(a, b, spec, perms)
            XCTAssertEqual(cache.objective(perms), objective, accuracy: 1e-9 * abs(objective), "step \(step)")
        }
        // B itself was never touched.
        XCTAssertEqual(b, makeModels(seed: 3).1)
    }

    func testWeightMatchingRecoversAPlantedPermutationOnAnyRank() throws {
        let (a, _, spec) = makeModels(seed: 5)
        var g = SeededGenerator(seed: 6)
        let planted = spec.groups.map { g.permutation($0.size) }
        let b = spec.apply(planted, to: a)
        let result = try WeightMatching.match(reference: a, model: b, spec: spec, seed: 2)
        XCTAssertEqual(result.permutations, planted.map(PermutationSpec.inverse))
        XCTAssertEqual(result.aligned, a)
        XCTAssertEqual(result.report.objectiveAfter, plainObjective(a, b, spec, result.permutations),
                       accuracy: 1e-6 * abs(result.report.objectiveAfter))
        // The report's similarities are those at the final permutations.
        for (gi, layer) in result.report.layers.enumerated() {
            let want = plainSimilarity(a, b, spec, gi, result.permutations)
            let scale = want.map(abs).max()!
            for k in want.indices { XCTAssertEqual(layer.similarity[k], want[k], accuracy: 1e-5 * scale) }
        }
    }

    /// The coordinate descent as it was first written (a permuted copy of B and a fresh float32 similarity at
    /// every step): the cached version takes the same steps to the same permutations on the shared pair.
    func testSameStepsAsThePlainCoordinateDescent() throws {
        let a = try LoadedModel(path: Fixtures.mlpSeed0.path), b = try LoadedModel(path: Fixtures.mlpSeed1.path)
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        let byParam = spec.axesByParameter
        let seed: UInt64 = 0
        var perms = spec.identity
        var improvements: [Bool] = []
        var generator = SeededGenerator(seed: seed)
        var sweeps = 0
        while sweeps < 100 {
            sweeps += 1
            var any = false
            for gi in generator.permutation(spec.groups.count) {
                let n = spec.groups[gi].size
                var s = Tensor.zeros([n, n])
                for axis in spec.groups[gi].axes {
                    let pb = spec.applied(perms, to: b.params[axis.param]!, name: axis.param, skipAxis: axis.axis, byParam: byParam)
                    s.addScaled(PermutationSpec.unfold(a.params[axis.param]!, axis: axis.axis)
                        .matmul(PermutationSpec.unfold(pb, axis: axis.axis), transposeOther: true), 1)
                }
                let cost = s.storage.map(Double.init)
                let old = (0..<n).reduce(0.0) { $0 + cost[$1 * n + perms[gi][$1]] }
                let solution = try LinearAssignment.solve(cost: cost, rows: n, columns: n, maximize: true)
                let improved = solution.total > old + 1e-12 * max(1, abs(old)) && solution.columnForRow != perms[gi]
                if improved { perms[gi] = solution.columnForRow; any = true }
                improvements.append(improved)
            }
            if !any { break }
        }
        let result = try WeightMatching.match(reference: a.params, model: b.params, spec: spec, seed: seed)
        XCTAssertEqual(result.report.steps.map(\.improved), improvements)
        XCTAssertEqual(result.permutations, perms)
        XCTAssertEqual(result.report.sweeps, sweeps)
    }

    func testCancellation() throws {
        let (a, b, spec) = makeModels(seed: 3)
        let flag = CancellationFlag()
        flag.cancel()
        XCTAssertThrowsError(try WeightMatching.match(reference: a, model: b, spec: spec, cancel: flag)) {
            XCTAssertTrue($0 is CancellationError, "\($0)")
        }
        var seen: [MatchReport.Step] = []
        let result = try WeightMatching.match(reference: a, model: b, spec: spec, progress: { seen.append($0) })
        XCTAssertEqual(seen, result.report.steps)
    }
}
