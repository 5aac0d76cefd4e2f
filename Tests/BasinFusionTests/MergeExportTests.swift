import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// An independent, minimal safetensors header reader (does not use SafeTensorsFile).
private func readHeader(_ url: URL) throws -> (header: [String: Any], dataStart: Int, bytes: Data) {
    let bytes = try Data(contentsOf: url)
    XCTAssertGreaterThanOrEqual(bytes.count, 8)
    var n: UInt64 = 0
    for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
    let json = bytes.subdata(in: 8..<(8 + Int(n)))
    let header = try JSONSerialization.jsonObject(with: json) as! [String: Any]
    return (header, 8 + Int(n), bytes)
}

final class MergeExportTests: XCTestCase {
    func pairRecipe(_ dir: URL, method: String = "linear", extra: String = "") throws -> URL {
        let recipe = dir.appendingPathComponent("recipe.yaml")
        // Paths relative to the recipe file.
        let rel = "../" + dir.lastPathComponent  // unused; absolute paths keep the fixture where it is
        _ = rel
        let text = """
        merge_method: \(method)
        models:
          - model: \(Fixtures.mlpSeed0.path)
            parameters: {weight: 0.5}
          - model: \(Fixtures.mlpSeed1.path)
            parameters: {weight: 0.5}
        \(extra)
        """
        try text.write(to: recipe, atomically: true, encoding: .utf8)
        return recipe
    }

    /// Done-when: the 50/50 linear merge of the mlp-pair evaluates to expected.json's linear_test at t = 0.5.
    func testFiftyFiftyLinearMergeMatchesReference() throws {
        let expected = try Fixtures.json("mlp-pair/expected.json") as! [String: Any]
        let point = (expected["linear_test"] as! [[String: Double]]).first { abs($0["t"]! - 0.5) < 1e-9 }!
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let recipe = try MergeRecipe.load(try pairRecipe(dir))
        let out = dir.appendingPathComponent("merged.safetensors")
        let report = try MergeExecutor.run(try MergePlan(recipe: recipe), out: out)
        XCTAssertEqual(report.outputFiles, [out.path])
        let test = try Dataset(url: Fixtures.digitsTest)
        let merged = try LoadedModel(path: out.path)
        let m = try merged.evaluate(on: test)
        XCTAssertEqual(m.loss, point["loss"]!, accuracy: 1e-4)
        XCTAssertEqual(m.accuracy, point["accuracy"]!, accuracy: 1e-4)

        // The in-memory merge (what the explorer calls) gives the same parameters.
        let a = try LoadedModel(path: Fixtures.mlpSeed0.path), b = try LoadedModel(path: Fixtures.mlpSeed1.path)
        let mem = try ParameterMerge.weightedAverage([a.params, b.params], lambdas: [1, 1])
        for name in mem.names { XCTAssertEqual(mem[name]!.maxAbsDifference(merged.params[name]!), 0, accuracy: 1e-6) }
        let mm = a.network.evaluate(mem, on: test)
        XCTAssertEqual(mm.loss, point["loss"]!, accuracy: 1e-4)
    }

    /// Export keeps names, shapes and dtypes and records the recipe and inputs' SHA-256, checked with an independent parser.
    func testExportHeaderIndependentlyParsed() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bf16 = Fixtures.url("mlp-pair/mlp-seed0-bf16.safetensors")
        let recipeURL = dir.appendingPathComponent("r.yaml")
        try """
        merge_method: slerp
        base_model: \(bf16.path)
        models:
          - model: \(Fixtures.mlpSeed1.path)
        parameters:
          t: [{filter: "layers.0", value: 0.2}, {value: 0.5}]
        """.write(to: recipeURL, atomically: true, encoding: .utf8)
        let recipe = try MergeRecipe.load(recipeURL)
        let out = dir.appendingPathComponent("slerp.safetensors")
        _ = try MergeExecutor.run(try MergePlan(recipe: recipe), out: out)

        let (header, dataStart, bytes) = try readHeader(out)
        let (inputHeader, _, _) = try readHeader(bf16)
        let tensorNames = Set(header.keys).subtracting(["__metadata__"])
        XCTAssertEqual(tensorNames, Set(inputHeader.keys).subtracting(["__metadata__"]))
        var end = 0
        for name in tensorNames {
            let e = header[name] as! [String: Any], i = inputHeader[name] as! [String: Any]
            XCTAssertEqual(e["dtype"] as? String, "BF16", name)  // the base's dtype
            XCTAssertEqual(e["shape"] as! [Int], i["shape"] as! [Int], name)
            let off = e["data_offsets"] as! [Int]
            let shape = e["shape"] as! [Int]
            XCTAssertEqual(off[1] - off[0], shape.reduce(1, *) * 2)
            end = max(end, off[1])
        }
        XCTAssertEqual(dataStart + end, bytes.count)
        let meta = header["__metadata__"] as! [String: String]
        XCTAssertEqual(meta["format"], "pt")
        XCTAssertTrue(meta["basin.recipe"]!.contains("merge_method: slerp"))
        let digests = try JSONSerialization.jsonObject(with: Data(meta["basin.inputs_sha256"]!.utf8)) as! [String: String]
        XCTAssertEqual(digests[bf16.path], try FileDigest.sha256(bf16))
        XCTAssertEqual(digests[Fixtures.mlpSeed1.path], try FileDigest.sha256(Fixtures.mlpSeed1))
        // The recorded recipe parses back to the same method and filters.
        let again = try MergeRecipe.parse(meta["basin.recipe"]!, directory: dir)
        XCTAssertEqual(again.method, .slerp)
        XCTAssertEqual(again.tensorParameters(for: "layers.0.weight").t, 0.2)
        XCTAssertEqual(again.tensorParameters(for: "layers.1.weight").t, 0.5)
    }

    func testRecipeDTypeAndShardedOutput() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var recipe = try MergeRecipe.load(try pairRecipe(dir))
        recipe.dtype = .f16
        let outDir = dir.appendingPathComponent("sharded")
        let report = try MergeExecutor.run(try MergePlan(recipe: recipe), out: outDir, shardSize: 20_000)
        XCTAssertGreaterThan(report.outputFiles.count, 2)
        XCTAssertTrue(report.outputFiles.last!.hasSuffix("model.safetensors.index.json"))
        let single = dir.appendingPathComponent("single.safetensors")
        _ = try MergeExecutor.run(try MergePlan(recipe: recipe), out: single)
        let a = try ModelFile.open(outDir), b = try ModelFile.open(single)
        XCTAssertEqual(a.names.sorted(), b.names.sorted())
        for n in a.names {
            XCTAssertEqual(a.info(n)!.dtype, .f16)
            XCTAssertEqual(try a.tensor(n), try b.tensor(n))
        }
        // A sharded input is read through its index: merging it with its single-file twin gives the same tensors.
        let twin = MergeRecipe(method: .linear, models: [.init(model: outDir.path, parameters: ["weight": .scalar(1)]),
                                                         .init(model: single.path, parameters: ["weight": .scalar(1)])])
        let twinOut = dir.appendingPathComponent("twin.safetensors")
        _ = try MergeExecutor.run(try MergePlan(recipe: twin), out: twinOut)
        let t = try ModelFile.open(twinOut)
        for n in t.names { XCTAssertEqual(try t.tensor(n), try b.tensor(n)) }
        // A large file output is split beside it with an index.
        let big = dir.appendingPathComponent("big.safetensors")
        let r2 = try MergeExecutor.run(try MergePlan(recipe: recipe), out: big, shardSize: 20_000)
        XCTAssertTrue(r2.outputFiles.last!.hasSuffix("big.safetensors.index.json"))
        XCTAssertTrue(r2.outputFiles.first!.hasSuffix("big-00001-of-0000\(r2.outputFiles.count - 1).safetensors"))
    }

    func testNeverOverwritesAnInputAndLeavesNothingOnFailure() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let copy = dir.appendingPathComponent("a.safetensors")
        try FileManager.default.copyItem(at: Fixtures.mlpSeed0, to: copy)
        let before = try FileDigest.sha256(copy)
        let recipe = MergeRecipe(method: .linear, models: [.init(model: copy.path, parameters: ["weight": .scalar(1)]),
                                                           .init(model: Fixtures.mlpSeed1.path, parameters: ["weight": .scalar(1)])])
        XCTAssertThrowsError(try MergeExecutor.run(try MergePlan(recipe: recipe), out: copy))
        XCTAssertEqual(try FileDigest.sha256(copy), before)
        // A shape mismatch is reported with file and tensor before anything is written.
        let other = dir.appendingPathComponent("other.safetensors")
        try SafeTensorsWriter.write([("layers.0.weight", Tensor.zeros([2, 2]))], to: other)
        let bad = MergeRecipe(method: .linear, models: [.init(model: copy.path, parameters: ["weight": .scalar(1)]),
                                                        .init(model: other.path, parameters: ["weight": .scalar(1)])])
        XCTAssertThrowsError(try MergePlan(recipe: bad)) { error in
            XCTAssertTrue("\(error)".contains("other.safetensors"), "\(error)")
        }
        // A failing merge (slerp with three models) leaves no temporary or partial files.
        let three = MergeRecipe(method: .slerp, models: [.init(model: copy.path), .init(model: Fixtures.mlpSeed1.path), .init(model: copy.path)])
        XCTAssertThrowsError(try MergePlan(recipe: three))
        let entries = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertEqual(entries, ["a.safetensors", "other.safetensors"])
    }
}

/// A source that fails when asked for one tensor, to check a merge failing midway leaves nothing behind.
private final class FailingSource: TensorSource, @unchecked Sendable {
    let inner: any TensorSource
    let failing: String
    init(_ inner: any TensorSource, failing: String) {
        self.inner = inner
        self.failing = failing
    }
    var displayPath: String { inner.displayPath }
    var names: [String] { inner.names }
    var metadata: [String: String] { inner.metadata }
    var files: [URL] { inner.files }
    func info(_ name: String) -> TensorInfo? { inner.info(name) }
    func tensor(_ name: String) throws -> Tensor {
        if name == failing { throw BasinIOError(.unreadable, file: displayPath, tensor: name, "simulated read failure") }
        return try inner.tensor(name)
    }
    func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        if name == failing { throw BasinIOError(.unreadable, file: displayPath, tensor: name, "simulated read failure") }
        return try inner.withRawBytes(name, body)
    }
    func release(_ name: String) { inner.release(name) }
}

final class MergeFailureTests: XCTestCase {
    func testFailureMidwayLeavesNoFiles() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try ModelFile.open(Fixtures.mlpSeed0)
        let b = FailingSource(try ModelFile.open(Fixtures.mlpSeed1), failing: a.names.last!)
        let recipe = MergeRecipe(method: .linear, models: [.init(model: "a", parameters: ["weight": .scalar(1)]),
                                                           .init(model: "b", parameters: ["weight": .scalar(1)])])
        let plan = try MergePlan(recipe: recipe, models: [a, b], base: nil)
        XCTAssertThrowsError(try MergeExecutor.run(plan, out: dir.appendingPathComponent("out"), shardSize: 20_000, hashInputs: false))
        XCTAssertThrowsError(try MergeExecutor.run(plan, out: dir.appendingPathComponent("one.safetensors"), hashInputs: false))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    func testIntegerTensorsAreCopied() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let x = dir.appendingPathComponent("x.safetensors"), y = dir.appendingPathComponent("y.safetensors")
        try SafeTensorsWriter.write([("w", Tensor(shape: [2], storage: [1, 3])), ("step", Tensor(shape: [1], storage: [7]))], to: x,
                                    dtype: { $0 == "step" ? .i64 : .bf16 })
        try SafeTensorsWriter.write([("w", Tensor(shape: [2], storage: [3, 5])), ("step", Tensor(shape: [1], storage: [9]))], to: y,
                                    dtype: { $0 == "step" ? .i64 : .bf16 })
        let out = dir.appendingPathComponent("m.safetensors")
        _ = try MergeExecutor.run(try MergePlan(recipe: MergeRecipe(method: .linear, models: [.init(model: x.path, parameters: ["weight": .scalar(1)]),
                                                                                                                  .init(model: y.path, parameters: ["weight": .scalar(1)])])), out: out)
        let m = try ModelFile.open(out)
        XCTAssertEqual(m.info("step")?.dtype, .i64)
        XCTAssertEqual(m.info("w")?.dtype, .bf16)
        XCTAssertEqual(try m.tensor("step").storage, [7])
        XCTAssertEqual(try m.tensor("w").storage, [2, 4])
    }
}
