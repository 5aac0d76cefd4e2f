import BasinIO
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// docs/reliability.md, as a hostile user meets it: the real binary, every case of the table. Each case
/// checks the exit status, that the message names the file or option, that there is no trace, and that
/// inputs are byte for byte untouched and nothing is left behind.
final class ReliabilityCLITests: XCTestCase {
    var dir: URL!
    var data: URL!
    var test: URL!
    var model: URL!
    var other: URL!

    override func setUpWithError() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        dir = try Fixtures.temporaryDirectory()
        data = dir.appendingPathComponent("data.safetensors")
        test = dir.appendingPathComponent("test.safetensors")
        model = dir.appendingPathComponent("a.safetensors")
        other = dir.appendingPathComponent("b.safetensors")
        try FileManager.default.copyItem(at: Fixtures.digitsTest, to: data)
        try FileManager.default.copyItem(at: Fixtures.digitsTest, to: test)
        try FileManager.default.copyItem(at: Fixtures.mlpSeed0, to: model)
        try FileManager.default.copyItem(at: Fixtures.mlpSeed1, to: other)
    }

    override func tearDownWithError() throws { if let dir { try? FileManager.default.removeItem(at: dir) } }

    private func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// The files in the test folder and their bytes' digests.
    private func snapshot() throws -> [String: String] {
        var out: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
            let p = dir.appendingPathComponent(name)
            var isDir: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: p.path, isDirectory: &isDir)
            if isDir.boolValue {
                out[name] = "folder"
            } else if let attrs = try? FileManager.default.attributesOfItem(atPath: p.path), attrs[.type] as? FileAttributeType == .typeRegular {
                out[name] = try FileDigest.sha256(p)
            } else {
                out[name] = "special"
            }
        }
        return out
    }

    /// Runs basin, expects a failure whose one-line message contains every `mentions`, and nothing changed on disk.
    @discardableResult
    private func refused(_ args: [String], _ mentions: String..., status: Int32? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> BasinBinary.Result {
        let before = try snapshot()
        let r = try BasinBinary.run(args)
        if let status {
            XCTAssertEqual(r.status, status, r.stderr, file: file, line: line)
        } else {
            XCTAssertNotEqual(r.status, 0, "exit 0 for \(args): \(r.stderr)", file: file, line: line)
        }
        for m in mentions { XCTAssertTrue(r.stderr.contains(m), "'\(m)' not in: \(r.stderr)", file: file, line: line) }
        XCTAssertTrue(r.stderr.hasPrefix("Error: ") || r.stderr.contains("\nError: "), r.stderr, file: file, line: line)
        XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Stack dump") || r.stderr.contains("Backtrace"), r.stderr, file: file, line: line)
        XCTAssertEqual(try snapshot(), before, "files changed for \(args)", file: file, line: line)
        return r
    }

    @discardableResult
    private func refused(_ args: [String], _ mentions: [String], file: StaticString = #filePath, line: UInt = #line) throws -> BasinBinary.Result {
        let before = try snapshot()
        let r = try BasinBinary.run(args)
        XCTAssertNotEqual(r.status, 0, "exit 0 for \(args): \(r.stderr)", file: file, line: line)
        for m in mentions { XCTAssertTrue(r.stderr.contains(m), "'\(m)' not in: \(r.stderr)", file: file, line: line) }
        XCTAssertTrue(r.stderr.hasPrefix("Error: ") || r.stderr.contains("\nError: "), r.stderr, file: file, line: line)
        XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Backtrace"), r.stderr, file: file, line: line)
        XCTAssertEqual(try snapshot(), before, "files changed for \(args)", file: file, line: line)
        return r
    }

    private func train(_ extra: [String], out: String) -> [String] {
        ["train", "--data", data.path, "--sizes", "64,8,10", "--epochs", "1", "--quiet", "--out", out] + extra
    }

    // MARK: 1. No output may replace an input

    func testEveryWayOfNamingAnInputAsAnOutputIsRefused() throws {
        let dataName = data.path
        // train: --out is --data, --test, --init-from; a checkpoint lands on --data.
        try refused(train([], out: dataName), "refusing to write here", dataName)
        try refused(train(["--test", test.path], out: test.path), "refusing to write here")
        try refused(["train", "--data", data.path, "--init-from", model.path, "--epochs", "1", "--quiet", "--out", model.path], "refusing to write here")
        try FileManager.default.copyItem(at: data, to: dir.appendingPathComponent("ck-epoch001.safetensors"))
        try refused(["train", "--data", path("ck-epoch001.safetensors"), "--sizes", "64,8,10", "--epochs", "1", "--quiet", "--out", path("m.safetensors"),
                     "--checkpoint-every", "1", "--checkpoint-dir", dir.path, "--checkpoint-name", "ck"], "ck-epoch001.safetensors", "refusing to write here")
        try FileManager.default.removeItem(at: dir.appendingPathComponent("ck-epoch001.safetensors"))
        // The same file under other names: a symbolic link, a hard link, a path through "..".
        try FileManager.default.createSymbolicLink(atPath: path("link.safetensors"), withDestinationPath: dataName)
        try refused(train([], out: path("link.safetensors")), "refusing to write here")
        try FileManager.default.linkItem(atPath: dataName, toPath: path("hard.safetensors"))
        try refused(train([], out: path("hard.safetensors")), "the same file under another name")
        try FileManager.default.createDirectory(atPath: path("sub"), withIntermediateDirectories: false)
        try refused(train([], out: dir.path + "/sub/../data.safetensors"), "refusing to write here")
        // match: --out and --report on an input.
        try refused(["match", model.path, other.path, "--out", data.path, "--method", "activation", "--data", data.path], "refusing")
        try refused(["match", model.path, other.path, "--out", path("m.safetensors"), "--report", model.path], "refusing")
        try refused(["match", model.path, other.path, "--out", path("m.safetensors"), "--report", path("m.safetensors")], "two outputs")
        // fit: --out on the bends it starts from, on the data.
        try refused(["fit", model.path, other.path, "--data", data.path, "--epochs", "1", "--init-bends", test.path, "--out", test.path], "refusing")
        try refused(["fit", model.path, other.path, "--data", data.path, "--epochs", "1", "--out", data.path], "refusing")
        // soup: --out on the held-out data and on the test data.
        try refused(["soup", model.path, other.path, "--data", data.path, "--out", data.path], "refusing")
        try refused(["soup", model.path, other.path, "--data", data.path, "--test", test.path, "--out", test.path], "refusing")
        // The correction data sets (--bn-reset, --repair) added since: inputs like any other.
        let statistics = path("train.safetensors")
        try FileManager.default.copyItem(at: data, to: URL(fileURLWithPath: statistics))
        try refused(["soup", model.path, other.path, "--data", data.path, "--bn-reset", statistics, "--out", statistics], "refusing")
        try refused(["fit", model.path, other.path, "--data", data.path, "--epochs", "1", "--repair", statistics, "--out", statistics], "refusing")
        // split: either output on the input, or both outputs one file.
        try refused(["split", data.path, "--at", "10", data.path, path("t.safetensors")], "refusing")
        try refused(["split", data.path, "--at", "10", path("h.safetensors"), dataName], "refusing")
        try refused(["split", data.path, "--at", "10", path("h.safetensors"), path("h.safetensors")], "two outputs")
        // merge: --out on the data, on the recipe, into a folder holding an input's shards.
        let recipe = dir.appendingPathComponent("r.yaml")
        try "merge_method: linear\nmodels:\n  - {model: a.safetensors, parameters: {weight: 1}}\n  - {model: b.safetensors, parameters: {weight: 1}}\n".write(to: recipe, atomically: true, encoding: .utf8)
        try refused(["merge", recipe.path, "--out", data.path, "--data", data.path], "refusing")
        try refused(["merge", recipe.path, "--out", recipe.path], "is a file")
        let sharded = dir.appendingPathComponent("sharded")
        try FileManager.default.createDirectory(at: sharded, withIntermediateDirectories: false)
        try FileManager.default.copyItem(at: model, to: sharded.appendingPathComponent("model-00001-of-00001.safetensors"))
        try JSONSerialization.data(withJSONObject: ["weight_map": Dictionary(uniqueKeysWithValues: try SafeTensorsFile(url: model).names.map { ($0, "model-00001-of-00001.safetensors") })])
            .write(to: sharded.appendingPathComponent("model.safetensors.index.json"))
        try "merge_method: linear\nmodels:\n  - {model: sharded, parameters: {weight: 1}}\n  - {model: b.safetensors, parameters: {weight: 1}}\n".write(to: recipe, atomically: true, encoding: .utf8)
        try refused(["merge", recipe.path, "--out", sharded.path], "refusing to write here")
        // Outputs that are not regular files.
        try refused(train([], out: "/dev/null"), "/dev/null", "character device")
        try refused(train([], out: path("sub")), "is a folder")
        try refused(train([], out: path("no/such/folder/m.safetensors")), "does not exist")
    }

    // MARK: 1b. Inputs and outputs of the newer commands (match --out-dir, Hugging Face folders, slices, tokenizers)

    func testMatchOutDirNeverReplacesAnInput() throws {
        // The aligned copy of b.safetensors would be DIR/b.safetensors: with DIR the models' own folder, that is b.
        try refused(["match", model.path, other.path, "--out-dir", dir.path], "refusing to write here", other.path)
        try refused(["match", model.path, other.path, "--out-dir", data.path], data.path, "an output folder is needed")
        let fifo = path("pipe")
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        try refused(["match", model.path, other.path, "--out-dir", fifo], fifo, "FIFO")
        // The report may not be one of the aligned models (the folder, missing, is created).
        try refused(["match", model.path, other.path, "--out-dir", path("aligned"), "--report", path("aligned/b.safetensors")], "two outputs")
        try refused(["match", model.path, other.path, "--out-dir", path("aligned"), "--max-rounds", "0"], "--max-rounds", status: 64)
        // A third model whose output name is the data file's.
        let third = dir.appendingPathComponent("more")
        try FileManager.default.createDirectory(at: third, withIntermediateDirectories: false)
        try FileManager.default.copyItem(at: other, to: third.appendingPathComponent("data.safetensors"))
        try refused(["match", model.path, third.appendingPathComponent("data.safetensors").path, "--out-dir", dir.path,
                     "--method", "activation", "--data", data.path], "refusing to write here", data.path)
        let ok = try BasinBinary.run(["match", model.path, other.path, "--out-dir", path("aligned")])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("aligned/b.safetensors")))
    }

    /// A copy of the tiny GPT-2 fixture folder.
    private func gpt2Folder(_ name: String, seed: Int = 0) throws -> URL {
        let folder = dir.appendingPathComponent(name)
        try FileManager.default.copyItem(at: Fixtures.url("transformers/gpt2-tiny-seed\(seed)"), to: folder)
        return folder
    }

    func testMatchIntoAFolderNeverReplacesAnInput() throws {
        let g0 = try gpt2Folder("g0"), g1 = try gpt2Folder("g1", seed: 1)
        // A folder output is B's folder itself, or the folder holding A's weights.
        try refused(["match", g0.path, g1.path, "--out", g1.path], "refusing to write here")
        try refused(["match", g0.path, g1.path, "--out", dir.path + "/g0/../g0"], "refusing to write here")
        let ok = try BasinBinary.run(["match", g0.path, g1.path, "--out", path("aligned")])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("aligned/config.json")))
    }

    func testHuggingFaceFoldersWithHostileFilesAreRefusedByName() throws {
        let tokens = Fixtures.url("data/modarith-test.safetensors").path
        let start = Date()
        // config.json a FIFO: refused at once, not read forever.
        let piped = try gpt2Folder("piped")
        try FileManager.default.removeItem(at: piped.appendingPathComponent("config.json"))
        XCTAssertEqual(mkfifo(piped.appendingPathComponent("config.json").path, 0o644), 0)
        try refused(["eval", piped.path, "--data", tokens], "config.json", "FIFO")
        try refused(["inspect", piped.path], "config.json", "FIFO")
        // config.json not JSON, or with a value out of range: the file and the key are named.
        let broken = try gpt2Folder("broken")
        try "{not json".write(to: broken.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        try refused(["eval", broken.path, "--data", tokens], "config.json", "JSON")
        let zeroHeads = try gpt2Folder("zero-heads")
        let configURL = zeroHeads.appendingPathComponent("config.json")
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["n_head"] = 0
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        try refused(["eval", zeroHeads.path, "--data", tokens], "config.json", "n_head")
        // Token ids beyond the vocabulary (27 tokens): refused before evaluating.
        let wide = path("ids.safetensors")
        try Dataset(x: Tensor(shape: [2, 4], storage: [0, 1, 2, 99, 0, 1, 2, 3]), labels: [1, 2, 3, 4, 1, 2, 3, 4], labelShape: [4], isTokens: true)
            .write(to: URL(fileURLWithPath: wide))
        try refused(["eval", try gpt2Folder("g").path, "--data", wide], "99")
        // An .onnx model that is a FIFO.
        XCTAssertEqual(mkfifo(path("pipe.onnx"), 0o644), 0)
        try refused(["eval", path("pipe.onnx"), "--data", data.path], "pipe.onnx", "FIFO")
        XCTAssertLessThan(Date().timeIntervalSince(start), 60, "nothing blocked on a FIFO")
    }

    func testMergeOutputsNeverReplaceSliceSourcesOrTokenizerFiles() throws {
        let g0 = try gpt2Folder("g0"), g1 = try gpt2Folder("g1", seed: 1)
        let tok = dir.appendingPathComponent("tok")
        try FileManager.default.createDirectory(at: tok, withIntermediateDirectories: false)
        try "{}".write(to: tok.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        try "{\"model\": {}}".write(to: tok.appendingPathComponent("tokenizer.json"), atomically: true, encoding: .utf8)
        let recipe = dir.appendingPathComponent("r.yaml")
        // The output is the folder tokenizer_source names (not a model of the merge): its tokenizer files are inputs.
        try "merge_method: linear\nmodels:\n  - {model: g0, parameters: {weight: 1}}\n  - {model: g1, parameters: {weight: 1}}\ntokenizer_source: tok\n"
            .write(to: recipe, atomically: true, encoding: .utf8)
        try refused(["merge", recipe.path, tok.path], "refusing to write here")
        // A tokenizer file that is a FIFO.
        try FileManager.default.removeItem(at: tok.appendingPathComponent("tokenizer.json"))
        XCTAssertEqual(mkfifo(tok.appendingPathComponent("tokenizer.json").path, 0o644), 0)
        try refused(["merge", recipe.path, path("out")], "tokenizer.json", "FIFO")
        // slices: the output is a slice's source.
        try "merge_method: passthrough\nslices:\n  - sources:\n      - {model: g1, layer_range: [0, 2]}\n".write(to: recipe, atomically: true, encoding: .utf8)
        try refused(["merge", recipe.path, g1.path], "refusing to write here")
        try refused(["merge", recipe.path, "--out", g1.appendingPathComponent("model.safetensors").path], "refusing to write here")
        XCTAssertTrue(FileManager.default.fileExists(atPath: g0.appendingPathComponent("config.json").path))
    }

    // MARK: 2. Only regular files are read

    func testFIFOsDevicesFoldersAndSymlinkLoopsAreRefusedByNameWithoutHanging() throws {
        let fifo = path("pipe.safetensors")
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let start = Date()
        try refused(["eval", fifo, "--data", data.path], fifo, "FIFO")
        try refused(["eval", model.path, "--data", fifo], fifo, "FIFO")
        try refused(["inspect", fifo], "FIFO")
        try refused(["train", "--data", "/dev/zero", "--out", path("m.safetensors")], "/dev/zero", "character device")
        try refused(["eval", model.path, "--data", dir.path], "is a folder")
        try refused(["eval", model.path, "--data", data.path, "--arch", fifo], "FIFO")
        let recipe = path("r.yaml")
        XCTAssertEqual(mkfifo(recipe, 0o644), 0)
        try refused(["merge", recipe, "--out", path("o.safetensors")], "FIFO")
        try FileManager.default.createSymbolicLink(atPath: path("l1"), withDestinationPath: path("l2"))
        try FileManager.default.createSymbolicLink(atPath: path("l2"), withDestinationPath: path("l1"))
        try refused(["eval", path("l1"), "--data", data.path], "symbolic links form a loop")
        XCTAssertLessThan(Date().timeIntervalSince(start), 60, "nothing blocked on the FIFO")
    }

    func testShardOutsideTheIndexFolderIsRefused() throws {
        let folder = dir.appendingPathComponent("m")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
        try JSONSerialization.data(withJSONObject: ["weight_map": ["layers.0.weight": "../a.safetensors"]])
            .write(to: folder.appendingPathComponent("model.safetensors.index.json"))
        try refused(["inspect", folder.path], "../a.safetensors", "inside the index's folder")
    }

    // MARK: 3. Values are checked before any work

    func testDataThatDoesNotFitTheNetworkIsAnErrorBeforeTraining() throws {
        try refused(train([], out: path("m.safetensors")).map { $0 == "64,8,10" ? "32,8,10" : $0 }, "64 features", "--sizes starts with 32")
        try refused(train([], out: path("m.safetensors")).map { $0 == "64,8,10" ? "64,8,5" : $0 }, "labels up to 9", "5 outputs")
        let small = path("small.safetensors")
        XCTAssertEqual(try BasinBinary.run(["train", "--data", data.path, "--sizes", "64,8,10", "--epochs", "1", "--quiet", "--out", small]).status, 0)
        let features = path("f32.safetensors")
        try Dataset(x: Tensor(shape: [4, 32], repeating: 0.5), y: [0, 1, 2, 3]).write(to: URL(fileURLWithPath: features))
        try refused(["eval", small, "--data", features], "32 features", "takes 64")
        try refused(["path", small, small, "--data", features], "32 features")
        try refused(["soup", model.path, other.path, "--data", data.path, "--test", features], "32 features")
        try refused(["fit", model.path, other.path, "--data", data.path, "--test", features, "--out", path("f.safetensors")], "32 features")
        try refused(["train", "--data", data.path, "--sizes", "64,8,10", "--test", features, "--out", path("m.safetensors")], "32 features")
        try refused(["train", "--data", data.path, "--init-from", model.path, "--out", path("m.safetensors"), "--test", features], "32 features")
    }

    func testEmptyDataIsAnError() throws {
        let empty = path("empty.safetensors")
        try SafeTensorsWriter.write([("x", Tensor(shape: [0, 64], storage: [])), ("y", Tensor(shape: [0], storage: []))],
                                    to: URL(fileURLWithPath: empty), dtype: { $0 == "y" ? .i64 : .f32 })
        try refused(["eval", model.path, "--data", empty], empty, "no rows")
        try refused(["train", "--data", empty, "--out", path("m.safetensors")], "no rows")
        try refused(["train", "--data", data.path, "--classes", "42", "--sizes", "64,8,10", "--out", path("m.safetensors")], "no training rows")
    }

    func testEveryNumericOptionIsRangeCheckedAtParseTime() throws {
        let out = path("m.safetensors")
        let cases: [([String], String)] = [
            (["train", "--data", data.path, "--out", out, "--lr", "nan"], "--lr must be a finite number"),
            (["train", "--data", data.path, "--out", out, "--lr", "inf"], "--lr must be a finite number"),
            (["train", "--data", data.path, "--out", out, "--lr", "-1"], "--lr"),
            (["train", "--data", data.path, "--out", out, "--momentum", "2"], "--momentum"),
            (["train", "--data", data.path, "--out", out, "--weight-decay", "nan"], "--weight-decay"),
            (["train", "--data", data.path, "--out", out, "--batch", "0"], "--batch must be between 1"),
            (["train", "--data", data.path, "--out", out, "--batch", "9223372036854775807"], "--batch must be between 1"),
            (["train", "--data", data.path, "--out", out, "--epochs", "0"], "--epochs"),
            (["train", "--data", data.path, "--out", out, "--sizes", "64,0,10"], "not a positive width"),
            (["train", "--data", data.path, "--out", out, "--sizes", "64,99999999999999999999,10"], "not a positive width"),
            (["train", "--data", data.path, "--out", out, "--classes", "-1"], "--classes"),
            (["train", "--data", data.path, "--out", out, "--checkpoint-every", "1"], "go together"),
            (["train", "--data", data.path, "--out", out, "--limit", "0"], "--limit"),
            (["fit", model.path, other.path, "--data", data.path, "--out", out, "--batch", "0"], "--batch"),
            (["fit", model.path, other.path, "--data", data.path, "--out", out, "--lr", "nan"], "--lr"),
            (["fit", model.path, other.path, "--data", data.path, "--out", out, "--l2", "-1"], "--l2"),
            (["fit", model.path, other.path, "--data", data.path, "--out", out, "--bends", "100000"], "--bends"),
            (["path", model.path, other.path, "--data", data.path, "--points", "1"], "--points"),
            (["path", model.path, other.path, "--data", data.path, "--points", "100000000"], "--points must be between 2 and 10001"),
            (["path", model.path, other.path, "--data", data.path, "--batch", "0"], "--batch"),
            (["match", model.path, other.path, "--out", out, "--max-sweeps", "0"], "--max-sweeps"),
            (["soup", model.path, "--data", data.path, "--learned", "--steps", "0"], "--steps"),
            (["explore", model.path, other.path, "--data", data.path, "--points", "100000000"], "--points"),
            (["explore", model.path, other.path, "--data", data.path, "--landscape", "100000"], "--landscape"),
            (["merge", "r.yaml", "--out", out, "--shard-size", "99999999999999GB"], "too large"),
            (["merge", "r.yaml", "--out", out, "--shard-size", "99999999999999999999"], "cannot read"),
            (["merge", "r.yaml", "--out", out, "--shard-size", "infGB"], "cannot read"),
            (["merge", "r.yaml", "--out", out, "--shard-size=-5MB"], "positive"),
            (["merge", "r.yaml", "--out", out, "--shard-size", "0"], "positive"),
            (["bench", "--threads", "99999999999"], "--threads"),
            (["bench", "--batch", "0"], "--batch"),
            (["bench", "lap", "--sizes", "0"], "--sizes"),
            (["bench", "lap", "--sizes", "1000000"], "--sizes"),
            (["bench", "match", "--sizes", "784", "1000000", "10"], "--sizes"),
            (["bench", "path", "--samples", "0"], "--samples"),
            (["bench", "path", "--points", "0"], "--points"),
            (["bench", "merge", "--size", "9999999999999999999999GB"], "--size"),
            (["bench", "merge", "--rounds", "0"], "--rounds must be between 1 and 20"),
            (["bench", "ui", "--repeats", "0"], "--repeats"),
            (["bench", "conv", "--batch", "0"], "--batch"),
            (["bench", "conv", "--batch", "99999999999"], "--batch"),
            (["bench", "conv", "--repeats", "0"], "--repeats"),
            (["bench", "transformer", "--layers", "0"], "--layers"),
            (["bench", "transformer", "--width", "9999999"], "--width"),
            (["bench", "transformer", "--vocabulary", "99999999"], "--vocabulary"),
            (["bench", "transformer", "--heads", "7"], "must divide"),
            (["bench", "transformer", "--sequence", "0"], "--sequence"),
            (["bench", "transformer", "--points", "100000000"], "--points"),
            (["match", model.path, other.path, "--out-dir", out, "--max-rounds", "0"], "--max-rounds"),
            (["landscape", model.path, "--data", data.path, "--span", "1e30"], "--span must be above 0 and at most 1000"),
            (["landscape", model.path, "--data", data.path, "--span", "nan"], "--span"),
            (["landscape", model.path, "--data", data.path, "--grid", "100000"], "--grid"),
            (["simplex", model.path, other.path, model.path, "--data", data.path, "--grid", "0"], "--grid"),
            (["barriers", model.path, other.path, "--data", data.path, "--points", "100000000"], "--points"),
            (["lesson", "--fit-epochs", "0"], "--fit-epochs"),
            (["path", model.path, other.path, "--data", data.path, "--repair", data.path, "--bn-batch", "0"], "--bn-batch"),
            (["path", model.path, other.path, "--data", data.path, "--compare"], "--compare needs"),
            (["soup", model.path, other.path, "--evaluate", "true", "--evaluate-timeout", "0"], "--evaluate-timeout must be between 1"),
            (["soup", model.path, other.path, "--evaluate", "true", "--evaluate-timeout", "nan"], "--evaluate-timeout"),
            (["soup", model.path, other.path, "--evaluate", "true", "--evaluate-timeout", "1e9"], "--evaluate-timeout"),
            (["soup", model.path, other.path, "--data", data.path, "--evaluate-timeout", "5"], "--evaluate-timeout goes with --evaluate"),
            (["merge", "r.yaml", "--out", out, "--evaluate", "true", "--evaluate-timeout", "-1"], "--evaluate-timeout"),
            // One set of evaluator options (EvaluatorOptions) on merge, soup and explore, with the same checks.
            (["merge", "r.yaml", "--out", out, "--evaluate", "true", "--evaluate-jobs", "65"], "--evaluate-jobs must be between 1 and 64"),
            (["soup", model.path, other.path, "--evaluate", "true", "--evaluate-jobs", "0"], "--evaluate-jobs must be between 1 and 64"),
            (["explore", model.path, other.path, "--data", data.path, "--evaluate", "true", "--evaluate-jobs", "0"], "--evaluate-jobs must be between 1 and 64"),
            (["explore", model.path, other.path, "--data", data.path, "--evaluate", "true", "--evaluate-timeout", "0"], "--evaluate-timeout must be between 1"),
            (["explore", model.path, other.path, "--data", data.path, "--evaluate-jobs", "2"], "--evaluate-jobs goes with --evaluate"),
            (["explore", model.path, other.path, "--data", data.path, "--metric", "acc"], "--metric goes with --evaluate"),
            (["explore", model.path, other.path, "--data", data.path, "--evaluate", " "], "--evaluate needs a command"),
            (["merge", "r.yaml", "--out", path("merged.safetensors"), "--evaluate", "true"], "give a folder as the output"),
        ]
        for (args, message) in cases {
            let r = try refused(args, message, status: 64)
            XCTAssertTrue(r.stderr.contains("Usage:"), "a usage error for \(args)")
        }
    }

    func testARequestBeyondTheMachinesMemoryIsRefusedBeforeAllocating() throws {
        try refused(["train", "--data", data.path, "--sizes", "64,1000000,1000000,10", "--out", path("m.safetensors")],
                    "needs about", "of memory but this machine has")
        try refused(["bench", "path", "--samples", "10000000", "--bends", "64"], "of memory")
        try refused(["bench", "transformer", "--layers", "1024", "--width", "65536", "--heads", "64"], "of memory")
        try refused(["bench", "conv", "--batch", "60000"], "of memory")
        // Architecture files whose sizes are each in range but whose products are enormous or overflow: the
        // memory plan names the file and the node before anything is allocated.
        let corpus = Fixtures.repositoryRoot.appendingPathComponent("Tests/FuzzCorpus/arch")
        for (file, mentions) in [("conv-huge-channels.json", ["node 'conv1'", "needs about", "[100000000, 6, 6] per sample"]),
                                 ("linear-huge.json", ["node 'fc2'", "'b.weight'", "[1000000, 1000000]"]),
                                 ("input-overflow.json", ["node 'node0'", "64-bit"]),
                                 ("kernel-overflow.json", ["node 'c'", "64-bit"])] {
            let arch = corpus.appendingPathComponent(file).path
            try refused(["train", "--data", data.path, "--arch", arch, "--epochs", "1", "--quiet", "--out", path("m.safetensors")],
                        [arch] + mentions)
        }
        for (file, mention) in [("conv-huge-pads", "pads"), ("input-overflow", "dimension"), ("reshape-huge", "64-bit")] {
            let graph = Fixtures.url("onnx/hostile/\(file).onnx").path
            try refused(["eval", graph, "--data", data.path], [graph, mention])
        }
    }

    /// An external evaluator that hangs: stopped at --evaluate-timeout with everything it started, each
    /// candidate reported as failed, and the candidates' folders removed. (Only checks the run ends well before
    /// the evaluator's 30 s sleep would; no timing is asserted beyond that.)
    func testAHungEvaluatorIsStoppedAtTheTimeoutAndLeavesNothing() throws {
        let slow = dir.appendingPathComponent("slow.sh")
        try "#!/bin/sh\nsleep 30\necho '{\"acc\": 1}'\n".write(to: slow, atomically: true, encoding: .utf8)
        let start = Date()
        let r = try refused(["soup", model.path, other.path, "--evaluate", "sh \(slow.path)", "--evaluate-timeout", "1",
                             "--evaluate-dir", dir.path, "--out", path("soup.safetensors")],
                            ["every ingredient failed its evaluation", "did not finish within 1 s", "--evaluate-timeout"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 25, r.stderr)
    }

    /// Inputs added since the first table: a transformer's config.json for `train --config` (sizes each bounded,
    /// their product estimated), and data sets holding NaN or infinite features.
    func testTransformerConfigsAndNonFiniteDataAreRefusedBeforeWork() throws {
        let tokens = Fixtures.url("data/modarith-train.safetensors").path
        func config(_ name: String, _ json: String) throws -> String {
            let url = dir.appendingPathComponent(name)
            try json.write(to: url, atomically: true, encoding: .utf8)
            return url.path
        }
        let positions = try config("positions.json", #"{"model_type": "gpt2", "vocab_size": 27, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 100000000000000}"#)
        try refused(["train", "--data", tokens, "--config", positions, "--epochs", "1", "--out", path("t1")], [positions, "\"n_positions\"", "at most"])
        let huge = try config("huge.json", #"{"model_type": "gpt2", "vocab_size": 16777216, "n_embd": 65536, "n_layer": 1, "n_head": 1, "n_positions": 8}"#)
        try refused(["train", "--data", tokens, "--config", huge, "--epochs", "1", "--out", path("t2")], [huge, "vocab_size 16777216", "needs about", "of memory"])
        let typed = try config("typed.json", #"{"model_type": "gpt2", "vocab_size": 27, "n_embd": "64", "n_layer": 2, "n_head": 4, "n_positions": 8}"#)
        try refused(["train", "--data", tokens, "--config", typed, "--epochs", "1", "--out", path("t3")], [typed, #"is "64" (a string)"#])

        // Features with NaN and +Inf: every command that reads the data refuses it by name, before any work.
        var x = Tensor(shape: [20, 64], repeating: 0.5)
        x.storage[3 * 64 + 5] = .nan
        x.storage[7 * 64] = .infinity
        let bad = dir.appendingPathComponent("nan.safetensors")
        try Dataset(x: x, y: (0..<20).map { Int32($0 % 10) }).write(to: bad)
        for args in [["eval", model.path, "--data", bad.path], ["path", model.path, other.path, "--data", bad.path, "--points", "3"],
                     ["train", "--data", bad.path, "--sizes", "64,8,10", "--epochs", "1", "--out", path("n.safetensors")],
                     ["soup", model.path, other.path, "--data", bad.path]] {
            try refused(args, [bad.path, "tensor 'x'", "2 NaN or infinite values", "row 3"])
        }
    }

    // MARK: 4. Non-finite weights

    private func nonFiniteModel() throws -> String {
        let bad = path("nan.safetensors")
        var params = try SafeTensorsFile(url: model).allTensors()
        params[0].1.storage[3] = .nan
        params[0].1.storage[7] = .infinity
        WritePolicy.allowNonFinite = true
        defer { WritePolicy.allowNonFinite = false }
        try SafeTensorsWriter.write(params, to: URL(fileURLWithPath: bad))
        return bad
    }

    func testNonFiniteWeightsAreReportedAndNeverMergedOrExportedSilently() throws {
        let bad = try nonFiniteModel()
        let tensor = try SafeTensorsFile(url: model).names[0]
        // Evaluating warns (tensor and count) and goes on.
        let e = try BasinBinary.run(["eval", bad, "--data", data.path])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertTrue(e.stderr.contains("warning: \(bad): tensor '\(tensor)' has 2 NaN or infinite values"), e.stderr)
        // Merging and exporting refuse, naming the input tensor, unless --allow-nonfinite.
        let recipe = path("r.yaml")
        try "merge_method: linear\nmodels:\n  - {model: nan.safetensors, parameters: {weight: 1}}\n  - {model: b.safetensors, parameters: {weight: 1}}\n".write(toFile: recipe, atomically: true, encoding: .utf8)
        let out = path("merged.safetensors")
        try refused(["merge", recipe, "--out", out], "NaN or infinite", "--allow-nonfinite")
        try refused(["soup", bad, other.path, "--data", data.path, "--out", out], "--allow-nonfinite")
        try refused(["match", bad, other.path, "--out", out], "--allow-nonfinite")
        try refused(["fit", bad, other.path, "--data", data.path, "--epochs", "1", "--out", out], "--allow-nonfinite")
        let allowed = try BasinBinary.run(["merge", recipe, "--out", out, "--allow-nonfinite"])
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        XCTAssertTrue(allowed.stderr.contains("warning: "), allowed.stderr)
        XCTAssertEqual(try NonFinite.scan(SafeTensorsFile(url: URL(fileURLWithPath: out))).first?.count, 2)
    }

    func testAMergeThatOverflowsToInfinityIsNotWritten() throws {
        // Finite inputs near Float32's largest value: their unnormalised sum is +Inf, which the writer refuses.
        let huge = path("huge.safetensors")
        let params = try SafeTensorsFile(url: model).allTensors().map { ($0.0, Tensor(shape: $0.1.shape, repeating: 3e38)) }
        try SafeTensorsWriter.write(params, to: URL(fileURLWithPath: huge))
        try SafeTensorsWriter.write(params, to: URL(fileURLWithPath: path("huge2.safetensors")))
        let recipe = path("r.yaml")
        try "merge_method: linear\nmodels:\n  - {model: huge.safetensors, parameters: {weight: 1}}\n  - {model: huge2.safetensors, parameters: {weight: 1}}\nparameters: {normalize: false}\n"
            .write(toFile: recipe, atomically: true, encoding: .utf8)
        try refused(["merge", recipe, "--out", path("o.safetensors")], "NaN or infinite", "--allow-nonfinite")
    }

    // MARK: 5. Interrupted and size-limited writes leave nothing

    /// Starts basin, waits until `ready` says it is mid-write, sends `signal`, and returns the result.
    private func interrupt(_ args: [String], signal: Int32, ready: @escaping () -> Bool) throws -> (Int32, Bool) {
        let p = Process()
        p.executableURL = BasinBinary.url!
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        var caught = false
        let deadline = Date().addingTimeInterval(120)
        while p.isRunning && Date() < deadline {
            if ready() {
                kill(p.processIdentifier, signal)
                caught = true
                break
            }
            usleep(200)
        }
        p.waitUntilExit()
        return (p.terminationStatus, caught)
    }

    private func temporaryFiles(in folder: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".tmp") }
    }

    func testSIGTERMDuringAWriteRemovesTheTemporaryFile() throws {
        let out = path("big.safetensors")
        for attempt in 1...3 {
            let (status, caught) = try interrupt(["train", "--data", data.path, "--sizes", "64,2048,2048,10", "--epochs", "1", "--limit", "2",
                                                  "--quiet", "--out", out], signal: SIGTERM) { !self.temporaryFiles(in: self.dir).isEmpty }
            if !caught { continue }
            XCTAssertEqual(status, SIGTERM, "ended by SIGTERM (a shell shows 143)")
            XCTAssertEqual(temporaryFiles(in: dir), [], "attempt \(attempt)")
            // Either the signal came before the rename (no output) or just after (a complete output).
            if FileManager.default.fileExists(atPath: out) { XCTAssertNoThrow(try SafeTensorsFile(url: URL(fileURLWithPath: out))) }
            return
        }
        XCTFail("never caught the write in progress")
    }

    /// Basin interrupted while an evaluator runs: the evaluator's process group (here a 30 s sleep it started)
    /// is stopped too, not left running as an orphan, and the soup's candidate folders are removed.
    func testSIGTERMWhileAnEvaluatorRunsStopsIt() throws {
        let pidFile = dir.appendingPathComponent("child.pid")
        let slow = dir.appendingPathComponent("slow.sh")
        try "#!/bin/sh\nsleep 30 &\necho $! > '\(pidFile.path)'\nwait\n".write(to: slow, atomically: true, encoding: .utf8)
        let (status, caught) = try interrupt(["soup", model.path, other.path, "--evaluate", "sh \(slow.path)", "--evaluate-dir", dir.path],
                                             signal: SIGTERM) { (try? String(contentsOf: pidFile, encoding: .utf8))?.hasSuffix("\n") == true }
        XCTAssertTrue(caught, "the evaluator never started")
        XCTAssertEqual(status, SIGTERM)
        let child = try XCTUnwrap(Int32(String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        var gone = false
        for _ in 0..<200 {
            let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8)
            if stat == nil || stat!.contains(") Z ") { gone = true; break }
            usleep(100_000)
        }
        XCTAssertTrue(gone, "the evaluator's sleep (pid \(child)) is still running")
        // The candidate folders written for the evaluator (a link to each ingredient, the uniform soup) went too.
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("basin-soup-") }
        XCTAssertEqual(left, [], "candidate folders left behind")
    }

    func testSIGINTDuringAShardedMergeRemovesTheFolderItMade() throws {
        // Two 2 x 16 MB models, merged into 4 MB shards in a new folder.
        for name in ["big-a.safetensors", "big-b.safetensors"] {
            try SafeTensorsWriter.write((0..<8).map { ("w\($0)", Tensor(shape: [1024, 1024], repeating: Float($0))) },
                                        to: dir.appendingPathComponent(name))
        }
        let recipe = path("r.yaml")
        try "merge_method: linear\nmodels:\n  - {model: big-a.safetensors, parameters: {weight: 1}}\n  - {model: big-b.safetensors, parameters: {weight: 1}}\n".write(toFile: recipe, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("merged")
        for _ in 1...3 {
            let (status, caught) = try interrupt(["merge", recipe, "--out", out.path, "--shard-size", "4MB"], signal: SIGINT) {
                !self.temporaryFiles(in: out).isEmpty
            }
            if !caught {
                try? FileManager.default.removeItem(at: out)
                continue
            }
            XCTAssertEqual(status, SIGINT)
            if FileManager.default.fileExists(atPath: out.path) {
                // Only a merge that finished just before the signal may stay, and then it is complete.
                XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors.index.json").path))
                XCTAssertEqual(temporaryFiles(in: out), [])
            }
            return
        }
        XCTFail("never caught the merge in progress")
    }

    func testAFileSizeLimitGivesAClearErrorAndLeavesNothing() throws {
        let basin = BasinBinary.url!.path
        let out = path("m.safetensors")
        let r = try BasinBinary.runProcess(URL(fileURLWithPath: "/bin/bash"),
                                           ["-c", "ulimit -f 20; exec \"$0\" \"$@\"", basin, "train", "--data", data.path, "--sizes", "64,128,128,10",
                                            "--epochs", "1", "--quiet", "--out", out])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("\(out): cannot be written: the file-size limit was reached"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertEqual(temporaryFiles(in: dir), [])
    }

    func testSplitIsAllOrNothing() throws {
        // The head (1 row) fits under the limit, the tail does not: neither may be left.
        let basin = BasinBinary.url!.path
        let head = path("head.safetensors"), tail = path("tail.safetensors")
        let r = try BasinBinary.runProcess(URL(fileURLWithPath: "/bin/bash"),
                                           ["-c", "ulimit -f 40; exec \"$0\" \"$@\"", basin, "split", data.path, "--at", "1", head, tail])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("file-size limit"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: head))
        XCTAssertFalse(FileManager.default.fileExists(atPath: tail))
        XCTAssertEqual(temporaryFiles(in: dir), [])
        let ok = try BasinBinary.run(["split", data.path, "--at", "1", head, tail])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertEqual(try Dataset(path: head).count + Dataset(path: tail).count, 497)
    }
}
