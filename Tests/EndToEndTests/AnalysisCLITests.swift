import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// `basin barriers`, `basin landscape`, `basin simplex` and `basin fit` through a chain: what the explorer
/// computes, as commands with --json, --csv and --svg. Figures are checked against independent commands
/// (`basin eval`, `basin path`) on the sample models.
final class AnalysisCLITests: XCTestCase {
    var dir: URL!
    let samples = Fixtures.repositoryRoot.appendingPathComponent("SampleModels")

    override func setUpWithError() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        dir = try Fixtures.temporaryDirectory()
    }

    override func tearDownWithError() throws { if let dir { try? FileManager.default.removeItem(at: dir) } }

    func seed(_ i: Int) -> String { samples.appendingPathComponent("seeds/mlp-seed\(i).safetensors").path }
    var test: String { samples.appendingPathComponent("data/digits-test.safetensors").path }
    var train: String { samples.appendingPathComponent("data/digits-train.safetensors").path }

    private func json(_ args: [String]) throws -> [String: Any] {
        let r = try BasinBinary.run(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    }

    private func evalLoss(_ model: String) throws -> Double {
        try json(["eval", model, "--data", test, "--json"])["loss"] as! Double
    }

    func testBarrierMatrixMatchesPathAndWritesSVG() throws {
        let svg = dir.appendingPathComponent("barriers.svg")
        let out = try json(["barriers", seed(0), seed(1), seed(2), "--data", test, "--points", "5", "--json", "--svg", svg.path])
        let matrices = out["matrices"] as! [[String: Any]]
        XCTAssertEqual(matrices.count, 1)
        let loss = matrices[0]["loss"] as! [[Any]]
        XCTAssertEqual(loss.count, 3)
        for i in 0..<3 {
            XCTAssertTrue(loss[i][i] is NSNull, "no barrier on the diagonal")
            for j in 0..<3 where j != i { XCTAssertEqual(loss[i][j] as! Double, loss[j][i] as! Double) }
        }
        // The same pair through `basin path`.
        let path = try json(["path", seed(0), seed(2), "--data", test, "--points", "5", "--json"])
        let barrier = (path["barrier"] as! [String: Any])["loss"] as! Double
        XCTAssertEqual(loss[0][2] as! Double, barrier, accuracy: 1e-6)
        XCTAssertGreaterThan(barrier, 0.1, "independently trained seeds have a barrier")
        let text = try String(contentsOf: svg, encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("<?xml") && text.contains("<svg") && text.hasSuffix("</svg>\n"))
        XCTAssertTrue(text.contains(String(format: "%.3f", barrier)), "the SVG shows the matrix's numbers")
        XCTAssertTrue(text.contains("mlp-seed2"))

        let csv = try BasinBinary.run(["barriers", seed(0), seed(1), seed(2), "--data", train, "--data", test, "--points", "5", "--csv"])
        XCTAssertEqual(csv.status, 0, csv.stderr)
        let lines = csv.stdout.split(separator: "\n")
        XCTAssertEqual(lines.first, "data,a,b,loss_barrier,loss_barrier_t,accuracy_barrier,max_loss,min_accuracy")
        XCTAssertEqual(lines.count, 1 + 2 * 3)
    }

    /// The plane through three models with no margin: the bottom corners of a 3-point grid are the first and
    /// third models (rebuilt from the plane's coordinates), so their losses are `basin eval`'s.
    func testLandscapeThroughThreeModelsHitsTheModels() throws {
        let svg = dir.appendingPathComponent("plane.svg")
        let out = try json(["landscape", seed(0), seed(1), seed(2), "--data", test, "--grid", "3", "--margin", "0", "--json",
                            "--svg", svg.path])
        XCTAssertEqual(out["plane"] as! String, "models")
        let anchors = out["anchors"] as! [[String: Any]]
        XCTAssertEqual(anchors.map { $0["label"] as! String }, ["mlp-seed0", "mlp-seed1", "mlp-seed2"])
        XCTAssertEqual(anchors[0]["x"] as! Double, 0)
        XCTAssertEqual(anchors[2]["y"] as! Double, 0)
        let loss = out["loss"] as! [[Double]]
        let xs = out["xs"] as! [Double]
        let proj = anchors[1]["x"] as! Double, far = anchors[2]["x"] as! Double
        XCTAssertTrue(proj >= 0 && proj <= far, "the middle model projects between the others (so the corners are models 1 and 3)")
        XCTAssertEqual(xs.first!, 0, accuracy: 1e-9)
        XCTAssertEqual(loss[2][0], try evalLoss(seed(0)), accuracy: 2e-4)
        XCTAssertEqual(loss[2][2], try evalLoss(seed(2)), accuracy: 2e-4)
        XCTAssertGreaterThan(loss[2][1], loss[2][0] + 0.1, "the midpoint of seeds 0 and 2 sits on the barrier")
        XCTAssertEqual((out["path"] as! [Any]).count, 61, "the chain through the three models is drawn")
        let text = try String(contentsOf: svg, encoding: .utf8)
        XCTAssertEqual(text.components(separatedBy: "<rect").count - 1 >= 9, true, "one rectangle per grid cell")
        XCTAssertTrue(text.contains("<polyline"), "the path")

        let csv = try BasinBinary.run(["landscape", seed(0), seed(1), seed(2), "--data", test, "--grid", "3", "--csv"])
        XCTAssertEqual(csv.status, 0, csv.stderr)
        XCTAssertEqual(csv.stdout.split(separator: "\n").count, 1 + 9)
        let plain = try BasinBinary.run(["landscape", seed(0), seed(1), seed(2), "--data", test, "--grid", "5"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertTrue(plain.stdout.contains("mlp-seed0 at (0.0000, 0.0000): loss"), plain.stdout)
        XCTAssertTrue(plain.stdout.contains("lowest grid loss"), plain.stdout)
    }

    /// Random filter-normalised directions (Li et al. 2018): centred on the model, reproducible by seed.
    func testRandomDirectionsAreSeededAndCentredOnTheModel() throws {
        let a = try json(["landscape", seed(0), "--data", test, "--grid", "3", "--seed", "7", "--json"])
        XCTAssertEqual(a["plane"] as! String, "random")
        XCTAssertEqual(a["seed"] as! Int, 7)
        let loss = a["loss"] as! [[Double]]
        XCTAssertEqual(loss[1][1], try evalLoss(seed(0)), accuracy: 1e-5, "the centre is the model")
        let again = try json(["landscape", seed(0), "--data", test, "--grid", "3", "--seed", "7", "--json"])
        XCTAssertEqual(again["loss"] as! [[Double]], loss)
        let other = try json(["landscape", seed(0), "--data", test, "--grid", "3", "--seed", "8", "--json"])
        XCTAssertNotEqual(other["loss"] as! [[Double]], loss)
        XCTAssertGreaterThan(loss[0][0], loss[1][1], "a filter-sized step away from a trained model raises the loss")
    }

    func testSimplexCornersAndEdgesAreTheModelsAndTheirAverages() throws {
        let svg = dir.appendingPathComponent("triangle.svg")
        let out = try json(["simplex", seed(0), seed(1), seed(2), "--data", test, "--grid", "2", "--json", "--svg", svg.path])
        let cells = out["cells"] as! [[String: Any]]
        XCTAssertEqual(cells.count, 6)
        func cell(_ w: [Double]) -> [String: Any] { cells.first { ($0["weights"] as! [Double]) == w }! }
        XCTAssertEqual(cell([1, 0, 0])["loss"] as! Double, try evalLoss(seed(0)), accuracy: 1e-5)
        XCTAssertEqual(cell([0, 0, 1])["loss"] as! Double, try evalLoss(seed(2)), accuracy: 1e-5)
        // The soup halfway between seeds 0 and 1 is the midpoint of their straight path.
        let path = try json(["path", seed(0), seed(1), "--data", test, "--points", "3", "--json"])
        let mid = (path["points"] as! [[String: Any]])[1]["loss"] as! Double
        XCTAssertEqual(cell([0.5, 0.5, 0])["loss"] as! Double, mid, accuracy: 1e-5)
        let best = out["best"] as! [String: Any]
        XCTAssertEqual(best["loss"] as! Double, cells.compactMap { $0["loss"] as? Double }.min()!)
        let text = try String(contentsOf: svg, encoding: .utf8)
        XCTAssertEqual(text.components(separatedBy: "<polygon").count - 1, 4 + 1, "n^2 triangles and the outline")
    }

    /// `basin fit` through a chain of three models: one bends file per consecutive pair, each tied to its ends,
    /// and the chain evaluated end to end beside the straight chain.
    func testFitThroughAChainWritesOneCurvePerSegment() throws {
        let out = dir.appendingPathComponent("chain.safetensors"), svg = dir.appendingPathComponent("chain.svg")
        let r = try json(["fit", seed(0), seed(1), seed(2), "--data", train, "--test", test, "--epochs", "1", "--points", "5",
                          "--out", out.path, "--json", "--svg", svg.path])
        let segments = r["segments"] as! [[String: Any]]
        XCTAssertEqual(segments.map { $0["out"] as! String }, ["chain-1", "chain-2"].map { dir.appendingPathComponent("\($0).safetensors").path })
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        let evaluation = r["evaluation"] as! [String: Any]
        let fitted = evaluation["fitted"] as! [[String: Any]], linear = evaluation["linear"] as! [[String: Any]]
        XCTAssertEqual(fitted.count, 9)
        XCTAssertEqual(fitted.map { $0["t"] as! Double }, [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2])
        XCTAssertEqual(linear[4]["loss"] as! Double, try evalLoss(seed(1)), accuracy: 1e-5, "the chain passes through the middle model")
        XCTAssertEqual(fitted[8]["loss"] as! Double, try evalLoss(seed(2)), accuracy: 1e-5)
        XCTAssertLessThan(evaluation["fittedBarrier"] as! Double, evaluation["linearBarrier"] as! Double)
        // Each bends file goes with its own endpoints in `basin path`.
        let p = try json(["path", seed(1), seed(2), "--data", test, "--bends", dir.appendingPathComponent("chain-2.safetensors").path,
                          "--points", "5", "--json"])
        let second = (segments[1]["metrics"] as! [String: Any])["points"] as! [[String: Any]]
        XCTAssertEqual((p["points"] as! [[String: Any]]).map { $0["loss"] as! Double }, second.map { $0["loss"] as! Double })
        let wrong = try BasinBinary.run(["path", seed(0), seed(2), "--data", test, "--bends", dir.appendingPathComponent("chain-2.safetensors").path])
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(try String(contentsOf: svg, encoding: .utf8).contains("straight chain"))
    }

    /// BasinIO's output rule: --svg never replaces an input, and a refused command writes nothing.
    func testSVGNeverReplacesAnInput() throws {
        let copy = dir.appendingPathComponent("test.safetensors")
        try FileManager.default.copyItem(atPath: test, toPath: copy.path)
        let before = try FileDigest.sha256(copy)
        for args in [["barriers", seed(0), seed(1), "--data", copy.path, "--svg", copy.path],
                     ["simplex", seed(0), seed(1), seed(2), "--data", copy.path, "--grid", "1", "--svg", copy.path],
                     ["landscape", seed(0), "--data", copy.path, "--grid", "2", "--svg", seed(0)]] {
            let r = try BasinBinary.run(args)
            XCTAssertNotEqual(r.status, 0, args.joined(separator: " "))
            XCTAssertTrue(r.stderr.contains("refusing to write here"), r.stderr)
        }
        XCTAssertEqual(try FileDigest.sha256(copy), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["test.safetensors"])
        let fit = try BasinBinary.run(["fit", seed(0), seed(1), seed(2), "--data", train, "--epochs", "1",
                                       "--out", dir.appendingPathComponent("x.safetensors").path, "--svg", train])
        XCTAssertNotEqual(fit.status, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["test.safetensors"], "nothing fitted or written")
    }

    func testBadArgumentsAreUsageErrors() throws {
        for args in [["landscape", seed(0), seed(1), "--data", test],
                     ["landscape", seed(0), seed(1), seed(2), "--data", test, "--grid", "1"],
                     ["simplex", seed(0), seed(1), "--data", test],
                     ["barriers", seed(0), "--data", test],
                     ["barriers", seed(0), seed(1), "--data", test, "--json", "--csv"],
                     ["fit", seed(0), seed(1), seed(2), "--data", train, "--init-bends", test, "--out", "x.safetensors"]] {
            let r = try BasinBinary.run(args)
            XCTAssertEqual(r.status, 64, "\(args.joined(separator: " ")): \(r.stderr)")
        }
    }
}
