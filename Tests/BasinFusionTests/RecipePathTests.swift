import BasinFusion
import BasinIO
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// Where relative model paths resolve, and the mergekit 0.1.5 keys Basin refuses by name.
final class RecipePathTests: XCTestCase {
    /// mergekit resolves relative paths against the working directory; Basin does too, then falls back to the
    /// recipe's folder, and a model in neither place is an error naming both.
    func testRelativePathsWorkingDirectoryThenRecipeFolder() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cwd = dir.appendingPathComponent("cwd"), recipes = dir.appendingPathComponent("recipes")
        for d in [cwd, recipes] { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) }
        // m.safetensors in both places (different values): the working directory's wins.
        try SafeTensorsWriter.write([("w", Tensor(shape: [2], storage: [1, 1]))], to: cwd.appendingPathComponent("m.safetensors"))
        try SafeTensorsWriter.write([("w", Tensor(shape: [2], storage: [5, 5]))], to: recipes.appendingPathComponent("m.safetensors"))
        // only.safetensors beside the recipe only: found there.
        try SafeTensorsWriter.write([("w", Tensor(shape: [2], storage: [3, 3]))], to: recipes.appendingPathComponent("only.safetensors"))
        let file = recipes.appendingPathComponent("r.yml")
        try "merge_method: linear\nmodels:\n  - {model: m.safetensors, parameters: {weight: 1.0}}\n  - {model: ./only.safetensors, parameters: {weight: 1.0}}\n"
            .write(to: file, atomically: true, encoding: .utf8)
        let previous = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(cwd.path)
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        let recipe = try MergeRecipe.load(file)
        XCTAssertEqual(recipe.resolve("m.safetensors").resolvingSymlinksInPath().path, cwd.appendingPathComponent("m.safetensors").resolvingSymlinksInPath().path)
        let out = dir.appendingPathComponent("o.safetensors")
        var options = MergeRunOptions()
        options.hashInputs = false
        _ = try MergeExecutor.run(try MergePlan(recipe: recipe), out: out, options: options)
        XCTAssertEqual(try ModelFile.open(out).tensor("w").storage, [2, 2])  // (1 + 3) / 2: cwd's m, the folder's only
        // Neither place: the error names both.
        try "merge_method: linear\nmodels:\n  - {model: ./missing.safetensors, parameters: {weight: 1.0}}\n".write(to: file, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try MergePlan(recipe: try MergeRecipe.load(file))) { e in
            let m = e as? MergeError
            XCTAssertEqual(m?.kind, .missingModel)
            XCTAssertEqual(m?.key, "models[0].model")
            let text = "\(e)"
            XCTAssertTrue(text.contains(cwd.appendingPathComponent("missing.safetensors").lastPathComponent), text)
            XCTAssertTrue(text.contains("/cwd/missing.safetensors") && text.contains("/recipes/missing.safetensors"), text)
        }
    }

    /// When the working directory is the recipe's folder there is one place to look, and the error says so
    /// plainly ("is not at X", not "is neither at X").
    func testAMissingModelWithOnePlaceToLook() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("r.yml")
        try "merge_method: linear\nmodels:\n  - {model: ./gone, parameters: {weight: 1.0}}\n".write(to: file, atomically: true, encoding: .utf8)
        let previous = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(dir.path)
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        XCTAssertThrowsError(try MergePlan(recipe: try MergeRecipe.load(file))) { e in
            XCTAssertEqual((e as? MergeError)?.kind, .missingModel)
            XCTAssertTrue("\(e)".contains("'./gone' is not at /") && "\(e)".hasSuffix("/gone") && !"\(e)".contains("neither"), "\(e)")
        }
    }

    /// Every key of mergekit 0.1.5's MergeConfiguration Basin does not implement is refused by name; nothing is ignored.
    func testUnimplementedMergekitKeysAreNamed() throws {
        let cases: [(String, MergeError.Kind, String)] = [
            ("merge_method: linear\nmodels: [a]\ntokenizer: {source: union}", .unsupported, "tokenizer"),
            ("merge_method: linear\nmodels: [a]\nchat_template: chatml", .unsupported, "chat_template"),
            ("merge_method: passthrough\nslices: [{sources: [{model: a, layer_range: [0, 2]}], residual_weight: 0.5}]", .unsupported, "slices[0].residual_weight"),
            ("merge_method: linear\nmodels: [{model: {model: {path: a, revision: main}}}]", .unsupported, "models[0].model.model.revision"),
            ("merge_method: linear\nmodels: [{model: a+b/lora}]", .unsupported, "models[0].model"),
            ("merge_method: linear\nmodels: [a]\nbase_model: {model: a, override_architecture: X}", .unsupported, "base_model.override_architecture"),
            ("merge_method: passthrough\nslices: [{sources: [{model: a, layer_range: [0, 2], weight: 1}]}]", .unknownKey, "slices[0].sources[0].weight"),
            ("merge_method: linear\nmodels: [{model: a, parameters: {weight: [{filter: mlp, value: 1, extra: 2}]}}]", .unknownKey, "models[0].parameters.weight[0].extra"),
        ]
        for (text, expected, key) in cases {
            do {
                _ = try MergeRecipe.parse(text, directory: URL(fileURLWithPath: "/"), file: "r.yml")
                XCTFail("accepted: \(text)")
            } catch let e as MergeError {
                XCTAssertEqual(e.kind, expected, "\(text) -> \(e)")
                XCTAssertTrue("\(e)".contains(key), "\(text) -> \(e)")
            }
        }
        // What mergekit 0.1.5 accepts, Basin accepts: every top-level key it implements at once.
        let full = try MergeRecipe.parse("""
        merge_method: ties
        base_model: b
        models:
          - model: b
          - model: a
            parameters: {weight: [{filter: self_attn, value: [0.0, 0.5, 1.0]}, {value: 0.7}], density: 0.5}
        parameters: {normalize: true, int8_mask: true, lambda: 1.0, rescale: false}
        dtype: torch.float32
        out_dtype: bfloat16
        tokenizer_source: base
        """, directory: URL(fileURLWithPath: "/"))
        XCTAssertEqual(full.method, .ties)
        XCTAssertEqual(full.outputDType, .bf16)
        XCTAssertEqual(full.tokenizerSource, .base)
        XCTAssertEqual(full.inputModels.map(\.model), ["a"])
    }
}
