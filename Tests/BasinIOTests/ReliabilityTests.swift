import BasinIO
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// docs/reliability.md, library side: the output rule, file-type checks, shard paths, empty data,
/// non-finite values, full disks and the cleanup registry. Each test matches on the error's kind.
final class ReliabilityTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func url(_ name: String) -> URL { dir.appendingPathComponent(name) }

    private func kind(_ body: () throws -> Void) -> BasinIOError.Kind? {
        do { try body() } catch let e as BasinIOError { return e.kind } catch { XCTFail("not a BasinIOError: \(error)") }
        return nil
    }

    private func smallModel(_ name: String) throws -> URL {
        let u = url(name)
        try SafeTensorsWriter.write([("w", Tensor(shape: [2, 2], storage: [1, 2, 3, 4]))], to: u)
        return u
    }

    // MARK: The output rule

    func testOutputThatIsAnInputIsRefusedByPathSymlinkHardLinkAndDotDot() throws {
        let input = try smallModel("in.safetensors")
        XCTAssertEqual(kind { try OutputGuard.check(output: input, inputs: [input]) }, .wouldOverwriteInput)
        let link = url("link.safetensors")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: input)
        XCTAssertEqual(kind { try OutputGuard.check(output: link, inputs: [input]) }, .wouldOverwriteInput)
        XCTAssertEqual(kind { try OutputGuard.check(output: input, inputs: [link]) }, .wouldOverwriteInput)
        let hard = url("hard.safetensors")
        try FileManager.default.linkItem(at: input, to: hard)
        XCTAssertEqual(kind { try OutputGuard.check(output: hard, inputs: [input]) }, .wouldOverwriteInput)
        try FileManager.default.createDirectory(at: url("sub"), withIntermediateDirectories: true)
        let dotdot = URL(fileURLWithPath: dir.path + "/sub/../in.safetensors")
        XCTAssertEqual(kind { try OutputGuard.check(output: dotdot, inputs: [input]) }, .wouldOverwriteInput)
        // A different file is fine, whether it exists or not.
        XCTAssertNoThrow(try OutputGuard.check(output: url("other.safetensors"), inputs: [input, link]))
        // And the writer applies the rule before creating anything.
        XCTAssertEqual(kind { _ = try SafeTensorsWriter(url: hard, plan: [], protecting: [input]) }, .wouldOverwriteInput)
        XCTAssertEqual(try SafeTensorsFile(url: input).names, ["w"])
    }

    func testFolderInputCountsItsFiles() throws {
        let folder = url("model")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let inside = try smallModel("model/model.safetensors")
        XCTAssertEqual(kind { try OutputGuard.check(output: inside, inputs: [folder]) }, .wouldOverwriteInput)
    }

    /// A model folder with config.json but PyTorch pickles instead of safetensors: the error names what is there
    /// and how to convert it (it said "a folder with 0 index files and 0 safetensors files").
    func testAModelFolderWithOnlyPicklesSaysSo() throws {
        let folder = url("pickled")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data("{\"model_type\": \"llama\"}".utf8).write(to: folder.appendingPathComponent("config.json"))
        try Data().write(to: folder.appendingPathComponent("pytorch_model.bin"))
        XCTAssertThrowsError(try ModelFile.open(folder)) { e in
            XCTAssertEqual((e as? BasinIOError)?.kind, .unreadable)
            XCTAssertTrue("\(e)".contains("pytorch_model.bin") && "\(e)".contains("convert"), "\(e)")
        }
    }

    func testCheckpointOutputRefusesToReplaceAnInputShardOrIndex() throws {
        let folder = url("sharded")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let shard = try smallModel("sharded/model-00001-of-00002.safetensors")
        let index = folder.appendingPathComponent("model.safetensors.index.json")
        try Data("{}".utf8).write(to: index)
        // --out FOLDER over a folder whose shards are inputs.
        XCTAssertEqual(kind { try OutputGuard.check(outputs: [.checkpoint(folder)], inputs: [shard]) }, .wouldOverwriteInput)
        XCTAssertEqual(kind { try OutputGuard.check(outputs: [.checkpoint(folder)], inputs: [index]) }, .wouldOverwriteInput)
        // --out FILE.safetensors whose split form would replace an input shard beside it.
        let split = try smallModel("big-00002-of-00003.safetensors")
        XCTAssertEqual(kind { try OutputGuard.check(outputs: [.checkpoint(self.url("big.safetensors"))], inputs: [split]) }, .wouldOverwriteInput)
        // An existing shard hard-linked to an input elsewhere.
        let elsewhere = try smallModel("elsewhere.safetensors")
        try FileManager.default.removeItem(at: shard)
        try FileManager.default.linkItem(at: elsewhere, to: shard)
        XCTAssertEqual(kind { try OutputGuard.check(outputs: [.checkpoint(folder)], inputs: [elsewhere]) }, .wouldOverwriteInput)
        // A folder output holding an input the merge would not replace (the recipe beside the models): refused,
        // and the message says why (the folder may hold no input), not that the recipe would be replaced.
        let recipe = folder.appendingPathComponent("recipe.yml")
        try Data("merge_method: linear\n".utf8).write(to: recipe)
        XCTAssertThrowsError(try OutputGuard.check(outputs: [.checkpoint(folder)], inputs: [recipe])) { e in
            XCTAssertEqual((e as? BasinIOError)?.kind, .wouldOverwriteInput)
            XCTAssertTrue("\(e)".contains("refusing to write here: the folder holds") && !"\(e)".contains("would replace"), "\(e)")
        }
        // Unrelated inputs are fine; a regular file is no folder for a sharded output.
        XCTAssertNoThrow(try OutputGuard.check(outputs: [.checkpoint(self.url("fresh"))], inputs: [elsewhere]))
        XCTAssertEqual(kind { try OutputGuard.check(outputs: [.checkpoint(elsewhere.deletingPathExtension())], inputs: []) }, nil)
        try Data().write(to: url("plainfile"))
        XCTAssertEqual(kind { try OutputGuard.check(outputs: [.checkpoint(self.url("plainfile"))], inputs: []) }, .notRegularFile)
    }

    func testTwoOutputsThatAreOneFileCollide() throws {
        let a = url("a.safetensors")
        XCTAssertEqual(kind { try OutputGuard.check(outputs: [.file(a), .file(URL(fileURLWithPath: self.dir.path + "/./a.safetensors"))], inputs: []) }, .outputsCollide)
        XCTAssertEqual(kind { try OutputGuard.check(outputs: [.checkpoint(self.url("m")), .file(self.url("m/model.safetensors.index.json"))], inputs: []) },
                       .outputsCollide)
    }

    func testOutputsThatAreNotRegularFilesAreRefused() throws {
        XCTAssertEqual(kind { try OutputGuard.check(output: URL(fileURLWithPath: "/dev/null"), inputs: []) }, .notRegularFile)
        XCTAssertEqual(kind { try OutputGuard.check(output: self.dir, inputs: []) }, .notRegularFile)
        let fifo = url("fifo")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        XCTAssertEqual(kind { try OutputGuard.check(output: fifo, inputs: []) }, .notRegularFile)
    }

    // MARK: Only regular files are read

    func testFIFODeviceSocketFolderAndSymlinkLoopAreRefusedByNameWithoutBlocking() throws {
        let fifo = url("pipe.safetensors")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        // Opening a FIFO for reading would block until a writer appears; these all return at once.
        XCTAssertEqual(kind { _ = try SafeTensorsFile(url: fifo) }, .notRegularFile)
        XCTAssertEqual(kind { _ = try Dataset(url: fifo) }, .notRegularFile)
        XCTAssertEqual(kind { _ = try ModelFile.open(fifo) }, .notRegularFile)
        XCTAssertEqual(kind { _ = try FileDigest.sha256(fifo) }, .notRegularFile)
        XCTAssertEqual(kind { _ = try FileCheck.read(fifo) }, .notRegularFile)
        XCTAssertEqual(kind { _ = try SafeTensorsFile(url: URL(fileURLWithPath: "/dev/zero")) }, .notRegularFile)
        XCTAssertEqual(kind { _ = try SafeTensorsFile(url: self.dir) }, .notRegularFile)
        let socketPath = url("sock").path
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in socketPath.utf8.enumerated() where i < p.count - 1 { p[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(kind { _ = try SafeTensorsFile(url: URL(fileURLWithPath: socketPath)) }, .notRegularFile)
        let a = url("a"), b = url("b")
        try FileManager.default.createSymbolicLink(atPath: a.path, withDestinationPath: b.path)
        try FileManager.default.createSymbolicLink(atPath: b.path, withDestinationPath: a.path)
        XCTAssertEqual(kind { _ = try SafeTensorsFile(url: a) }, .symlinkLoop)
        XCTAssertEqual(kind { _ = try ModelFile.open(a) }, .symlinkLoop)
        do {
            _ = try SafeTensorsFile(url: fifo)
        } catch {
            XCTAssertTrue("\(error)".contains(fifo.path) && "\(error)".contains("FIFO"), "\(error)")
        }
    }

    func testSmallFilesHaveACap() throws {
        let big = url("big.json")
        try Data(count: 2048).write(to: big)
        XCTAssertEqual(kind { _ = try FileCheck.read(big, limit: 1024) }, .fileTooLarge)
        XCTAssertEqual(try FileCheck.read(big, limit: 4096).count, 2048)
    }

    // MARK: Shards stay inside the index's folder

    func testShardPathsMustStayInsideTheIndexFolder() throws {
        // Combining marks after a slash: Swift's Character-wise split and hasPrefix did not see those slashes, while
        // the file system does ("../\u{301}x" resolved to "/\u{301}x", outside the folder).
        for shard in ["../outside.safetensors", "/etc/passwd", "a/../../x.safetensors", "", ".", "sub//x.safetensors",
                      "../\u{301}x.safetensors", "/\u{301}etc/passwd", "a/../\u{348}../x", "x\0\u{301}y.safetensors"] {
            let json = try JSONSerialization.data(withJSONObject: ["weight_map": ["w": shard]])
            XCTAssertEqual(kind { _ = try ShardedCheckpoint.parseIndex(json, file: "index.json") }, .shardOutsideFolder, shard)
        }
        _ = try smallModel("outside.safetensors")
        try FileManager.default.createDirectory(at: url("idx"), withIntermediateDirectories: true)
        let index = url("idx/model.safetensors.index.json")
        try JSONSerialization.data(withJSONObject: ["weight_map": ["w": "../outside.safetensors"]]).write(to: index)
        XCTAssertEqual(kind { _ = try ShardedCheckpoint(indexURL: index) }, .shardOutsideFolder)
        // A subfolder inside is fine.
        let ok = try JSONSerialization.data(withJSONObject: ["weight_map": ["w": "shards/part1.safetensors"]])
        XCTAssertEqual(try ShardedCheckpoint.parseIndex(ok, file: "i").weightMap["w"], "shards/part1.safetensors")
        // A name that merely starts with a combining mark is a file inside the folder (the fuzzer's input).
        let mark = try JSONSerialization.data(withJSONObject: ["weight_map": ["b": "\u{348}d"]])
        XCTAssertEqual(try ShardedCheckpoint.parseIndex(mark, file: "i").weightMap["b"], "\u{348}d")
    }

    // MARK: Data

    func testEmptyDataSetIsAnError() throws {
        let u = url("empty.safetensors")
        try SafeTensorsWriter.write([("x", Tensor(shape: [0, 4], storage: [])), ("y", Tensor(shape: [0], storage: []))], to: u,
                                    dtype: { $0 == "y" ? .i64 : .f32 })
        XCTAssertEqual(kind { _ = try Dataset(url: u) }, .emptyDataset)
        let nofeatures = url("nofeatures.safetensors")
        try SafeTensorsWriter.write([("x", Tensor(shape: [2, 0], storage: [])), ("y", Tensor(shape: [2], storage: [0, 1]))], to: nofeatures,
                                    dtype: { $0 == "y" ? .i64 : .f32 })
        XCTAssertEqual(kind { _ = try Dataset(url: nofeatures) }, .badDataset)
    }

    // MARK: Non-finite values

    func testNonFiniteCountsInEveryFloatDType() throws {
        let values: [Float] = [1, .nan, .infinity, -.infinity, 0, -2]
        for dtype in [DType.f32, .f16, .bf16, .f64] {
            var bytes = [UInt8](repeating: 0, count: values.count * dtype.byteSize)
            values.withUnsafeBufferPointer { src in
                bytes.withUnsafeMutableBytes { DTypeConversion.encode(src.baseAddress!, count: values.count, as: dtype, into: $0.baseAddress!) }
            }
            XCTAssertEqual(bytes.withUnsafeBytes { NonFinite.count($0, dtype: dtype) }, 3, dtype.rawValue)
        }
        XCTAssertEqual(NonFinite.count(Tensor(shape: [6], storage: values)), 3)
        // 1e308 does not fit F32: it becomes +Inf, which is what the writer must catch.
        XCTAssertEqual(NonFinite.count(Tensor(shape: [1], storage: [Float(1e308)])), 1)
    }

    func testWriterRefusesNonFiniteWeightsUnlessAllowed() throws {
        let out = url("nan.safetensors")
        let t = Tensor(shape: [3], storage: [1, .nan, 2])
        XCTAssertEqual(kind { try SafeTensorsWriter.write([("w", t)], to: out, dtype: { _ in .bf16 }) }, .nonFiniteValues)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "no temporary file left")
        do {
            try SafeTensorsWriter.write([("w", t)], to: out)
        } catch {
            XCTAssertTrue("\(error)".contains("'w'") && "\(error)".contains("1 NaN or infinite value"), "\(error)")
        }
        WritePolicy.allowNonFinite = true
        defer { WritePolicy.allowNonFinite = false }
        try SafeTensorsWriter.write([("w", t)], to: out)
        let found = try NonFinite.scan(SafeTensorsFile(url: out))
        XCTAssertEqual(found, [NonFinite.Finding(tensor: "w", count: 1, elements: 3)])
        XCTAssertEqual(NonFinite.warning(file: "m.safetensors", found[0]), "warning: m.safetensors: tensor 'w' has 1 NaN or infinite value (of 3)")
    }

    // MARK: Full disks, size limits, signals

    func testWritersRegisterTheirTemporaryFilesUntilFinished() throws {
        let out = url("m.safetensors")
        let writer = try SafeTensorsWriter(url: out, plan: [TensorPlan(name: "w", dtype: .f32, shape: [2])])
        let registered = CleanupRegistry.registeredPaths.filter { $0.hasPrefix(dir.path) }
        XCTAssertEqual(registered.count, 1)
        XCTAssertTrue(registered[0].hasSuffix(".tmp") && FileManager.default.fileExists(atPath: registered[0]), "\(registered)")
        try writer.write("w", Tensor(shape: [2], storage: [1, 2]))
        try writer.finish()
        XCTAssertEqual(CleanupRegistry.registeredPaths.filter { $0.hasPrefix(dir.path) }, [])
        // Dropped unfinished: the temporary file goes and so does its registration.
        do { _ = try SafeTensorsWriter(url: url("n.safetensors"), plan: [TensorPlan(name: "w", dtype: .f32, shape: [2])]) }
        XCTAssertEqual(CleanupRegistry.registeredPaths.filter { $0.hasPrefix(dir.path) }, [])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["m.safetensors"])
    }

    func testGroupFinishWritesAllOrNothing() throws {
        let data = Dataset(x: Tensor(shape: [4, 2], storage: [1, 2, 3, 4, 5, 6, 7, 8]), y: [0, 1, 0, 1])
        let head = url("head.safetensors"), tail = url("missing-folder/tail.safetensors")
        let w1 = try data.slice(0..<2).writer(to: head)
        XCTAssertThrowsError(try data.slice(2..<4).writer(to: tail))
        // The second file failed, so the first (written, not yet finished) is not in place either.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasSuffix(".tmp") }, [])
        let w2 = try data.slice(2..<4).writer(to: url("tail.safetensors"))
        try SafeTensorsWriter.finish([w1, w2])
        XCTAssertEqual(try Dataset(url: head).count, 2)
        XCTAssertEqual(try Dataset(url: url("tail.safetensors")).y, [0, 1])
    }

    // MARK: Memory

    func testMemoryBudgetRefusesMoreThanTheMachineHas() throws {
        guard let total = MemoryBudget.totalBytes else { throw XCTSkip("no /proc/meminfo") }
        XCTAssertGreaterThan(total, 1 << 20)
        XCTAssertNoThrow(try MemoryBudget.check(1 << 20, for: "a little"))
        XCTAssertEqual(kind { try MemoryBudget.check(total + 1, for: "--sizes 1,2") }, .insufficientMemory)
        XCTAssertEqual(MemoryBudget.product(Int.max, 2), Int.max, "saturates instead of trapping")
        XCTAssertEqual(MemoryBudget.sum([Int.max, 1]), Int.max)
    }
}
