import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// Paths, soups and merges on the Hugging Face GPT-2 pair and LLaMA family, against the numbers PyTorch
/// computed (Tests/Fixtures/transformers/expected.json).
final class TransformerFusionTests: XCTestCase {
    func expected() throws -> [String: Any] { try Fixtures.json("transformers/expected.json") as! [String: Any] }
    func model(_ name: String) throws -> LoadedModel { try LoadedModel(path: Fixtures.url("transformers/\(name)").path) }
    func data(_ name: String) throws -> Dataset { try Dataset(url: Fixtures.url("data/\(name).safetensors")) }

    func testGPT2LinearPathAndBarrier() throws {
        let e = try expected()
        let gpt2 = e["gpt2"] as! [String: Any]
        let rows = gpt2["linear_test"] as! [[Double]]
        let a = try model("gpt2-tiny-seed0"), b = try model("gpt2-tiny-seed1")
        let test = try data("modarith-test")
        let path = try ModelPath.linear(a.params, b.params)
        // The fast evaluator (the embedding combined from per-endpoint outputs) at all 21 points; the naive
        // one (phi(t) built, the whole network run) at three.
        let fast = PathEvaluator(path: path, network: a.network, datasets: [test])
        XCTAssertTrue(fast.usesFirstLayerShortcut)
        let metrics = try XCTUnwrap(fast.metrics(ts: rows.map { $0[0] }))
        for (row, p) in zip(rows, metrics[0].points) {
            XCTAssertEqual(p.loss, row[1], accuracy: 1e-4, "t = \(row[0])")
            XCTAssertEqual(p.accuracy, row[2], accuracy: 1e-6, "t = \(row[0])")
        }
        XCTAssertEqual(metrics[0].barrier.loss, gpt2["linear_test_barrier"] as! Double, accuracy: 1e-4)
        let naive = PathEvaluator(path: path, network: a.network, datasets: [test], fast: false)
        for row in [rows[0], rows[8], rows[20]] {
            let m = naive.evaluate(at: row[0])[0]
            XCTAssertEqual(m.loss, row[1], accuracy: 1e-4, "t = \(row[0])")
            XCTAssertEqual(m.accuracy, row[2], accuracy: 1e-6, "t = \(row[0])")
        }
    }
}
