import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// `basin path` and `basin fit` as a user runs them.
final class PathCLITests: XCTestCase {
    var dir: URL!
    let samples = Fixtures.repositoryRoot.appendingPathComponent("SampleModels")

    override func setUpWithError() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        dir = try Fixtures.temporaryDirectory()
    }

    override func tearDownWithError() throws { if let dir { try? FileManager.default.removeItem(at: dir) } }

    private func json(_ r: BasinBinary.Result) throws -> [String: Any] {
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    }

    func testLinearPathJSONMatchesPyTorchOnBothSplits() throws {
        let expected = try Fixtures.json("mlp-pair/expected.json") as! [String: Any]
        let out = try json(BasinBinary.run(["path", Fixtures.mlpSeed0.path, Fixtures.mlpSeed1.path, "--data", Fixtures.digitsTrain.path,
                                            "--data", Fixtures.digitsTest.path, "--points", "21", "--json"]))
        let blocks = out["datasets"] as! [[String: Any]]
        XCTAssertEqual(blocks.map { $0["data"] as! String }, ["digits-train", "digits-test"])
        for (block, key) in zip(blocks, ["linear_train", "linear_test"]) {
            let points = block["points"] as! [[String: Any]]
            let reference = expected[key] as! [[String: Any]]
            XCTAssertEqual(points.count, 21)
            for (p, r) in zip(points, reference) {
                XCTAssertEqual(p["t"] as! Double, r["t"] as! Double, accuracy: 1e-9)
                XCTAssertEqual(p["loss"] as! Double, r["loss"] as! Double, accuracy: 1e-4)
                XCTAssertEqual(p["accuracy"] as! Double, r["accuracy"] as! Double, accuracy: 1e-4)
            }
        }
        let testBarrier = (blocks[1]["barrier"] as! [String: Any])["loss"] as! Double
        XCTAssertEqual(testBarrier, expected["linear_test_barrier"] as! Double, accuracy: 1e-4)
        let trainBarrier = (blocks[0]["barrier"] as! [String: Any])["loss"] as! Double
        XCTAssertEqual(trainBarrier, expected["linear_train_barrier"] as! Double, accuracy: 1e-4)
    }

    func testCSVHasOneRowPerPoint() throws {
        let r = try BasinBinary.run(["path", Fixtures.mlpSeed0.path, Fixtures.mlpSeed1.path, "--data", Fixtures.digitsTest.path,
                                     "--points", "5", "--csv"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.first, "data,t,loss,accuracy")
        XCTAssertEqual(lines.count, 6)
        XCTAssertTrue(lines[3].hasPrefix("digits-test,0.5"), String(lines[3]))
    }

    /// A fitted quadratic Bezier between two SampleModels seeds stays in low loss (issue: barrier <= 0.03 and max
    /// test loss no higher than the worse endpoint's + 0.03), and its bends file is tied to its endpoints.
    func testFittedBezierOnSampleModelsHasNoBarrier() throws {
        let a = samples.appendingPathComponent("seeds/mlp-seed2.safetensors").path
        let b = samples.appendingPathComponent("seeds/mlp-seed3.safetensors").path
        let train = samples.appendingPathComponent("data/digits-train.safetensors").path
        let test = samples.appendingPathComponent("data/digits-test.safetensors").path
        let bends = dir.appendingPathComponent("bends.safetensors")
        let fit = try BasinBinary.run(["fit", a, b, "--data", train, "--type", "bezier", "--out", bends.path])
        XCTAssertEqual(fit.status, 0, fit.stderr)
        let f = try SafeTensorsFile(url: bends)
        XCTAssertEqual(f.metadata["basin.path.type"], "bezier")
        XCTAssertEqual(f.metadata["basin.path.start.sha256"], try FileDigest.sha256(URL(fileURLWithPath: a)))
        XCTAssertEqual(f.metadata["basin.path.end.sha256"], try FileDigest.sha256(URL(fileURLWithPath: b)))

        let curve = try json(BasinBinary.run(["path", a, b, "--data", test, "--bends", bends.path, "--json"]))
        let line = try json(BasinBinary.run(["path", a, b, "--data", test, "--json"]))
        let curveBarrier = (curve["barrier"] as! [String: Any])["loss"] as! Double
        let lineBarrier = (line["barrier"] as! [String: Any])["loss"] as! Double
        XCTAssertLessThanOrEqual(curveBarrier, 0.03)
        XCTAssertGreaterThan(lineBarrier, 0.2, "the straight line between independent seeds has a barrier")
        let points = curve["points"] as! [[String: Any]]
        let worseEnd = max(points.first!["loss"] as! Double, points.last!["loss"] as! Double)
        XCTAssertLessThanOrEqual((curve["loss"] as! [String: Any])["max"] as! Double, worseEnd + 0.03)

        // The same bends between the models the other way round are refused.
        let swapped = try BasinBinary.run(["path", b, a, "--data", test, "--bends", bends.path])
        XCTAssertNotEqual(swapped.status, 0)
        XCTAssertTrue(swapped.stderr.contains("bends.safetensors"), swapped.stderr)
    }

    func testBadPointCountIsAClearError() throws {
        let r = try BasinBinary.run(["path", Fixtures.mlpSeed0.path, Fixtures.mlpSeed1.path, "--data", Fixtures.digitsTest.path, "--points", "1"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("points"), r.stderr)
    }
}
