import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// `basin merge` and `basin soup` as a user runs them.
final class MergeCLITests: XCTestCase {
    var dir: URL!
    let samples = Fixtures.repositoryRoot.appendingPathComponent("SampleModels")

    override func setUpWithError() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        dir = try Fixtures.temporaryDirectory()
    }

    override func tearDownWithError() throws { if let dir { try? FileManager.default.removeItem(at: dir) } }

    private func rows(_ r: BasinBinary.Result) throws -> [[String: Any]] {
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [[String: Any]]
    }

    func testRecipeMergeKeepsNamesAndWritesDtypeRecipeAndDigests() throws {
        let recipe = dir.appendingPathComponent("r.yaml")
        try """
        merge_method: linear
        models:
          - {model: \(Fixtures.mlpSeed0.path), parameters: {weight: 0.5}}
          - {model: \(Fixtures.mlpSeed1.path), parameters: {weight: 0.5}}
        dtype: bfloat16
        """.write(to: recipe, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("merged.safetensors")
        let r = try BasinBinary.run(["merge", recipe.path, "--out", out.path, "--data", Fixtures.digitsTest.path, "--json"])
        let merged = try XCTUnwrap(try rows(r).last)
        // The 50/50 merge is the linear path at t = 0.5 (loss 0.6381 in float32); BF16 storage moves it a little.
        XCTAssertEqual(merged["loss"] as! Double, 0.6381, accuracy: 0.02)
        let f = try SafeTensorsFile(url: out)
        let inputNames = try SafeTensorsFile(url: Fixtures.mlpSeed0).names
        XCTAssertEqual(Set(f.names), Set(inputNames))
        XCTAssertTrue(f.names.allSatisfy { f.info($0)?.dtype == .bf16 })
        XCTAssertEqual(f.metadata["format"], "pt")
        XCTAssertTrue(f.metadata["basin.recipe"]?.contains("merge_method: linear") == true, "\(f.metadata)")
        let digest = try FileDigest.sha256(Fixtures.mlpSeed0)
        XCTAssertTrue(f.metadata.values.contains { $0.contains(digest) }, "input SHA-256 recorded: \(f.metadata)")
    }

    func testFailedMergeLeavesNothingAndNeverTouchesInputs() throws {
        let before = try Data(contentsOf: Fixtures.mlpSeed0)
        let recipe = dir.appendingPathComponent("r.yaml")
        // The second model does not fit the first: the plan fails before anything is written.
        try """
        merge_method: linear
        models:
          - {model: \(Fixtures.mlpSeed0.path)}
          - {model: \(Fixtures.digitsTest.path)}
        """.write(to: recipe, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("out.safetensors")
        let r = try BasinBinary.run(["merge", recipe.path, "--out", out.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("digits-test.safetensors"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["r.yaml"], "no partial output")

        // An output that is one of the inputs is refused and the input is untouched.
        try """
        merge_method: linear
        models:
          - {model: \(Fixtures.mlpSeed0.path)}
          - {model: \(Fixtures.mlpSeed1.path)}
        """.write(to: recipe, atomically: true, encoding: .utf8)
        let clash = try BasinBinary.run(["merge", recipe.path, "--out", Fixtures.mlpSeed0.path])
        XCTAssertNotEqual(clash.status, 0)
        XCTAssertTrue(clash.stderr.contains("input"), clash.stderr)
        XCTAssertEqual(try Data(contentsOf: Fixtures.mlpSeed0), before)
    }

    func testBadRecipeNamesTheFileAndTheProblem() throws {
        let recipe = dir.appendingPathComponent("bad.yaml")
        try "merge_method: frankenmerge\nmodels: []\n".write(to: recipe, atomically: true, encoding: .utf8)
        let r = try BasinBinary.run(["merge", recipe.path, "--out", dir.appendingPathComponent("o.safetensors").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("bad.yaml") && r.stderr.contains("frankenmerge"), r.stderr)
    }

    func testGreedySoupIsAtLeastTheBestIngredientOnHeldOut() throws {
        let models = ["ft-adam-lr1e-3", "ft-adam-lr3e-4", "ft-sgd-lr5e-2", "ft-adam-wd1e-3"].map {
            samples.appendingPathComponent("finetune/\($0).safetensors").path
        }
        let out = dir.appendingPathComponent("greedy.safetensors")
        let r = try BasinBinary.run(["soup"] + models + ["--data", samples.appendingPathComponent("data/digits-val.safetensors").path,
                                                          "--greedy", "--out", out.path, "--json"])
        let table = try rows(r)
        let best = table.filter { $0["kind"] as? String == "ingredient" }.map { $0["accuracy"] as! Double }.max()!
        let greedy = try XCTUnwrap(table.first { $0["kind"] as? String == "greedy soup" })
        XCTAssertGreaterThanOrEqual(greedy["accuracy"] as! Double, best)
        XCTAssertEqual(table.filter { $0["kind"] as? String == "ensemble" }.count, 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.path))
        let written = try SafeTensorsFile(url: out)
        XCTAssertNotNil(written.metadata["basin.recipe"], "the soup carries the recipe that rebuilds it")
    }

    /// Independently trained seeds only soup after alignment: `--align weight` permutes each to the first one.
    func testAlignedSoupOfIndependentSeeds() throws {
        let seeds = (0..<4).map { samples.appendingPathComponent("seeds/mlp-seed\($0).safetensors").path }
        let test = samples.appendingPathComponent("data/digits-test.safetensors").path
        let plain = try rows(BasinBinary.run(["soup"] + seeds + ["--data", test, "--json"]))
        let out = dir.appendingPathComponent("aligned-soup.safetensors")
        let aligned = try rows(BasinBinary.run(["soup"] + seeds + ["--data", test, "--align", "weight", "--out", out.path, "--json"]))
        func accuracy(_ table: [[String: Any]], _ kind: String) -> [Double] {
            table.filter { $0["kind"] as? String == kind }.map { $0["accuracy"] as! Double }
        }
        XCTAssertEqual(accuracy(plain, "ingredient"), accuracy(aligned, "ingredient"), "alignment keeps each ingredient's function")
        XCTAssertEqual(accuracy(plain, "ensemble")[0], accuracy(aligned, "ensemble")[0], accuracy: 1e-9)
        XCTAssertLessThan(accuracy(plain, "uniform soup")[0], 0.6, "unaligned seeds do not soup")
        XCTAssertGreaterThan(accuracy(aligned, "uniform soup")[0], 0.9, "aligned seeds do")
        let f = try SafeTensorsFile(url: out)
        XCTAssertEqual(f.metadata["basin.soup.alignment_method"], "weight")
        let permutations = try JSONSerialization.jsonObject(with: Data(f.metadata["basin.soup.permutations"]!.utf8)) as! [String: [String: [Int]]]
        XCTAssertEqual(Set(permutations.keys), Set(seeds.dropFirst()))
        XCTAssertEqual(permutations[seeds[1]]?.values.map(\.count).sorted(), [128, 128])
    }
}
