import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// The CLI as a script sees it: JSON on stdout, clear one-line errors on stderr, non-zero exit on failure.
final class CLITests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        dir = try Fixtures.temporaryDirectory()
    }

    override func tearDownWithError() throws { if let dir { try? FileManager.default.removeItem(at: dir) } }

    func testEvalJSONMatchesPyTorch() throws {
        let r = try BasinBinary.run(["eval", Fixtures.url("mlp-pair/mlp-seed0-bf16.safetensors").path, "--data", Fixtures.digitsTest.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["loss"] as! Double, 0.11153040081262589, accuracy: 1e-4)
        XCTAssertEqual(json["accuracy"] as! Double, 0.9698188900947571, accuracy: 1e-4)
        XCTAssertEqual(json["samples"] as! Int, 497)
    }

    func testInspectListsTensors() throws {
        let r = try BasinBinary.run(["inspect", Fixtures.url("mlp-pair/mlp-seed0-f16.safetensors").path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let tensors = json["tensors"] as! [[String: Any]]
        XCTAssertEqual(tensors.count, 6)
        let w0 = tensors.first { $0["name"] as? String == "layers.0.weight" }!
        XCTAssertEqual(w0["dtype"] as? String, "F16")
        XCTAssertEqual(w0["shape"] as? [Int], [128, 64])
        XCTAssertEqual(w0["bytes"] as? Int, 128 * 64 * 2)
        XCTAssertEqual(json["parameters"] as? Int, 26122)
    }

    func testCorruptFileGivesOneClearLineAndNonZeroExit() throws {
        let bytes = try Data(contentsOf: Fixtures.mlpSeed0)
        let cut = dir.appendingPathComponent("cut.safetensors")
        try bytes.prefix(bytes.count / 2).write(to: cut)
        let r = try BasinBinary.run(["eval", cut.path, "--data", Fixtures.digitsTest.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(cut.path), r.stderr)
        XCTAssertTrue(r.stderr.contains("tensor '"), r.stderr)
        XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Stack dump") || r.stderr.contains("0x"), r.stderr)
        XCTAssertEqual(r.stdout, "")
    }

    func testMissingFileAndMismatchedData() throws {
        let r = try BasinBinary.run(["eval", dir.appendingPathComponent("nope.safetensors").path, "--data", Fixtures.digitsTest.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("nope.safetensors") && r.stderr.contains("does not exist"), r.stderr)
        let m = try BasinBinary.run(["eval", Fixtures.mlpSeed0.path, "--data", Fixtures.mlpSeed1.path])
        XCTAssertNotEqual(m.status, 0)
        XCTAssertTrue(m.stderr.contains("mlp-seed1.safetensors"), m.stderr)
    }

    func testTrainWritesPyTorchNamesAndRefusesToOverwriteItsInput() throws {
        let out = dir.appendingPathComponent("m.safetensors")
        let r = try BasinBinary.run(["train", "--data", Fixtures.digitsTest.path, "--sizes", "64,16,10", "--epochs", "2",
                                     "--quiet", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let f = try SafeTensorsFile(url: out)
        XCTAssertEqual(f.names, ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"])
        XCTAssertEqual(f.info("layers.0.weight")?.shape, [16, 64])
        let before = try Data(contentsOf: out)
        let again = try BasinBinary.run(["train", "--data", Fixtures.digitsTest.path, "--init-from", out.path, "--epochs", "1",
                                         "--quiet", "--out", out.path])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("input"), again.stderr)
        XCTAssertEqual(try Data(contentsOf: out), before, "the input is untouched")
    }
}

/// SampleModels/generate.sh rebuilds every sample model bit for bit.
final class SampleModelsTests: XCTestCase {
    func testSampleModelsRegenerateIdentically() throws {
        guard let basin = BasinBinary.url else { throw XCTSkip("basin executable not built") }
        let samples = Fixtures.repositoryRoot.appendingPathComponent("SampleModels")
        let out = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        let r = try BasinBinary.runProcess(URL(fileURLWithPath: "/bin/bash"), [samples.appendingPathComponent("generate.sh").path, out.path, "mlp,cnn"],
                                           environment: ["BASIN": basin.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let fm = FileManager.default
        var compared = 0
        for sub in ["seeds", "finetune", "trajectory", "data", "cnn"] {
            let names = try fm.contentsOfDirectory(atPath: out.appendingPathComponent(sub).path).filter { $0.hasSuffix(".safetensors") }
            XCTAssertFalse(names.isEmpty, sub)
            for name in names {
                let committed = samples.appendingPathComponent(sub).appendingPathComponent(name)
                XCTAssertTrue(fm.fileExists(atPath: committed.path), "\(sub)/\(name) is generated but not in SampleModels")
                XCTAssertEqual(try FileDigest.sha256(out.appendingPathComponent(sub).appendingPathComponent(name)),
                               try FileDigest.sha256(committed), "\(sub)/\(name) differs")
                compared += 1
            }
        }
        XCTAssertGreaterThanOrEqual(compared, 4 + 5 + 6 + 2 + 2)
    }

    /// The transformer samples take minutes to train from scratch; one fine-tune (300 steps from the committed
    /// base) is rebuilt bit for bit here, the rest by `generate.sh` itself.
    func testTransformerFineTuneRegeneratesIdentically() throws {
        guard let basin = BasinBinary.url else { throw XCTSkip("basin executable not built") }
        let samples = Fixtures.repositoryRoot.appendingPathComponent("SampleModels")
        let out = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        let r = try BasinBinary.runProcess(URL(fileURLWithPath: "/bin/bash"), [samples.appendingPathComponent("generate.sh").path, out.path, "llama-ft-add"],
                                           environment: ["BASIN": basin.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let made = out.appendingPathComponent("transformers/llama-ft-add"), committed = samples.appendingPathComponent("transformers/llama-ft-add")
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: made.path)), ["config.json", "model.safetensors"])
        for name in ["config.json", "model.safetensors"] {
            XCTAssertEqual(try FileDigest.sha256(made.appendingPathComponent(name)), try FileDigest.sha256(committed.appendingPathComponent(name)), name)
        }
    }

    func testSampleSeedsReachNinetyFivePercent() throws {
        let test = try Dataset(url: Fixtures.repositoryRoot.appendingPathComponent("SampleModels/data/digits-test.safetensors"))
        XCTAssertEqual(test.count, 497)
        for seed in 0..<4 {
            let r = try BasinBinary.run(["eval", Fixtures.repositoryRoot.appendingPathComponent("SampleModels/seeds/mlp-seed\(seed).safetensors").path,
                                         "--data", Fixtures.repositoryRoot.appendingPathComponent("SampleModels/data/digits-test.safetensors").path, "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
            XCTAssertGreaterThanOrEqual(json["accuracy"] as! Double, 0.95, "seed \(seed)")
        }
    }
}
