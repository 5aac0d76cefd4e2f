import BasinFusion
import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// docs/reliability.md, cases 76-79: an external evaluator is the user's own program, run without trusting it.
/// A hung one is stopped (its whole process group) at the timeout, an endless standard output is cut at a
/// limit, and standard error keeps its tail. No test here measures time: each checks only that a 1 s limit
/// ends a 30 s sleep well before the sleep would.
final class ExternalEvaluatorTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func script(_ name: String, _ body: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try ("#!/bin/sh\n" + body + "\n").write(to: url, atomically: true, encoding: .utf8)
        return "sh '\(url.path)'"
    }

    /// Whether a process is gone (or a zombie waiting for init to reap it), waiting up to 20 s for it to go.
    private func isGone(_ pid: Int32) -> Bool {
        for _ in 0..<200 {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
            if let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] == "Z" { return true }
            usleep(100_000)
        }
        return false
    }

    private func expectFailure(_ evaluator: ExternalEvaluator, mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try evaluator.evaluate(dir), file: file, line: line) { error in
            guard let e = error as? MergeError else { return XCTFail("not a MergeError: \(error)", file: file, line: line) }
            XCTAssertEqual(e.kind, .evaluatorFailed, "\(e)", file: file, line: line)
            for m in mentions { XCTAssertTrue("\(e)".contains(m), "'\(m)' not in: \(e)", file: file, line: line) }
        }
    }

    func testAHungEvaluatorIsStoppedWithEverythingItStarted() throws {
        let pidFile = dir.appendingPathComponent("child.pid")
        // The script starts a child of its own (in the background, as a pipeline or a Python job would) and waits.
        let command = try script("slow.sh", "sleep 30 &\necho $! > '\(pidFile.path)'\nwait")
        let start = Date()
        expectFailure(ExternalEvaluator(command: command, timeout: 1), mentions: ["did not finish within 1 s", "--evaluate-timeout", "slow.sh"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 25, "the 30 s sleep was not waited for")
        let child = try XCTUnwrap(Int32(String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertTrue(isGone(child), "the evaluator's own child (sleep, pid \(child)) was stopped with it")
        XCTAssertTrue(CleanupRegistry.registeredPaths.isEmpty)
    }

    func testAnEvaluatorThatIgnoresSIGTERMIsKilled() throws {
        let command = try script("stubborn.sh", "trap '' TERM\nsleep 30")
        let start = Date()
        expectFailure(ExternalEvaluator(command: command, timeout: 1), mentions: ["did not finish within 1 s"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 25)
    }

    func testAnEndlessStandardOutputIsCutAtTheLimit() throws {
        // `yes` never ends: without a limit the read would grow until memory ran out (and the timeout is an hour).
        expectFailure(ExternalEvaluator(command: "yes", timeout: nil), mentions: ["printed more than 4 MiB", "one JSON object"])
        let r = try ChildProcess.run(shell: "yes", timeout: nil, outputLimit: 1 << 16)
        XCTAssertEqual(r.ending, .outputTooLarge(limit: 1 << 16))
        XCTAssertLessThanOrEqual(r.standardOutput.count, 1 << 16)
    }

    func testStandardErrorKeepsItsTailAndTheStatusIsReported() throws {
        // 200,000 lines on standard error, then the line that explains the failure, then exit 3.
        let command = try script("noisy.sh", "i=0\nyes noise | head -n 200000 >&2\necho 'Traceback: the real reason' >&2\nexit 3")
        let r = try ChildProcess.run(shell: command, timeout: 60, errorLimit: 4096)
        XCTAssertEqual(r.ending, .exited(3))
        XCTAssertTrue(r.standardErrorTruncated)
        XCTAssertLessThanOrEqual(r.standardError.count, 4096)
        XCTAssertTrue(String(decoding: r.standardError, as: UTF8.self).hasSuffix("Traceback: the real reason\n"))
        expectFailure(ExternalEvaluator(command: command, timeout: 60), mentions: ["exited with status 3", "the real reason"])
    }

    func testAWellBehavedEvaluatorGivesItsMetricsAndSeesTheCandidate() throws {
        let command = try script("ok.sh", #"test -d "$1" || exit 9"# + "\n" + #"echo '{"acc": 0.75, "task": {"loss": 1.5}}'"#)
        let metrics = try ExternalEvaluator(command: command, timeout: 60).evaluate(dir)
        XCTAssertEqual(metrics, ["acc": 0.75, "task.loss": 1.5])
        // The shell itself killed (the candidate's path after `#` is a comment).
        expectFailure(ExternalEvaluator(command: "kill -KILL $$ #"), mentions: ["killed by signal 9"])
        expectFailure(ExternalEvaluator(command: "exit 4 #"), mentions: ["exited with status 4"])
    }
}
