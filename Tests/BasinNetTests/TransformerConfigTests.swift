import BasinNet
import BasinTestSupport
import Foundation
import XCTest

final class TransformerConfigTests: XCTestCase {
    func config(_ json: String) throws -> TransformerConfig {
        try TransformerConfig(data: Data(json.utf8), file: "config.json")
    }

    func assertKind(_ json: String, _ kind: TransformerConfigError.Kind, key: String?, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try config(json), file: file, line: line) { error in
            guard let e = error as? TransformerConfigError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            XCTAssertEqual(e.key, key, "\(e)", file: file, line: line)
            XCTAssertTrue(e.description.hasPrefix("config.json"), e.description, file: file, line: line)
        }
    }

    func testFixtureConfigs() throws {
        let gpt2 = try TransformerConfig(url: Fixtures.url("transformers/gpt2-tiny-seed0/config.json"))
        XCTAssertEqual(gpt2.family, .gpt2)
        XCTAssertEqual([gpt2.vocabularySize, gpt2.hiddenSize, gpt2.layers, gpt2.heads, gpt2.headDim, gpt2.intermediateSize, gpt2.maxPositions],
                       [27, 64, 2, 4, 16, 256, 8])
        XCTAssertEqual(gpt2.activation, .geluNew)
        XCTAssertTrue(gpt2.tiedEmbeddings)
        XCTAssertEqual(gpt2.normEpsilon, 1e-5)
        XCTAssertEqual(gpt2.attentionScale(layer: 1), 0.25)

        let llama = try TransformerConfig(url: Fixtures.url("transformers/llama-tiny-base/config.json"))
        XCTAssertEqual(llama.family, .llama)
        XCTAssertEqual([llama.heads, llama.keyValueHeads, llama.headDim, llama.intermediateSize], [4, 2, 16, 128])
        XCTAssertEqual(llama.activation, .silu)
        XCTAssertFalse(llama.tiedEmbeddings)
        XCTAssertEqual(llama.ropeTheta, 10000)
        XCTAssertEqual(llama.normEpsilon, 1e-6)
        XCTAssertFalse(llama.qkvBias)
    }

    let llamaBase = """
    "vocab_size": 32, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4
    """

    func testRopeThetaAtTopLevelOrInRopeParameters() throws {
        XCTAssertEqual(try config(#"{"model_type": "llama", "rope_theta": 500000, \#(llamaBase)}"#).ropeTheta, 500000)
        XCTAssertEqual(try config(#"{"model_type": "mistral", "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}, \#(llamaBase)}"#).ropeTheta, 1e6)
        XCTAssertEqual(try config(#"{"model_type": "llama", \#(llamaBase)}"#).ropeTheta, 10000)
        XCTAssertEqual(try config(#"{"model_type": "llama", \#(llamaBase)}"#).keyValueHeads, 4)
    }

    func testFamiliesSharingLlamaLayout() throws {
        let qwen = try config(#"{"model_type": "qwen2", "num_key_value_heads": 2, "tie_word_embeddings": true, \#(llamaBase)}"#)
        XCTAssertEqual(qwen.family, .llama)
        XCTAssertTrue(qwen.qkvBias)
        XCTAssertFalse(qwen.outputProjectionBias)
        XCTAssertTrue(qwen.tiedEmbeddings)
        let mistral = try config(#"{"model_type": "mistral", "sliding_window": 4096, \#(llamaBase)}"#)
        XCTAssertEqual(mistral.slidingWindow, 4096)
    }

    func testErrorsNameTheField() {
        assertKind(#"{"model_type": "bert", "vocab_size": 3}"#, .unknownModelType, key: "model_type")
        assertKind(#"{"vocab_size": 3}"#, .missingField, key: "model_type")
        assertKind(#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4}"#, .missingField, key: "vocab_size")
        assertKind(#"{"model_type": "llama", "num_key_value_heads": 3, \#(llamaBase)}"#, .badField, key: "num_key_value_heads")
        assertKind(#"{"model_type": "llama", "num_key_value_heads": "two", \#(llamaBase)}"#, .badField, key: "num_key_value_heads")
        assertKind(#"{"model_type": "llama", "num_key_value_heads": true, \#(llamaBase)}"#, .badField, key: "num_key_value_heads")
        assertKind(#"{"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8}, \#(llamaBase)}"#, .unsupportedFeature, key: "rope_scaling")
        assertKind(#"{"model_type": "llama", "rope_parameters": {"rope_type": "yarn"}, \#(llamaBase)}"#, .unsupportedFeature, key: "rope_parameters.rope_type")
        assertKind(#"{"model_type": "llama", "hidden_act": "mish", \#(llamaBase)}"#, .unsupportedFeature, key: "hidden_act")
        assertKind(#"{"model_type": "gpt2", "vocab_size": 5, "n_embd": 64, "n_layer": 1, "n_head": 5, "n_positions": 8}"#, .badField, key: "n_head")
        assertKind(#"{"model_type": "gpt2", "add_cross_attention": true, "vocab_size": 5, "n_embd": 64, "n_layer": 1, "n_head": 4, "n_positions": 8}"#,
                   .unsupportedFeature, key: "add_cross_attention")
        assertKind("[1, 2]", .badJSON, key: nil)
    }
}
