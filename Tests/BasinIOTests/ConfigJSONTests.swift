import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// config.json as transformers' save_pretrained writes it: what a merge writes must keep every value's kind (a
/// float stays a float) and, unchanged, read back to the donor's bytes.
final class ConfigJSONTests: XCTestCase {
    func testFloatsAreWrittenAsPythonReprWritesThem() {
        // Left: the value; right: Python's repr (checked with python3 on this machine).
        let cases: [(Double, String)] = [
            (0, "0.0"), (-0.0, "-0.0"), (1, "1.0"), (0.1, "0.1"), (1e-4, "0.0001"), (1e-5, "1e-05"), (1.5e-5, "1.5e-05"),
            (123456.789, "123456.789"), (1e15, "1000000000000000.0"), (1e16, "1e+16"), (9.999999e15, "9999999000000000.0"),
            (1.2345678901234567e16, "1.2345678901234568e+16"), (2.5e-7, "2.5e-07"), (1e300, "1e+300"), (5e-324, "5e-324"),
            (0.02, "0.02"), (10000, "10000.0"), (3e-6, "3e-06"), (1e22, "1e+22"), (0.3333333333333333, "0.3333333333333333"),
            (65504, "65504.0"), (-2.5e-7, "-2.5e-07"), (1e-6, "1e-06"), (500000, "500000.0"),
        ]
        for (x, python) in cases { XCTAssertEqual(ConfigJSON.pythonRepr(x), python, "\(x)") }
    }

    func testKindsOfValuesSurviveAndKeysAreSorted() throws {
        let text = #"{"b": 0.0, "a": 10000.0, "n": 2, "t": true, "f": false, "z": null, "l": [1, 2.5, "x"], "e": {}, "el": [], "s": "é\"\\/\n", "big": 18446744073709551615, "neg": -3}"#
        let parsed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let expected = """
        {
          "a": 10000.0,
          "b": 0.0,
          "big": 18446744073709551615,
          "e": {},
          "el": [],
          "f": false,
          "l": [
            1,
            2.5,
            "x"
          ],
          "n": 2,
          "neg": -3,
          "s": "\\u00e9\\"\\\\/\\n",
          "t": true,
          "z": null
        }

        """
        XCTAssertEqual(String(decoding: ConfigJSON.encode(parsed), as: UTF8.self), expected)
        // Swift values set by a merge (the layer count, the dtype) are written as their kinds too.
        var edited = parsed
        edited["n"] = 3
        edited["s"] = "bfloat16"
        edited["f"] = true
        let text2 = String(decoding: ConfigJSON.encode(edited), as: UTF8.self)
        XCTAssertTrue(text2.contains("\"n\": 3,\n") && text2.contains("\"s\": \"bfloat16\"") && text2.contains("\"f\": true"), text2)
    }

    /// Every config.json among the fixtures (written by transformers' save_pretrained, mergekit's outputs too)
    /// reads back to the same bytes.
    func testSavePretrainedConfigsRoundTripByteForByte() throws {
        let root = Fixtures.url("transformers")
        let configs = try XCTUnwrap(FileManager.default.enumerator(atPath: root.path)).compactMap { $0 as? String }
            .filter { $0.hasSuffix("config.json") }
        XCTAssertGreaterThanOrEqual(configs.count, 6)
        for c in configs {
            let data = try Data(contentsOf: root.appendingPathComponent(c))
            let parsed = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], c)
            XCTAssertEqual(String(decoding: ConfigJSON.encode(parsed), as: UTF8.self), String(decoding: data, as: UTF8.self), c)
        }
    }
}
