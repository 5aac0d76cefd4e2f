import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

final class MergeMethodTests: XCTestCase {
    func t(_ v: [Float]) -> Tensor { Tensor(shape: [v.count], storage: v) }

    func testLinearNormalisedAndNot() throws {
        let p = TensorMergeParameters(weights: [1, 3], normalize: true)
        let r = try TensorMerge.merge(.linear, name: "w", inputs: [t([0, 4]), t([4, 0])], base: nil, parameters: p)
        XCTAssertEqual(r.storage, [3, 1])
        var q = p
        q.normalize = false
        XCTAssertEqual(try TensorMerge.merge(.linear, name: "w", inputs: [t([0, 4]), t([4, 0])], base: nil, parameters: q).storage, [12, 4])
    }

    func testTaskArithmetic() throws {
        let base = t([1, 1, 1])
        let r = try TensorMerge.merge(.taskArithmetic, name: "w", inputs: [t([2, 1, 0]), t([1, 3, 1])], base: base,
                                      parameters: TensorMergeParameters(weights: [0.5, 1], normalize: false))
        // base + 0.5 * (1, 0, -1) + 1 * (0, 2, 0)
        XCTAssertEqual(r.storage, [1.5, 3, 0.5])
    }

    func testTiesTrimElectMean() throws {
        let base = t([0, 0, 0, 0])
        // Task vectors: a = (3, -2, 0.1, 1), b = (1, 4, -0.2, -3). density 0.5 keeps the top 2 of each:
        // a -> (3, -2, 0, 0), b -> (0, 4, 0, -3). Elected signs by mass: (+, +, ?, -).
        // Entry 0: only a agrees -> 3. Entry 1: b (4) agrees -> 4. Entry 2: none -> 0. Entry 3: b -> -3.
        let p = TensorMergeParameters(weights: [1, 1], densities: [0.5, 0.5], normalize: true, lambda: 1)
        let r = try TensorMerge.merge(.ties, name: "w", inputs: [t([3, -2, 0.1, 1]), t([1, 4, -0.2, -3])], base: base, parameters: p)
        XCTAssertEqual(r.storage, [3, 4, 0, -3])
        // Two agreeing entries are averaged; lambda scales.
        var q = TensorMergeParameters(weights: [1, 1], densities: [1, 1], normalize: true, lambda: 2)
        let r2 = try TensorMerge.merge(.ties, name: "w", inputs: [t([2, -1]), t([4, 3])], base: t([0, 0]), parameters: q)
        // entry 0: mean(2, 4) = 3 -> 6; entry 1: mass +2, only b agrees -> 3 -> 6.
        XCTAssertEqual(r2.storage, [6, 6])
        q.normalize = false
        XCTAssertEqual(try TensorMerge.merge(.ties, name: "w", inputs: [t([2, -1]), t([4, 3])], base: t([0, 0]), parameters: q).storage, [12, 6])
    }

    func testDareIsSeededAndRescales() throws {
        let n = 20_000
        let base = Tensor.zeros([n])
        let x = Tensor(shape: [n], repeating: 1)
        let p = TensorMergeParameters(weights: [1], densities: [0.25], normalize: false, seed: 42)
        let a = try TensorMerge.merge(.dareLinear, name: "w", inputs: [x], base: base, parameters: p)
        let b = try TensorMerge.merge(.dareLinear, name: "w", inputs: [x], base: base, parameters: p)
        XCTAssertEqual(a, b)
        let kept = a.storage.filter { $0 != 0 }
        XCTAssertTrue(kept.allSatisfy { $0 == 4 })
        XCTAssertEqual(Double(kept.count) / Double(n), 0.25, accuracy: 0.02)
        XCTAssertEqual(a.mean(), 1, accuracy: 0.08)  // expectation preserved
        var p2 = p
        p2.seed = 43
        XCTAssertNotEqual(try TensorMerge.merge(.dareLinear, name: "w", inputs: [x], base: base, parameters: p2), a)
        // dare_ties runs DARE before TIES's sign election.
        XCTAssertEqual(try TensorMerge.merge(.dareTies, name: "w", inputs: [x], base: base, parameters: p), a)
    }

    func testSlerp() throws {
        let a = t([1, 0]), b = t([0, 1])
        let mid = TensorMerge.slerp(a, b, t: 0.5)
        XCTAssertEqual(mid[0], Float(0.5.squareRoot()), accuracy: 1e-6)
        XCTAssertEqual(mid[1], Float(0.5.squareRoot()), accuracy: 1e-6)
        XCTAssertEqual(TensorMerge.slerp(a, b, t: 0).storage, [1, 0])
        // Nearly collinear: linear.
        let c = t([2, 1e-5])
        XCTAssertEqual(TensorMerge.slerp(a, c, t: 0.5).storage, Tensor.lerp(a, c, 0.5).storage)
    }

    func testParameterFiltersFirstSubstringWins() throws {
        let recipe = try MergeRecipe.parse("""
        merge_method: ties
        base_model: base.safetensors
        models:
          - model: base.safetensors
          - model: sub/a.safetensors
            parameters:
              weight: [{filter: "layers.0", value: 0.3}, {filter: "layers", value: 0.6}, {value: 0.9}]
              density: 0.7
          - model: b.safetensors
            parameters: {weight: 1}
        parameters: {lambda: 1.5, normalize: false, density: 0.4, t: 1e-1}
        dtype: bfloat16
        seed: 7
        """, directory: URL(fileURLWithPath: "/models"))
        XCTAssertEqual(recipe.models.count, 2, "the base listed among models is not a task vector")
        XCTAssertEqual(recipe.modelURLs[0].path, "/models/sub/a.safetensors")
        XCTAssertEqual(recipe.baseURL?.path, "/models/base.safetensors")
        XCTAssertEqual(recipe.dtype, .bf16)
        let p0 = recipe.tensorParameters(for: "layers.0.weight")
        XCTAssertEqual(p0.weights, [0.3, 1])
        XCTAssertEqual(p0.densities, [0.7, 0.4])
        XCTAssertEqual(p0.lambda, 1.5)
        XCTAssertFalse(p0.normalize)
        XCTAssertEqual(p0.seed, 7)
        XCTAssertEqual(p0.t, 0.1)
        XCTAssertEqual(recipe.tensorParameters(for: "layers.2.bias").weights, [0.6, 1])
        XCTAssertEqual(recipe.tensorParameters(for: "head.bias").weights, [0.9, 1])
        // Round trip through YAML.
        let again = try MergeRecipe.parse(recipe.yaml(), directory: URL(fileURLWithPath: "/models"))
        XCTAssertEqual(again.tensorParameters(for: "layers.0.weight"), p0)
        XCTAssertEqual(again.tensorParameters(for: "head.bias"), recipe.tensorParameters(for: "head.bias"))
        XCTAssertThrowsError(try MergeRecipe.parse("merge_method: model_soup_9000\nmodels: [a]", directory: URL(fileURLWithPath: "/")))
        XCTAssertThrowsError(try MergeRecipe.parse("merge_method: ties\nmodels: [a]", directory: URL(fileURLWithPath: "/")))
    }
}
