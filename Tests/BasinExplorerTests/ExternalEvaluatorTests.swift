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

    func driver(_ command: String) throws -> Driver {
        var o = InlineDriver.fastOptions
        o.evaluator = ExternalEvaluator(command: command, timeout: 600)
        return Driver(try sampleEngine(), width: 100, height: 30, options: o)
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
}
