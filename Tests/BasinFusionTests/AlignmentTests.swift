import XCTest
@testable import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport

final class AlignmentTests: XCTestCase {
    private func load(_ url: URL) throws -> LoadedModel { try LoadedModel(path: url.path) }

    /// Largest excess of the loss on the straight path over the straight line between its endpoints.
    private func barrier(_ network: Network, _ a: ParameterSet, _ b: ParameterSet, on data: Dataset, points: Int = 21) -> Double {
        let ts = (0..<points).map { Double($0) / Double(points - 1) }
        let losses = ts.map { network.evaluate(ParameterSet.lerp(a, b, Float($0)), on: data).loss }
        return zip(ts, losses).map { t, l in l - ((1 - t) * losses[0] + t * losses[points - 1]) }.max()!
    }

    private func assertSameFunction(_ network: Network, _ p: ParameterSet, _ q: ParameterSet, data: Dataset,
                                    file: StaticString = #filePath, line: UInt = #line) {
        let mp = network.evaluate(p, on: data), mq = network.evaluate(q, on: data)
        XCTAssertEqual(mp.loss, mq.loss, accuracy: 1e-5, file: file, line: line)
        XCTAssertEqual(mp.accuracy, mq.accuracy, accuracy: 1e-5, file: file, line: line)
        let lp = network.logits(data.x, p), lq = network.logits(data.x, q)
        XCTAssertLessThanOrEqual(lp.maxAbsDifference(lq), 1e-4, file: file, line: line)
    }

    func testInferredSpecForMLPChain() throws {
        let a = try load(Fixtures.mlpSeed0)
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        XCTAssertEqual(spec.groups.map(\.name), ["P_layers.0", "P_layers.1"])
        XCTAssertEqual(spec.groups.map(\.size), [128, 128])
        XCTAssertEqual(spec.groups[0].axes, [.init(param: "layers.0.weight", axis: 0), .init(param: "layers.0.bias", axis: 0),
                                             .init(param: "layers.1.weight", axis: 1)])
        XCTAssertEqual(spec.groups.map(\.node), ["relu0", "relu1"])
        // The PyTorch nn.Sequential naming infers the same chain.
        let s = try load(Fixtures.url("mlp-pair/mlp-seed0-sequential.safetensors"))
        let sspec = try PermutationSpec.make(for: s.architecture, params: s.params)
        XCTAssertEqual(sspec.groups.map(\.name), ["P_net.0", "P_net.2"])
    }

    func testRandomPermutationsKeepTheFunction() throws {
        let a = try load(Fixtures.mlpSeed0)
        let data = try Dataset(url: Fixtures.digitsTest)
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        var g = SeededGenerator(seed: 9)
        let perms = spec.groups.map { g.permutation($0.size) }
        let permuted = spec.apply(perms, to: a.params)
        XCTAssertNotEqual(permuted, a.params)
        assertSameFunction(a.network, a.params, permuted, data: data)
        // Undoing with the inverse gives the original back exactly.
        XCTAssertEqual(spec.apply(perms.map(PermutationSpec.inverse), to: permuted), a.params)
    }

    func testWeightMatchingRecoversAKnownPermutation() throws {
        let a = try load(Fixtures.mlpSeed0)
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        var g = SeededGenerator(seed: 4)
        let perms = spec.groups.map { g.permutation($0.size) }
        let b = spec.apply(perms, to: a.params)
        let result = try WeightMatching.match(reference: a.params, model: b, spec: spec, seed: 1)
        XCTAssertEqual(result.aligned, a.params)
        XCTAssertEqual(result.permutations, perms.map(PermutationSpec.inverse))
        let selfDot = spec.axesByParameter.keys.reduce(0.0) { $0 + a.params[$1]!.dot(a.params[$1]!) }
        XCTAssertEqual(result.report.objectiveAfter, selfDot, accuracy: 1e-6 * selfDot)
    }

    func testWeightMatchingOnTheMLPPair() throws {
        let a = try load(Fixtures.mlpSeed0), b = try load(Fixtures.mlpSeed1)
        let test = try Dataset(url: Fixtures.digitsTest)
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        let result = try WeightMatching.match(reference: a.params, model: b.params, spec: spec, seed: 0)
        assertSameFunction(b.network, b.params, result.aligned, data: test)
        XCTAssertEqual(result.aligned.names, b.params.names)

        // The objective never decreases, and the last sweep changed nothing.
        let report = result.report
        var previous = report.objectiveBefore
        for step in report.steps {
            XCTAssertGreaterThanOrEqual(step.objective, previous - 1e-6 * abs(previous))
            previous = step.objective
        }
        XCTAssertGreaterThan(report.objectiveAfter, report.objectiveBefore)
        XCTAssertFalse(report.steps.filter { $0.sweep == report.sweeps }.contains { $0.improved })
        XCTAssertEqual(report.steps.count, report.sweeps * spec.groups.count)
        for layer in report.layers {
            XCTAssertEqual(layer.similarity.count, layer.size * layer.size)
            XCTAssertGreaterThan(layer.moved, 100)
            XCTAssertGreaterThan(layer.meanSimilarityAfter, layer.meanSimilarityBefore)
            XCTAssertEqual(Set(layer.permutation).count, layer.size)
        }

        let expected = try XCTUnwrap(Fixtures.json("mlp-pair/expected.json") as? [String: Any])
        let unaligned = barrier(a.network, a.params, b.params, on: test)
        let aligned = barrier(a.network, a.params, result.aligned, on: test)
        XCTAssertEqual(unaligned, try XCTUnwrap(expected["linear_test_barrier"] as? Double), accuracy: 2e-3)
        // The reference (PyTorch + SciPy, one random layer order) reached `weight_matched_test_barrier` = 0.0298.
        // Coordinate descent ends in one of a few local optima depending on the order: seed 1 reaches the
        // reference's (0.02977), seeds 0 and 2 a slightly lower one (0.0250). Both lie within 0.005 of it.
        let reference = try XCTUnwrap(expected["weight_matched_test_barrier"] as? Double)
        XCTAssertEqual(aligned, reference, accuracy: 0.005, "weight-matched barrier \(aligned) (unaligned \(unaligned))")
        print("weight matching: barrier unaligned \(unaligned), aligned \(aligned), sweeps \(report.sweeps), \(report.seconds) s")
        // Other sweep orders land in equally good basins.
        for seed in [1, 2] as [UInt64] {
            let other = try WeightMatching.match(reference: a.params, model: b.params, spec: spec, seed: seed)
            let barrierOther = barrier(a.network, a.params, other.aligned, on: test)
            XCTAssertEqual(barrierOther, reference, accuracy: 0.005, "seed \(seed)")
            print("weight matching seed \(seed): barrier \(barrierOther), sweeps \(other.report.sweeps)")
        }
    }

    func testActivationMatchingOnTheMLPPair() throws {
        let a = try load(Fixtures.mlpSeed0), b = try load(Fixtures.mlpSeed1)
        let train = try Dataset(url: Fixtures.digitsTrain), test = try Dataset(url: Fixtures.digitsTest)
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        let result = try ActivationMatching.match(reference: a.params, model: b.params, network: a.network, spec: spec,
                                                  data: train, batchSize: 500)
        assertSameFunction(b.network, b.params, result.aligned, data: test)
        for layer in result.report.layers {
            XCTAssertTrue(layer.similarity.allSatisfy { $0 >= -1 - 1e-9 && $0 <= 1 + 1e-9 })
            XCTAssertGreaterThan(layer.meanSimilarityAfter, layer.meanSimilarityBefore)
        }
        // The same as one full batch (batching only changes the summation order).
        let whole = try ActivationMatching.match(reference: a.params, model: b.params, network: a.network, spec: spec, data: train)
        XCTAssertEqual(whole.permutations, result.permutations)
        let aligned = barrier(a.network, a.params, result.aligned, on: test)
        // Activation matching optimises another objective (correlations on train data) and lands in another
        // permutation: 0.0376 here, within 0.01 of the weight-matched reference.
        let expected = try XCTUnwrap(Fixtures.json("mlp-pair/expected.json") as? [String: Any])
        let reference = try XCTUnwrap(expected["weight_matched_test_barrier"] as? Double)
        XCTAssertLessThanOrEqual(aligned, reference + 0.01, "activation-matched barrier \(aligned)")
        print("activation matching: barrier aligned \(aligned), \(result.report.seconds) s")
    }

    func testAlignManyModelsToOneReference() throws {
        let a = try load(Fixtures.mlpSeed0), b = try load(Fixtures.mlpSeed1)
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        var g = SeededGenerator(seed: 2)
        let c = spec.apply(spec.groups.map { g.permutation($0.size) }, to: a.params)
        let results = try Alignment.alignAll(reference: a.params, models: [b.params, c], spec: spec, method: .weight)
        XCTAssertEqual(results.count, 2)
        XCTAssertEqual(results[1].aligned, a.params)
        XCTAssertThrowsError(try Alignment.align(reference: a.params, model: b.params, spec: spec, method: .activation))
    }

    func testReportJSON() throws {
        let a = try load(Fixtures.mlpSeed0), b = try load(Fixtures.mlpSeed1)
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        let result = try WeightMatching.match(reference: a.params, model: b.params, spec: spec, seed: 3, maxSweeps: 2)
        XCTAssertLessThanOrEqual(result.report.sweeps, 2)
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("report.json")
        try result.report.jsonData().write(to: url)
        XCTAssertEqual(try MatchReport.load(url), result.report)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        XCTAssertEqual(json["method"] as? String, "weight")
        let layer = result.report.layers[0]
        for k in 0..<layer.size { XCTAssertEqual(layer.pairScores[k], layer.similarity[k * layer.size + layer.permutation[k]]) }
        let meta = result.metadata
        XCTAssertEqual(meta["basin.alignment.method"], "weight")
        let perms = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(meta["basin.alignment.permutations"]!.utf8)) as? [String: [Int]])
        XCTAssertEqual(perms["P_layers.0"], result.permutations[0])
    }

    func testDeclaredSpecsAndErrors() throws {
        let a = try load(Fixtures.mlpSeed0)
        var arch = a.architecture
        arch.permutations = [PermutationDeclaration(name: "hidden1", axes: [
            .init(param: "layers.0.weight", axis: 0), .init(param: "layers.0.bias", axis: 0), .init(param: "layers.1.weight", axis: 1),
        ])]
        let spec = try PermutationSpec.make(for: arch, params: a.params)
        XCTAssertEqual(spec.groups.map(\.name), ["hidden1"])
        XCTAssertEqual(spec.groups[0].node, "relu0")
        XCTAssertEqual(spec.groups[0].size, 128)

        arch.permutations = [PermutationDeclaration(name: "bad", axes: [
            .init(param: "layers.0.weight", axis: 0), .init(param: "layers.2.weight", axis: 0),
        ])]
        XCTAssertThrowsError(try PermutationSpec.make(for: arch, params: a.params)) { error in
            XCTAssertTrue("\(error)".contains("units"), "\(error)")
        }
        arch.permutations = [PermutationDeclaration(name: "missing", axes: [.init(param: "nope", axis: 0)])]
        XCTAssertThrowsError(try PermutationSpec.make(for: arch, params: a.params))

        // Undeclared permutations of a graph that is not a chain are derived from it: an add of the logits to
        // themselves merges only the classes, which never move, so the hidden layers keep their groups.
        var residual = a.architecture
        residual.permutations = []
        residual.nodes.append(Node(name: "skip", op: .add, inputs: [residual.nodes.count - 1, residual.nodes.count - 1]))
        XCTAssertThrowsError(try PermutationSpec.inferMLP(residual, params: a.params))
        let derived = try PermutationSpec.make(for: residual, params: a.params)
        let chain = try PermutationSpec.inferMLP(a.architecture, params: a.params)
        XCTAssertEqual(derived.groups.map(\.name), chain.groups.map(\.name))
        XCTAssertEqual(derived.groups.map(\.axes), chain.groups.map(\.axes))
        XCTAssertEqual(derived.groups.map(\.node), chain.groups.map(\.node))
    }

    func testWeightMatchingBenchmarkRuns() throws {
        // Timing targets are checked by `basin bench match`, not here.
        let r = try WeightMatching.benchmark(sizes: [20, 16, 12, 4], seed: 1)
        XCTAssertEqual(r.steps, r.sweeps * 2)
        XCTAssertGreaterThan(r.objectiveAfter, r.objectiveBefore)
    }

    /// A residual stream: one permutation shared by every layer writing to or reading from it.
    func testDeclaredResidualStreamKeepsTheFunctionAndIsRecovered() throws {
        let (d, h, c) = (12, 16, 5)
        var g = SeededGenerator(seed: 21)
        func random(_ shape: [Int]) -> Tensor {
            Tensor(shape: shape, storage: (0..<Tensor.elementCount(shape)).map { _ in Float(g.normal()) * 0.5 })
        }
        let params = ParameterSet([("w1", random([h, d])), ("b1", random([h])), ("w2", random([h, h])), ("b2", random([h])),
                                   ("w3", random([c, h])), ("b3", random([c]))])
        let arch = Architecture(nodes: [
            Node(name: "fc1", op: .linear(weight: "w1", bias: "b1"), inputs: [-1]),
            Node(name: "act1", op: .activation(.relu), inputs: [0]),
            Node(name: "fc2", op: .linear(weight: "w2", bias: "b2"), inputs: [1]),
            Node(name: "skip", op: .add, inputs: [2, 1]),
            Node(name: "act2", op: .activation(.relu), inputs: [3]),
            Node(name: "fc3", op: .linear(weight: "w3", bias: "b3"), inputs: [4]),
        ], permutations: [PermutationDeclaration(name: "stream", axes: [
            .init(param: "w1", axis: 0), .init(param: "b1", axis: 0), .init(param: "w2", axis: 0), .init(param: "w2", axis: 1),
            .init(param: "b2", axis: 0), .init(param: "w3", axis: 1),
        ])])
        XCTAssertThrowsError(try PermutationSpec.inferMLP(arch, params: params))
        let spec = try PermutationSpec.make(for: arch, params: params)
        XCTAssertEqual(spec.groups.map(\.node), ["act1"])
        // Without the declaration the same stream is derived from the graph (the add merges fc1's and fc2's
        // outputs), read after the last activation on it.
        var undeclared = arch
        undeclared.permutations = []
        let derived = try PermutationSpec.make(for: undeclared, params: params)
        XCTAssertEqual(derived.groups.count, 1)
        XCTAssertEqual(Set(derived.groups[0].axes.map { "\($0.param):\($0.axis)" }), Set(spec.groups[0].axes.map { "\($0.param):\($0.axis)" }))
        XCTAssertEqual(derived.groups[0].node, "act2")
        let perm = g.permutation(h)
        let b = spec.apply([perm], to: params)
        let network = Network(arch)
        let x = random([40, d])
        XCTAssertLessThanOrEqual(network.logits(x, params).maxAbsDifference(network.logits(x, b)), 1e-5)
        let result = try WeightMatching.match(reference: params, model: b, spec: spec, seed: 0)
        XCTAssertEqual(result.permutations, [PermutationSpec.inverse(perm)])
        XCTAssertEqual(result.aligned, params)
    }
}

/// The alignment criteria on Basin's own sample models: independently trained seeds, aligned by weight and by
/// activation matching, lose their barrier on the test split.
final class SampleModelsAlignmentTests: XCTestCase {
    func testWeightAndActivationMatchingOnSampleSeeds() throws {
        let root = Fixtures.repositoryRoot.appendingPathComponent("SampleModels")
        let test = try Dataset(url: root.appendingPathComponent("data/digits-test.safetensors"))
        let train = try Dataset(url: root.appendingPathComponent("data/digits-train.safetensors"))
        for (i, j) in [(0, 1), (2, 3)] {
            let a = try LoadedModel(path: root.appendingPathComponent("seeds/mlp-seed\(i).safetensors").path)
            let b = try LoadedModel(path: root.appendingPathComponent("seeds/mlp-seed\(j).safetensors").path)
            let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
            func barrier(_ aligned: ParameterSet) throws -> Double {
                let path = try ModelPath.linear(a.params, aligned)
                let m = try XCTUnwrap(PathEvaluator(path: path, network: a.network, datasets: [test]).metrics(points: 21))
                return m[0].barrier.loss
            }
            let unaligned = try barrier(b.params)
            let weight = try barrier(try WeightMatching.match(reference: a.params, model: b.params, spec: spec, seed: 0).aligned)
            let activation = try barrier(try ActivationMatching.match(reference: a.params, model: b.params, network: a.network,
                                                                      spec: spec, data: train).aligned)
            XCTAssertGreaterThan(unaligned, 0.2, "seeds \(i),\(j)")
            // No PyTorch reference exists for Basin's own sample models: the bound is Git Re-Basin's claim that the
            // barrier (0.49 and 0.73 here) all but vanishes (measured 0.028-0.059).
            XCTAssertLessThanOrEqual(weight, 0.06, "seeds \(i),\(j): weight-matched barrier (unaligned \(unaligned))")
            XCTAssertLessThanOrEqual(activation, 0.06, "seeds \(i),\(j): activation-matched barrier")
            print("SampleModels seeds \(i),\(j): barrier \(unaligned) -> weight \(weight), activation \(activation)")
        }
    }
}
