import BasinExplorer
import BasinIO
import BasinTestSupport
import BasinUI
import Foundation
import XCTest

final class ExplorerViewTests: XCTestCase {
    static let engine2 = try! sampleEngine()
    static let engine3 = try! sampleEngine(seeds: [0, 1, 2])

    func testPathViewHome() throws {
        var d = Driver(Self.engine2)
        XCTAssertEqual(d.app.state.view, .path)
        XCTAssertEqual(d.app.state.path.curves[.linear]?.points.count, 11)
        let b = d.frame()
        XCTAssertTrue(b.text().contains("loss along the path"))
        XCTAssertTrue(b.text().contains("barrier"))
        assertFrame(b, "path-100x30")
        d.keys(.char("y"))
        XCTAssertTrue(d.frame().text().contains("accuracy along the path"))
        assertFrame(d.frame(), "path-accuracy-100x30")
    }

    func testScrubbingMovesTheCursorAndRecomputesMetrics() throws {
        var d = Driver(Self.engine2)
        XCTAssertEqual(d.app.state.path.t, 0.5)
        let mid = d.app.state.path.cursorMetrics!
        d.keys(.char("l"), .right)
        XCTAssertEqual(d.app.state.path.t, 0.6, accuracy: 1e-9)
        d.keys(.char("["))
        XCTAssertEqual(d.app.state.path.t, 0.59, accuracy: 1e-9)
        d.keys(.shiftRight, .char("]"))
        XCTAssertEqual(d.app.state.path.t, 0.61, accuracy: 1e-9)
        d.keys(.end)
        XCTAssertEqual(d.app.state.path.t, 1)
        let end = d.app.state.path.cursorMetrics!
        XCTAssertNotEqual(mid[1].loss, end[1].loss)
        // At t = 1 the linear path is model B: its metrics are B's.
        let bMetrics = Self.engine2.evaluate(Self.engine2.params[1])
        XCTAssertEqual(end[1].loss, bMetrics[1].loss, accuracy: 1e-6)
        d.keys(.char("l"))
        XCTAssertEqual(d.app.state.path.t, 1, "t stays in [0, 1]")
        d.keys(.home, .char("h"))
        XCTAssertEqual(d.app.state.path.t, 0)
    }

    /// One list of curves: numbers and ↑/↓ select, x hides and shows; only curves that exist are listed.
    func testCurveListSelectAndToggle() throws {
        var d = Driver(Self.engine2)
        XCTAssertEqual(d.app.state.path.order, [.linear])
        d.keys(.char("2"))
        XCTAssertEqual(d.app.state.path.selected, .linear, "no second curve yet")
        d.keys(.char("m"), .char("f"))
        XCTAssertEqual(d.app.state.path.order, [.linear, .alignedLine, CurveID(.bezier)])
        XCTAssertEqual(d.app.state.path.selected, CurveID(.bezier), "a fit selects its curve")
        d.keys(.char("2"))
        XCTAssertEqual(d.app.state.path.selected, .alignedLine)
        XCTAssertTrue(d.frame().text().contains("by weight matching"))
        d.keys(.char("j"))
        XCTAssertEqual(d.app.state.path.selected, CurveID(.bezier))
        d.keys(.char("j"))
        XCTAssertEqual(d.app.state.path.selected, .linear, "↓ wraps around")
        d.keys(.char("x"))
        XCTAssertTrue(d.app.state.path.hidden.contains(.linear))
        let text = d.frame().text()
        XCTAssertFalse(text.contains("● linear"), "a hidden curve leaves the legend:\n\(text)")
        d.keys(.char(" "))
        XCTAssertFalse(d.app.state.path.hidden.contains(.linear))
        // Each curve has its own glyph (tells curves apart without colour), in the legend and the list.
        XCTAssertEqual(Set(CurveID.all.map(\.glyph.unicode)).count, CurveID.all.count)
        XCTAssertEqual(Set(CurveID.all.map(\.glyph.ascii)).count, CurveID.all.count)
        let frame = d.frame().text()
        for id in d.app.state.path.order { XCTAssertTrue(frame.contains(id.glyph.unicode), "\(id) glyph in \n\(frame)") }
    }

    func testThreeModelsPairsChainAndBarrierMatrix() throws {
        var d = Driver(Self.engine3)
        let mat = try XCTUnwrap(d.app.state.path.barrierMatrix)
        XCTAssertEqual(mat.count, 3)
        XCTAssertTrue(mat[0][1] > 0 && mat[0][1] == mat[1][0])
        XCTAssertTrue(mat[0][0].isNaN)
        assertFrame(d.frame(), "path-three-models-100x30")
        d.keys(.char("p"))
        XCTAssertEqual(d.app.state.selection, .pair(0, 2))
        d.keys(.char("p"), .char("p"))
        XCTAssertEqual(d.app.state.selection, .chain)
        XCTAssertTrue(d.frame().text().contains("chain mlp-seed0 → mlp-seed1 → mlp-seed2"))
        // The chain passes through the middle model at t = 0.5.
        let m1 = Self.engine3.evaluate(Self.engine3.params[1])
        XCTAssertEqual(d.app.state.path.cursorMetrics![1].loss, m1[1].loss, accuracy: 1e-6)
        d.keys(.char("P"))
        XCTAssertEqual(d.app.state.selection, .pair(1, 2))
    }

    func testSoupView() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("v"), .char("v"))
        XCTAssertEqual(d.app.state.view, .soup)
        let before = d.app.state.soup.metrics!
        // Weight 1 on model 0 (the other at 0): the merged model is model 0.
        d.keys(.char("j"))
        for _ in 0..<12 { d.keys(.char("h")) }
        XCTAssertEqual(d.app.state.soup.coefficients, [0.5, 0])
        let m0 = Self.engine2.evaluate(Self.engine2.params[0])
        XCTAssertEqual(d.app.state.soup.metrics![1].loss, m0[1].loss, accuracy: 1e-5)
        XCTAssertNotEqual(before[1].loss, m0[1].loss)
        // The uniform button, clicked.
        let row = try XCTUnwrap(Layout.soupButtonRow(d.app.state, size: d.size))
        XCTAssertTrue(d.frame().line(row.y).contains("u uniform"), d.frame().line(row.y))
        d.keys(.mouse(MouseEvent(.press, x: row.x + 3, y: row.y)))
        XCTAssertEqual(d.app.state.soup.coefficients, [0.5, 0.5])
        d.keys(.char("h"), .char("u"))
        XCTAssertEqual(d.app.state.soup.coefficients, [0.5, 0.5])
        assertFrame(d.frame(), "soup-100x30")
    }

    /// The mouse drags a soup slider: press on it selects it and sets the value, motion follows, release ends.
    func testDraggingASoupSlider() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("v"), .char("v"))
        let layout = try XCTUnwrap(Layout.soup(d.app.state, size: d.size))
        let row = layout.sliders[1]
        let track = try XCTUnwrap(SoupRenderer.slider(d.app.state, 1).track(in: row))
        d.keys(.mouse(MouseEvent(.press, x: track.lowerBound, y: row.y)))
        XCTAssertEqual(d.app.state.soup.selected, 1)
        XCTAssertEqual(d.app.state.soup.coefficients[1], 0)
        d.keys(.mouse(MouseEvent(.drag, x: track.upperBound - 1, y: row.y + 3)))
        XCTAssertEqual(d.app.state.soup.coefficients[1], 1, "dragging follows x even off the row")
        let m0 = Self.engine2.evaluate(Self.engine2.params[0])
        d.keys(.mouse(MouseEvent(.drag, x: track.lowerBound + track.count / 2, y: row.y)))
        XCTAssertEqual(d.app.state.soup.coefficients[1], 0.5, accuracy: 0.03)
        d.keys(.mouse(MouseEvent(.release, x: 0, y: 0)))
        d.keys(.mouse(MouseEvent(.drag, x: track.lowerBound, y: row.y)))
        XCTAssertEqual(d.app.state.soup.coefficients[1], 0.5, accuracy: 0.03, "no drag after the release")
        XCTAssertNotEqual(d.app.state.soup.metrics![1].loss, m0[1].loss)
    }

    func testSoupTriangleWithThreeModels() throws {
        var d = Driver(Self.engine3)
        d.keys(.char("v"), .char("v"))
        let tri = try XCTUnwrap(d.app.state.soup.triangle)
        XCTAssertEqual(tri.count, 17)
        XCTAssertTrue(tri[16][0].isFinite, "bottom-left corner is model 0")
        XCTAssertTrue(tri[0][16].isNaN, "outside the triangle")
        assertFrame(d.frame(), "soup-three-models-100x30")
    }

    func testPermutationViewBeforeMatching() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("v"))
        XCTAssertEqual(d.app.state.view, .permutation)
        XCTAssertTrue(d.frame().text().contains("No alignment yet"))
        assertFrame(d.frame(), "permutation-empty-100x30")
    }

    func testLandscapeThroughThreeModels() throws {
        var d = Driver(Self.engine3)
        d.keys(.char("V"), .char("V"))
        XCTAssertEqual(d.app.state.view, .landscape)
        let l = d.app.state.landscape
        XCTAssertEqual(l.grid.count, 9)
        XCTAssertEqual(l.filled, 9)
        XCTAssertTrue(l.grid.allSatisfy { $0.allSatisfy(\.isFinite) })
        XCTAssertEqual(l.anchors.map(\.label), ["1", "2", "3"])
        assertFrame(d.frame(), "landscape-three-models-100x30")
    }

    func testLandscapeWithTwoModelsStartsOnRandomDirections() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("V"), .char("V"))
        // No third point yet: the plane around A along random directions.
        XCTAssertEqual(d.app.state.landscape.plane, .random)
        XCTAssertEqual(d.app.state.landscape.anchors.map(\.label), ["A"])
        // After a fit, o goes to the plane through the bend.
        d.keys(.char("f"), .char("o"))
        XCTAssertEqual(d.app.state.landscape.plane, .bend)
        XCTAssertEqual(d.app.state.landscape.anchors.map(\.label), ["A", "θ", "B"])
    }

    func testHelpIsGeneratedFromTheKeymap() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("?"))
        let text = d.frame().text()
        // The help scrolls (↓) through every key of the view and the glossary.
        var seen = text
        for _ in 0..<40 {
            d.keys(.down)
            seen += d.frame().text()
        }
        for e in d.app.keymap.help(context: "path") {
            XCTAssertTrue(seen.contains(String(e.description.prefix(30))), "help lists '\(e.description)'")
        }
        d.keys(.home)
        assertFrame(d.frame(), "help-path-100x30")
        d.keys(.char("x"))
        XCTAssertFalse(d.app.state.showHelp)
        XCTAssertTrue(d.app.keymap.conflicts().isEmpty, "\(d.app.keymap.conflicts())")
    }

    func testTooSmallAndResize() throws {
        var d = Driver(Self.engine2, width: 60, height: 20)
        XCTAssertTrue(d.frame().text().contains("Terminal too small"))
        d.size = Size(width: 200, height: 60)
        d.send(.resize(d.size))
        let b = d.frame()
        XCTAssertEqual(b.width, 200)
        XCTAssertTrue(b.text().contains("loss along the path"))
    }

    func testASCIIAndMonochromeRendering() throws {
        var d = Driver(Self.engine2)
        d.context = RenderContext(theme: .dark, capability: .none, glyphs: .asciiSet)
        let text = d.frame().text()
        XCTAssertTrue(text.unicodeScalars.allSatisfy { $0.isASCII }, "ASCII only without a UTF-8 locale")
        assertFrame(d.frame(), "path-ascii-100x30")
    }

    func testRenderIsPure() throws {
        let d = Driver(Self.engine2)
        XCTAssertEqual(d.frame(), d.frame())
    }

    func testMouseClickOnTabsAndPlot() throws {
        var d = Driver(Self.engine2)
        d.keys(.mouse(MouseEvent(.press, x: 10, y: 0)))
        XCTAssertEqual(d.app.state.view, .permutation)
        d.keys(.mouse(MouseEvent(.press, x: 2, y: 0)))
        XCTAssertEqual(d.app.state.view, .path)
        let plot = try XCTUnwrap(Layout.pathPlotArea(d.app.state, size: d.size))
        d.keys(.mouse(MouseEvent(.press, x: plot.x, y: plot.y + 2)))
        XCTAssertEqual(d.app.state.path.t, 0)
        d.keys(.mouse(MouseEvent(.wheelUp, x: plot.x, y: plot.y)))
        XCTAssertEqual(d.app.state.path.t, 0.05, accuracy: 1e-9)
    }
}

final class ExplorerExportTests: XCTestCase {
    func testExportWritesModelAndRecipe() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var d = Driver(try sampleEngine())
        d.keys(.char("l"), .char("e"))
        XCTAssertNotNil(d.app.state.prompt)
        assertFrame(d.frame(), "export-prompt-100x30")
        for _ in 0..<40 { d.keys(.backspace) }
        let target = dir.appendingPathComponent("mid.safetensors").path
        d.type(target)
        d.keys(.enter)
        XCTAssertNil(d.app.state.prompt)
        XCTAssertEqual(d.app.state.popup?.isError, false, d.app.state.popup?.message ?? "")
        let file = try ModelFile.open(target)
        XCTAssertEqual(Set(file.names), Set(try sampleEngine().params[0].names))
        let recipe = try String(contentsOfFile: dir.appendingPathComponent("mid.recipe.yaml").path, encoding: .utf8)
        XCTAssertTrue(recipe.contains("merge_method: basin_path"), recipe)
        XCTAssertTrue(recipe.contains("t: 0.55"), recipe)
        XCTAssertTrue(recipe.contains("basin_path: {type: linear}"), recipe)
        d.keys(.enter)
        XCTAssertNil(d.app.state.popup)
    }

    func testExportErrorsArePopupsNotCrashes() throws {
        var d = Driver(try sampleEngine())
        d.keys(.char("e"))
        for _ in 0..<40 { d.keys(.backspace) }
        d.type("/nonexistent-dir/x/y.safetensors")
        d.keys(.enter)
        XCTAssertEqual(d.app.state.popup?.isError, true)
        assertFrame(d.frame(), "export-error-100x30")
        d.keys(.esc)
        // Refuses to overwrite an input model.
        d.keys(.char("e"))
        for _ in 0..<40 { d.keys(.backspace) }
        d.type(samples.appendingPathComponent("seeds/mlp-seed0.safetensors").path)
        d.keys(.enter)
        XCTAssertEqual(d.app.state.popup?.isError, true)
    }

    func testEscCancelsPromptAndQKeyQuits() throws {
        var d = Driver(try sampleEngine())
        d.keys(.char("e"), .esc)
        XCTAssertNil(d.app.state.prompt)
        let fx = d.keys(.char("q"))
        XCTAssertTrue(fx.contains { if case .quit = $0 { return true } else { return false } })
    }
}

/// Lets a `TestTerminal.until` step read the app inside a running loop (both on the loop's thread).
final class LoopProbe: @unchecked Sendable {
    weak var loop: BasinUI.RunLoop<ExplorerApp>?
    init(_ loop: BasinUI.RunLoop<ExplorerApp>) { self.loop = loop }
    var idle: Bool { loop?.app.isIdle ?? false }
}

final class ExplorerRunLoopTests: XCTestCase {
    /// The real loop with threads: keys are handled while curves compute in the background.
    func testRunLoopWithBackgroundJobs() throws {
        let app = ExplorerApp(engine: try sampleEngine(), size: Size(width: 100, height: 30))
        let loop = RunLoop(app: app)
        // The script waits for the state it checks (every job and curve finished), not for a guessed time: a
        // busy machine only makes it slower. The bound only turns a hang into a clear failure.
        let probe = LoopProbe(loop)
        let script: [TestTerminal.Step] = [.key(.char("l")), .key(.char("m")),
                                           .until("the match and every curve to finish", limitMs: 600_000) { probe.idle },
                                           .key(.char("q"))]
        let term = TestTerminal(width: 100, height: 30, script: script)
        let final = try loop.run(on: term)
        XCTAssertTrue(final.isIdle)
        XCTAssertEqual(final.state.path.t, 0.55, accuracy: 1e-9)
        XCTAssertEqual(final.state.path.curves[.alignedLine]?.done, true)
        XCTAssertEqual(final.state.path.curves[.linear]?.done, true)
    }

    func testBenchLatency() throws {
        let app = ExplorerApp(engine: try sampleEngine(), size: Size(width: 120, height: 40))
        let r = ExplorerBench.run(app: app, repeats: 2)
        // Structure and consistency only (timing targets are the bench's, never a test's).
        XCTAssertEqual(r.keys, ExplorerBench.script.count * 2, "one sample per scripted key and repeat")
        XCTAssertGreaterThan(ExplorerBench.script.count, 50)
        XCTAssertTrue(r.p50Ms > 0 && r.p50Ms <= r.p95Ms && r.p95Ms <= r.maxMs, "\(r)")
        XCTAssertEqual(r.frameWidth, 200)
        XCTAssertEqual(r.frameHeight, 60)
        XCTAssertTrue(r.renderMs > 0 && r.renderMs <= r.renderAndDiffMs, "render + diff includes the render: \(r)")
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(r)) as? [String: Any]
        XCTAssertEqual(Set(json?.keys.map { $0 } ?? []), ["keys", "p50Ms", "p95Ms", "maxMs", "frameWidth", "frameHeight", "renderMs", "renderAndDiffMs"])
        print("bench ui (debug build): p50 \(r.p50Ms) ms, p95 \(r.p95Ms) ms, 200x60 render+diff \(r.renderAndDiffMs) ms")
    }
}
