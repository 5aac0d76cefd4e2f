import BasinExplorer
import BasinFusion
import BasinTestSupport
import BasinUI
import Foundation
import XCTest

/// Issue 15's teaching views, driven by keys in the in-memory terminal: the task-vector view, random-direction
/// landscapes and the guided lesson.
final class TeachingViewTests: XCTestCase {
    static let engine2 = try! sampleEngine()

    /// The fine-tuned family: the base and two of its fine-tunes.
    static let family = try! ExplorerEngine.load(
        models: ["ft-adam-lr1e-3", "ft-sgd-lr5e-2"].map { samples.appendingPathComponent("finetune/\($0).safetensors").path },
        data: ["train", "test"].map { samples.appendingPathComponent("data/digits-\($0).safetensors").path },
        base: samples.appendingPathComponent("finetune/base.safetensors").path)

    func testTaskVectorViewShowsTheAnalysisOfTheFineTunes() throws {
        var d = Driver(Self.family)
        d.keys(.char("V"))
        XCTAssertEqual(d.app.state.view, .taskVectors)
        let a = try XCTUnwrap(d.app.state.taskVectors.analysis)
        // The view shows what BasinFusion computes for the same models.
        let expected = try TaskVectorAnalysis.compute(base: Self.family.base!.params, models: Self.family.params,
                                                      names: Self.family.names, density: 0.5)
        XCTAssertEqual(a.signConflict, expected.signConflict)
        XCTAssertEqual(a.cosine[0][1]!, expected.cosine[0][1]!)
        let text = d.text()
        XCTAssertTrue(text.contains(String(format: "%.2f", expected.cosine[0][1]!)), text)
        XCTAssertTrue(text.contains(String(format: "%.1f%%", expected.signConflict * 100)), text)
        XCTAssertTrue(text.contains("layers.0.weight"), text)
        assertFrame(d.frame(), "task-vectors-100x30")
        // Density: → raises it by 0.05 and recomputes; trimming less removes less mass.
        d.keys(.right)
        XCTAssertEqual(d.app.state.taskVectors.density, 0.55, accuracy: 1e-9)
        let denser = try XCTUnwrap(d.app.state.taskVectors.analysis)
        XCTAssertEqual(denser.density, 0.55, accuracy: 1e-9)
        XCTAssertLessThan(denser.trimmedMass[0], a.trimmedMass[0])
        // ↓ selects the next tensor.
        d.keys(.down)
        XCTAssertEqual(d.app.state.taskVectors.tensor.selected, 1)
        XCTAssertTrue(d.text().contains("\(a.tensors[1].name) (\(a.tensors[1].count) entries)"))
    }

    func testTaskVectorViewWithoutABaseSaysWhatItNeeds() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("V"))
        XCTAssertEqual(d.app.state.view, .taskVectors)
        XCTAssertTrue(d.text().contains("--base BASE_MODEL"), d.text())
    }

    func testTaskVectorViewFitsAt80x24() throws {
        var d = Driver(Self.family, width: 80, height: 24)
        d.keys(.char("V"))
        assertFrame(d.frame(), "task-vectors-80x24")
    }

    func testRandomDirectionLandscape() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("v"), .char("v"), .char("v"))
        XCTAssertEqual(d.app.state.view, .landscape)
        // Two models and nothing fitted: the random plane is the one plane there is.
        XCTAssertEqual(d.app.state.landscape.plane, .random)
        let first = d.app.state.landscape.grid
        XCTAssertFalse(first.flatMap { $0 }.contains { $0.isNaN })
        // The centre is model A itself.
        let n = first.count
        let centre = Self.engine2.network.evaluate(Self.engine2.params[0], on: Self.engine2.shownData).loss
        XCTAssertEqual(first[n / 2][n / 2], centre, accuracy: 1e-5)
        XCTAssertTrue(d.text().contains("random directions (seed 0"), d.text())
        assertFrame(d.frame(), "landscape-random-100x30")
        d.keys(.char("d"))
        XCTAssertEqual(d.app.state.landscape.seed, 1)
        XCTAssertNotEqual(d.app.state.landscape.grid, first)
        XCTAssertEqual(d.app.state.landscape.grid[n / 2][n / 2], centre, accuracy: 1e-5)
    }

    /// The lesson: L opens it on the path view; Enter goes on and sets each step up; the step's key reaches the
    /// explorer and is ticked; ← goes back; the last Enter closes it.
    func testLessonWalksThroughTheTour() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("v"))
        d.keys(.char("L"))
        XCTAssertEqual(d.app.state.lesson?.step, 0)
        XCTAssertEqual(d.app.state.view, .path, "the lesson starts on the path view")
        XCTAssertTrue(d.text().contains("Lesson 1/8 · Two networks, one task"), d.text())
        assertFrame(d.frame(), "lesson-1-100x30")
        d.keys(.enter)
        XCTAssertTrue(d.text().contains("press End"))
        d.keys(.end)
        XCTAssertEqual(d.app.state.path.t, 1, "the step's key reaches the explorer")
        XCTAssertTrue(d.text().contains("✓ End pressed"), d.text())
        d.keys(.right)
        XCTAssertEqual(d.app.state.view, .permutation)
        d.keys(.char("m"))
        XCTAssertNotNil(d.app.state.permutation.outcome)
        assertFrame(d.frame(), "lesson-3-matched-100x30")
        d.keys(.enter, .char("2"))
        XCTAssertEqual(d.app.state.view, .path)
        XCTAssertEqual(d.app.state.path.selected, .alignedLine)
        d.keys(.left)
        XCTAssertEqual(d.app.state.lesson?.step, 2)
        XCTAssertEqual(d.app.state.view, .permutation)
        d.keys(.enter, .enter, .char("1"), .char("f"))
        XCTAssertEqual(d.app.state.lesson?.step, 4)
        XCTAssertEqual(d.app.state.lesson?.done, true)
        XCTAssertNotNil(d.app.state.path.curves[CurveID(.bezier)])
        d.keys(.enter, .char("a"))
        XCTAssertEqual(d.app.state.view, .soup)
        XCTAssertTrue(d.app.state.soup.useAligned)
        d.keys(.enter)
        XCTAssertEqual(d.app.state.view, .landscape)
        XCTAssertEqual(d.app.state.landscape.plane, .bend, "the fitted bend's plane")
        d.keys(.enter)
        XCTAssertTrue(d.text().contains("Lesson 8/8"))
        d.keys(.enter)
        XCTAssertNil(d.app.state.lesson)
        XCTAssertTrue(d.text().contains("lesson finished"))
        // L closes it mid-way too; q always quits.
        d.keys(.char("L"), .char("L"))
        XCTAssertNil(d.app.state.lesson)
        d.keys(.char("L"))
        let fx = d.keys(.char("q"))
        XCTAssertTrue(fx.contains { if case .quit = $0 { return true } else { return false } })
    }

    /// `basin lesson`: one tour over both samples. Its MLP part ends on the step that goes on to the CNNs, where
    /// Enter quits the session with `continueOnCNN` set (the command then opens the CNN part on the same terminal).
    func testBasinLessonsMLPPartHandsOverToTheCNNs() throws {
        var o = InlineDriver.fastOptions
        o.lessonTour = .continuingOnCNN
        o.startWithLesson = true
        var d = Driver(Self.engine2, width: 100, height: 30, options: o)
        XCTAssertTrue(d.text().contains("Lesson 1/14 · Two networks, one task"), d.text())
        for _ in 0..<7 { d.keys(.enter) }
        XCTAssertTrue(d.text().contains("Lesson 8/14 · BatchNorm: on to two CNNs"), d.text())
        XCTAssertTrue(d.text().contains("Enter: on to the CNNs"), d.text())
        XCTAssertFalse(d.app.continueOnCNN)
        let fx = d.keys(.enter)
        XCTAssertTrue(fx.contains { if case .quit = $0 { return true } else { return false } })
        XCTAssertTrue(d.app.continueOnCNN)
    }

    func testLessonAt80x24() throws {
        var d = Driver(Self.engine2, width: 80, height: 24)
        d.keys(.char("L"))
        assertFrame(d.frame(), "lesson-1-80x24")
    }
}
