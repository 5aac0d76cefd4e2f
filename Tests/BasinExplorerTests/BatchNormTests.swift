import BasinExplorer
import BasinFusion
import BasinIO
import BasinNet
import BasinTestSupport
import BasinUI
import Foundation
import XCTest

/// The CNN samples (SampleModels/cnn: a small VGG with BatchNorm, two seeds) with the first 256 rows of the
/// digits train split and 128 of the test split (written to a temporary folder once): the tests drive a debug
/// build, where every BatchNorm reset and REPAIR pass over the full splits would take seconds.
let cnnData: [URL] = {
    let dir = try! Fixtures.temporaryDirectory()
    return [("train", 256), ("test", 128)].map { name, rows in
        let url = dir.appendingPathComponent("digits-\(name).safetensors")
        try! Dataset(path: samples.appendingPathComponent("data/digits-\(name).safetensors").path).slice(0..<rows).write(to: url)
        return url
    }
}()

func cnnEngine() throws -> ExplorerEngine {
    try ExplorerEngine.load(
        models: [0, 1].map { samples.appendingPathComponent("cnn/vgg-seed\($0).safetensors").path },
        data: cnnData.map(\.path),
        architecture: ArchitectureChoice(file: samples.appendingPathComponent("cnn/vgg.arch.json")))
}

extension InlineDriver {
    /// Five points per curve (each a BatchNorm reset or REPAIR pass on the CNN).
    init(cnn engine: ExplorerEngine, width: Int = 100, height: Int = 30) {
        var o = Self.fastOptions
        o.pathPoints = 5
        self.init(engine, width: width, height: height, options: o)
    }
}

/// Issues 11 §7 and 15: on a network with BatchNorm the BN-reset and REPAIR curves join the path view's list
/// of curves; b switches the selected curve's correction (model at t and export follow); the soup resets its
/// merged model's statistics with b; every view works on the CNN samples.
final class BatchNormExplorerTests: XCTestCase {
    static let engine = try! cnnEngine()

    func testCurvesOfABatchNormNetworkComeWithTheirCorrections() throws {
        var d = Driver(cnn: Self.engine)
        let e = d.app.engine
        XCTAssertTrue(e.hasBatchNorm)
        XCTAssertEqual(e.corrections, [.naive, .bnReset, .repair])
        XCTAssertEqual(d.app.state.path.order, [.linear, .linear.with(.bnReset), .linear.with(.repair)])
        // Each curve is what BasinFusion's path evaluator gives with that correction (statistics on the train set).
        let path = try ModelPath.linear(e.params[0], e.params[1])
        let reset = try BatchNormReset(network: e.network, data: e.datasets[0], batchSize: 64)
        let repair = try Repair(network: e.network, like: e.params[0], data: e.datasets[0], batchSize: 64)
        for (id, correction) in [(CurveID.linear, PointCorrection.none), (.linear.with(.bnReset), .bnReset(reset)), (.linear.with(.repair), .repair(repair))] {
            let curve = try XCTUnwrap(d.app.state.path.curves[id])
            XCTAssertTrue(curve.done, "\(id)")
            let mid = try XCTUnwrap(curve.points.first { abs($0.t - 0.5) < 1e-9 })
            let expected = PathEvaluator(path: path, network: e.network, datasets: e.datasets, correction: correction).evaluate(at: 0.5)
            XCTAssertEqual(mid.loss[1], expected[1].loss, accuracy: 1e-4, "\(id)")
            XCTAssertEqual(mid.accuracy[1], expected[1].accuracy, accuracy: 1e-9, "\(id)")
        }
        // The CNN story: recomputing the statistics lowers the barrier of the naive line.
        let naive = try XCTUnwrap(d.app.state.path.curves[.linear]?.barrier(1)?.height)
        let resetBarrier = try XCTUnwrap(d.app.state.path.curves[.linear.with(.bnReset)]?.barrier(1)?.height)
        XCTAssertLessThan(resetBarrier, naive)
        // Each correction has its own glyph.
        XCTAssertEqual(Set(d.app.state.path.order.map(\.glyph.unicode)).count, 3)
        XCTAssertEqual(Set(d.app.state.path.order.map(\.glyph.ascii)).count, 3)
        assertFrame(d.frame(), "cnn-path-100x30")
    }

    /// Curves are not jobs: while they compute, the status bar says which and how many are complete instead of
    /// "ready". The curves' jobs are run one at a time here, so each state in between is seen.
    func testStatusBarSaysWhichCurvesAreStillComputing() throws {
        var o = InlineDriver.fastOptions
        o.pathPoints = 5
        var app = ExplorerApp(engine: Self.engine, options: o, size: Size(width: 160, height: 30))
        var jobs = app.update(.start).compactMap { e -> (@Sendable (Inbox<ExplorerMessage>) -> Void)? in
            if case .spawn(let job) = e { return job } else { return nil }
        }
        func status() -> String {
            var b = CellBuffer(size: Size(width: 160, height: 30))
            app.render(into: &b, context: RenderContext(theme: .dark, capability: .none, glyphs: .unicodeSet))
            return b.text().split(separator: "\n", omittingEmptySubsequences: false)[29].trimmingCharacters(in: .whitespaces)
        }
        XCTAssertTrue(app.state.jobs.isEmpty, "no job: the status bar would say ready")
        XCTAssertEqual(jobs.count, 3, "one evaluation per curve")
        XCTAssertTrue(status().hasSuffix("paths: 0/1 curves · BN reset: 0/1 curves · REPAIR: 0/1 curves"), status())
        var seen: [String] = []
        while !jobs.isEmpty {
            let inbox = Inbox<ExplorerMessage>()
            jobs.removeFirst()(inbox)
            for m in inbox.drain() { _ = app.update(.message(m)) }
            seen.append(status())
        }
        XCTAssertTrue(seen[0].hasSuffix("BN reset: 0/1 curves · REPAIR: 0/1 curves") && !seen[0].contains("paths:"), seen[0])
        XCTAssertTrue(seen[1].hasSuffix("REPAIR: 0/1 curves") && !seen[1].contains("BN reset:"), seen[1])
        XCTAssertTrue(seen[2].hasSuffix("ready"), seen[2])
        XCTAssertNil(app.state.path.computing)
    }

    func testBCyclesTheSelectedCurvesCorrectionAndModelAtTFollows() throws {
        var d = Driver(cnn: Self.engine)
        let e = d.app.engine
        let path = try ModelPath.linear(e.params[0], e.params[1])
        XCTAssertEqual(d.app.state.path.selected, .linear)
        XCTAssertTrue(d.text().contains("BN: naive (b: reset)"), d.text())
        d.keys(.char("b"))
        XCTAssertEqual(d.app.state.path.selected, .linear.with(.bnReset))
        XCTAssertTrue(d.text().contains("BN: reset on train (b)"), d.text())
        let reset = try BatchNormReset(network: e.network, data: e.datasets[0])
        let expected = e.evaluate(reset.apply(path.parameters(at: 0.5)))
        XCTAssertEqual(d.app.state.path.cursorMetrics![1].loss, expected[1].loss, accuracy: 1e-5)
        d.keys(.char("b"))
        XCTAssertEqual(d.app.state.path.selected, .linear.with(.repair))
        XCTAssertTrue(d.text().contains("BN: REPAIR on train (b)"), d.text())
        d.keys(.char("b"))
        XCTAssertEqual(d.app.state.path.selected, .linear)
        // The keys 1-3 select the three curves.
        d.keys(.char("3"))
        XCTAssertEqual(d.app.state.path.selected, .linear.with(.repair))
    }

    func testAlignmentAndFitsOnTheCNN() throws {
        var d = Driver(cnn: Self.engine)
        d.keys(.char("m"))
        let order = d.app.state.path.order
        XCTAssertEqual(order, [.linear, .linear.with(.bnReset), .linear.with(.repair),
                               .alignedLine, .alignedLine.with(.bnReset), .alignedLine.with(.repair)])
        // Matching + reset: the barrier of the aligned, BN-reset line is below the naive line's.
        let naive = try XCTUnwrap(d.app.state.path.curves[.linear]?.barrier(1)?.height)
        let matchedReset = try XCTUnwrap(d.app.state.path.curves[.alignedLine.with(.bnReset)]?.barrier(1)?.height)
        XCTAssertLessThan(matchedReset, naive)
        assertFrame(d.frame(), "cnn-path-aligned-100x30")
        // A fitted curve; b asks for its BN-reset version, which refreshes with it.
        d.keys(.char("1"), .char("f"))
        let bezier = CurveID(.bezier)
        XCTAssertEqual(d.app.state.path.curves[bezier]?.done, true)
        XCTAssertEqual(d.app.state.path.selected, bezier)
        d.keys(.char("b"))
        XCTAssertEqual(d.app.state.path.selected, bezier.with(.bnReset))
        XCTAssertEqual(d.app.state.path.curves[bezier.with(.bnReset)]?.done, true)
        XCTAssertNotNil(d.app.state.path.cursorMetrics)
        // The permutation view shows the CNN's channel groups; the landscape through the bend computes and says
        // its statistics are interpolated.
        d.keys(.char("v"))
        XCTAssertEqual(d.app.state.view, .permutation)
        XCTAssertNotNil(d.app.state.permutation.outcome)
        assertFrame(d.frame(), "cnn-permutation-100x30")
        d.keys(.char("v"), .char("v"))
        XCTAssertEqual(d.app.state.view, .landscape)
        if d.app.state.landscape.grid.isEmpty { d.keys(.char("r")) }
        XCTAssertEqual(d.app.state.landscape.filled, d.app.state.landscape.resolution)
        XCTAssertTrue(d.app.state.landscape.title.contains("BN naive"), d.app.state.landscape.title)
        XCTAssertTrue(d.app.state.landscape.grid.joined().allSatisfy(\.isFinite))
    }

    func testSoupResetsTheMergedModelsStatistics() throws {
        var d = Driver(cnn: Self.engine)
        d.keys(.char("v"), .char("v"))
        XCTAssertEqual(d.app.state.view, .soup)
        let e = d.app.engine
        let naive = try XCTUnwrap(d.app.state.soup.metrics)
        let average = ParameterSet.lerp(e.params[0], e.params[1], 0.5)
        XCTAssertEqual(naive[1].loss, e.evaluate(average)[1].loss, accuracy: 1e-4)
        d.keys(.char("b"))
        XCTAssertTrue(d.app.state.soup.bnReset)
        let reset = try XCTUnwrap(d.app.state.soup.metrics)
        let expected = e.evaluate(try BatchNormReset(network: e.network, data: e.datasets[0]).apply(average))
        XCTAssertEqual(reset[1].loss, expected[1].loss, accuracy: 1e-4)
        XCTAssertLessThan(reset[1].loss, naive[1].loss)
        assertFrame(d.frame(), "cnn-soup-bn-reset-100x30")
    }

    /// b in the landscape view recomputes every grid point's BatchNorm statistics on the train set (in the
    /// background, as every landscape), so the random plane's centre, model A itself, scores A after a reset.
    func testLandscapeResetsEachPointsStatistics() throws {
        var o = InlineDriver.fastOptions
        o.pathPoints = 5
        o.landscapeResolution = 5
        var d = Driver(Self.engine, width: 100, height: 30, options: o)
        d.keys(.char("v"), .char("v"), .char("v"))
        XCTAssertEqual(d.app.state.view, .landscape)
        XCTAssertEqual(d.app.state.landscape.plane, .random)
        XCTAssertTrue(d.app.state.landscape.title.contains("BN naive"), d.app.state.landscape.title)
        XCTAssertTrue(d.text().contains("BN: naive (b: reset)"), d.text())
        let e = d.app.engine
        let naive = d.app.state.landscape.grid[2][2]
        XCTAssertEqual(naive, e.network.evaluate(e.params[0], on: e.shownData).loss, accuracy: 1e-5)
        d.keys(.char("b"))
        XCTAssertTrue(d.app.state.landscape.bnReset)
        XCTAssertTrue(d.app.state.landscape.title.contains("BN reset"), d.app.state.landscape.title)
        XCTAssertTrue(d.text().contains("BN: reset on train (b)"), d.text())
        XCTAssertEqual(d.app.state.landscape.filled, 5)
        let reset = try BatchNormReset(network: e.network, data: e.datasets[0])
        XCTAssertEqual(d.app.state.landscape.grid[2][2], e.network.evaluate(reset.apply(e.params[0]), on: e.shownData).loss, accuracy: 1e-5)
        XCTAssertNotEqual(d.app.state.landscape.grid[2][2], naive, accuracy: 1e-6)
        assertFrame(d.frame(), "cnn-landscape-bn-reset-100x30")
        // Another plane keeps the mode; b again goes back to the interpolated statistics.
        d.keys(.char("d"))
        XCTAssertTrue(d.app.state.landscape.bnReset)
        d.keys(.char("b"))
        XCTAssertFalse(d.app.state.landscape.bnReset)
        XCTAssertTrue(d.app.state.landscape.title.contains("BN naive"))
    }

    /// b in the soup view cycles naive / BN reset / REPAIR as in the path view; REPAIR's goal is the weighted mean
    /// of the models' statistics with the soup's weights (`basin soup --repair`), so the uniform soup of the two
    /// seeds is the REPAIR curve's midpoint; methods that add task vectors to a base have no such goal.
    func testSoupRepairsTheMergedModel() throws {
        var d = Driver(cnn: Self.engine)
        d.keys(.char("v"), .char("v"))
        let e = d.app.engine
        XCTAssertTrue(d.text().contains("BN: naive (b: reset)"), d.text())
        d.keys(.char("b"))
        XCTAssertEqual(d.app.state.soup.correction, .bnReset)
        XCTAssertTrue(d.text().contains("BN: reset on train (b)"), d.text())
        d.keys(.char("b"))
        XCTAssertEqual(d.app.state.soup.correction, .repair)
        XCTAssertTrue(d.text().contains("BN: REPAIR on train (b)"), d.text())
        let shown = try XCTUnwrap(d.app.state.soup.metrics)
        let repair = try XCTUnwrap(e.repair)
        let average = ParameterSet.lerp(e.params[0], e.params[1], 0.5)
        let expected = try CombinationCorrection(.repair(repair), models: e.params).evaluate(average, weights: [0.5, 0.5], network: e.network, on: e.datasets)
        XCTAssertEqual(shown[1].loss, expected[1].loss, accuracy: 1e-4)
        let midpoint = e.evaluatePoint(try ModelPath.linear(e.params[0], e.params[1]), t: 0.5, correction: .repair)
        XCTAssertEqual(shown[1].loss, midpoint[1].loss, accuracy: 1e-4, "the uniform soup is the REPAIR curve's midpoint")
        XCTAssertLessThan(shown[1].loss, e.evaluate(average)[1].loss)
        assertFrame(d.frame(), "cnn-soup-repair-100x30")
        // Uneven weights: the goal follows them.
        d.keys(.char("l"))
        XCTAssertEqual(d.app.state.soup.coefficients, [0.55, 0.5])
        let w = [0.55 / 1.05, 0.5 / 1.05]
        let uneven = try CombinationCorrection(.repair(repair), models: e.params)
            .evaluate(try e.merge(.weighted, coefficients: [0.55, 0.5], lambda: 1), weights: w, network: e.network, on: e.datasets)
        XCTAssertEqual(d.app.state.soup.metrics![1].loss, uneven[1].loss, accuracy: 1e-4)
        // Task vectors added to a base are no weighted mean of the models.
        XCTAssertThrowsError(try e.soupRepairWeights(.ties, coefficients: [0.5, 0.5], lambda: 1)) { error in
            XCTAssertEqual((error as? ExplorerError)?.kind, .unsupportedRequest)
        }
        d.keys(.char("b"))
        XCTAssertEqual(d.app.state.soup.correction, .naive)
    }

    /// On the CNN samples the lesson gains its BN-reset step after alignment (`basin lesson --cnn`).
    func testLessonOnTheCNNHasTheBatchNormStep() throws {
        var d = Driver(cnn: Self.engine)
        d.keys(.char("L"))
        XCTAssertTrue(d.text().contains("Lesson 1/9"), d.text())
        XCTAssertTrue(d.text().contains("small CNN with BatchNorm"), d.text())
        d.keys(.enter, .enter, .char("m"), .enter, .char("4"))
        XCTAssertEqual(d.app.state.path.selected, .alignedLine, "4 selects the aligned line on a BatchNorm network")
        XCTAssertEqual(d.app.state.lesson?.done, true)
        d.keys(.enter)
        XCTAssertTrue(d.text().contains("Lesson 5/9 · BatchNorm: reset the statistics"), d.text())
        d.keys(.char("b"))
        XCTAssertEqual(d.app.state.lesson?.done, true)
        XCTAssertEqual(d.app.state.path.selected, .alignedLine.with(.bnReset))
        assertFrame(d.frame(), "cnn-lesson-bn-reset-100x30")
    }

    /// `basin lesson`'s CNN part, numbered after the MLP part: the CNN pair, m, 4, b on the path, then a and b in
    /// the soup view; ← stays at its first step (the MLP part was another session); the last Enter ends it.
    func testBasinLessonsCNNPartContinuesTheTour() throws {
        var o = InlineDriver.fastOptions
        o.pathPoints = 5
        o.lessonTour = .cnnPart
        o.startWithLesson = true
        var d = Driver(Self.engine, width: 80, height: 24, options: o)
        XCTAssertTrue(d.text().contains("Lesson 9/14 · Two CNNs with BatchNorm"), d.text())
        assertFrame(d.frame(), "cnn-lesson-continued-80x24")
        d.keys(.left)
        XCTAssertEqual(d.app.state.lesson?.step, 0)
        d.keys(.enter, .char("m"))
        XCTAssertEqual(d.app.state.view, .permutation)
        XCTAssertEqual(d.app.state.lesson?.done, true)
        d.keys(.enter, .char("4"))
        XCTAssertEqual(d.app.state.path.selected, .alignedLine)
        d.keys(.enter)
        XCTAssertTrue(d.text().contains("Lesson 12/14 · BatchNorm: reset the statistics"), d.text())
        d.keys(.char("b"))
        XCTAssertEqual(d.app.state.path.selected, .alignedLine.with(.bnReset))
        d.keys(.enter, .char("a"), .char("b"))
        XCTAssertEqual(d.app.state.view, .soup)
        XCTAssertTrue(d.app.state.soup.useAligned)
        XCTAssertEqual(d.app.state.soup.correction, .bnReset)
        XCTAssertEqual(d.app.state.lesson?.done, true)
        d.keys(.enter)
        XCTAssertTrue(d.text().contains("Lesson 14/14"), d.text())
        XCTAssertTrue(d.text().contains("Enter ends the lesson"), d.text())
        d.keys(.enter)
        XCTAssertNil(d.app.state.lesson)
        XCTAssertFalse(d.app.continueOnCNN)
    }

    func testBOnANetworkWithoutBatchNormSaysSo() throws {
        var d = Driver(try sampleEngine())
        XCTAssertEqual(d.app.engine.corrections, [.naive])
        XCTAssertEqual(d.app.state.path.order, [.linear])
        d.keys(.char("b"))
        XCTAssertEqual(d.app.state.path.selected, .linear)
        XCTAssertTrue(d.app.state.lastJobNote?.contains("no BatchNorm") == true)
        XCTAssertFalse(d.text().contains("BN:"))
    }
}

/// Exports of corrected points: the file holds the corrected model, and the recipe and the popup say how it was
/// made (`basin merge ... --bn-reset` / `--repair` rebuilds the export byte for byte).
final class BatchNormExportTests: ExportTestCase {
    func metrics(_ url: URL, _ e: ExplorerEngine) throws -> [Metrics] {
        let m = try LoadedModel(path: url.path, architecture: ArchitectureChoice(file: e.architectureFile))
        return e.evaluate(m.params)
    }

    /// Exports NAME, checks the popup and the recipe's comment give the rebuild command with OPTION TRAIN, runs
    /// it and compares the bytes.
    func exportAndRebuild(_ d: inout Driver, _ name: String, _ option: String, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        var message = ""
        let out = export(&d, name, popup: { message = $0 }, file: file, line: line)
        let e = d.app.engine
        let options = ["--arch", e.architectureFile!.path, option, e.dataFiles[0].path, "--bn-batch", "64"]
        let command = "OUT " + options.joined(separator: " ")
        XCTAssertTrue(message.contains("basin merge \(out.recipe.lastPathComponent) \(command) rebuilds it"), message, file: file, line: line)
        let recipe = try String(contentsOf: out.recipe, encoding: .utf8)
        XCTAssertTrue(recipe.contains("Rebuild: basin merge \(out.recipe.path) \(command)"), recipe, file: file, line: line)
        try assertRebuilds(out, options, file: file, line: line)
        return out.model
    }

    func testBNResetPathExportRebuildsWithBasinMergeBNReset() throws {
        var d = Driver(cnn: BatchNormExplorerTests.engine)
        d.keys(.char("b"), .char("l"))
        XCTAssertEqual(d.app.state.path.selected, .linear.with(.bnReset))
        let model = try exportAndRebuild(&d, "reset", "--bn-reset")
        // The file is the corrected model: the metrics model at t showed.
        let m = try metrics(model, d.app.engine)
        XCTAssertEqual(m[1].loss, d.app.state.path.cursorMetrics![1].loss, accuracy: 1e-5)
        XCTAssertEqual(try SafeTensorsFile(url: model).metadata["basin.bn_reset"], "data=digits-train.safetensors batch=64")
    }

    /// A REPAIRed point of the straight line and of a fitted Bezier curve: the file is the repaired model (the
    /// metrics model at t showed), and `basin merge RECIPE OUT --repair TRAIN` rebuilds it byte for byte (the goal
    /// over the line's ends, and over the curve's ends and its bend, read from the bends file written beside it).
    func testRepairExportsRebuildWithBasinMergeRepair() throws {
        var d = Driver(cnn: BatchNormExplorerTests.engine)
        d.keys(.char("b"), .char("b"), .char("l"))
        XCTAssertEqual(d.app.state.path.selected, .linear.with(.repair))
        var model = try exportAndRebuild(&d, "repair", "--repair")
        var m = try metrics(model, d.app.engine)
        XCTAssertEqual(m[1].loss, d.app.state.path.cursorMetrics![1].loss, accuracy: 1e-4)
        XCTAssertEqual(try SafeTensorsFile(url: model).metadata["basin.repair"], "data=digits-train.safetensors batch=64")

        d.keys(.char("1"), .char("f"), .char("b"), .char("b"))
        XCTAssertEqual(d.app.state.path.selected, CurveID(.bezier).with(.repair))
        XCTAssertEqual(d.app.state.path.curves[CurveID(.bezier).with(.repair)]?.done, true)
        model = try exportAndRebuild(&d, "bezier-repair", "--repair")
        m = try metrics(model, d.app.engine)
        XCTAssertEqual(m[1].loss, d.app.state.path.cursorMetrics![1].loss, accuracy: 1e-4)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("bezier-repair.bends.safetensors").path))
    }

    /// A REPAIRed soup, weighted and SLERP: the file is what the view measured and `basin merge --repair` rebuilds it.
    func testRepairSoupExportsRebuild() throws {
        var d = Driver(cnn: BatchNormExplorerTests.engine)
        d.keys(.char("v"), .char("v"), .char("b"), .char("b"), .char("l"))
        XCTAssertEqual(d.app.state.soup.correction, .repair)
        var model = try exportAndRebuild(&d, "soup-repair", "--repair")
        var m = try metrics(model, d.app.engine)
        XCTAssertEqual(m[1].loss, d.app.state.soup.metrics![1].loss, accuracy: 1e-5)
        while d.app.state.soup.method != .slerp { d.keys(.char("n")) }
        XCTAssertNil(d.app.state.soup.error)
        model = try exportAndRebuild(&d, "slerp-repair", "--repair")
        m = try metrics(model, d.app.engine)
        XCTAssertEqual(m[1].loss, d.app.state.soup.metrics![1].loss, accuracy: 1e-5)
    }

    func testBNResetSoupExportRebuilds() throws {
        var d = Driver(cnn: BatchNormExplorerTests.engine)
        d.keys(.char("v"), .char("v"), .char("b"))
        let model = try exportAndRebuild(&d, "soup", "--bn-reset")
        let m = try metrics(model, d.app.engine)
        XCTAssertEqual(m[1].loss, d.app.state.soup.metrics![1].loss, accuracy: 1e-5)
    }
}

/// Issue 13 §4: named evaluation sets (`--eval NAME=FILE`) in the soup view, side by side, so a merge of the
/// LLaMA fine-tunes shows one task traded for another; token data reads loss / perplexity / token accuracy.
final class EvaluationSetTests: XCTestCase {
    static let engine: ExplorerEngine = {
        let t = samples.appendingPathComponent("transformers")
        return try! ExplorerEngine.load(
            models: ["add", "mul"].map { t.appendingPathComponent("llama-ft-\($0)").path },
            data: ["train", "test"].map { samples.appendingPathComponent("data/modarith-\($0).safetensors").path },
            base: t.appendingPathComponent("llama-base").path,
            evals: ["add", "sub", "mul"].map { (name: $0, path: samples.appendingPathComponent("data/modarith-\($0)-test.safetensors").path) })
    }()

    func testSoupShowsEveryEvaluationSetAndTheTradeBetweenTasks() throws {
        var d = Driver(Self.engine)
        let e = d.app.engine
        XCTAssertTrue(d.app.state.tokenData)
        d.keys(.char("v"), .char("v"))
        XCTAssertEqual(d.app.state.soupDataNames, ["train", "test", "add", "sub", "mul"])
        let uniform = try XCTUnwrap(d.app.state.soup.metrics)
        XCTAssertEqual(uniform.count, 5)
        // Each row is the merged model evaluated on that set.
        let merged = try e.merge(.weighted, coefficients: [0.5, 0.5], lambda: 1)
        for (i, set) in e.evalSets.enumerated() {
            XCTAssertEqual(uniform[2 + i].loss, e.network.evaluate(merged, on: set.data).loss, accuracy: 1e-5, set.name)
        }
        let text = d.text()
        XCTAssertTrue(text.contains("each cell: loss, perplexity, token accuracy"), text)
        assertFrame(d.frame(), "llama-soup-eval-sets-100x30")
        // All weight on the add fine-tune, then all on the mul fine-tune: each does better on its own task.
        func only(_ k: Int) -> [Metrics] {
            for i in 0..<2 {
                while d.app.state.soup.selected != i { d.keys(.char("j")) }
                while d.app.state.soup.coefficients[i] != (i == k ? 1 : 0) { d.keys(.char(i == k ? "l" : "h")) }
            }
            return d.app.state.soup.metrics!
        }
        let add = only(0), mul = only(1)
        XCTAssertGreaterThan(add[2].accuracy, mul[2].accuracy, "the add fine-tune wins on add")
        XCTAssertGreaterThan(mul[4].accuracy, add[4].accuracy, "the mul fine-tune wins on mul")
    }

    func testPathViewLabelsTokenMetrics() throws {
        var d = Driver(Self.engine)
        var text = d.text()
        XCTAssertTrue(text.contains("ppl tok acc"), text)
        d.keys(.char("y"))
        text = d.text()
        XCTAssertTrue(text.contains("token accuracy along the path"), text)
        assertFrame(d.frame(), "llama-path-token-accuracy-100x30")
    }
}
