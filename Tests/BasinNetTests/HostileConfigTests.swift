import BasinNet
import BasinTestSupport
import Foundation
import XCTest

/// docs/reliability.md, cases 80-81: Hugging Face config.json values each of the right kind but enormous, and
/// values of the wrong JSON type, named as what they are.
final class HostileConfigTests: XCTestCase {
    private let gpt2 = #""model_type": "gpt2", "vocab_size": 27, "n_embd": 64, "n_layer": 2, "n_head": 4"#

    private func refused(_ json: String, key: String, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try TransformerConfig(data: Data(json.utf8), file: "config.json"), file: file, line: line) { error in
            guard let e = error as? TransformerConfigError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertEqual(e.kind, .badField, "\(e)", file: file, line: line)
            XCTAssertEqual(e.key, key, "\(e)", file: file, line: line)
            XCTAssertTrue(e.description.contains(mentions), "'\(mentions)' not in: \(e)", file: file, line: line)
        }
    }

    func testAGPT2PositionTableOfAHundredTrillionRowsIsRefused() {
        // GPT-2's position table is n_positions x n_embd: 10^14 rows trapped in the allocation.
        refused("{\(gpt2), \"n_positions\": 100000000000000}", key: "n_positions", mentions: "at most 16777216")
        XCTAssertNoThrow(try TransformerConfig(data: Data("{\(gpt2), \"n_positions\": 1024}".utf8), file: "config.json"))
    }

    func testValuesOfTheWrongTypeAreNamedAsWhatTheyAre() {
        refused("{\(gpt2), \"n_positions\": \"8\"}", key: "n_positions", mentions: #"is "8" (a string); expected an integer"#)
        refused("{\(gpt2), \"n_positions\": true}", key: "n_positions", mentions: "is true; expected an integer")
        refused("{\(gpt2), \"n_positions\": [8]}", key: "n_positions", mentions: "is a list; expected an integer")
        refused("{\(gpt2), \"n_positions\": {\"a\": 8}}", key: "n_positions", mentions: "is an object; expected an integer")
        refused("{\(gpt2), \"n_positions\": 8.5}", key: "n_positions", mentions: "is 8.5; expected an integer")
        refused("{\(gpt2), \"n_positions\": -8}", key: "n_positions", mentions: "must be positive")
    }
}
