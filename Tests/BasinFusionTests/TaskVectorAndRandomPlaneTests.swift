import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

final class TaskVectorAnalysisTests: XCTestCase {
    /// Two task vectors on one 2x2 tensor, worked by hand.
    func testHandWorkedExample() throws {
        let base = ParameterSet([("w", Tensor(shape: [2, 2], storage: [0, 0, 0, 0]))])
        let m1 = ParameterSet([("w", Tensor(shape: [2, 2], storage: [4, -1, 2, 0.5]))])
        let m2 = ParameterSet([("w", Tensor(shape: [2, 2], storage: [-3, 2, 1, -0.5]))])
        let a = try TaskVectorAnalysis.compute(base: base, models: [m1, m2], names: ["a", "b"], density: 0.5)
        let t = try XCTUnwrap(a.tensors.first)
        // Trimming keeps the top 2 magnitudes of each: [4, 0, 2, 0] and [-3, 2, 0, 0].
        XCTAssertEqual(t.trimmedMass[0], 1.5 / 7.5, accuracy: 1e-9)
        XCTAssertEqual(t.trimmedMass[1], 1.5 / 6.5, accuracy: 1e-9)
        // Only entry 0 has two non-zero trimmed values, and they disagree: sum +1 elects +, dropping the -3.
        XCTAssertEqual(t.signConflict, 1)
        XCTAssertEqual(t.electionDropped, 3.0 / 11.0, accuracy: 1e-9)
        let cos = -12.25 / (21.25.squareRoot() * 14.25.squareRoot())
        XCTAssertEqual(t.cosine[0][1]!, cos, accuracy: 1e-9)
        XCTAssertEqual(a.cosine[1][0]!, cos, accuracy: 1e-9)
        XCTAssertEqual(t.cosine[0][0]!, 1, accuracy: 1e-12)
        XCTAssertEqual(t.norms[0], 21.25.squareRoot(), accuracy: 1e-6)
        // The mass held by the largest entries: 1 of 4 entries holds 4 / 7.5 of model a's mass, 2 hold 6 / 7.5.
        let curve = a.massCurve[0]
        XCTAssertEqual(curve[TaskVectorAnalysis.massFractions.firstIndex(of: 0.01)!], 4 / 7.5, accuracy: 1e-9)
        XCTAssertEqual(curve[TaskVectorAnalysis.massFractions.firstIndex(of: 0.5)!], 6 / 7.5, accuracy: 1e-9)
        XCTAssertEqual(curve.last!, 1, accuracy: 1e-12)
        XCTAssertEqual(a.histogram[0].reduce(0, +), 4)
        XCTAssertEqual(a.histogramEdges.count, 25)
    }

    /// The trimming is the TIES merge's own: where the analysis says the election drops an entry, the merge
    /// with the same density takes only the agreeing values.
    func testTrimmingMatchesTheTiesMerge() throws {
        let base = ParameterSet([("w", Tensor(shape: [1, 4], storage: [1, 1, 1, 1]))])
        let m1 = ParameterSet([("w", Tensor(shape: [1, 4], storage: [5, 0, 3, 1.5]))])
        let m2 = ParameterSet([("w", Tensor(shape: [1, 4], storage: [-2, 3, 2, 0.5]))])
        let recipe = MergeRecipe(method: .ties, models: [MergeRecipe.ModelEntry(model: "a", parameters: ["weight": .scalar(1), "density": .scalar(0.5)]),
                                                        MergeRecipe.ModelEntry(model: "b", parameters: ["weight": .scalar(1), "density": .scalar(0.5)])],
                                 baseModel: "base")
        let merged = try ParameterMerge.merge(recipe, models: [m1, m2], base: base)
        // Task vectors [4, -1, 2, 0.5] and [-3, 2, 1, -0.5]: as in the hand-worked example.
        XCTAssertEqual(merged["w"]!.storage, [5, 3, 3, 1])
        let a = try TaskVectorAnalysis.compute(base: base, models: [m1, m2], names: ["a", "b"], density: 0.5)
        XCTAssertEqual(a.electionDropped, 3.0 / 11.0, accuracy: 1e-9)
    }

    func testRejectsBadInput() {
        let base = ParameterSet([("w", Tensor(shape: [2], storage: [0, 0]))])
        let other = ParameterSet([("v", Tensor(shape: [2], storage: [0, 0]))])
        XCTAssertThrowsError(try TaskVectorAnalysis.compute(base: base, models: [], names: [], density: 0.5))
        XCTAssertThrowsError(try TaskVectorAnalysis.compute(base: base, models: [base], names: ["a"], density: 0))
        XCTAssertThrowsError(try TaskVectorAnalysis.compute(base: base, models: [other], names: ["a"], density: 0.5))
        XCTAssertThrowsError(try TaskVectorAnalysis.compute(base: base, models: [base], names: ["a"], density: 0.5, bins: 1))
    }

    /// On the sample fine-tunes: symmetric cosines, shares in [0, 1], more trimming removes more mass.
    func testSampleFineTunes() throws {
        let dir = Fixtures.repositoryRoot.appendingPathComponent("SampleModels/finetune")
        let base = try LoadedModel(path: dir.appendingPathComponent("base.safetensors").path).params
        let names = ["ft-adam-lr1e-3", "ft-sgd-lr5e-2", "ft-adam-wd1e-3"]
        let models = try names.map { try LoadedModel(path: dir.appendingPathComponent("\($0).safetensors").path).params }
        let a = try TaskVectorAnalysis.compute(base: base, models: models, names: names, density: 0.5)
        let b = try TaskVectorAnalysis.compute(base: base, models: models, names: names, density: 0.1)
        XCTAssertEqual(a.tensors.map(\.name), base.names)
        for t in a.tensors {
            for i in 0..<3 { for j in 0..<3 { XCTAssertEqual(t.cosine[i][j]!, t.cosine[j][i]!, accuracy: 1e-12) } }
            XCTAssertTrue((0...1).contains(t.signConflict) && (0...1).contains(t.electionDropped))
        }
        for i in 0..<3 { XCTAssertGreaterThan(b.trimmedMass[i], a.trimmedMass[i]) }
        // Half the entries hold more than half the mass (the heavy tail trimming relies on).
        let half = TaskVectorAnalysis.massFractions.firstIndex(of: 0.5)!
        for c in a.massCurve { XCTAssertGreaterThan(c[half], 0.5) }
        XCTAssertNoThrow(try JSONEncoder().encode(a))
    }
}

final class RandomDirectionTests: XCTestCase {
    func testFilterNormalisation() throws {
        let w = Tensor(shape: [3, 4], storage: [1, 2, 3, 4, 0, 0, 0, 0.5, -2, 2, -2, 2])
        let p = ParameterSet([("layer.weight", w), ("layer.bias", Tensor(shape: [3], storage: [1, 2, 3]))])
        var g = SeededGenerator(seed: 7)
        let d = RandomDirections.filterNormalized(like: p, generator: &g)
        XCTAssertEqual(d["layer.bias"]!.storage, [0, 0, 0], "biases are not perturbed")
        let dw = d["layer.weight"]!.storage
        for f in 0..<3 {
            let wn = (0..<4).map { Double(w.storage[f * 4 + $0]) }.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let dn = (0..<4).map { Double(dw[f * 4 + $0]) }.reduce(0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertEqual(dn, wn, accuracy: 1e-5, "filter \(f) has the weights' norm")
        }
        var g2 = SeededGenerator(seed: 7), g3 = SeededGenerator(seed: 8)
        XCTAssertEqual(RandomDirections.filterNormalized(like: p, generator: &g2)["layer.weight"]!.storage, dw, "seeded")
        XCTAssertNotEqual(RandomDirections.filterNormalized(like: p, generator: &g3)["layer.weight"]!.storage, dw)
    }

    func testRandomPlaneOnTheSampleModel() throws {
        let m = try LoadedModel(path: Fixtures.repositoryRoot.appendingPathComponent("SampleModels/seeds/mlp-seed0.safetensors").path)
        let plane = try WeightPlane.randomDirections(center: m.params, seed: 1)
        XCTAssertEqual(plane.xRange, -1...1)
        let origin = plane.point(x: 0, y: 0)
        XCTAssertEqual((origin - m.params).norm, 0, accuracy: 1e-6)
        // Two random directions in 26k dimensions are nearly orthogonal; each has the weights' norm (biases aside).
        let cos = plane.u.dot(plane.v) / (plane.u.norm * plane.v.norm)
        XCTAssertLessThan(abs(cos), 0.05)
        let weightsOnly = m.params.mapTensors { _, t in t.shape.count >= 2 ? t : Tensor.zeros(like: t) }
        XCTAssertEqual(plane.u.norm, weightsOnly.norm, accuracy: weightsOnly.norm * 1e-4)
        let data = try Dataset(path: Fixtures.repositoryRoot.appendingPathComponent("SampleModels/data/digits-test.safetensors").path)
        let l = try XCTUnwrap(try LossLandscape.compute(plane: plane, network: m.network, data: data, resolution: 5))
        XCTAssertEqual(l.loss[2][2], m.network.evaluate(m.params, on: data).loss, accuracy: 1e-5, "the centre is the model")
        XCTAssertGreaterThan(l.loss[0][0], l.loss[2][2], "a random step of the weights' size makes it worse")
        XCTAssertThrowsError(try WeightPlane.randomDirections(center: m.params, seed: 1, span: 0))
    }
}
