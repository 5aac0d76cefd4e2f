import BasinFusion
import BasinIO
import BasinExplorer
import BasinTestSupport
import BasinUI
import Foundation
import XCTest

/// The flows that call BasinFusion: fitting, matching, merge methods, greedy soup, cancellation.
final class FusionFlowTests: XCTestCase {
    static let engine2 = try! sampleEngine()

    func testFitOverlaysTheFittedCurveWithALowerBarrier() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("f"))
        XCTAssertEqual(d.app.state.path.selected, CurveID(.bezier), "f fits a Bezier curve and selects it")
        XCTAssertEqual(d.app.state.path.fitted, [CurveID(.bezier)])
        XCTAssertTrue(d.app.state.jobs.isEmpty)
        XCTAssertNil(d.app.state.path.fit)
        let fit = try XCTUnwrap(d.app.state.path.curves[CurveID(.bezier)])
        XCTAssertEqual(fit.label, "Bezier fit")
        XCTAssertTrue(fit.done)
        let lin = try XCTUnwrap(d.app.state.path.curves[.linear])
        XCTAssertLessThan(fit.barrier(1)!.height, lin.barrier(1)!.height)
        XCTAssertTrue(d.app.state.lastJobNote?.hasPrefix("Bezier fit done") == true, d.app.state.lastJobNote ?? "")
        assertFrame(d.frame(), "path-fitted-100x30")
        // The landscape now goes through A, the bend and B.
        d.keys(.char("V"), .char("V"))
        XCTAssertEqual(d.app.state.landscape.anchors.map(\.label), ["A", "θ", "B"])
        XCTAssertEqual(d.app.state.landscape.filled, 9)
        assertFrame(d.frame(), "landscape-fitted-100x30")
        // After matching, o switches to the plane through A, aligned B and B.
        d.keys(.char("m"), .char("o"))
        XCTAssertEqual(d.app.state.landscape.plane, .aligned)
        XCTAssertEqual(d.app.state.landscape.anchors.map(\.label), ["A", "π(B)", "B"])
        XCTAssertEqual(d.app.state.landscape.filled, 9)
        d.keys(.char("o"), .char("o"))
        XCTAssertEqual(d.app.state.landscape.plane, .bend, "aligned, random directions, then the bend again")
    }

    func testWeightMatchingFillsThePermutationViewAndAddsTheAlignedLine() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("m"))
        let o = try XCTUnwrap(d.app.state.permutation.outcome)
        XCTAssertEqual(o.report.layers.count, 2)
        XCTAssertEqual(o.report.layers[0].size, 128)
        XCTAssertGreaterThan(o.report.layers[0].moved, 100)
        XCTAssertGreaterThan(o.report.layers[0].meanSimilarityAfter, o.report.layers[0].meanSimilarityBefore)
        XCTAssertTrue(d.app.state.selectionAligned)
        let aligned = try XCTUnwrap(d.app.state.path.curves[.alignedLine])
        XCTAssertTrue(aligned.done)
        XCTAssertEqual(aligned.label, "aligned")
        let lin = try XCTUnwrap(d.app.state.path.curves[.linear])
        XCTAssertLessThan(aligned.barrier(1)!.height, lin.barrier(1)!.height, "alignment lowers the barrier")
        assertFrame(d.frame(), "path-aligned-100x30")
        d.keys(.char("v"))
        assertFrame(d.frame(), "permutation-100x30")
        d.keys(.char("j"))
        XCTAssertEqual(d.app.state.permutation.layer.selected, 1)
        d.keys(.tab, .char("j"), .char("j"), .pageDown)
        XCTAssertEqual(d.app.state.permutation.matches.selected, 12)
        XCTAssertTrue(d.frame().text().contains("units moved"))
    }

    /// The soup of two independently trained models is poor; after alignment the same soup is good.
    func testSoupOfAlignedModels() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("v"), .char("v"), .char("a"))
        XCTAssertFalse(d.app.state.soup.useAligned, "nothing to use before matching")
        XCTAssertTrue(d.app.state.soup.note?.contains("align first") == true)
        let naive = try XCTUnwrap(d.app.state.soup.metrics)
        d.keys(.char("m"), .char("a"))
        XCTAssertTrue(d.app.state.soup.useAligned)
        let aligned = try XCTUnwrap(d.app.state.soup.metrics)
        XCTAssertLessThan(aligned[1].loss, naive[1].loss / 2, "alignment makes the uniform soup work")
        XCTAssertGreaterThan(aligned[1].accuracy, naive[1].accuracy)
        assertFrame(d.frame(), "soup-aligned-100x30")
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        d.keys(.char("e"))
        for _ in 0..<40 { d.keys(.backspace) }
        d.type(dir.appendingPathComponent("aligned-soup").path)
        d.keys(.enter)
        let recipe = try String(contentsOf: dir.appendingPathComponent("aligned-soup.recipe.yaml"), encoding: .utf8)
        let permuted = dir.appendingPathComponent("aligned-soup.mlp-seed1-aligned-to-mlp-seed0.safetensors")
        XCTAssertTrue(recipe.contains(permuted.path), "the recipe names the permuted model it merges:\n\(recipe)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: permuted.path))
        d.keys(.enter, .char("a"))
        XCTAssertFalse(d.app.state.soup.useAligned)
        XCTAssertEqual(d.app.state.soup.metrics![1].loss, naive[1].loss, accuracy: 1e-9)
    }

    func testActivationMatching() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("M"))
        let o = try XCTUnwrap(d.app.state.permutation.outcome)
        XCTAssertEqual(o.report.method, .activation)
        XCTAssertTrue(d.app.state.selectionAligned)
        XCTAssertEqual(d.app.state.alignmentMethod, "activation")
    }

    func testSoupMethodsWithABase() throws {
        let engine = try ExplorerEngine.load(
            models: ["ft-adam-lr1e-3", "ft-sgd-lr5e-2", "ft-adam-wd1e-3"].map { samples.appendingPathComponent("finetune/\($0).safetensors").path },
            data: ["train", "test"].map { samples.appendingPathComponent("data/digits-\($0).safetensors").path },
            base: samples.appendingPathComponent("finetune/base.safetensors").path)
        var d = Driver(engine)
        d.keys(.char("v"), .char("v"))
        XCTAssertNotNil(d.app.state.soup.ensemble)
        for method in [ExplorerEngine.SoupMethod.taskArithmetic, .ties, .dare] {
            d.keys(.char("n"))
            XCTAssertEqual(d.app.state.soup.method, method)
            XCTAssertNil(d.app.state.soup.error, "\(method): \(d.app.state.soup.error ?? "")")
            XCTAssertNotNil(d.app.state.soup.metrics)
        }
        // The λ slider appears for task vectors, and a density slider for TIES and DARE (the last one).
        d.keys(.char("k"))
        XCTAssertEqual(d.app.state.soup.selected, 4)
        let before = d.app.state.soup.metrics
        d.keys(.char("h"))
        XCTAssertEqual(d.app.state.soup.density, 0.45, accuracy: 1e-9)
        XCTAssertNotEqual(d.app.state.soup.metrics, before, "a lower density drops more of each task vector")
        d.keys(.char("k"))
        XCTAssertEqual(d.app.state.soup.selected, 3)
        d.keys(.char("h"))
        XCTAssertEqual(d.app.state.soup.lambda, 0.95, accuracy: 1e-9)
        XCTAssertTrue(try engine.soupRecipe(.dare, coefficients: [1, 1, 1], lambda: 1, density: 0.45).yaml().contains("density: 0.45"))
        assertFrame(d.frame(), "soup-dare-base-100x30")
        d.keys(.char("n"))
        XCTAssertEqual(d.app.state.soup.method, .slerp)
        XCTAssertNotNil(d.app.state.soup.error, "SLERP takes two models")
        XCTAssertTrue(d.frame().text().contains("SLERP interpolates two models"))
        d.keys(.char("n"), .char("g"))
        XCTAssertEqual(d.app.state.soup.method, .weighted)
        XCTAssertTrue(d.app.state.soup.note?.hasPrefix("greedy soup") == true)
        XCTAssertEqual(d.app.state.soup.coefficients.filter { $0 > 0 }.count, d.app.state.soup.note!.components(separatedBy: " + ").count)
    }

    func testTaskArithmeticWithoutBaseExplainsWhy() throws {
        var d = Driver(Self.engine2)
        d.keys(.char("v"), .char("v"), .char("n"))
        XCTAssertTrue(d.app.state.soup.error?.contains("--base") == true)
        d.keys(.char("e"))
        for _ in 0..<40 { d.keys(.backspace) }
        d.type("/tmp/never-written.safetensors")
        d.keys(.enter)
        XCTAssertEqual(d.app.state.popup?.isError, true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/never-written.safetensors"))
    }

    func testSoupExportWritesAMergeRecipe() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var d = Driver(Self.engine2)
        d.keys(.char("v"), .char("v"), .char("h"), .char("e"))
        for _ in 0..<40 { d.keys(.backspace) }
        d.type(dir.appendingPathComponent("soup").path)
        d.keys(.enter)
        XCTAssertEqual(d.app.state.popup?.isError, false, d.app.state.popup?.message ?? "")
        let recipe = try String(contentsOf: dir.appendingPathComponent("soup.recipe.yaml"), encoding: .utf8)
        XCTAssertTrue(recipe.contains("merge_method: linear"), recipe)
        XCTAssertTrue(recipe.contains("weight: 0.45"), recipe)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("soup.safetensors").path))
    }

    /// Esc stops a running fit early and keeps the curve fitted so far; the UI keeps handling keys meanwhile,
    /// and the curve is redrawn while it is fitted.
    func testEscStopsAFitEarlyInTheRealLoop() throws {
        var o = ExplorerOptions()
        o.fitEpochs = 500
        let app = ExplorerApp(engine: Self.engine2, options: o, size: Size(width: 100, height: 30))
        var script: [TestTerminal.Step] = [.key(.char("f"))]
        script += Array(repeating: .sleep(20), count: 75)
        script += [.key(.char("l")), .key(.esc)]
        script += Array(repeating: .sleep(20), count: 200)
        script += [.key(.char("q"))]
        let term = TestTerminal(width: 100, height: 30, script: script)
        let final = try RunLoop(app: app).run(on: term)
        XCTAssertEqual(final.state.path.t, 0.55, accuracy: 1e-9, "keys handled while the fit runs")
        XCTAssertTrue(final.state.lastJobNote?.hasPrefix("Bezier fit stopped early") == true, final.state.lastJobNote ?? "")
        XCTAssertTrue(final.state.jobs.isEmpty)
        XCTAssertNil(final.state.path.fit)
        XCTAssertEqual(final.state.path.fitted, [CurveID(.bezier)], "stopping keeps the curve so far")
        XCTAssertEqual(final.state.path.curves[CurveID(.bezier)]?.done, true)
        XCTAssertTrue(term.frames.contains { $0.text().contains("fitting Bezier: epoch") }, "the fit's epoch and loss show while it runs")
    }
}

/// Greedy soup in the explorer chooses on the held-out set when one is given, not on the test split shown.
final class HeldOutGreedyTests: XCTestCase {
    func testGreedySoupUsesTheHeldOutSet() throws {
        let family = ["ft-adam-lr1e-3", "ft-adam-lr3e-4", "ft-sgd-lr5e-2", "ft-adam-wd1e-3"].map {
            samples.appendingPathComponent("finetune/\($0).safetensors").path
        }
        let data = ["fit", "test"].map { samples.appendingPathComponent("data/digits-\($0).safetensors").path }
        let val = samples.appendingPathComponent("data/digits-val.safetensors").path
        let withHeldOut = try ExplorerEngine.load(models: family, data: data, heldOut: val)
        let withoutHeldOut = try ExplorerEngine.load(models: family, data: data)
        let network = withHeldOut.network
        let onVal = try Soup.greedy(network: network, ingredients: withHeldOut.params, heldOut: try Dataset(path: val))
        let onTest = try Soup.greedy(network: network, ingredients: withHeldOut.params, heldOut: withHeldOut.datasets[1])
        func weights(_ chosen: [Int]) -> [Double] { family.indices.map { chosen.contains($0) ? 1 / Double(chosen.count) : 0 } }
        XCTAssertEqual(try withHeldOut.greedySoup(), weights(onVal.chosen))
        XCTAssertEqual(try withoutHeldOut.greedySoup(), weights(onTest.chosen))
        XCTAssertNotEqual(onVal.chosen.sorted(), onTest.chosen.sorted(), "the two sets pick different soups here, so the test can tell them apart")
    }
}
