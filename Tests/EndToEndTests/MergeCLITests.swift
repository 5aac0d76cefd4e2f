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
          - {model: \(Fixtures.mlpSeed0.path), parameters: {weight: 1}}
          - {model: \(Fixtures.mlpSeed1.path), parameters: {weight: 1}}
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
        // The recipe beside the soup names the permuted copies written with it, and rebuilds the soup exactly.
        let recipe = dir.appendingPathComponent("aligned-soup.recipe.yaml")
        let text = try String(contentsOf: recipe, encoding: .utf8)
        XCTAssertTrue(text.contains("aligned-soup.aligned-1.safetensors") && !text.contains("mlp-seed1.safetensors"), text)
        let again = dir.appendingPathComponent("again.safetensors")
        XCTAssertEqual(try BasinBinary.run(["merge", recipe.path, again.path]).status, 0)
        let g = try SafeTensorsFile(url: again)
        for n in f.names { XCTAssertEqual(try g.withRawBytes(n) { Array($0) }, try f.withRawBytes(n) { Array($0) }, n) }
    }

    /// `basin soup --evaluate`: a greedy soup chosen by an external evaluator's metric, candidates streamed to folders.
    func testGreedySoupByAnExternalEvaluator() throws {
        let models = ["ft-adam-lr1e-3", "ft-adam-lr3e-4", "ft-sgd-lr5e-2"].map { samples.appendingPathComponent("finetune/\($0).safetensors").path }
        // The evaluator scores a candidate by basin's own eval of it on the validation split (any program would do).
        let script = dir.appendingPathComponent("eval.sh")
        try """
        #!/bin/sh
        exec '\(BasinBinary.url!.path)' eval "$1" --data '\(samples.appendingPathComponent("data/digits-val.safetensors").path)' --json
        """.write(to: script, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("greedy")
        let r = try BasinBinary.run(["soup"] + models + ["--evaluate", "sh \(script.path)", "--evaluate-jobs", "2", "--greedy", "--out", out.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let table = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [[String: Any]]
        XCTAssertEqual(table.filter { $0["kind"] as? String == "ingredient" }.count, 3)
        let best = table.filter { $0["kind"] as? String == "ingredient" }.compactMap { ($0["metrics"] as? [String: Double])?["accuracy"] }.max()!
        let greedy = try XCTUnwrap(table.first { $0["kind"] as? String == "greedy soup" })
        XCTAssertGreaterThanOrEqual((greedy["metrics"] as! [String: Double])["accuracy"]!, best)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("greedy.recipe.yaml").path))
    }
}

/// The mergekit-style workflow on the LLaMA fixtures: Hugging Face folders in and out, dry runs, evaluators.
final class MergekitWorkflowCLITests: XCTestCase {
    var dir: URL!
    let fixtures = Fixtures.url("transformers")

    override func setUpWithError() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        dir = try Fixtures.temporaryDirectory()
    }

    override func tearDownWithError() throws { if let dir { try? FileManager.default.removeItem(at: dir) } }

    func testDryRunPrintsThePlanAndWritesNothing() throws {
        let out = dir.appendingPathComponent("ties-out")
        let r = try BasinBinary.run(["merge", "mergekit/ties.yml", out.path, "--dry-run"], currentDirectory: fixtures)
        XCTAssertEqual(r.status, 0, r.stderr)
        for needle in ["dry run: ties", "model.layers.1.mlp.down_proj.weight", "F32", "ties of 3 + base", "peak memory", "disk space needed",
                       out.appendingPathComponent("model.safetensors").path, out.appendingPathComponent("config.json").path, "ok:"] {
            XCTAssertTrue(r.stdout.contains(needle), "missing '\(needle)' in:\n\(r.stdout)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "a dry run writes nothing")
        // A folder holding another model's shards is a problem the dry run reports (exit 1).
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data().write(to: out.appendingPathComponent("model-00001-of-00002.safetensors"))
        let stale = try BasinBinary.run(["merge", "mergekit/ties.yml", out.path, "--dry-run"], currentDirectory: fixtures)
        XCTAssertEqual(stale.status, 1)
        XCTAssertTrue(stale.stdout.contains("problem:") && stale.stdout.contains("model-00001-of-00002.safetensors"), stale.stdout)
    }

    func testHuggingFaceFolderOutputWithTokenizerAndRecipeRebuild() throws {
        // A base with tokenizer files: tokenizer_source: base copies them.
        let base = dir.appendingPathComponent("base")
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("llama-tiny-base"), to: base)
        try #"{"model": {"type": "WordLevel"}}"#.write(to: base.appendingPathComponent("tokenizer.json"), atomically: true, encoding: .utf8)
        try #"{"model_max_length": 8}"#.write(to: base.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        let recipe = dir.appendingPathComponent("r.yml")
        try """
        merge_method: task_arithmetic
        base_model: base
        models:
          - model: \(fixtures.path)/llama-tiny-ft-add
            parameters: {weight: 1.0}
          - model: \(fixtures.path)/llama-tiny-ft-sub
            parameters: {weight: 1.0}
        parameters: {lambda: 0.5}
        out_dtype: bfloat16
        tokenizer_source: base
        """.write(to: recipe, atomically: true, encoding: .utf8)
        // "base" is relative: not in the working directory, so it is found beside the recipe.
        let out = dir.appendingPathComponent("merged")
        let r = try BasinBinary.run(["merge", recipe.path, "--out", out.path], currentDirectory: fixtures)
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: out.path))
        XCTAssertEqual(files, ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md", "mergekit_config.yml"])
        let model = try ModelFile.open(out)
        XCTAssertTrue(model is HuggingFaceModel)
        XCTAssertEqual(model.metadata["format"], "pt")
        XCTAssertEqual(model.info("lm_head.weight")?.dtype, .bf16)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(config["dtype"] as? String, "bfloat16")
        // The recipe in the metadata rebuilds the same bytes.
        let embedded = dir.appendingPathComponent("embedded.yml")
        try model.metadata["basin.recipe"]!.write(to: embedded, atomically: true, encoding: .utf8)
        let again = dir.appendingPathComponent("again")
        XCTAssertEqual(try BasinBinary.run(["merge", embedded.path, again.path], currentDirectory: dir).status, 0)
        let a = try ModelFile.open(again)
        for n in model.names { XCTAssertEqual(try a.withRawBytes(n) { Array($0) }, try model.withRawBytes(n) { Array($0) }, n) }
        // A missing model names both places it was looked for.
        try "merge_method: linear\nmodels:\n  - {model: nowhere, parameters: {weight: 1}}\n".write(to: recipe, atomically: true, encoding: .utf8)
        let missing = try BasinBinary.run(["merge", recipe.path, dir.appendingPathComponent("x").path], currentDirectory: fixtures)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains(fixtures.appendingPathComponent("nowhere").path) && missing.stderr.contains(dir.appendingPathComponent("nowhere").path), missing.stderr)
    }

    func testExternalEvaluatorContract() throws {
        let script = dir.appendingPathComponent("eval.sh")
        // A tiny evaluator: counts the candidate's files and reads its config, prints one JSON object.
        try """
        #!/bin/sh
        set -e
        test -f "$1/config.json"
        n=$(ls "$1" | wc -l)
        echo "evaluating $1" >&2
        printf '{"files": %d, "suite": {"acc": 0.5, "loss": 1.25}}\\n' "$n"
        """.write(to: script, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("lin")
        let r = try BasinBinary.run(["merge", "mergekit/linear.yml", out.path, "--evaluate", "sh \(script.path)", "--json"], currentDirectory: fixtures)
        XCTAssertEqual(r.status, 0, r.stderr)
        let metrics = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Double]
        // model.safetensors, config.json, README.md, mergekit_config.yml.
        XCTAssertEqual(metrics, ["files": 4, "suite.acc": 0.5, "suite.loss": 1.25])
        // A failing evaluator fails the command and shows its standard error.
        let failing = dir.appendingPathComponent("fail.sh")
        try "#!/bin/sh\necho 'CUDA out of memory on the candidate' >&2\nexit 3\n".write(to: failing, atomically: true, encoding: .utf8)
        let f = try BasinBinary.run(["merge", "mergekit/linear.yml", dir.appendingPathComponent("lin2").path, "--evaluate", "sh \(failing.path)"], currentDirectory: fixtures)
        XCTAssertNotEqual(f.status, 0)
        XCTAssertTrue(f.stderr.contains("status 3") && f.stderr.contains("CUDA out of memory"), f.stderr)
        // Output that is not one JSON object is a clear error.
        let chatty = dir.appendingPathComponent("chatty.sh")
        try "#!/bin/sh\necho 'accuracy is 0.7'\n".write(to: chatty, atomically: true, encoding: .utf8)
        let c = try BasinBinary.run(["merge", "mergekit/linear.yml", dir.appendingPathComponent("lin3").path, "--evaluate", "sh \(chatty.path)"], currentDirectory: fixtures)
        XCTAssertNotEqual(c.status, 0)
        XCTAssertTrue(c.stderr.contains("one JSON object") && c.stderr.contains("accuracy is 0.7"), c.stderr)
    }

    /// As a mergekit user runs them: every mergekit fixture recipe through the `basin` binary from the folder
    /// mergekit ran in. Each deterministic output is within 1e-6 of mergekit's, its config.json is mergekit's byte
    /// for byte; dare_ties with mergekit's `--random-seed 0` rebuilds the same bytes.
    func testEveryMergekitFixtureRecipeThroughTheCommand() throws {
        let fixtures = Fixtures.url("transformers")
        let recipes = try FileManager.default.contentsOfDirectory(atPath: fixtures.appendingPathComponent("mergekit").path)
            .filter { $0.hasSuffix(".yml") }.sorted()
        XCTAssertEqual(recipes.count, 10)
        for file in recipes {
            let name = String(file.dropLast(4))
            let out = dir.appendingPathComponent(name)
            let r = try BasinBinary.run(["merge", "mergekit/\(file)", out.path, "--random-seed", "0"], currentDirectory: fixtures)
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            let theirs = fixtures.appendingPathComponent("mergekit/\(name)")
            XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8),
                           try String(contentsOf: theirs.appendingPathComponent("config.json"), encoding: .utf8), name)
            let ours = try ModelFile.open(out), reference = try ModelFile.open(theirs)
            XCTAssertEqual(Set(ours.names), Set(reference.names), name)
            if name == "dare_ties" {
                let again = dir.appendingPathComponent("dare_ties-again")
                XCTAssertEqual(try BasinBinary.run(["merge", "mergekit/\(file)", again.path, "--random-seed", "0"], currentDirectory: fixtures).status, 0)
                XCTAssertEqual(try Data(contentsOf: again.appendingPathComponent("model.safetensors")),
                               try Data(contentsOf: out.appendingPathComponent("model.safetensors")), "same seed, same bytes")
                continue
            }
            var worst: Float = 0
            for n in reference.names {
                let a = try ours.tensor(n), b = try reference.tensor(n)
                XCTAssertEqual(a.shape, b.shape, "\(name) \(n)")
                for j in 0..<b.count { worst = max(worst, abs(a[j] - b[j])) }
            }
            XCTAssertLessThanOrEqual(worst, 1e-6, name)
        }
    }

    /// A folder output gets what mergekit-yaml writes with its defaults: mergekit_config.yml (the recipe) and the
    /// README.md card of mergekit's card.py; re-reading that mergekit_config.yml rebuilds every file byte for byte,
    /// also when the seed came from the command line. --no-write-model-card writes neither.
    func testFolderOutputGetsMergekitConfigAndCardThatRebuildIt() throws {
        let fixtures = Fixtures.url("transformers")
        let first = dir.appendingPathComponent("a/merged"), second = dir.appendingPathComponent("b/merged")
        for (recipe, seed) in [("ties", nil), ("slerp", nil), ("dare_ties", "7")] as [(String, String?)] {
            let r = try BasinBinary.run(["merge", "mergekit/\(recipe).yml", first.path] + (seed.map { ["--random-seed", $0] } ?? []), currentDirectory: fixtures)
            XCTAssertEqual(r.status, 0, r.stderr)
            let config = try String(contentsOf: first.appendingPathComponent("mergekit_config.yml"), encoding: .utf8)
            XCTAssertTrue(config.hasPrefix("merge_method: \(recipe)\n"), config)
            if let seed { XCTAssertTrue(config.contains("seed: \(seed)"), config) }
            let card = try String(contentsOf: first.appendingPathComponent("README.md"), encoding: .utf8)
            let (method, baseText, bullets) = switch recipe {
            case "ties": ("[TIES](https://arxiv.org/abs/2306.01708)", " using ./llama-tiny-base as a base", ["./llama-tiny-ft-add", "./llama-tiny-ft-sub", "./llama-tiny-ft-mul"])
            case "slerp": ("[SLERP](https://en.wikipedia.org/wiki/Slerp)", "", ["./llama-tiny-ft-add", "./llama-tiny-ft-sub"])
            default: ("[DARE TIES](https://arxiv.org/abs/2311.03099)", " using ./llama-tiny-base as a base", ["./llama-tiny-ft-add", "./llama-tiny-ft-sub", "./llama-tiny-ft-mul"])
            }
            // mergekit's CARD_TEMPLATE, as generate_card fills it for local models.
            XCTAssertEqual(card, "---\nbase_model: []\nlibrary_name: transformers\ntags:\n- mergekit\n- merge\n\n---\n# merged\n\n"
                + "This is a merge of pre-trained language models created using [mergekit](https://github.com/cg123/mergekit).\n\n"
                + "## Merge Details\n### Merge Method\n\nThis model was merged using the \(method) merge method\(baseText).\n\n"
                + "### Models Merged\n\nThe following models were included in the merge:\n" + bullets.map { "* \($0)" }.joined(separator: "\n")
                + "\n\n### Configuration\n\nThe following YAML configuration was used to produce this model:\n\n```yaml\n\(config)\n```\n", recipe)
            // The written configuration is the recipe: it rebuilds the same folder, file for file.
            let again = try BasinBinary.run(["merge", first.appendingPathComponent("mergekit_config.yml").path, second.path], currentDirectory: fixtures)
            XCTAssertEqual(again.status, 0, again.stderr)
            let names = try FileManager.default.contentsOfDirectory(atPath: first.path).sorted()
            XCTAssertEqual(names, ["README.md", "config.json", "mergekit_config.yml", "model.safetensors"], recipe)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: second.path).sorted(), names, recipe)
            for n in names {
                XCTAssertEqual(try Data(contentsOf: second.appendingPathComponent(n)), try Data(contentsOf: first.appendingPathComponent(n)), "\(recipe): \(n)")
            }
            try FileManager.default.removeItem(at: first)
            try FileManager.default.removeItem(at: second)
        }
        // Running the written configuration into its own folder would replace it: refused, nothing touched.
        XCTAssertEqual(try BasinBinary.run(["merge", "mergekit/linear.yml", first.path], currentDirectory: fixtures).status, 0)
        let written = try Data(contentsOf: first.appendingPathComponent("mergekit_config.yml"))
        let clash = try BasinBinary.run(["merge", first.appendingPathComponent("mergekit_config.yml").path, first.path], currentDirectory: fixtures)
        XCTAssertNotEqual(clash.status, 0)
        XCTAssertTrue(clash.stderr.contains("input"), clash.stderr)
        XCTAssertEqual(try Data(contentsOf: first.appendingPathComponent("mergekit_config.yml")), written)
        // mergekit-yaml's --no-write-model-card: neither file.
        XCTAssertEqual(try BasinBinary.run(["merge", "mergekit/linear.yml", second.path, "--no-write-model-card"], currentDirectory: fixtures).status, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: second.path).sorted(), ["config.json", "model.safetensors"])
    }

    /// A filter entry after a catch-all never applies: the merge runs (as mergekit's does) and stderr names the
    /// parameter, the dead entry and the one shadowing it; the dry run's JSON lists it under warnings.
    func testShadowedFilterEntryIsAWarningNotAnError() throws {
        let fixtures = Fixtures.url("transformers")
        let recipe = dir.appendingPathComponent("shadow.yml")
        try """
        merge_method: slerp
        base_model: ./llama-tiny-ft-add
        models:
          - model: ./llama-tiny-ft-add
          - model: ./llama-tiny-ft-sub
        parameters:
          t:
            - value: 0.5
            - filter: mlp
              value: 1.0
        """.write(to: recipe, atomically: true, encoding: .utf8)
        let expected = "warning: \(recipe.path): parameters.t[1] (filter: mlp) never applies: parameters.t[0] (no filter) comes first and matches every tensor"
        let out = dir.appendingPathComponent("out")
        let r = try BasinBinary.run(["merge", recipe.path, out.path], currentDirectory: fixtures)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains(expected), r.stderr)
        let dry = try BasinBinary.run(["merge", recipe.path, dir.appendingPathComponent("dry").path, "--dry-run", "--json"], currentDirectory: fixtures)
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertTrue(dry.stderr.contains(expected), dry.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(dry.stdout.utf8)) as! [String: Any]
        let warnings = try XCTUnwrap(report["warnings"] as? [String])
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].hasPrefix(String(expected.dropFirst("warning: ".count))), warnings[0])
        // A recipe without dead entries warns about nothing.
        let clean = try BasinBinary.run(["merge", "mergekit/slerp.yml", dir.appendingPathComponent("dry2").path, "--dry-run", "--json"], currentDirectory: fixtures)
        XCTAssertFalse(clean.stderr.contains("warning"), clean.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(clean.stdout.utf8)) as! [String: Any])["warnings"] as? [String], [])
    }

    /// A base named by its .safetensors file (not its folder) still gives a folder output a config.json: the first
    /// Hugging Face folder's among the inputs. tokenizer_source: base still means the base's own tokenizer.
    func testAFolderOutputGetsAConfigWhenTheBaseIsAFile() throws {
        let fixtures = Fixtures.url("transformers")
        let recipe = dir.appendingPathComponent("r.yml")
        try """
        merge_method: task_arithmetic
        base_model: ./llama-tiny-base/model.safetensors
        models:
          - {model: ./llama-tiny-ft-add, parameters: {weight: 1.0}}
          - {model: ./llama-tiny-ft-sub/model.safetensors, parameters: {weight: 1.0}}
        parameters: {lambda: 0.5}
        out_dtype: bfloat16
        """.write(to: recipe, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("out")
        let r = try BasinBinary.run(["merge", recipe.path, out.path], currentDirectory: fixtures)
        XCTAssertEqual(r.status, 0, r.stderr)
        let config = try String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8)
        let donor = try String(contentsOf: fixtures.appendingPathComponent("llama-tiny-ft-add/config.json"), encoding: .utf8)
        XCTAssertEqual(config, donor.replacingOccurrences(of: "\"dtype\": \"float32\"", with: "\"dtype\": \"bfloat16\""))
        XCTAssertNotNil(try ModelFile.open(out) as? HuggingFaceModel)
    }
}

/// docs/examples/evaluate-lm-eval.sh against a stand-in for lm_eval that writes results as lm-evaluation-harness does.
final class EvaluatorExampleTests: XCTestCase {
    func testTheLmEvalExampleFollowsTheContract() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let fake = dir.appendingPathComponent("lm_eval")
        try """
        #!/bin/sh
        # Stand-in for lm_eval: checks the arguments it gets and writes OUTPUT/<model>/results_<time>.json.
        out=""; model=""
        while [ $# -gt 0 ]; do
          case "$1" in
            --output_path) out="$2"; shift ;;
            --model_args) model="$2"; shift ;;
          esac
          shift
        done
        case "$model" in pretrained=*) ;; *) echo "bad model_args $model" >&2; exit 2 ;; esac
        test -f "${model#pretrained=}/config.json" || { echo "no config.json" >&2; exit 3; }
        mkdir -p "$out/candidate"
        echo "running tasks" >&2
        printf '{"results": {"hellaswag": {"alias": "hellaswag", "acc,none": 0.25, "acc_stderr,none": 0.01, "acc_norm,none": 0.5}}}' > "$out/candidate/results_2026-01-01T00-00-00.json"
        """.write(to: fake, atomically: true, encoding: .utf8)
        chmod(fake.path, 0o755)
        let script = Fixtures.repositoryRoot.appendingPathComponent("docs/examples/evaluate-lm-eval.sh").path
        let out = dir.appendingPathComponent("merged")
        let r = try BasinBinary.run(["merge", "mergekit/linear.yml", out.path, "--evaluate", "sh '\(script)'", "--json"],
                                    environment: ["LM_EVAL": fake.path, "BASIN_EVAL_TASKS": "hellaswag"], currentDirectory: Fixtures.url("transformers"))
        XCTAssertEqual(r.status, 0, r.stderr)
        let metrics = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Double]
        XCTAssertEqual(metrics, ["hellaswag.acc": 0.25, "hellaswag.acc_norm": 0.5])
    }
}
