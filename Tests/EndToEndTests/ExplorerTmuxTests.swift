import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// Drives the real `basin` binary in tmux as a user would: open the sample session, scrub, switch the path
/// type, run a short fit, match, export a file, quit; checks the screen and the exported file.
final class ExplorerTmuxTests: XCTestCase {
    var tmux: URL!
    var socket = "basin-e2e-\(UUID().uuidString.prefix(8))"
    var session = "explore"
    var dir: URL!

    override func setUpWithError() throws {
        guard let t = ["/usr/bin/tmux", "/usr/local/bin/tmux", "/opt/homebrew/bin/tmux"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("tmux is not installed (.ci/run installs it)")
        }
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        tmux = URL(fileURLWithPath: t)
        dir = try Fixtures.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        if tmux != nil { _ = try? run(["kill-server"]) }
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    @discardableResult
    func run(_ args: [String]) throws -> BasinBinary.Result {
        try BasinBinary.runProcess(tmux, ["-L", socket] + args)
    }

    /// Starts the tmux server with the session, through posix_spawn + waitpid: Foundation's Process waits
    /// for a descriptor every descendant inherits, and the tmux server daemon keeps it open forever.
    func start(width: Int, height: Int, _ command: String) throws {
        let args = [tmux.path, "-L", socket, "new-session", "-d", "-x", "\(width)", "-y", "\(height)", "-s", session, command]
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, tmux.path, &actions, nil, &argv, environ)
        guard rc == 0 else { throw XCTSkip("posix_spawn tmux failed: \(rc)") }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        // The server is up; later tmux commands are short-lived clients.
        _ = try run(["set-option", "-t", session, "remain-on-exit", "off"])
    }

    func screen() throws -> String { try run(["capture-pane", "-p", "-t", session]).stdout }

    func keys(_ k: String...) throws { try run(["send-keys", "-t", session] + k) }

    /// Polls the screen until `text` appears (or fails after `timeout` seconds, printing the screen).
    @discardableResult
    func waitFor(_ text: String, timeout: Double = 30, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var last = ""
        while Date() < deadline {
            last = (try? screen()) ?? ""
            if last.contains(text) { return last }
            usleep(100_000)
        }
        XCTFail("'\(text)' did not appear within \(timeout)s; screen:\n\(last)", file: file, line: line)
        throw XCTSkip("stopping after a failed wait")
    }

    /// Starts `basin ARGS` in the session from the test's folder, UTF-8, standard error to stderr.txt and the exit
    /// status to status.txt (read by `quitAndWait`).
    func startBasin(_ args: String, width: Int, height: Int, environment: String = "") throws {
        let basin = BasinBinary.url!.path
        try start(width: width, height: height, "cd '\(dir.path)' && \(environment)LANG=C.UTF-8 LC_ALL=C.UTF-8 '\(basin)' \(args) 2>'\(dir.path)/stderr.txt'; echo exited $? >'\(dir.path)/status.txt'")
    }

    /// Presses q and waits (polling, up to `timeout` seconds: a loaded machine took over 20 s) for the process
    /// to end; checks it exited with 0 and, with `quietStderr`, wrote nothing to standard error.
    func quitAndWait(timeout: Double = 60, quietStderr: Bool = true, file: StaticString = #filePath, line: UInt = #line) throws {
        try keys("q")
        let statusFile = dir.appendingPathComponent("status.txt")
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline, !FileManager.default.fileExists(atPath: statusFile.path) { usleep(100_000) }
        let stderr = (try? String(contentsOf: dir.appendingPathComponent("stderr.txt"), encoding: .utf8)) ?? ""
        let status = try String(contentsOf: statusFile, encoding: .utf8)
        XCTAssertEqual(status.trimmingCharacters(in: .whitespacesAndNewlines), "exited 0", stderr, file: file, line: line)
        if quietStderr { XCTAssertEqual(stderr, "", file: file, line: line) }
    }

    func testExploreScrubFitMatchExportQuit() throws {
        try startBasin("--fit-epochs 2", width: 120, height: 40)

        // 1. Opens the sample session on the path view.
        var s = try waitFor("model at t")
        XCTAssertTrue(s.contains("mlp-seed0") && s.contains("mlp-seed1"), s)
        try waitFor("◆ barrier")

        // 2. Scrub right twice: t moves by 0.05 per key.
        try keys("l", "l")
        try waitFor("t = 0.600")
        try keys("Left")
        try waitFor("t = 0.550")

        // 3-4. A short Bezier fit in the background; its curve joins the list and is selected.
        try keys("f")
        s = try waitFor("Bezier fit done", timeout: 120)
        XCTAssertTrue(s.contains("2■ Bezier fit"), s)

        // 5. Weight matching: the aligned line joins the plot, the permutation view fills.
        try keys("m")
        try waitFor("◆ aligned", timeout: 60)
        try keys("v")
        s = try waitFor("mean sim after")
        XCTAssertTrue(s.contains("matches"), s)

        // 6. Export the model at the cursor from the path view.
        try keys("V")
        try waitFor("model at t")
        try keys("e")
        try waitFor("Export to:")
        for _ in 0..<40 { try keys("BSpace") }
        try keys("-l", "fused.safetensors")
        try keys("Enter")
        try waitFor("Exported")
        try keys("Enter")

        // 7. Quit: the process exits cleanly and the terminal is restored.
        try quitAndWait(timeout: 90, quietStderr: false)

        let out = dir.appendingPathComponent("fused.safetensors")
        let file = try ModelFile.open(out.path)
        XCTAssertEqual(Set(file.names), ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "layers.2.weight", "layers.2.bias"])
        let recipe = try String(contentsOf: dir.appendingPathComponent("fused.recipe.yaml"), encoding: .utf8)
        XCTAssertTrue(recipe.contains("merge_method: basin_path") && recipe.contains("t: 0.55") && recipe.contains("type: bezier"), recipe)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("fused.bends.safetensors").path))
    }

    /// docs/reliability.md: a termination signal restores the terminal first, then BasinIO's handler ends the
    /// process by the same signal (128 + 15 in the shell).
    func testSIGTERMRestoresTheTerminalAndEndsWithTheSignal() throws {
        let basin = BasinBinary.url!.path
        let d = dir.path
        try start(width: 100, height: 30, "cd '\(d)'; LANG=C.UTF-8 '\(basin)' </dev/tty 2>'\(d)/stderr.txt' & echo $! >'\(d)/pid.txt'; wait $!; echo exited $? >'\(d)/status.txt'; sleep 30")
        try waitFor("model at t")
        let pid = try XCTUnwrap(Int32(String(contentsOf: dir.appendingPathComponent("pid.txt"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertEqual(kill(pid, SIGTERM), 0)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !FileManager.default.fileExists(atPath: dir.appendingPathComponent("status.txt").path) { usleep(100_000) }
        let status = try String(contentsOf: dir.appendingPathComponent("status.txt"), encoding: .utf8)
        XCTAssertEqual(status.trimmingCharacters(in: .whitespacesAndNewlines), "exited 143")
        // The explorer's screen is gone: ncurses left the alternate screen before the process ended.
        let s = try screen()
        XCTAssertFalse(s.contains("model at t"), s)
    }

    func testTooSmallTerminalShowsAMessageAndQuits() throws {
        let basin = BasinBinary.url!.path
        try start(width: 60, height: 15, "'\(basin)'; sleep 5")
        try waitFor("Terminal too small")
        try run(["resize-window", "-t", session, "-x", "100", "-y", "30"])
        try waitFor("loss along the path")
        try keys("q")
    }

    /// Bug 3: started at one size, enlarged, quit: nothing of the UI may stay in the shell's screen (tmux pulled
    /// the alternate screen's rows back into it when the cursor sat on the last row).
    func testResizeThenQuitLeavesTheShellClean() throws {
        let basin = BasinBinary.url!.path
        for (from, to) in [((100, 30), (150, 45)), ((80, 24), (120, 40))] {
            socket = "basin-e2e-\(UUID().uuidString.prefix(8))"
            // A shell, as a user has: the explorer starts from its prompt and the prompt comes back after.
            try start(width: from.0, height: from.1, "env -i PATH=/usr/bin:/bin TERM=screen PS1='$ ' bash --norc --noprofile")
            try keys("-l", "cd '\(dir.path)' && LANG=C.UTF-8 LC_ALL=C.UTF-8 '\(basin)'; echo exited $?")
            try keys("Enter")
            try waitFor("◆ barrier")
            try run(["resize-window", "-t", session, "-x", "\(to.0)", "-y", "\(to.1)"])
            usleep(500_000)
            try keys("l")
            try waitFor("t = 0.550")
            try keys("q")
            let after = try waitFor("exited 0")
            for needle in ["loss along the path", "model at t", "barrier", "│", "┤"] {
                XCTAssertFalse(after.contains(needle), "\(from) -> \(to): '\(needle)' left in the shell:\n\(after)")
            }
            XCTAssertFalse(after.unicodeScalars.contains { (0x2800...0x28FF).contains($0.value) }, "braille left in the shell:\n\(after)")
            _ = try? run(["kill-server"])
        }
    }

    /// `--evaluate CMD`: the soup's evaluator runs in the background while the UI works; q stops it (and what it
    /// started) and removes the candidates' temporary folder.
    func testQuitStopsTheExternalEvaluatorAndRemovesItsFolder() throws {
        let tmp = dir.appendingPathComponent("tmp")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        let script = dir.appendingPathComponent("slow-eval.sh")
        try "#!/bin/sh\necho $$ > '\(dir.path)/evaluator.pid'\nsleep 300\necho '{\"x\": 1}'\n".write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        let samples = Fixtures.repositoryRoot.appendingPathComponent("SampleModels").path
        try startBasin("explore '\(samples)/seeds/mlp-seed0.safetensors' '\(samples)/seeds/mlp-seed1.safetensors' --data '\(samples)/data/digits-train.safetensors' --data '\(samples)/data/digits-test.safetensors' --evaluate '\(script.path)'",
                       width: 100, height: 30, environment: "TMPDIR='\(tmp.path)' ")
        try waitFor("model at t", timeout: 120)
        let pidFile = dir.appendingPathComponent("evaluator.pid")
        let started = Date().addingTimeInterval(120)
        while Date() < started, !FileManager.default.fileExists(atPath: pidFile.path) { usleep(100_000) }
        let pid = try XCTUnwrap(Int32(String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertEqual(kill(pid, 0), 0, "the evaluator runs")
        try keys("v", "v")
        try waitFor("external evaluator (--evaluate) running", timeout: 60)
        try quitAndWait(quietStderr: false)
        // Alive: it exists and is not a zombie (an orphan may wait for a reaper that never comes in a container).
        func alive(_ pid: Int32) -> Bool {
            guard kill(pid, 0) == 0 else { return false }
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            return !(stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? false)
        }
        let gone = Date().addingTimeInterval(30)
        while Date() < gone, alive(pid) { usleep(100_000) }
        XCTAssertFalse(alive(pid), "q stopped the evaluator")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp.path).filter { $0.hasPrefix("basin-explore-evaluate") }, [])
        _ = try? run(["kill-server"])
    }

    /// `basin lesson --cnn`: the whole tour on the CNN samples, with its BatchNorm step; b switches the selected
    /// curve to its BN-reset version and the side panel says so; q quits cleanly.
    func testCNNLessonFromTheCommandLine() throws {
        try startBasin("lesson --cnn --fit-epochs 1", width: 100, height: 30)
        var s = try waitFor("Lesson 1/9", timeout: 120)
        XCTAssertTrue(s.contains("small CNN with BatchNorm"), s)
        XCTAssertTrue(s.contains("BN: naive (b: reset)"), s)
        try keys("b")
        s = try waitFor("BN: reset on train (b)", timeout: 120)
        XCTAssertTrue(s.contains("linear+reset"), s)
        try quitAndWait()
        _ = try? run(["kill-server"])
    }

    /// The guided lesson end to end, one tour: `basin lesson` opens on its first step, Enter goes on, the step's
    /// key works (m aligns, 2 selects the aligned line), ← goes back, L closes and reopens it; its last MLP step
    /// goes on to the CNN samples in the same terminal (Lesson 9/14), where m, 4 and b show the BatchNorm reset
    /// and the soup's b; q quits and leaves the terminal clean. At 80x24 (the declared minimum) and 120x40.
    func testLessonFromTheCommandLine() throws {
        for (width, height) in [(80, 24), (120, 40)] {
            socket = "basin-e2e-\(UUID().uuidString.prefix(8))"
            try? FileManager.default.removeItem(at: dir.appendingPathComponent("status.txt"))
            try startBasin("lesson --fit-epochs 2", width: width, height: height)
            var s = try waitFor("Lesson 1/14")
            XCTAssertTrue(s.contains("Two networks, one task") && s.contains("Enter or → next"), s)
            try keys("Enter")
            try waitFor("Lesson 2/14")
            try keys("End")
            try waitFor("✓ End pressed")
            try keys("Enter")
            s = try waitFor("Lesson 3/14")
            XCTAssertTrue(s.contains("Permutation") && s.contains("press m"), s)
            try keys("m")
            try waitFor("✓ m pressed")
            try waitFor("weight matching:")
            try keys("Enter")
            try waitFor("Lesson 4/14")
            try keys("2")
            try waitFor("✓ 2 pressed")
            try keys("Left")
            try waitFor("Lesson 3/14")
            try keys("L")
            let closing = Date().addingTimeInterval(20)
            while Date() < closing, (try? screen())?.contains("Lesson 3/14") != false { usleep(100_000) }
            s = try screen()
            XCTAssertFalse(s.contains("Lesson"), s)
            XCTAssertTrue(s.contains("Permutation"), s)
            // L opens it again from the start; Enter walks past the fit, the soup and the landscape to the step
            // that goes on to the CNNs.
            try keys("L")
            try waitFor("Lesson 1/14")
            for step in 2...8 {
                try keys("Enter")
                try waitFor("Lesson \(step)/14", timeout: 60)
            }
            s = try waitFor("Enter: on to the CNNs")
            XCTAssertTrue(s.contains("BatchNorm: on to two CNNs"), s)
            try keys("Enter")
            s = try waitFor("Lesson 9/14", timeout: 120)
            XCTAssertTrue(s.contains("vgg-seed0") && s.contains("BN: naive (b: reset)"), s)
            try keys("Enter")
            try waitFor("Lesson 10/14")
            try keys("m")
            try waitFor("✓ m pressed")
            try keys("Enter")
            try waitFor("Lesson 11/14")
            try keys("4")
            try waitFor("✓ 4 pressed", timeout: 120)
            try keys("Enter")
            try waitFor("Lesson 12/14")
            try keys("b")
            s = try waitFor("BN: reset on train (b)", timeout: 120)
            XCTAssertTrue(s.contains("aligned+reset"), s)
            try keys("Enter")
            try waitFor("Lesson 13/14")
            try keys("a", "b")
            try waitFor("✓ a then b pressed")
            try waitFor("BN: reset on train (b)", timeout: 60)
            try keys("Enter")
            s = try waitFor("Lesson 14/14")
            XCTAssertTrue(s.contains("Enter ends the lesson"), s)
            try quitAndWait()
            _ = try? run(["kill-server"])
        }
    }
}
