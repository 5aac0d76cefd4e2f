import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// The CLI contract of issue 11 with ONNX graphs: `basin eval G.onnx`, `--arch G.onnx` on eval, path and
/// match (weight and activation), and an unsupported op's error.
final class ONNXCLITests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        dir = try Fixtures.temporaryDirectory()
    }

    override func tearDownWithError() throws { if let dir { try? FileManager.default.removeItem(at: dir) } }

    private func json(_ args: [String]) throws -> [String: Any] {
        let r = try BasinBinary.run(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    }

    private func expected(_ family: String) throws -> [String: Any] {
        try XCTUnwrap((try Fixtures.json("cnn/expected.json") as? [String: Any])?[family] as? [String: Any])
    }

    private func cnn(_ name: String) -> String { Fixtures.url("cnn/\(name)").path }

    func testEvalAndPathWithAGraph() throws {
        let e = try expected("resnet")
        let endpoints = try XCTUnwrap(e["endpoint_test"] as? [[Double]])
        let own = try json(["eval", cnn("resnet-seed0.onnx"), "--data", Fixtures.digitsTest.path, "--json"])
        XCTAssertEqual(try XCTUnwrap(own["loss"] as? Double), endpoints[0][0], accuracy: 1e-4)
        XCTAssertEqual(try XCTUnwrap(own["accuracy"] as? Double), endpoints[0][1], accuracy: 1e-6)
        let other = try json(["eval", cnn("resnet-seed1.safetensors"), "--arch", cnn("resnet-seed0.onnx"), "--data", Fixtures.digitsTest.path, "--json"])
        XCTAssertEqual(try XCTUnwrap(other["loss"] as? Double), endpoints[1][0], accuracy: 1e-4)

        let path = try json(["path", cnn("resnet-seed0.safetensors"), cnn("resnet-seed1.safetensors"), "--arch", cnn("resnet-seed0.onnx"),
                             "--data", Fixtures.digitsTest.path, "--points", "21", "--json"])
        let block = (path["datasets"] as? [[String: Any]])?.first ?? path  // one data set: the block itself
        let points = try XCTUnwrap(block["points"] as? [[String: Any]])
        let reference = try XCTUnwrap(e["linear_test_naive"] as? [[Double]])
        XCTAssertEqual(points.count, 21)
        for (p, r) in zip(points, reference) {
            XCTAssertEqual(p["t"] as! Double, r[0], accuracy: 1e-9)
            XCTAssertEqual(p["loss"] as! Double, r[1], accuracy: 1e-4, "t = \(r[0])")
            XCTAssertEqual(p["accuracy"] as! Double, r[2], accuracy: 1e-4, "t = \(r[0])")
        }
    }

    func testWeightAndActivationMatchOnACNN() throws {
        let test = Fixtures.digitsTest.path
        let b = cnn("vgg-seed1.safetensors"), graph = cnn("vgg-seed0.onnx")
        let before = try json(["eval", b, "--arch", graph, "--data", test, "--json"])
        for method in ["weight", "activation"] {
            let out = dir.appendingPathComponent("\(method).safetensors"), report = dir.appendingPathComponent("\(method).json")
            var args = ["match", cnn("vgg-seed0.safetensors"), b, "--arch", graph, "--method", method, "--seed", "0",
                        "--out", out.path, "--report", report.path]
            if method == "activation" { args += ["--data", Fixtures.digitsTrain.path] }
            let r = try BasinBinary.run(args)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("P_features.3: features.3.weight[0] features.4.weight[0] features.4.bias[0] features.4.running_mean[0] features.4.running_var[0] features.7.weight[1]"), r.stdout)
            // The same function, every tensor kept (num_batches_tracked still int64).
            let after = try json(["eval", out.path, "--arch", graph, "--data", test, "--json"])
            XCTAssertEqual(after["loss"] as! Double, before["loss"] as! Double, accuracy: 1e-5, method)
            XCTAssertEqual(after["accuracy"] as! Double, before["accuracy"] as! Double, accuracy: 1e-9, method)
            let aligned = try SafeTensorsFile(url: out), original = try SafeTensorsFile(url: URL(fileURLWithPath: b))
            XCTAssertEqual(aligned.names.sorted(), original.names.sorted())
            XCTAssertEqual(aligned.info("features.1.num_batches_tracked")?.dtype, .i64)
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [String: Any])
            let groups = try XCTUnwrap(json["groups"] as? [[String: Any]])
            XCTAssertEqual(groups.map { $0["name"] as? String }, ["P_features.0", "P_features.3", "P_features.7"])
            XCTAssertEqual(groups.map { $0["size"] as? Int }, [16, 16, 32])
            XCTAssertEqual((json["layers"] as? [[String: Any]])?.count, 3)
        }
    }

    func testUnsupportedOpNamesNodeAndOp() throws {
        let r = try BasinBinary.run(["eval", Fixtures.url("onnx/unsupported.onnx").path, "--data", Fixtures.digitsTest.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("/wave/Sin") && r.stderr.contains("Sin"), r.stderr)
        XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
    }
}
