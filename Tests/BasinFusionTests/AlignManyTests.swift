import XCTest
@testable import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport

/// Aligning N models into one frame: each to the first, and MergeMany.
final class AlignManyTests: XCTestCase {
    func testPlantedPermutationsAreUndoneByBothStrategies() throws {
        let a = try LoadedModel(path: Fixtures.mlpSeed0.path)
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        var g = SeededGenerator(seed: 12)
        let planted = (0..<3).map { _ in spec.groups.map { g.permutation($0.size) } }
        let models = [a.params] + planted.map { spec.apply($0, to: a.params) }
        for strategy in AlignmentStrategy.allCases {
            var calls: [Int] = []
            let r = try Alignment.alignMany(models, spec: spec, strategy: strategy, seed: 1, progress: { _, k in calls.append(k) })
            XCTAssertEqual(r.aligned.count, 4, "\(strategy)")
            for k in 0..<4 { XCTAssertEqual(r.aligned[k], a.params, "\(strategy) model \(k)") }
            XCTAssertEqual(r.permutations[0], spec.identity)
            for k in 1..<4 { XCTAssertEqual(r.permutations[k], planted[k - 1].map(PermutationSpec.inverse), "\(strategy) model \(k)") }
            XCTAssertEqual(r.reports.count, 3)
            XCTAssertFalse(calls.isEmpty)
            if strategy == .mergeMany {
                // Round 1 lines everything up; round 2 moves nothing and stops.
                XCTAssertEqual(r.rounds, 2)
                XCTAssertEqual(r.roundObjectives.count, 2)
                XCTAssertEqual(Set(calls), [0, 1, 2, 3])
            }
            let meta = r.metadata(model: 2, reference: "A")
            XCTAssertEqual(meta["basin.alignment.strategy"], strategy.rawValue)
            XCTAssertEqual(meta["basin.alignment.reference"], "A")
            let perms = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(meta["basin.alignment.permutations"]!.utf8)) as? [String: [Int]])
            XCTAssertEqual(perms[spec.groups[0].name], r.permutations[2][0])
        }
    }

    /// Four independently trained sample seeds: every aligned model keeps its function, and the uniform soup
    /// of the aligned models works where the unaligned soup does not, for both strategies.
    func testSoupOfFourSeeds() throws {
        let root = Fixtures.repositoryRoot.appendingPathComponent("SampleModels")
        let test = try Dataset(url: root.appendingPathComponent("data/digits-test.safetensors"))
        let loaded = try (0..<4).map { try LoadedModel(path: root.appendingPathComponent("seeds/mlp-seed\($0).safetensors").path) }
        let network = loaded[0].network
        let models = loaded.map(\.params)
        let spec = try PermutationSpec.make(for: loaded[0].architecture, params: models[0])
        let unaligned = network.evaluate(try ParameterMerge.uniformSoup(models), on: test).accuracy
        var soups: [AlignmentStrategy: Double] = [:]
        for strategy in AlignmentStrategy.allCases {
            let r = try Alignment.alignMany(models, spec: spec, strategy: strategy)
            for k in 1..<4 {
                let before = network.logits(test.x, models[k]), after = network.logits(test.x, r.aligned[k])
                XCTAssertLessThanOrEqual(before.maxAbsDifference(after), 1e-4, "\(strategy) model \(k)")
            }
            XCTAssertLessThan(r.rounds, 50, "\(strategy) converged")
            soups[strategy] = network.evaluate(try ParameterMerge.uniformSoup(r.aligned), on: test).accuracy
        }
        print("uniform soup of 4 sample seeds, test accuracy: unaligned \(unaligned), reference \(soups[.reference]!), MergeMany \(soups[.mergeMany]!)")
        XCTAssertLessThan(unaligned, 0.6)
        XCTAssertGreaterThan(soups[.reference]!, 0.9)
        XCTAssertGreaterThan(soups[.mergeMany]!, 0.9)
    }

    func testErrors() throws {
        let a = try LoadedModel(path: Fixtures.mlpSeed0.path)
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        XCTAssertThrowsError(try Alignment.alignMany([a.params], spec: spec))
        XCTAssertThrowsError(try Alignment.alignMany([a.params, a.params], spec: spec, method: .activation, strategy: .mergeMany)) {
            XCTAssertTrue("\($0)".contains("MergeMany"), "\($0)")
        }
        let flag = CancellationFlag()
        flag.cancel()
        XCTAssertThrowsError(try Alignment.alignMany([a.params, a.params], spec: spec, strategy: .mergeMany, cancel: flag)) {
            XCTAssertTrue($0 is CancellationError, "\($0)")
        }
        // Models of another shape are refused with both names.
        let small = ParameterSet(a.params.pairs.map { ($0.0, $0.0 == "layers.0.bias" ? Tensor.zeros([3]) : $0.1) })
        XCTAssertThrowsError(try Alignment.alignMany([a.params, small], spec: spec))
    }
}
