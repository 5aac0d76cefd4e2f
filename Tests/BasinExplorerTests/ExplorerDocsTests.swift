import BasinExplorer
import BasinTestSupport
import BasinUI
import Foundation
import XCTest

/// `basin docs`' generator: what it writes comes from the explorer, and the committed docs/explorer.md agrees
/// with the keymap.
final class ExplorerDocsTests: XCTestCase {
    func testGeneratedDocumentComesFromTheExplorer() throws {
        var s = ExplorerDocs.Settings()
        s.pathPoints = 11
        s.fitEpochs = 1
        s.landscapeResolution = 9
        s.benchRepeats = 1
        var steps: [String] = []
        let doc = try ExplorerDocs.generate(samples: samples, settings: s) { steps.append($0) }
        XCTAssertEqual(steps.count, 5, "\(steps)")
        let md = doc.markdown
        // The key map lists every binding.
        for b in ExplorerApp.makeKeymap().bindings {
            XCTAssertTrue(md.contains("| \(b.keys.map { "`\($0.description)`" }.joined(separator: " ")) | \(b.description) |"), b.description)
        }
        // Thirteen captures (the last: the CNN samples with their BN-reset and REPAIR curves), each a full 100x30
        // frame; the README's is the path view after m and f.
        let blocks = md.components(separatedBy: "```text\n").dropFirst().map { $0.components(separatedBy: "\n```")[0] }
        XCTAssertEqual(blocks.count, 13)
        XCTAssertTrue(blocks[12].contains("aligned+reset") && blocks[12].contains("BN: reset on train (b)"), blocks[12])
        for b in blocks {
            let lines = b.split(separator: "\n", omittingEmptySubsequences: false)
            XCTAssertEqual(lines.count, 30)
            XCTAssertTrue(lines.allSatisfy { TextWidth.of(String($0)) <= 100 })
        }
        XCTAssertEqual(doc.readmeCapture, blocks[1])
        XCTAssertTrue(doc.readmeCapture.contains("aligned") && doc.readmeCapture.contains("Bezier fit"))
        // Figures are measured in the run: the soup sentence carries the accuracy the engine computes, and the
        // speed section the bench's.
        let engine = try sampleEngine()
        let uniform = try engine.merge(.weighted, coefficients: [0.5, 0.5], lambda: 1)
        let acc = engine.evaluate(uniform)[1].accuracy
        XCTAssertTrue(md.contains(String(format: "without alignment: %.1f%%", acc * 100)), "soup sentence")
        XCTAssertNotNil(md.range(of: #"keypress to frame\s+p50 [0-9.]+ ms, p95 [0-9.]+ ms"#, options: .regularExpression))
        XCTAssertTrue(md.contains("\(ExplorerBench.script.count) keys"))
        XCTAssertFalse(md.contains("nan") || md.contains("n/a"), "every figure was measured")
    }

    func testCommittedDocsHaveTheCurrentKeyMap() throws {
        let url = Fixtures.repositoryRoot.appendingPathComponent("docs/explorer.md")
        let committed = try String(contentsOf: url, encoding: .utf8)
        XCTAssertTrue(committed.contains(ExplorerDocs.keyMap(ExplorerApp.makeKeymap())),
                      "docs/explorer.md's key map differs from the keymap: run `basin docs` (release build)")
        let readme = try String(contentsOf: Fixtures.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        XCTAssertNotNil(ExplorerDocs.replaceBlock("capture", in: readme, with: "x"), "README.md keeps the capture markers")
    }

    func testReplaceBlockKeepsTheMarkers() {
        let text = "a\n<!-- capture:begin (generated) -->\nold\nlines\n<!-- capture:end -->\nb\n"
        XCTAssertEqual(ExplorerDocs.replaceBlock("capture", in: text, with: "new"),
                       "a\n<!-- capture:begin (generated) -->\nnew\n<!-- capture:end -->\nb\n")
        XCTAssertNil(ExplorerDocs.replaceBlock("other", in: text, with: "new"))
    }
}
