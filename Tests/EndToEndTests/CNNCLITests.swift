import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// CNNs from the command line: evaluation with an architecture file, training a graph with BatchNorm from
/// scratch (PyTorch's initialisation, num_batches_tracked written back as int64), curve fitting through it.
final class CNNCLITests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        dir = try Fixtures.temporaryDirectory()
    }

    override func tearDownWithError() throws { if let dir { try? FileManager.default.removeItem(at: dir) } }

    func testEvalTrainAndFitWithAnArchitectureFile() throws {
        let arch = Fixtures.url("cnn/vgg.arch.json").path
        let e = try BasinBinary.run(["eval", Fixtures.url("cnn/vgg-seed0.safetensors").path, "--arch", arch,
                                     "--data", Fixtures.digitsTest.path, "--json"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["loss"] as! Double, 0.05118485167622566, accuracy: 1e-4)

        // Without the architecture: a clear error, not a wrong network.
        let bare = try BasinBinary.run(["eval", Fixtures.url("cnn/vgg-seed0.safetensors").path, "--data", Fixtures.digitsTest.path])
        XCTAssertNotEqual(bare.status, 0)
        XCTAssertTrue(bare.stderr.contains("--arch"), bare.stderr)

        var models: [URL] = []
        for seed in 0..<2 {
            let out = dir.appendingPathComponent("vgg-\(seed).safetensors")
            let t = try BasinBinary.run(["train", "--arch", arch, "--data", Fixtures.digitsTrain.path, "--limit", "256", "--epochs", "2",
                                         "--lr", "0.01", "--seed", String(seed), "--out", out.path, "--test", Fixtures.digitsTest.path])
            XCTAssertEqual(t.status, 0, t.stderr)
            // Epoch lines: "epoch   1  loss 2.1  accuracy 0.3"; the training loss falls.
            let losses = t.stderr.split(separator: "\n").filter { $0.hasPrefix("epoch") }.compactMap { line -> Double? in
                let parts = line.split(separator: " ")
                return parts.firstIndex(of: "loss").flatMap { Double(parts[$0 + 1]) }
            }
            XCTAssertEqual(losses.count, 2, t.stderr)
            XCTAssertLessThan(losses.last ?? 9, losses.first ?? 0, t.stderr)
            XCTAssertTrue(t.stdout.contains("test loss"), t.stdout)
            let file = try SafeTensorsFile(url: out)
            XCTAssertEqual(file.info("features.1.num_batches_tracked")?.dtype, .i64)
            XCTAssertEqual(file.info("features.1.num_batches_tracked")?.shape, [])
            XCTAssertEqual(try file.integers("features.1.num_batches_tracked"), [8], "4 batches of 64 per epoch, 2 epochs")
            XCTAssertEqual(file.info("features.0.weight")?.shape, [16, 1, 3, 3])
            let m = try BasinBinary.run(["eval", out.path, "--arch", arch, "--data", Fixtures.digitsTest.path, "--json"])
            XCTAssertEqual(m.status, 0, m.stderr)
            models.append(out)
        }
        let again = dir.appendingPathComponent("vgg-0-again.safetensors")
        let t = try BasinBinary.run(["train", "--arch", arch, "--data", Fixtures.digitsTrain.path, "--limit", "256", "--epochs", "2",
                                     "--lr", "0.01", "--seed", "0", "--out", again.path, "--quiet"])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertEqual(try Data(contentsOf: again), try Data(contentsOf: models[0]), "same seed, same bits")

        let bend = dir.appendingPathComponent("bend.safetensors")
        let f = try BasinBinary.run(["fit", models[0].path, models[1].path, "--arch", arch, "--data", Fixtures.digitsTrain.path,
                                     "--epochs", "1", "--out", bend.path])
        XCTAssertEqual(f.status, 0, f.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: bend.path))
    }

    /// `basin path --bn-reset TRAIN --compare`: the points are the BN-reset curve's (PyTorch's at t = 0.5 to 1e-3),
    /// and `corrections` holds the naive curve (PyTorch's to 1e-4), the BN-reset one and REPAIR's side by side.
    func testPathWithBatchNormResetAndRepair() throws {
        let arch = Fixtures.url("cnn/vgg.arch.json").path
        let a = Fixtures.url("cnn/vgg-seed0.safetensors").path, b = Fixtures.url("cnn/vgg-seed1.safetensors").path
        let r = try BasinBinary.run(["path", a, b, "--arch", arch, "--data", Fixtures.digitsTest.path, "--points", "3",
                                     "--bn-reset", Fixtures.digitsTrain.path, "--compare", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["correction"] as? String, "bn_reset")
        let expected = (try Fixtures.json("cnn/expected.json") as! [String: Any])["vgg"] as! [String: Any]
        let midReset = (expected["midpoint_bn_reset"] as! [String: Any])["test"] as! [Double]
        let midNaive = (expected["linear_test_naive"] as! [[Double]])[10]
        let points = json["points"] as! [[String: Double]]
        XCTAssertEqual(points[1]["loss"]!, midReset[0], accuracy: 1e-3)
        let corrections = json["corrections"] as! [String: [String: Any]]
        XCTAssertEqual(Set(corrections.keys), ["naive", "bn_reset", "repair"])
        let naivePoints = corrections["naive"]!["points"] as! [[String: Double]]
        XCTAssertEqual(naivePoints[1]["loss"]!, midNaive[1], accuracy: 1e-4)
        func barrier(_ name: String) -> Double { (corrections[name]!["barrier"] as! [String: Double])["loss"]! }
        XCTAssertEqual(barrier("bn_reset"), (json["barrier"] as! [String: Double])["loss"]!, accuracy: 1e-12)
        XCTAssertLessThan(barrier("bn_reset"), barrier("naive"))
        XCTAssertLessThan(barrier("repair"), barrier("naive"))

        // --compare needs a correction; both corrections without --compare is ambiguous; an MLP has no BatchNorm.
        let bare = try BasinBinary.run(["path", a, b, "--arch", arch, "--data", Fixtures.digitsTest.path, "--compare"])
        XCTAssertNotEqual(bare.status, 0)
        XCTAssertTrue(bare.stderr.contains("--compare"), bare.stderr)
        let both = try BasinBinary.run(["path", a, b, "--arch", arch, "--data", Fixtures.digitsTest.path,
                                        "--bn-reset", Fixtures.digitsTrain.path, "--repair", Fixtures.digitsTrain.path])
        XCTAssertNotEqual(both.status, 0)
        let mlp = try BasinBinary.run(["path", Fixtures.mlpSeed0.path, Fixtures.mlpSeed1.path, "--data", Fixtures.digitsTest.path,
                                       "--bn-reset", Fixtures.digitsTrain.path])
        XCTAssertNotEqual(mlp.status, 0)
        XCTAssertTrue(mlp.stderr.contains("BatchNorm"), mlp.stderr)
    }

    /// `--bn-reset` on merges: the written model carries update_bn's statistics (PyTorch's midpoint after
    /// the reset, to 1e-4) and says so in its metadata.
    func testMergeWithBatchNormReset() throws {
        let arch = Fixtures.url("cnn/vgg.arch.json").path
        let a = Fixtures.url("cnn/vgg-seed0.safetensors").path, b = Fixtures.url("cnn/vgg-seed1.safetensors").path
        let want = try SafeTensorsFile(url: Fixtures.url("cnn/vgg-midpoint-bn-reset.safetensors"))
        func checkWritten(_ url: URL) throws {
            let file = try SafeTensorsFile(url: url)
            for name in want.names where !name.hasSuffix("num_batches_tracked") {
                let g = try file.doubles(name), w = try want.doubles(name)
                XCTAssertEqual(g.count, w.count, name)
                let scale = max(1, w.map(abs).max() ?? 0)
                XCTAssertLessThanOrEqual(zip(g, w).map { abs($0 - $1) }.max() ?? 0, 1e-4 * scale, name)
            }
            XCTAssertEqual(try file.integers("features.1.num_batches_tracked"), [21])
            XCTAssertEqual(file.metadata["basin.bn_reset"], "data=digits-train.safetensors batch=64")
        }

        try checkWritten(try mergeLinear(a, b, weight: "0.5", arch: arch, correction: "--bn-reset"))

        // A network without BatchNorm: refused before anything is written.
        let mlpRecipe = dir.appendingPathComponent("mlp.yaml")
        try "merge_method: linear\nmodels:\n  - {model: \(Fixtures.mlpSeed0.path), parameters: {weight: 0.5}}\n  - {model: \(Fixtures.mlpSeed1.path), parameters: {weight: 0.5}}\n"
            .write(to: mlpRecipe, atomically: true, encoding: .utf8)
        let mlpOut = dir.appendingPathComponent("mlp.safetensors")
        let refused = try BasinBinary.run(["merge", mlpRecipe.path, "--out", mlpOut.path, "--bn-reset", Fixtures.digitsTrain.path])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("BatchNorm"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: mlpOut.path))
    }

    /// `basin merge` of the linear recipe a, b with equal weights, corrected on digits-train; the merged file.
    func mergeLinear(_ a: String, _ b: String, weight: String, arch: String, correction: String) throws -> URL {
        let recipe = dir.appendingPathComponent("mid.yaml")
        try "merge_method: linear\nmodels:\n  - {model: \(a), parameters: {weight: \(weight)}}\n  - {model: \(b), parameters: {weight: \(weight)}}\n"
            .write(to: recipe, atomically: true, encoding: .utf8)
        let merged = dir.appendingPathComponent("merged.safetensors")
        let m = try BasinBinary.run(["merge", recipe.path, "--out", merged.path, "--arch", arch, correction, Fixtures.digitsTrain.path])
        XCTAssertEqual(m.status, 0, m.stderr)
        return merged
    }

    /// Runs basin and decodes its JSON output.
    func runJSON(_ arguments: [String]) throws -> Any {
        let r = try BasinBinary.run(arguments)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
    }

    func row(_ rows: Any, kind: String) -> [String: Any]? {
        (rows as? [[String: Any]])?.first { $0["kind"] as? String == kind }
    }

    func assertSameTensors(_ a: URL, _ b: URL, tolerance: Double, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try SafeTensorsFile(url: a), y = try SafeTensorsFile(url: b)
        XCTAssertEqual(Set(x.names), Set(y.names), file: file, line: line)
        for name in x.names {
            let g = try x.doubles(name), w = try y.doubles(name)
            XCTAssertEqual(g.count, w.count, name, file: file, line: line)
            XCTAssertLessThanOrEqual(zip(g, w).map { abs($0 - $1) }.max() ?? 0, tolerance, name, file: file, line: line)
        }
    }

    /// `basin soup --bn-reset`: the uniform soup of the VGG pair is the midpoint, so after the reset it is PyTorch's
    /// BN-reset midpoint (loss and accuracy on test from expected.json to 1e-3; the written tensors to 1e-4); the
    /// greedy soup's candidates are reset too; the ingredients and ensemble rows are the trained models as they are.
    func testSoupWithBatchNormReset() throws {
        let arch = Fixtures.url("cnn/vgg.arch.json").path
        let a = Fixtures.url("cnn/vgg-seed0.safetensors").path, b = Fixtures.url("cnn/vgg-seed1.safetensors").path
        let expected = try Fixtures.json("cnn/expected.json") as! [String: Any]
        let vgg = expected["vgg"] as! [String: Any]
        let mid = (vgg["midpoint_bn_reset"] as! [String: Any])["test"] as! [Double]
        let naiveMid = (vgg["linear_test_naive"] as! [[Double]])[10]
        let out = dir.appendingPathComponent("soup.safetensors")
        let rows = try runJSON(["soup", a, b, "--arch", arch, "--data", Fixtures.digitsTest.path, "--bn-reset", Fixtures.digitsTrain.path,
                                "--out", out.path, "--json"])
        let uniform = try XCTUnwrap(row(rows, kind: "uniform soup"))
        XCTAssertEqual(uniform["loss"] as! Double, mid[0], accuracy: 1e-3)
        XCTAssertEqual(uniform["accuracy"] as! Double, mid[1], accuracy: 1e-3)
        XCTAssertEqual(row(rows, kind: "ingredient")!["loss"] as! Double, (vgg["endpoint_test"] as! [[Double]])[0][0], accuracy: 1e-4)
        let written = try SafeTensorsFile(url: out)
        XCTAssertEqual(written.metadata["basin.bn_reset"], "data=digits-train.safetensors batch=64")
        XCTAssertEqual(try written.integers("features.1.num_batches_tracked"), [21])
        try assertSameTensors(out, Fixtures.url("cnn/vgg-midpoint-bn-reset.safetensors"), tolerance: 1e-4)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("soup.recipe.yaml").path))

        // Without the reset the uniform soup is the naive midpoint.
        let naive = try runJSON(["soup", a, b, "--arch", arch, "--data", Fixtures.digitsTest.path, "--json"])
        XCTAssertEqual(row(naive, kind: "uniform soup")!["loss"] as! Double, naiveMid[1], accuracy: 1e-4)

        // Greedy: the one-ingredient start is reset as well (seed 0 after update_bn: PyTorch's t = 0 of the reset path).
        let greedy = try runJSON(["soup", a, b, "--arch", arch, "--data", Fixtures.digitsTest.path, "--bn-reset", Fixtures.digitsTrain.path,
                                  "--greedy", "--json"])
        let g = try XCTUnwrap(row(greedy, kind: "greedy soup"))
        XCTAssertEqual(g["loss"] as! Double, (vgg["linear_test_bn_reset"] as! [[Double]])[0][1], accuracy: 1e-3)

        // A network without BatchNorm: refused before anything is written.
        let mlpOut = dir.appendingPathComponent("mlp-soup.safetensors")
        let refused = try BasinBinary.run(["soup", Fixtures.mlpSeed0.path, Fixtures.mlpSeed1.path, "--data", Fixtures.digitsTest.path,
                                           "--bn-reset", Fixtures.digitsTrain.path, "--out", mlpOut.path])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("BatchNorm"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: mlpOut.path))
    }

    /// `--repair` on soups and merges: the goal is the weighted mean of the models' statistics, so the uniform soup
    /// of two models is `basin path --repair`'s midpoint, and `basin merge` of a linear recipe writes the same
    /// tensors as the soup; recipes that are no weighted mean (task arithmetic) and per-layer soups are refused;
    /// a repaired soup that cannot be folded into the model's tensors leaves nothing behind.
    func testSoupAndMergeWithRepair() throws {
        let arch = Fixtures.url("cnn/vgg.arch.json").path
        let a = Fixtures.url("cnn/vgg-seed0.safetensors").path, b = Fixtures.url("cnn/vgg-seed1.safetensors").path
        let soupOut = dir.appendingPathComponent("soup.safetensors")
        let rows = try runJSON(["soup", a, b, "--arch", arch, "--data", Fixtures.digitsTest.path, "--repair", Fixtures.digitsTrain.path,
                                "--out", soupOut.path, "--json"])
        let path = try runJSON(["path", a, b, "--arch", arch, "--data", Fixtures.digitsTest.path, "--repair", Fixtures.digitsTrain.path,
                                "--points", "3", "--json"]) as! [String: Any]
        let points = path["points"] as! [[String: Any]]
        XCTAssertEqual(points[1]["t"] as! Double, 0.5)
        let uniform = try XCTUnwrap(row(rows, kind: "uniform soup"))
        XCTAssertEqual(uniform["loss"] as! Double, points[1]["loss"] as! Double, accuracy: 1e-6)
        XCTAssertEqual(uniform["accuracy"] as! Double, points[1]["accuracy"] as! Double, accuracy: 1e-9)
        XCTAssertEqual(try SafeTensorsFile(url: soupOut).metadata["basin.repair"], "data=digits-train.safetensors batch=64")
        // The written (folded) soup is the function the table measured.
        let e = try runJSON(["eval", soupOut.path, "--arch", arch, "--data", Fixtures.digitsTest.path, "--json"]) as! [String: Any]
        XCTAssertEqual(e["loss"] as! Double, uniform["loss"] as! Double, accuracy: 1e-4)

        try assertSameTensors(try mergeLinear(a, b, weight: "1", arch: arch, correction: "--repair"), soupOut, tolerance: 1e-6)

        let ta = dir.appendingPathComponent("ta.yaml")
        try "merge_method: task_arithmetic\nbase_model: \(a)\nmodels:\n  - {model: \(b), parameters: {weight: 0.5}}\n"
            .write(to: ta, atomically: true, encoding: .utf8)
        let taOut = dir.appendingPathComponent("ta.safetensors")
        let refused = try BasinBinary.run(["merge", ta.path, "--out", taOut.path, "--arch", arch, "--repair", Fixtures.digitsTrain.path])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("weighted mean"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: taOut.path))
        let perLayer = try BasinBinary.run(["soup", a, b, "--arch", arch, "--data", Fixtures.digitsTest.path, "--learned", "--per-layer",
                                            "--repair", Fixtures.digitsTrain.path])
        XCTAssertNotEqual(perLayer.status, 0)
        XCTAssertTrue(perLayer.stderr.contains("--per-layer"), perLayer.stderr)

        // The first conv without its BatchNorm has no bias to take REPAIR's shift: measured, but not writable;
        // the soup written before the fold is removed with its recipe.
        let noBN = dir.appendingPathComponent("nobn.arch.json")
        try String(contentsOfFile: arch, encoding: .utf8)
            .replacingOccurrences(of: #"{"name": "features.1", "op": "batchnorm2d", "module": "features.1"}"#, with: #"{"name": "features.1", "op": "identity"}"#)
            .write(to: noBN, atomically: true, encoding: .utf8)
        let failOut = dir.appendingPathComponent("fail.safetensors")
        let failed = try BasinBinary.run(["soup", a, b, "--arch", noBN.path, "--data", Fixtures.digitsTest.path, "--repair", Fixtures.digitsTrain.path,
                                          "--out", failOut.path])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.stderr.contains("features.0") && failed.stderr.contains("bias"), failed.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: failOut.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("fail.recipe.yaml").path))
    }

    /// `basin landscape --bn-reset TRAIN`: every grid point's BatchNorm statistics recomputed first, so the
    /// random plane's centre (model A itself) scores what `basin path --bn-reset` gives at t = 0; the naive grid
    /// does not; a network without BatchNorm is refused, naming it.
    func testLandscapeWithBatchNormReset() throws {
        let arch = Fixtures.url("cnn/vgg.arch.json").path
        let a = Fixtures.url("cnn/vgg-seed0.safetensors").path, b = Fixtures.url("cnn/vgg-seed1.safetensors").path
        let reset = try runJSON(["landscape", a, "--arch", arch, "--data", Fixtures.digitsTest.path, "--grid", "3",
                                 "--bn-reset", Fixtures.digitsTrain.path, "--json"]) as! [String: Any]
        XCTAssertEqual(reset["correction"] as? String, "bn_reset")
        let naive = try runJSON(["landscape", a, "--arch", arch, "--data", Fixtures.digitsTest.path, "--grid", "3", "--json"]) as! [String: Any]
        XCTAssertEqual(naive["correction"] as? String, "naive")
        let path = try runJSON(["path", a, b, "--arch", arch, "--data", Fixtures.digitsTest.path, "--bn-reset", Fixtures.digitsTrain.path,
                                "--points", "2", "--json"]) as! [String: Any]
        let start = (path["points"] as! [[String: Any]])[0]
        let centre = ((reset["loss"] as! [[Double]])[1][1], (naive["loss"] as! [[Double]])[1][1])
        XCTAssertEqual(centre.0, start["loss"] as! Double, accuracy: 1e-5)
        XCTAssertNotEqual(centre.0, centre.1, accuracy: 1e-6, "the reset endpoint differs from the trained one")
        let mlp = try BasinBinary.run(["landscape", Fixtures.mlpSeed0.path, "--data", Fixtures.digitsTest.path, "--grid", "2",
                                       "--bn-reset", Fixtures.digitsTrain.path])
        XCTAssertNotEqual(mlp.status, 0)
        XCTAssertTrue(mlp.stderr.contains("BatchNorm"), mlp.stderr)
    }

    /// `basin fit --bn-reset`: the report's straight line is PyTorch's BN-reset path (1e-3 at t = 0, 1/4, ..., 1)
    /// and the fitted curve's points are what `basin path --bends --bn-reset` gives for the written bends.
    func testFitReportWithBatchNormReset() throws {
        let arch = Fixtures.url("cnn/vgg.arch.json").path
        let a = Fixtures.url("cnn/vgg-seed0.safetensors").path, b = Fixtures.url("cnn/vgg-seed1.safetensors").path
        let bends = dir.appendingPathComponent("bend.safetensors")
        let fit = try runJSON(["fit", a, b, "--arch", arch, "--data", Fixtures.digitsTrain.path, "--epochs", "1", "--test", Fixtures.digitsTest.path,
                               "--bn-reset", Fixtures.digitsTrain.path, "--points", "5", "--out", bends.path, "--json"]) as! [String: Any]
        let evaluation = fit["evaluation"] as! [String: Any]
        XCTAssertEqual(evaluation["correction"] as? String, "bn_reset")
        let want = ((try Fixtures.json("cnn/expected.json") as! [String: Any])["vgg"] as! [String: Any])["linear_test_bn_reset"] as! [[Double]]
        let linear = evaluation["linear"] as! [[String: Any]]
        XCTAssertEqual(linear.count, 5)
        for (k, p) in linear.enumerated() {
            XCTAssertEqual(p["t"] as! Double, want[5 * k][0], accuracy: 1e-12)
            XCTAssertEqual(p["loss"] as! Double, want[5 * k][1], accuracy: 1e-3)
        }
        let path = try runJSON(["path", a, b, "--arch", arch, "--bends", bends.path, "--data", Fixtures.digitsTest.path,
                                "--bn-reset", Fixtures.digitsTrain.path, "--points", "5", "--json"]) as! [String: Any]
        let fitted = evaluation["fitted"] as! [[String: Any]], points = path["points"] as! [[String: Any]]
        XCTAssertEqual(fitted.count, points.count)
        for (p, q) in zip(fitted, points) { XCTAssertEqual(p["loss"] as! Double, q["loss"] as! Double, accuracy: 1e-6) }
        // Without the reset the same curve reports worse: the fit ran BatchNorm in train mode, its bends' running
        // statistics are only interpolations.
        let naive = try runJSON(["path", a, b, "--arch", arch, "--bends", bends.path, "--data", Fixtures.digitsTest.path, "--points", "5", "--json"]) as! [String: Any]
        XCTAssertGreaterThan((naive["barrier"] as! [String: Any])["loss"] as! Double, (fit["segments"] as! [[String: Any]])[0]["metrics"].flatMap { ($0 as! [String: Any])["barrier"] as? [String: Any] }!["loss"] as! Double)
    }
}
