import BasinFusion
import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// tokenizer_source copies one model's tokenizer. mergekit also permutes every model's embedding rows into that
/// tokenizer's numbering; Basin does not, so models whose tokenizers number tokens differently are refused
/// instead of merged row by row with the wrong tokens.
final class TokenizerSourceTests: XCTestCase {
    var dir: URL!
    let family = Fixtures.url("transformers")

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A Hugging Face folder with the weights and config of a fixture model and the given tokenizer.json.
    func folder(_ name: String, from model: String, tokenizer: [String: Any]?) throws -> URL {
        let d = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: family.appendingPathComponent("\(model)/\(f)"), to: d.appendingPathComponent(f))
        }
        if let tokenizer { try JSONSerialization.data(withJSONObject: tokenizer).write(to: d.appendingPathComponent("tokenizer.json")) }
        return d
    }

    func bpe(_ vocab: [String: Int], added: [(String, Int)] = []) -> [String: Any] {
        ["model": ["type": "BPE", "vocab": vocab], "added_tokens": added.map { ["id": $0.1, "content": $0.0] }]
    }

    func merge(_ tokenizerSource: String, into out: URL) throws {
        let recipe = try MergeRecipe.parse("""
        merge_method: task_arithmetic
        base_model: base
        models:
          - {model: add, parameters: {weight: 1.0}}
          - {model: sub, parameters: {weight: 1.0}}
        tokenizer_source: \(tokenizerSource)
        """, directory: dir, file: dir.appendingPathComponent("r.yml").path)
        let previous = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(dir.path)
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        var options = MergeRunOptions()
        options.hashInputs = false
        _ = try MergeExecutor.run(try MergePlan(recipe: recipe), out: out, options: options)
    }

    func testModelsThatNumberTheirTokensDifferentlyAreRefused() throws {
        let v = ["a": 0, "b": 1, "c": 2]
        _ = try folder("base", from: "llama-tiny-base", tokenizer: bpe(v))
        _ = try folder("add", from: "llama-tiny-ft-add", tokenizer: bpe(v))
        _ = try folder("sub", from: "llama-tiny-ft-sub", tokenizer: bpe(["a": 0, "c": 1, "b": 2]))
        let out = dir.appendingPathComponent("out")
        for source in ["base", "add"] {
            XCTAssertThrowsError(try merge(source, into: out), source) { e in
                let m = e as? MergeError
                XCTAssertEqual(m?.kind, .incompatibleModels)
                XCTAssertEqual(m?.key, "tokenizer_source")
                XCTAssertTrue("\(e)".contains("'sub'") && "\(e)".contains("token 'b' is id 1 there but id 2"), "\(e)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "nothing written")
        }
    }

    func testTheSameNumberingInAnotherFormMergesAndCopiesTheSourceTokenizer() throws {
        let v = ["a": 0, "b": 1, "c": 2]
        let base = try folder("base", from: "llama-tiny-base", tokenizer: bpe(v, added: [("<s>", 3)]))
        // Unigram's list of [piece, score] with the same ids; add has no tokenizer (taken to share the base's).
        _ = try folder("sub", from: "llama-tiny-ft-sub",
                       tokenizer: ["model": ["type": "Unigram", "vocab": [["a", 0.0], ["b", -1.0], ["c", -2.0]]], "added_tokens": [["id": 3, "content": "<s>"]]])
        _ = try folder("add", from: "llama-tiny-ft-add", tokenizer: nil)
        let out = dir.appendingPathComponent("out")
        try merge("base", into: out)
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("tokenizer.json")), try Data(contentsOf: base.appendingPathComponent("tokenizer.json")))
        // An added token the base lacks is a different vocabulary too.
        try FileManager.default.removeItem(at: out)
        try JSONSerialization.data(withJSONObject: bpe(v, added: [("<s>", 3), ("<extra>", 4)])).write(to: dir.appendingPathComponent("add/tokenizer.json"))
        XCTAssertThrowsError(try merge("base", into: out)) { e in
            XCTAssertEqual((e as? MergeError)?.kind, .incompatibleModels)
            XCTAssertTrue("\(e)".contains("'add' has 5 tokens, 4 there"), "\(e)")
        }
    }

    /// tokenizer_source: base on a .safetensors output was silently dropped (a named model was refused).
    func testTokenizerSourceNeedsAFolderOutput() throws {
        _ = try folder("base", from: "llama-tiny-base", tokenizer: bpe(["a": 0]))
        _ = try folder("add", from: "llama-tiny-ft-add", tokenizer: nil)
        _ = try folder("sub", from: "llama-tiny-ft-sub", tokenizer: nil)
        XCTAssertThrowsError(try merge("base", into: dir.appendingPathComponent("out.safetensors"))) { e in
            XCTAssertEqual((e as? MergeError)?.kind, .output)
            XCTAssertEqual((e as? MergeError)?.key, "tokenizer_source")
        }
    }
}
