import BasinExplorer
import BasinFusion
import BasinIO
import BasinNet
import BasinTestSupport
import BasinUI
import Foundation
import XCTest

/// Bug 2: every explorer export rebuilds. `basin merge NAME.recipe.yaml OUT` on what the explorer wrote gives
/// the exported file byte for byte, and the exported model has the metrics the explorer showed.
final class ExportRebuildTests: ExportTestCase {
    /// Exports with `e`, runs `basin merge` on the recipe (from another folder), compares the bytes and returns
    /// the exported model's metrics on the session's data sets.
    @discardableResult
    func exportAndRebuild(_ d: inout Driver, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Metrics] {
        let out = export(&d, name, file: file, line: line)
        try assertRebuilds(out, file: file, line: line)
        // The same metadata as a CLI merge.
        let meta = try SafeTensorsFile(url: out.model).metadata
        XCTAssertEqual(meta["format"], "pt", file: file, line: line)
        XCTAssertNotNil(meta["basin.merge_method"], file: file, line: line)
        XCTAssertNotNil(meta["basin.inputs_sha256"], file: file, line: line)
        let model = try LoadedModel(path: out.model.path)
        return d.app.engine.datasets.map { model.network.evaluate(model.params, on: $0) }
    }

    func testPathExportsRebuild() throws {
        var d = Driver(try sampleEngine())
        d.keys(.char("l"))
        var m = try exportAndRebuild(&d, "linear")
        XCTAssertEqual(m[1].loss, d.app.state.path.cursorMetrics![1].loss, accuracy: 1e-5)
        // The fitted Bezier curve: its bends are written beside the export and named by the recipe.
        d.keys(.char("f"))
        m = try exportAndRebuild(&d, "bezier")
        XCTAssertEqual(m[1].loss, d.app.state.path.cursorMetrics![1].loss, accuracy: 1e-5)
        let recipe = try String(contentsOf: dir.appendingPathComponent("bezier.recipe.yaml"), encoding: .utf8)
        XCTAssertTrue(recipe.contains(dir.appendingPathComponent("bezier.bends.safetensors").path), recipe)
        // The aligned line: B's permuted copy is written and named by the recipe.
        d.keys(.char("m"), .char("a"))
        XCTAssertEqual(d.app.state.path.selected, .alignedLine)
        m = try exportAndRebuild(&d, "aligned")
        XCTAssertEqual(m[1].loss, d.app.state.path.cursorMetrics![1].loss, accuracy: 1e-5)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("aligned.mlp-seed1-aligned-to-mlp-seed0.safetensors").path))
        // A Bezier fitted between A and aligned B.
        d.keys(.char("f"))
        XCTAssertEqual(d.app.state.path.selected, CurveID(.bezier, aligned: true))
        m = try exportAndRebuild(&d, "aligned-bezier")
        XCTAssertEqual(m[1].loss, d.app.state.path.cursorMetrics![1].loss, accuracy: 1e-5)
    }

    func testChainExportRebuilds() throws {
        var d = Driver(try sampleEngine(seeds: [0, 1, 2]))
        d.keys(.char("p"), .char("p"), .char("p"))
        XCTAssertEqual(d.app.state.selection, .chain)
        d.keys(.char("m"), .char("a"), .char("l"))
        let m = try exportAndRebuild(&d, "aligned-chain")
        XCTAssertEqual(m[1].loss, d.app.state.path.cursorMetrics![1].loss, accuracy: 1e-5)
    }

    /// The case the new user hit: `m`, `a` in the soup view, `e`; the recipe named the unpermuted model.
    func testAlignedSoupExportRebuildsWithThePermutedModel() throws {
        var d = Driver(try sampleEngine())
        d.keys(.char("v"), .char("v"), .char("m"), .char("a"))
        XCTAssertTrue(d.app.state.soup.useAligned)
        let m = try exportAndRebuild(&d, "aligned-soup")
        let shown = try XCTUnwrap(d.app.state.soup.metrics)
        XCTAssertEqual(m[1].accuracy, shown[1].accuracy, "the exported soup scores what the view showed")
        XCTAssertEqual(m[1].loss, shown[1].loss, accuracy: 1e-5)
    }

    /// Three models: `m` in the soup view aligns them jointly (MergeMany, in A's frame) instead of each to A; the
    /// soup of the aligned models exports and rebuilds exactly.
    func testSoupOfThreeAlignsWithMergeManyAndRebuilds() throws {
        var d = Driver(try sampleEngine(seeds: [0, 1, 2]))
        d.keys(.char("v"), .char("v"), .char("m"))
        let e = d.app.engine
        let expected = try Alignment.alignMany(e.params, spec: try PermutationSpec.make(for: e.models[0].architecture, params: e.params[0]),
                                               method: .weight, strategy: .mergeMany)
        for k in [1, 2] {
            let o = try XCTUnwrap(d.app.state.alignments[0]?[k])
            XCTAssertEqual(o.strategy, .mergeMany)
            XCTAssertEqual(o.result.permutations, expected.permutations[k], "model \(k): MergeMany's permutations")
            XCTAssertEqual(o.metadata["basin.alignment.strategy"], "merge-many")
        }
        XCTAssertTrue(d.app.state.lastJobNote?.contains("MergeMany") == true, d.app.state.lastJobNote ?? "")
        d.keys(.char("a"))
        XCTAssertTrue(d.app.state.soup.note?.contains("MergeMany") == true, d.app.state.soup.note ?? "")
        let m = try exportAndRebuild(&d, "merge-many-soup")
        let shown = try XCTUnwrap(d.app.state.soup.metrics)
        XCTAssertEqual(m[1].loss, shown[1].loss, accuracy: 1e-5)
        let meta = try SafeTensorsFile(url: dir.appendingPathComponent("merge-many-soup.mlp-seed2-aligned-to-mlp-seed0.safetensors")).metadata
        XCTAssertEqual(meta["basin.alignment.strategy"], "merge-many")
        // In the path view m still aligns each model to A on its own.
        d.keys(.char("v"), .char("v"), .char("v"), .char("m"))
        XCTAssertEqual(d.app.state.alignments[0]?[1]?.strategy, .reference)
    }

    func testSoupMethodExportsRebuild() throws {
        let engine = try ExplorerEngine.load(
            models: ["ft-adam-lr1e-3", "ft-sgd-lr5e-2"].map { samples.appendingPathComponent("finetune/\($0).safetensors").path },
            data: ["train", "test"].map { samples.appendingPathComponent("data/digits-\($0).safetensors").path },
            base: samples.appendingPathComponent("finetune/base.safetensors").path)
        var d = Driver(engine)
        d.keys(.char("v"), .char("v"))
        for method in ExplorerEngine.SoupMethod.allCases {
            XCTAssertEqual(d.app.state.soup.method, method)
            d.keys(.char("l"))
            let m = try exportAndRebuild(&d, "soup-\(method.rawValue)")
            XCTAssertEqual(m[1].loss, d.app.state.soup.metrics![1].loss, accuracy: 1e-5, "\(method)")
            d.keys(.char("n"))
        }
    }

    /// An export that fails part-way leaves nothing behind (here: the permuted model's name is taken by a folder).
    func testFailedExportLeavesNothing() throws {
        var d = Driver(try sampleEngine())
        d.keys(.char("v"), .char("v"), .char("m"), .char("a"))
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("x.recipe.yaml"), withIntermediateDirectories: true)
        d.keys(.char("e"))
        for _ in 0..<60 { d.keys(.backspace) }
        d.type(dir.appendingPathComponent("x").path)
        d.keys(.enter)
        XCTAssertEqual(d.app.state.popup?.isError, true)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertEqual(left, ["x.recipe.yaml"], "only the folder that was there")
    }
}
