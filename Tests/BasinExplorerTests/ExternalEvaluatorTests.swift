import BasinExplorer
import BasinFusion
import BasinIO
import BasinNet
import BasinTestSupport
import BasinUI
import Foundation
import XCTest

/// Issue 14 §4 in the explorer: `basin explore --evaluate CMD` hands each soup to the evaluator as a model
/// folder in the background and shows its metrics in the soup view when they arrive; failures show the
/// evaluator's standard error; candidate folders are removed.
final class ExplorerEvaluatorTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { if let dir { try? FileManager.default.removeItem(at: dir) } }

    func script(_ body: String) throws -> String {
        let url = dir.appendingPathComponent("evaluate-\(UUID().uuidString.prefix(6)).sh")
        try ("#!/bin/sh\n" + body + "\n").write(to: url, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: url.path)
        return url.path
    }

    func options(_ command: String, jobs: Int = 1) -> ExplorerOptions {
        var o = InlineDriver.fastOptions
        o.evaluator = ExternalEvaluator(command: command, timeout: 600)
        o.evaluateJobs = jobs
        return o
    }

    func driver(_ command: String, jobs: Int = 1) throws -> Driver {
        Driver(try sampleEngine(), width: 100, height: 30, options: options(command, jobs: jobs))
    }

    /// Scores a candidate by what it is: an ingredient (its folder links the model file) by the table, a written
    /// soup by `soup`. Prints a nested accuracy and a loss, so the metric is chosen as `basin soup` chooses it.
    func scoringScript(seed0: Double, seed1: Double, soup: Double) throws -> String {
        try script("""
            target=$(readlink "$1/model.safetensors")
            case "$target" in
              *mlp-seed0*) acc=\(seed0) ;;
              *mlp-seed1*) acc=\(seed1) ;;
              *) acc=\(soup) ;;
            esac
            echo '{"suite": {"acc": '$acc'}, "loss": 1}'
            """)
    }

    /// A background job runner like the run loop's: every spawned job on its own thread, messages fed back
    /// until the app is idle. Waits on the app's state, never on a duration.
    struct ThreadedDriver {
        var app: ExplorerApp
        let inbox = Inbox<ExplorerMessage>()

        init(_ app: ExplorerApp) {
            self.app = app
            send(.start)
        }

        mutating func send(_ event: AppEvent<ExplorerMessage>) {
            dispatch(app.update(event))
        }

        func dispatch(_ fx: [Effect<ExplorerMessage>]) {
            let inbox = self.inbox
            for e in fx { if case .spawn(let job) = e { Thread.detachNewThread { job(inbox) } } }
        }

        /// Feeds messages back until `done` holds (or the generous deadline passes: a hang fails, it does not block).
        mutating func run(until done: (ExplorerApp) -> Bool, deadline seconds: Double = 300) -> Bool {
            let end = Date().addingTimeInterval(seconds)
            while !done(app) {
                if Date() > end { return false }
                let msgs = inbox.drain()
                if msgs.isEmpty { usleep(5_000) }
                for m in msgs { dispatch(app.update(.message(m))) }
            }
            return true
        }
    }

    func testSoupViewShowsTheEvaluatorsMetricsForEachSoup() throws {
        // The evaluator keeps a copy of each candidate (to check what it was given) and prints nested metrics.
        let copies = dir.appendingPathComponent("copies")
        try FileManager.default.createDirectory(at: copies, withIntermediateDirectories: true)
        let cmd = try script("""
            n=$(ls '\(copies.path)' | wc -l)
            cp -r "$1" '\(copies.path)'/candidate-$n
            echo '{"suite": {"acc": 0.75}, "n": '$n'}'
            """)
        var d = try driver(cmd)
        // The first soup (uniform) was evaluated at start, in the background job the driver ran inline.
        XCTAssertEqual(d.app.state.soup.external.metrics, ["suite.acc": 0.75, "n": 0])
        XCTAssertNil(d.app.state.soup.external.failure)
        XCTAssertTrue(d.app.isIdle)
        let e = d.app.engine
        let given = try LoadedModel(path: copies.appendingPathComponent("candidate-0").path)
        XCTAssertEqual(given.params, try e.merge(.weighted, coefficients: [0.5, 0.5], lambda: 1), "the evaluator gets the soup")
        XCTAssertEqual(try SafeTensorsFile(url: copies.appendingPathComponent("candidate-0/model.safetensors")).metadata["format"], "pt")
        // Candidates are removed once evaluated.
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: d.app.evaluationFolder.path)) ?? [], [])
        d.keys(.char("v"), .char("v"))
        var text = d.text()
        XCTAssertTrue(text.contains("evaluator ") && text.contains("suite.acc") && text.contains("0.75"), text)
        assertFrame(d.frame(), "soup-external-evaluator-100x30")
        // A new soup is evaluated again; the view shows its metrics.
        d.keys(.char("l"))
        XCTAssertEqual(d.app.state.soup.external.metrics?["n"], 1)
        let second = try LoadedModel(path: copies.appendingPathComponent("candidate-1").path)
        XCTAssertEqual(second.params, try e.merge(.weighted, coefficients: [0.55, 0.5], lambda: 1))
        text = d.text()
        XCTAssertTrue(text.contains("n ") && text.contains("1"), text)
        // Quitting removes the session's candidate folder.
        d.app.stopExternalEvaluations()
        XCTAssertFalse(FileManager.default.fileExists(atPath: d.app.evaluationFolder.path))
    }

    func testAFailingEvaluatorIsShownWithItsStandardError() throws {
        var d = try driver(try script("echo 'CUDA out of memory' >&2; exit 3"))
        let failure = try XCTUnwrap(d.app.state.soup.external.failure)
        XCTAssertTrue(failure.contains("exited with status 3") && failure.contains("CUDA out of memory"), failure)
        XCTAssertNil(d.app.state.soup.external.metrics)
        d.keys(.char("v"), .char("v"))
        XCTAssertTrue(d.text().contains("failed:"), d.text())
        // Output that is not one JSON object of numbers fails the candidate too, saying what was printed.
        var bad = try driver(try script("echo not json"))
        XCTAssertTrue(bad.app.state.soup.external.failure?.contains("not json") == true, bad.app.state.soup.external.failure ?? "")
        bad.keys(.char("q"))
    }

    func testGreedySoupChoosesByTheEvaluatorsMetric() throws {
        // The evaluator prefers mlp-seed1 alone to the soup of both: greedy soup keeps it alone.
        var d = try driver(try scoringScript(seed0: 0.5, seed1: 0.9, soup: 0.7))
        d.keys(.char("v"), .char("v"), .char("g"))
        XCTAssertEqual(d.app.state.soup.coefficients, [0, 1])
        XCTAssertEqual(d.app.state.soup.note, "greedy soup by the evaluator's suite.acc: mlp-seed1")
        XCTAssertEqual(d.app.state.soup.external.greedy, ["greedy soup by suite.acc (larger is better):", "  mlp-seed0  0.5", "  mlp-seed1  0.9", "  uniform soup of 2  0.7"])
        // The chosen soup's metrics come from the greedy search: shown at once, not evaluated again.
        XCTAssertEqual(d.app.state.soup.external.metrics, ["suite.acc": 0.9, "loss": 1])
        XCTAssertEqual(d.app.state.soup.external.source, "from the greedy search")
        XCTAssertFalse(d.app.state.soup.external.stale)
        XCTAssertTrue(d.app.isIdle)
        assertFrame(d.frame(), "soup-external-greedy-100x30")
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: d.app.evaluationFolder.path)) ?? [], [], "greedy candidates are removed")

        // When the soup of both scores better, greedy soup takes both (uniform weights), and smaller-is-better
        // metrics are honoured as basin soup --minimize does.
        var both = try driver(try scoringScript(seed0: 0.5, seed1: 0.9, soup: 0.95))
        both.keys(.char("v"), .char("v"), .char("g"))
        XCTAssertEqual(both.app.state.soup.coefficients, [0.5, 0.5])
        var o = options(try scoringScript(seed0: 0.5, seed1: 0.9, soup: 0.7))
        o.evaluatorMetric = "suite.acc"
        o.evaluatorHigherIsBetter = false
        var minimizing = Driver(try sampleEngine(), width: 100, height: 30, options: o)
        minimizing.keys(.char("v"), .char("v"), .char("g"))
        XCTAssertEqual(minimizing.app.state.soup.coefficients, [1, 0])
        XCTAssertEqual(minimizing.app.state.soup.external.greedy.first, "greedy soup by suite.acc (smaller is better):")

        // A metric the evaluator does not report: the greedy soup fails saying so, the coefficients stay.
        var missing = options(try scoringScript(seed0: 0.5, seed1: 0.9, soup: 0.7))
        missing.evaluatorMetric = "hellaswag"
        var m = Driver(try sampleEngine(), width: 100, height: 30, options: missing)
        m.keys(.char("v"), .char("v"), .char("g"))
        XCTAssertEqual(m.app.state.soup.coefficients, [0.5, 0.5])
        let popup = try XCTUnwrap(m.app.state.popup)
        XCTAssertTrue(popup.message.contains("hellaswag") && popup.message.contains("suite.acc"), popup.message)
        XCTAssertTrue(m.app.isIdle)
    }

    func testASoupSeenBeforeShowsItsMetricsWithoutAnotherRun() throws {
        let log = dir.appendingPathComponent("runs.log")
        var d = try driver(try script("echo run >> '\(log.path)'; echo '{\"acc\": 0.5}'"))
        d.keys(.char("v"), .char("v"), .char("l"), .char("h"))
        XCTAssertEqual(d.app.state.soup.coefficients, [0.5, 0.5])
        XCTAssertEqual(d.app.state.soup.external.metrics, ["acc": 0.5])
        XCTAssertFalse(d.app.state.soup.external.stale)
        XCTAssertEqual(try String(contentsOf: log, encoding: .utf8), "run\nrun\n", "two soups, two runs")
    }

    func testEvaluateJobsRunsCandidatesSideBySide() throws {
        // Each evaluation waits until two are running at once, so with one at a time the first would wait alone
        // (and fail after 120 s); with --evaluate-jobs 2 both finish.
        let started = dir.appendingPathComponent("started")
        try FileManager.default.createDirectory(at: started, withIntermediateDirectories: true)
        let cmd = try script("""
            touch '\(started.path)'/$$
            i=0
            while [ $(ls '\(started.path)' | wc -l) -lt 2 ]; do
              i=$((i+1)); if [ $i -gt 2400 ]; then echo 'ran alone' >&2; exit 1; fi
              sleep 0.05
            done
            echo '{"acc": 0.5}'
            """)
        var t = ThreadedDriver(ExplorerApp(engine: try sampleEngine(), options: options(cmd, jobs: 2), size: Size(width: 100, height: 30)))
        XCTAssertEqual(t.app.state.soup.external.inFlight, 1)
        for k in ["v", "v", "l"] { t.send(.key(.char(Character(k)))) }
        XCTAssertEqual(t.app.state.soup.external.inFlight, 2, "a second soup starts while the first runs")
        t.send(.key(.char("l")))
        XCTAssertEqual(t.app.state.soup.external.inFlight, 2, "at most --evaluate-jobs at a time: the newest soup waits")
        XCTAssertTrue(t.run { $0.state.soup.external.inFlight == 0 && $0.isIdle })
        XCTAssertEqual(t.app.state.soup.external.metrics, ["acc": 0.5])
        XCTAssertNil(t.app.state.soup.external.failure)
        XCTAssertFalse(t.app.state.soup.external.stale, "the waiting soup ran once a slot was free")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: started.path).count, 3)
        t.app.stopExternalEvaluations()
    }

    /// The job system's join: a job spawned through a `JobGroup` is waited for from the moment its effect exists
    /// (before its thread runs) until its work returns, so quitting removes the candidates' folder once, after the
    /// cancelled evaluations removed their own candidates.
    func testJoinWaitsForEveryJobSpawnedThroughTheGroup() throws {
        let group = JobGroup()
        let release = DispatchSemaphore(value: 0)
        let finished = Inbox<Int>()
        let effect = group.spawn { (inbox: Inbox<Int>) in
            release.wait()
            inbox.post(1)
        }
        XCTAssertFalse(group.join(timeout: 0.01), "counted before its thread starts")
        guard case .spawn(let work) = effect else { return XCTFail("not a spawn effect") }
        Thread.detachNewThread { work(finished) }
        XCTAssertFalse(group.join(timeout: 0.01), "still running: it waits for the semaphore")
        release.signal()
        XCTAssertTrue(group.join(timeout: 300))
        XCTAssertEqual(finished.drain(), [1], "join returned after the work did")
        XCTAssertTrue(JobGroup().join(timeout: 0), "nothing spawned: nothing to wait for")
    }

    func testQuitStopsEveryRunningEvaluatorAndRemovesTheFolder() throws {
        let pids = dir.appendingPathComponent("pids")
        try FileManager.default.createDirectory(at: pids, withIntermediateDirectories: true)
        // The evaluator starts a child of its own (as a real one would) and both record their pids.
        let cmd = try script("""
            sleep 300 & echo $! > '\(pids.path)'/child-$$
            echo $$ > '\(pids.path)'/shell-$$
            wait
            """)
        var t = ThreadedDriver(ExplorerApp(engine: try sampleEngine(), options: options(cmd, jobs: 2), size: Size(width: 100, height: 30)))
        for k in ["v", "v", "l"] { t.send(.key(.char(Character(k)))) }
        XCTAssertEqual(t.app.state.soup.external.inFlight, 2)
        func recorded() -> [Int32] {
            ((try? FileManager.default.contentsOfDirectory(atPath: pids.path)) ?? []).compactMap {
                Int32((try? String(contentsOf: pids.appendingPathComponent($0), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "")
            }
        }
        XCTAssertTrue(t.run { _ in recorded().count == 4 }, "both evaluators and their children started")
        XCTAssertTrue(FileManager.default.fileExists(atPath: t.app.evaluationFolder.path))
        t.send(.key(.char("q")))
        t.app.stopExternalEvaluations()
        XCTAssertFalse(FileManager.default.fileExists(atPath: t.app.evaluationFolder.path), "the candidates' folder is removed")
        // Stopped: gone, or a zombie waiting for a reaper (an orphan in a container may wait for one that never comes).
        func alive(_ pid: Int32) -> Bool {
            guard kill(pid, 0) == 0 else { return false }
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            guard let close = stat.lastIndex(of: ")") else { return false }
            return !stat[close...].dropFirst(2).hasPrefix("Z")
        }
        for pid in recorded() {
            let end = Date().addingTimeInterval(60)
            while alive(pid) && Date() < end { usleep(20_000) }
            XCTAssertFalse(alive(pid), "process \(pid) was stopped")
        }
    }
}
