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

        let recipe = dir.appendingPathComponent("mid.yaml")
        try "merge_method: linear\nmodels:\n  - {model: \(a), parameters: {weight: 0.5}}\n  - {model: \(b), parameters: {weight: 0.5}}\n"
            .write(to: recipe, atomically: true, encoding: .utf8)
        let merged = dir.appendingPathComponent("merged.safetensors")
        let m = try BasinBinary.run(["merge", recipe.path, "--out", merged.path, "--arch", arch, "--bn-reset", Fixtures.digitsTrain.path])
        XCTAssertEqual(m.status, 0, m.stderr)
        try checkWritten(merged)

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
}
