import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// `basin match` and `basin bench lap` as a script sees them.
final class MatchCLITests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        dir = try Fixtures.temporaryDirectory()
    }

    override func tearDownWithError() throws { if let dir { try? FileManager.default.removeItem(at: dir) } }

    private func evalJSON(_ model: URL) throws -> [String: Any] {
        let r = try BasinBinary.run(["eval", model.path, "--data", Fixtures.digitsTest.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    }

    func testWeightMatchWritesTheSameFunctionWithBsNamesAndDtypes() throws {
        let out = dir.appendingPathComponent("b-aligned.safetensors"), report = dir.appendingPathComponent("report.json")
        let b = Fixtures.url("mlp-pair/mlp-seed0-f16.safetensors")
        let r = try BasinBinary.run(["match", Fixtures.mlpSeed1.path, b.path, "--seed", "3", "--out", out.path,
                                     "--report", report.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(summary["method"] as? String, "weight")
        XCTAssertEqual((summary["layers"] as? [[String: Any]])?.count, 2)

        let original = try SafeTensorsFile(url: b), aligned = try SafeTensorsFile(url: out)
        XCTAssertEqual(aligned.names, original.names)
        for n in original.names {
            XCTAssertEqual(aligned.info(n)?.dtype, original.info(n)?.dtype)
            XCTAssertEqual(aligned.info(n)?.shape, original.info(n)?.shape)
        }
        XCTAssertEqual(aligned.metadata["basin.alignment.method"], "weight")
        XCTAssertEqual(aligned.metadata["basin.alignment.seed"], "3")
        let perms = try JSONSerialization.jsonObject(with: Data(aligned.metadata["basin.alignment.permutations"]!.utf8)) as! [String: [Int]]
        XCTAssertEqual(Set(perms.keys), ["P_layers.0", "P_layers.1"])

        let e0 = try evalJSON(b), e1 = try evalJSON(out)
        XCTAssertEqual(e0["loss"] as! Double, e1["loss"] as! Double, accuracy: 1e-5)
        XCTAssertEqual(e0["accuracy"] as! Double, e1["accuracy"] as! Double, accuracy: 1e-9)

        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as! [String: Any]
        let layers = json["layers"] as! [[String: Any]]
        XCTAssertEqual((layers[0]["similarity"] as? [Double])?.count, 128 * 128)
        XCTAssertFalse((json["steps"] as! [Any]).isEmpty)
    }

    func testActivationMatchNeedsDataAndRefusesToOverwriteAnInput() throws {
        let missing = try BasinBinary.run(["match", Fixtures.mlpSeed0.path, Fixtures.mlpSeed1.path, "--method", "activation",
                                           "--out", dir.appendingPathComponent("x.safetensors").path])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("--data"), missing.stderr)

        let copy = dir.appendingPathComponent("b.safetensors")
        try FileManager.default.copyItem(at: Fixtures.mlpSeed1, to: copy)
        let overwrite = try BasinBinary.run(["match", Fixtures.mlpSeed0.path, copy.path, "--out", copy.path])
        XCTAssertNotEqual(overwrite.status, 0)
        XCTAssertEqual(try Data(contentsOf: copy), try Data(contentsOf: Fixtures.mlpSeed1))

        let out = dir.appendingPathComponent("b-act.safetensors")
        let ok = try BasinBinary.run(["match", Fixtures.mlpSeed0.path, copy.path, "--method", "activation",
                                      "--data", Fixtures.digitsTrain.path, "--out", out.path])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertEqual(try SafeTensorsFile(url: out).metadata["basin.alignment.method"], "activation")
    }

    /// `basin match A B C D --out-dir DIR`: every model after the first aligned into A's frame, named after its
    /// input, by each strategy; the aligned models keep their function.
    func testMatchManyModelsIntoAFolder() throws {
        let seeds = Fixtures.repositoryRoot.appendingPathComponent("SampleModels/seeds")
        let inputs = (0..<4).map { seeds.appendingPathComponent("mlp-seed\($0).safetensors").path }
        // Two inputs with the same file name get distinct outputs.
        let sub = dir.appendingPathComponent("copy")
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: URL(fileURLWithPath: inputs[1]), to: sub.appendingPathComponent("mlp-seed1.safetensors"))
        let models = inputs + [sub.appendingPathComponent("mlp-seed1.safetensors").path]
        for strategy in ["reference", "merge-many"] {
            let out = dir.appendingPathComponent(strategy), report = dir.appendingPathComponent("\(strategy).json")
            let r = try BasinBinary.run(["match"] + models + ["--strategy", strategy, "--out-dir", out.path, "--report", report.path, "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            XCTAssertEqual(summary["strategy"] as? String, strategy)
            let outputs = try XCTUnwrap(summary["outputs"] as? [[String: Any]])
            XCTAssertEqual(outputs.compactMap { ($0["output"] as? String).map { URL(fileURLWithPath: $0).lastPathComponent } },
                           ["mlp-seed1.safetensors", "mlp-seed2.safetensors", "mlp-seed3.safetensors", "mlp-seed1-2.safetensors"])
            for (k, o) in outputs.enumerated() {
                let file = URL(fileURLWithPath: o["output"] as! String)
                XCTAssertEqual(try SafeTensorsFile(url: file).metadata["basin.alignment.strategy"], strategy)
                XCTAssertEqual(try SafeTensorsFile(url: file).metadata["basin.alignment.reference"], inputs[0])
                let e0 = try evalJSON(URL(fileURLWithPath: models[k + 1])), e1 = try evalJSON(file)
                XCTAssertEqual(e0["loss"] as! Double, e1["loss"] as! Double, accuracy: 1e-5, "\(strategy) \(file.lastPathComponent)")
            }
            // The copy of seed 1 lines up exactly as seed 1 does.
            let a = try SafeTensorsFile(url: out.appendingPathComponent("mlp-seed1.safetensors"))
            let b = try SafeTensorsFile(url: out.appendingPathComponent("mlp-seed1-2.safetensors"))
            if strategy == "reference" { XCTAssertEqual(try a.tensor("layers.0.weight"), try b.tensor("layers.0.weight")) }
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [String: Any])
            XCTAssertEqual((json["reports"] as? [Any])?.count, 4)
            XCTAssertEqual(json["strategy"] as? String, strategy)
        }
    }

    func testMatchManyRefusals() throws {
        let m = [Fixtures.mlpSeed0.path, Fixtures.mlpSeed1.path, Fixtures.mlpSeed1.path]
        let out = dir.appendingPathComponent("x.safetensors").path
        for (args, needle) in [(m + ["--out", out], "--out-dir"), (Array(m.prefix(2)), "--out"), (Array(m.prefix(1)) + ["--out", out], "at least one"),
                               (m + ["--out-dir", dir.path, "--strategy", "merge-many", "--method", "activation", "--data", Fixtures.digitsTrain.path], "merge-many"),
                               (m + ["--out", out, "--out-dir", dir.path], "not both")] {
            let r = try BasinBinary.run(["match"] + args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(needle), "\(args): \(r.stderr)")
        }
        // An output that would replace an input is refused before anything is written.
        let folder = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let b = folder.appendingPathComponent("mlp-seed1.safetensors")
        try FileManager.default.copyItem(at: Fixtures.mlpSeed1, to: b)
        let r = try BasinBinary.run(["match", Fixtures.mlpSeed0.path, b.path, Fixtures.mlpSeed0.path, "--out-dir", folder.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("input"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: b), try Data(contentsOf: Fixtures.mlpSeed1))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["mlp-seed1.safetensors"])
        // --out-dir naming a file.
        let file = dir.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        let f = try BasinBinary.run(["match"] + m + ["--out-dir", file.path])
        XCTAssertNotEqual(f.status, 0)
        XCTAssertTrue(f.stderr.contains("folder"), f.stderr)
    }

    func testBenchLapJSON() throws {
        for kind in ["uniform", "integer", "correlation"] {
            let r = try BasinBinary.run(["bench", "lap", "--kind", kind, "--sizes", "16", "64", "--repeats", "1", "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            XCTAssertEqual(report["kind"] as? String, kind)
            let rows = try XCTUnwrap(report["results"] as? [[String: Any]])
            XCTAssertEqual(rows.map { $0["n"] as? Int }, [16, 64])
            XCTAssertTrue(rows.allSatisfy { ($0["cpuSeconds"] as? Double ?? -1) >= 0 })
        }
        let bad = try BasinBinary.run(["bench", "lap", "--kind", "gaussian"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("gaussian"), bad.stderr)
    }

    func testBenchMatchJSONNamesTheSteps() throws {
        let r = try BasinBinary.run(["bench", "match", "--sizes", "12", "10", "8", "3", "--max-sweeps", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let order = try XCTUnwrap(report["order"] as? [String])
        XCTAssertEqual(order.count, report["steps"] as? Int)
        XCTAssertLessThanOrEqual(order.count, 4)
        XCTAssertEqual(Set(order), ["P_layers.0", "P_layers.1"])
        XCTAssertNotNil((report["timing"] as? [String: Any])?["solverCPUSeconds"])
    }

    /// `bench match --transformer`: two random GPT-2-style models, every group derived (heads, MLP units, the
    /// residual stream unless left out), the objective never falls; bad sizes are refused.
    func testBenchMatchOnTransformers() throws {
        for (extra, groups) in [([String](), 3), (["--no-residual-stream"], 2)] {
            let r = try BasinBinary.run(["bench", "match", "--transformer", "--layers", "1", "--width", "32", "--heads", "4", "--vocabulary", "50",
                                         "--max-sweeps", "3", "--json"] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            XCTAssertEqual(report["groups"] as? Int, groups)
            XCTAssertEqual(report["sizes"] as? [Int], [1, 32, 4, 50])
            XCTAssertEqual(Set(try XCTUnwrap(report["order"] as? [String])).count, groups)
            XCTAssertGreaterThanOrEqual(report["objectiveAfter"] as! Double, report["objectiveBefore"] as! Double)
            XCTAssertTrue((report["model"] as? String)?.hasPrefix("gpt2 1 layers x 32") == true, "\(report)")
        }
        let bad = try BasinBinary.run(["bench", "match", "--transformer", "--width", "30", "--heads", "4"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--heads"), bad.stderr)
    }
}
