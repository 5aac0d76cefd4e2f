import BasinIO
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// The signal handlers, exercised in a child process (this test binary re-run on one test, with an
/// environment variable saying what the child does), since they end the process.
final class SignalTests: XCTestCase {
    static let childKey = "BASIN_SIGNAL_TEST_CHILD"
    static let dirKey = "BASIN_SIGNAL_TEST_DIR"

    /// Runs `test` of this class in a child process with `mode`.
    private func child(_ test: String, mode: String, dir: URL) throws -> BasinBinary.Result {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0])
        guard FileManager.default.isExecutableFile(atPath: executable.path), executable.path.hasSuffix(".xctest") else {
            throw XCTSkip("the test runner is not a re-runnable .xctest executable (\(executable.path))")
        }
        return try BasinBinary.runProcess(executable, ["BasinIOTests.SignalTests/\(test)"],
                                          environment: [Self.childKey: mode, Self.dirKey: dir.path, "SWIFT_BACKTRACE": "enable=no"])
    }

    func testInputTruncatedWhileMappedGivesAClearMessageNotACrash() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try child("testChildReadsAFileThatShrinks", mode: "sigbus", dir: dir)
        let file = dir.appendingPathComponent("shrinks.safetensors").path
        XCTAssertEqual(r.status, 128 + SIGBUS, r.stderr)
        XCTAssertTrue(r.stderr.contains("Error: \(file): the file shrank while Basin was reading it"), r.stderr)
        XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Crash") || r.stderr.contains("Backtrace"), r.stderr)
        // The output being written at the time was removed.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".tmp") }, [])
    }

    func testTerminationSignalsRemoveTemporaryFilesAndExitWithTheSignal() throws {
        for (name, sig) in [("SIGINT", SIGINT), ("SIGTERM", SIGTERM), ("SIGHUP", SIGHUP)] {
            let dir = try Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            let r = try child("testChildIsInterruptedWhileWriting", mode: "\(sig)", dir: dir)
            // Killed by the signal itself: a shell reports 128 + signo.
            XCTAssertEqual(r.status, sig, "\(name): \(r.stderr)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "\(name) left files behind")
        }
    }

    func testFileSizeLimitGivesNoSpaceErrorAndLeavesNothing() throws {
        // In a child: the limit is process-wide and would also cut this runner's own log.
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try child("testChildWritesPastTheFileSizeLimit", mode: "efbig", dir: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("kinds: noSpace noSpace"), r.stdout)
        XCTAssertTrue(r.stdout.contains("file-size limit"), r.stdout)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    // MARK: Children (no-ops unless run as a child)

    func testChildWritesPastTheFileSizeLimit() throws {
        guard ProcessInfo.processInfo.environment[Self.childKey] == "efbig", let d = ProcessInfo.processInfo.environment[Self.dirKey] else { return }
        ProcessSignals.install()  // SIGXFSZ ignored, so the write fails with EFBIG instead of killing the process
        let dir = URL(fileURLWithPath: d)
        var old = rlimit()
        getrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
        var limit = old
        limit.rlim_cur = 4096
        var kinds: [String] = [], messages: [String] = []
        XCTAssertEqual(setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit), 0)
        do { try SafeTensorsWriter.write([("w", Tensor(shape: [4096], repeating: 1))], to: dir.appendingPathComponent("big.safetensors")) } catch let e as BasinIOError {
            kinds.append(e.kind.rawValue)
            messages.append(e.description)
        }
        do { try AtomicFile.write(Data(count: 10_000), to: dir.appendingPathComponent("big.json")) } catch let e as BasinIOError {
            kinds.append(e.kind.rawValue)
        }
        _ = setrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
        FileHandle.standardOutput.write(Data("kinds: \(kinds.joined(separator: " ")); \(messages.joined())\n".utf8))
        exit(0)
    }

    func testChildReadsAFileThatShrinks() throws {
        guard ProcessInfo.processInfo.environment[Self.childKey] == "sigbus", let d = ProcessInfo.processInfo.environment[Self.dirKey] else { return }
        ProcessSignals.install()
        let dir = URL(fileURLWithPath: d)
        let url = dir.appendingPathComponent("shrinks.safetensors")
        try SafeTensorsWriter.write([("w", Tensor(shape: [1 << 20], repeating: 1))], to: url)
        let file = try SafeTensorsFile(url: url)
        // An output in progress, which the handler must remove.
        let writer = try SafeTensorsWriter(url: dir.appendingPathComponent("out.safetensors"), plan: [TensorPlan(name: "w", dtype: .f32, shape: [1 << 20])])
        truncate(url.path, 4096)
        _ = try file.tensor("w")  // reads past the new end: SIGBUS
        _ = writer
        XCTFail("the read should not have returned")
    }

    func testChildIsInterruptedWhileWriting() throws {
        guard let mode = ProcessInfo.processInfo.environment[Self.childKey], let sig = Int32(mode),
              let d = ProcessInfo.processInfo.environment[Self.dirKey] else { return }
        ProcessSignals.install()
        let dir = URL(fileURLWithPath: d)
        let writer = try CheckpointLikeWrite(dir: dir)
        raise(sig)
        _ = writer
        XCTFail("the signal should have ended the process")
    }
}

/// What a sharded write leaves on disk mid-way: a folder this run created and a temporary file inside it.
private struct CheckpointLikeWrite {
    let writer: SafeTensorsWriter
    let tokens: [CleanupRegistry.Token?]

    init(dir: URL) throws {
        let folder = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
        let folderToken = CleanupRegistry.register(directory: folder.path)
        writer = try SafeTensorsWriter(url: folder.appendingPathComponent("model-00001-of-00001.safetensors"),
                                       plan: [TensorPlan(name: "w", dtype: .f32, shape: [4])])
        try writer.write("w", Tensor(shape: [4], storage: [1, 2, 3, 4]))
        tokens = [folderToken]
    }
}
