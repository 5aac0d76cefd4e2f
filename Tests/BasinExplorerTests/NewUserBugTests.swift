import BasinExplorer
import BasinFusion
import BasinIO
import BasinNet
import BasinTestSupport
import BasinUI
import Foundation
import XCTest

/// The bugs a new user hit (issue 15), each reproduced by keys.
final class NewUserBugTests: XCTestCase {
    static let engine4 = try! sampleEngine(seeds: [0, 1, 2, 3])

    /// Bug 1: on the chain through four seeds, `m` aligned only seed1 and drew the seed0 -> seed1 aligned
    /// segment across the whole chain axis, the panel kept saying "linear", and `2` added a second "chain".
    func testChainAlignmentIsAChainThroughEveryAlignedModel() throws {
        var d = Driver(Self.engine4)
        for _ in 0..<6 { d.keys(.char("p")) }
        XCTAssertEqual(d.app.state.selection, .chain)
        d.keys(.char("2"))
        XCTAssertEqual(d.app.state.path.order, [.linear], "2 selects the second curve of the list; there is none")
        d.keys(.char("m"))
        XCTAssertEqual(d.app.state.alignments[0]?.keys.sorted(), [1, 2, 3], "every model aligned to the first")
        XCTAssertEqual(d.app.state.path.order, [.linear, .alignedLine])
        let aligned = try XCTUnwrap(d.app.state.path.curves[.alignedLine])
        XCTAssertEqual(aligned.label, "aligned chain")
        XCTAssertTrue(aligned.done)
        // The aligned chain ends at seed3 (permuted: the same function), not at seed1.
        let seed3 = Self.engine4.evaluate(Self.engine4.params[3])
        let seed1 = Self.engine4.evaluate(Self.engine4.params[1])
        XCTAssertEqual(aligned.points.last!.loss[1], seed3[1].loss, accuracy: 1e-5)
        XCTAssertNotEqual(aligned.points.last!.loss[1], seed1[1].loss, accuracy: 1e-3)
        let chain = try XCTUnwrap(d.app.state.path.curves[.linear])
        XCTAssertLessThan(aligned.barrier(1)!.height, chain.barrier(1)!.height / 2)
        d.keys(.char("2"))
        XCTAssertEqual(d.app.state.path.selected, .alignedLine)
        let text = d.frame().text()
        XCTAssertTrue(text.contains("│ aligned chain ") && text.contains("by weight matching"), text)
        XCTAssertFalse(text.contains("│ linear"), text)
        XCTAssertEqual(text.components(separatedBy: "2◆ aligned chain").count, 2, "one row per curve:\n\(text)")
        XCTAssertEqual(text.components(separatedBy: "1● chain").count, 2, "one row per curve:\n\(text)")
        assertFrame(d.frame(), "path-chain-aligned-100x30")
    }

    /// Bug 4: at 80x24, the declared minimum, nothing collides or is cut without a sign.
    func testEightyByTwentyFour() throws {
        var d = Driver(try sampleEngine(), width: 80, height: 24)
        d.keys(.char("m"), .char("f"))
        var text = d.frame().text()
        XCTAssertTrue(text.contains("q quit"), "the hint bar keeps quit:\n\(text)")
        XCTAssertTrue(text.range(of: "◆ barrier [0-9]\\.[0-9]{3}", options: .regularExpression) != nil, "the legend's barrier keeps its number:\n\(text)")
        XCTAssertTrue(text.contains("curve") && text.contains("train  test"), "the barrier header does not collide:\n\(text)")
        XCTAssertFalse(text.contains("ltrain"), text)
        assertFrame(d.frame(), "path-fitted-aligned-80x24")
        d.keys(.char("v"), .char("v"))
        text = d.frame().text()
        XCTAssertTrue(text.contains("SLERP"), "the soup view shows every method:\n\(text)")
        XCTAssertTrue(text.contains("q quit"), text)
        assertFrame(d.frame(), "soup-80x24")
        // Help scrolls: everything (Esc, p, P and the glossary) can be reached.
        d.keys(.char("?"))
        var seen = d.frame().text()
        for _ in 0..<40 {
            d.keys(.down)
            seen += d.frame().text()
        }
        XCTAssertTrue(d.app.state.showHelp, "↓ scrolls the help, it does not close it")
        for needle in ["Esc", "next pair", "previous pair", "Glossary", "task vector", "barrier:"] {
            XCTAssertTrue(seen.contains(needle), "help shows \(needle) somewhere when scrolled")
        }
        d.keys(.char("x"))
        XCTAssertFalse(d.app.state.showHelp)
    }

    /// Bug 4: text cut at 120 columns ends with an ellipsis (or wraps) instead of losing its end silently.
    func testLongTextWrapsOrEndsWithAnEllipsis() throws {
        var d3 = Driver(try sampleEngine(seeds: [0, 1, 2]), width: 120, height: 40)
        d3.keys(.char("v"), .char("v"))
        let text = d3.frame().text()
        XCTAssertTrue(text.contains("mlp-seed1"), text)
        let lines = text.split(separator: "\n")
        let corner = try XCTUnwrap(lines.firstIndex { $0.contains("top: mlp-seed2") })
        XCTAssertTrue((lines[corner] + lines[corner + 1]).contains("mlp-seed1"), "the triangle's third name, wrapped if need be:\n\(text)")
        var d = Driver(try sampleEngine(), width: 120, height: 40)
        d.keys(.char("v"), .char("v"))
        let soup = d.frame().text()
        XCTAssertTrue(soup.contains("BASE_MODEL") || soup.contains("…"), soup)
    }

    /// Bug 5: stale status, axis labels outside the data's domain, keys acting unseen.
    func testStatusFollowsTheLastJobAndAxesStayInTheirDomain() throws {
        var d = Driver(try sampleEngine())
        d.keys(.char("f"))
        XCTAssertTrue(d.app.state.lastJobNote?.hasPrefix("Bezier fit done") == true, d.app.state.lastJobNote ?? "")
        d.keys(.char("V"), .char("V"))
        XCTAssertTrue(d.app.state.lastJobNote?.hasPrefix("landscape done") == true, d.app.state.lastJobNote ?? "")
        d.keys(.char("V"), .char("V"), .char("V"))
        XCTAssertEqual(d.app.state.view, .path)
        d.keys(.char("m"), .char("a"))
        XCTAssertTrue(d.frame().text().contains("by weight matching"))
        d.keys(.char("M"))
        XCTAssertTrue(d.frame().text().contains("by activation matching"), "the panel follows the last matching")
        XCTAssertFalse(d.frame().text().contains("weight matching"))
        XCTAssertTrue(d.app.state.lastJobNote?.hasPrefix("activation matching") == true)
        // Loss axes never go below 0, accuracy axes never above 1.
        for accuracy in [false, true] {
            if accuracy { d.keys(.char("y")) }
            for zoomed in [false, true] {
                if d.app.state.path.zoomed != zoomed { d.keys(.char("z")) }
                let r = try XCTUnwrap(d.app.state.path.yRange)
                XCTAssertGreaterThanOrEqual(r.lowerBound, 0)
                if accuracy { XCTAssertLessThanOrEqual(r.upperBound, 1) }
                let labels = d.frame().text().matches(of: /-0\.[0-9]+┤|1\.0[1-9]┤/)
                XCTAssertTrue(labels.isEmpty, "no axis label outside the domain")
            }
        }
    }

    /// Bug 5: while "terminal too small" covers the screen, keys other than quit do nothing.
    func testKeysWhileTooSmallChangeNothing() throws {
        var d = Driver(try sampleEngine(), width: 60, height: 20)
        XCTAssertTrue(d.frame().text().contains("Terminal too small"))
        d.keys(.char("l"), .char("v"), .char("m"), .char("e"))
        XCTAssertEqual(d.app.state.path.t, 0.5)
        XCTAssertEqual(d.app.state.view, .path)
        XCTAssertTrue(d.app.state.alignments.isEmpty)
        XCTAssertNil(d.app.state.prompt)
        let fx = d.keys(.char("q"))
        XCTAssertTrue(fx.contains { if case .quit = $0 { return true } else { return false } })
    }

    /// y zoom: the aligned and fitted curves fill the plot instead of sitting at its bottom.
    func testZoomScalesTheAxisToTheSelectedCurve() throws {
        var d = Driver(try sampleEngine())
        d.keys(.char("m"), .char("a"))
        let all = try XCTUnwrap(d.app.state.path.yRange)
        d.keys(.char("z"))
        let zoomed = try XCTUnwrap(d.app.state.path.yRange)
        XCTAssertLessThan(zoomed.upperBound - zoomed.lowerBound, (all.upperBound - all.lowerBound) / 2)
        let aligned = d.app.state.path.curves[.alignedLine]!.points.flatMap(\.loss)
        XCTAssertLessThanOrEqual(zoomed.lowerBound, aligned.min()!)
        XCTAssertGreaterThanOrEqual(zoomed.upperBound, aligned.max()!)
        // Hiding a curve rescales to the visible ones.
        d.keys(.char("z"), .char("1"), .char("x"))
        XCTAssertEqual(d.app.state.path.yRange, zoomed)
    }
}
