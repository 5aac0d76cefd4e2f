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
        // mergekit rescales what DARE keeps to the task vector's L1 norm (not by 1 / density).
        let p = TensorMergeParameters(weights: [1], densities: [0.25], normalize: false, rescale: true, seed: 42)
        let a = try TensorMerge.merge(.dareLinear, name: "w", inputs: [x], base: base, parameters: p)
        let b = try TensorMerge.merge(.dareLinear, name: "w", inputs: [x], base: base, parameters: p)
        XCTAssertEqual(a, b)
        let kept = a.storage.filter { $0 != 0 }
        XCTAssertEqual(Double(kept.count) / Double(n), 0.25, accuracy: 0.02)
        XCTAssertTrue(kept.allSatisfy { $0 == Float(Double(n) / Double(kept.count)) })
        XCTAssertEqual(a.mean(), 1, accuracy: 1e-5)  // L1 norm preserved exactly
        var p2 = p
        p2.seed = 43
        XCTAssertNotEqual(try TensorMerge.merge(.dareLinear, name: "w", inputs: [x], base: base, parameters: p2), a)
        // dare_ties runs DARE before TIES's sign election (one model: nothing to disagree with).
        XCTAssertEqual(try TensorMerge.merge(.dareTies, name: "w", inputs: [x], base: base, parameters: p), a)
        // Without rescaling the kept entries stay as they were.
        var p3 = p
        p3.rescale = false
        XCTAssertTrue(try TensorMerge.merge(.dareLinear, name: "w", inputs: [x], base: base, parameters: p3).storage.allSatisfy { $0 == 0 || $0 == 1 })
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

    func testParameterFiltersFirstMatchWinsAndGradients() throws {
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
        parameters: {lambda: 1.5, normalize: false, density: 0.4}
        dtype: bfloat16
        seed: 7
        """, directory: URL(fileURLWithPath: "/models"))
        XCTAssertEqual(recipe.models.count, 3, "the base stays listed as written")
        XCTAssertEqual(recipe.inputModels.count, 2, "but is not a task vector of itself")
        // Relative paths: the working directory first (as mergekit), then the recipe's folder.
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertEqual(recipe.candidates("sub/a.safetensors").map(\.path), [cwd + "/sub/a.safetensors", "/models/sub/a.safetensors"])
        XCTAssertThrowsError(try recipe.locate("sub/a.safetensors", key: "models[1].model")) { e in
            XCTAssertEqual((e as? MergeError)?.kind, .missingModel)
            XCTAssertTrue("\(e)".contains("/models/sub/a.safetensors") && "\(e)".contains(cwd), "\(e)")
        }
        XCTAssertEqual(recipe.dtype, .bf16)
        let p0 = recipe.tensorParameters(for: "layers.0.weight")
        XCTAssertEqual(p0.weights, [0.3, 1])
        XCTAssertEqual(p0.densities, [0.7, 0.4])
        XCTAssertEqual(p0.lambda, 1.5)
        XCTAssertFalse(p0.normalize)
        XCTAssertEqual(p0.seed, 7)
        XCTAssertEqual(recipe.tensorParameters(for: "layers.2.bias").weights, [0.6, 1])
        XCTAssertEqual(recipe.tensorParameters(for: "head.bias").weights, [0.9, 1])
        // Round trip through YAML: booleans stay booleans.
        let text = recipe.yaml()
        XCTAssertTrue(text.contains("normalize: false"), text)
        let again = try MergeRecipe.parse(text, directory: URL(fileURLWithPath: "/models"))
        XCTAssertEqual(again.tensorParameters(for: "layers.0.weight"), p0)
        XCTAssertEqual(again.tensorParameters(for: "head.bias"), recipe.tensorParameters(for: "head.bias"))
        // mergekit takes the first entry that matches, so an unfiltered entry first wins everywhere.
        let first = try MergeRecipe.parse("""
        merge_method: linear
        models:
          - model: a
            parameters: {weight: [{value: 2}, {filter: layers, value: 5}]}
        """, directory: URL(fileURLWithPath: "/"))
        XCTAssertEqual(first.tensorParameters(for: "layers.0.weight").weights, [2])
        // A gradient list is read piecewise-linearly at depth t.
        XCTAssertEqual(ParameterValue.gradient([0, 0.5, 1]).value(for: "x", t: 0.25), 0.25)
        XCTAssertEqual(ParameterValue.gradient([1, 0.5, 0]).value(for: "x", t: 1), 0)
        XCTAssertEqual(ParameterValue.gradient([0, 1]).value(for: "x", t: 0.5), 0.5)
    }

    func testRecipeErrorsNameTheKey() throws {
        func kind(_ text: String) -> (MergeError.Kind?, String) {
            do {
                _ = try MergeRecipe.parse(text, directory: URL(fileURLWithPath: "/"), file: "r.yml")
                return (nil, "")
            } catch let e as MergeError {
                return (e.kind, e.description)
            } catch {
                return (nil, "\(error)")
            }
        }
        let cases: [(String, MergeError.Kind, String)] = [
            ("merge_method: model_soup_9000\nmodels: [a]", .unknownKey, "merge_method"),
            ("merge_method: ties\nmodels: [a]", .missingValue, "base_model"),
            ("merge_method: linear\nmodels: [{model: a, parameters: {weight: .nan}}]", .invalidValue, "models[0].parameters.weight"),
            ("merge_method: linear\nmodels: [{model: a, parameters: {weight: 1e308}}]", .invalidValue, "models[0].parameters.weight"),
            ("merge_method: ties\nbase_model: b\nmodels: [{model: a, parameters: {weight: 1, density: 1.5}}]", .invalidValue, "models[0].parameters.density"),
            ("merge_method: slerp\nbase_model: b\nmodels: [a, b]\nparameters: {t: 2}", .invalidValue, "parameters.t"),
            ("merge_method: linear\nmodels: a", .invalidValue, "models"),
            ("merge_method: linear\nmodels: [{model: a, parameters: {wieght: 1}}]", .unknownKey, "models[0].parameters.wieght"),
            ("merge_method: linear\nmodels: [{model: a, parameters: {density: 0.5, weight: 1}}]", .unknownKey, "models[0].parameters.density"),
            ("merge_method: linear\nmodels: [a]\nfrobnicate: 1", .unknownKey, "frobnicate"),
            ("merge_method: linear\nmodels: [a]\ntokenizer_source: union", .unsupported, "tokenizer_source"),
            ("merge_method: linear\nmodels: [a]\nmodules: {}", .unsupported, "modules"),
            ("merge_method: linear\nmodels: [{model: a, lora: x}]", .unsupported, "models[0].lora"),
            ("merge_method: slerp\nbase_model: b\nmodels: [{model: a, parameters: {t: 0.5}}]", .invalidValue, "models[0].parameters.t"),
            ("merge_method: passthrough\nslices: [{sources: [{model: a, layer_range: [0, 2]}, {model: b, layer_range: [0, 3]}]}]", .incompatibleModels, "slices[0].sources"),
            ("merge_method: linear\nmodels: [a]\nslices: []", .invalidValue, "slices"),
            ("merge_method: linear\nmodels: [a]\ndtype: int8", .invalidValue, "dtype"),
            ("merge_method: linear\nmodels: [{model: a, parameters: {weight: {filter: x, value: 1}}}]", .invalidValue, "models[0].parameters.weight"),
            ("a: &a [1,2]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]", .malformedRecipe, "r.yml"),
        ]
        for (text, expected, key) in cases {
            let (k, message) = kind(text)
            XCTAssertEqual(k, expected, "\(text) -> \(message)")
            XCTAssertTrue(message.contains(key), "\(text) -> \(message)")
        }
    }
}
