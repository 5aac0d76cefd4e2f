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
}
