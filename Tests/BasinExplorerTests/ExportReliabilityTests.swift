import BasinExplorer
import BasinIO
import BasinTestSupport
import Foundation
import XCTest

/// docs/reliability.md: the explorer's export follows the one output rule (no input replaced, by any name) and
/// writes its two files atomically, refusing non-finite weights like every writer.
final class ExportReliabilityTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func export(_ d: inout Driver, to path: String) {
        d.keys(.char("e"))
        for _ in 0..<80 { d.keys(.backspace) }
        d.type(path)
        d.keys(.enter)
    }

    func testExportNeverReplacesADataSetOrItsRecipeTwin() throws {
        // The session's test split is named like the recipe an export to "m" would write beside m.safetensors.
        let train = dir.appendingPathComponent("train.safetensors"), twin = dir.appendingPathComponent("m.recipe.yaml")
        try FileManager.default.copyItem(at: samples.appendingPathComponent("data/digits-train.safetensors"), to: train)
        try FileManager.default.copyItem(at: samples.appendingPathComponent("data/digits-test.safetensors"), to: twin)
        let before = try [train, twin].map { try FileDigest.sha256($0) }
        let engine = try ExplorerEngine.load(models: [0, 1].map { samples.appendingPathComponent("seeds/mlp-seed\($0).safetensors").path },
                                             data: [train.path, twin.path])
        var d = Driver(engine)
        export(&d, to: train.path)
        XCTAssertEqual(d.app.state.popup?.isError, true)
        XCTAssertTrue(d.app.state.popup?.message.contains("refusing to write here") == true, d.app.state.popup?.message ?? "")
        d.keys(.esc)
        // A symbolic link to the data is the same file.
        let link = dir.appendingPathComponent("link.safetensors")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: train)
        export(&d, to: link.path)
        XCTAssertEqual(d.app.state.popup?.isError, true)
        d.keys(.esc)
        // The recipe would replace an input: neither file is written.
        export(&d, to: dir.appendingPathComponent("m").path)
        XCTAssertEqual(d.app.state.popup?.isError, true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("m.safetensors").path))
        XCTAssertEqual(try [train, twin].map { try FileDigest.sha256($0) }, before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".tmp") }, [])
        // The engine's error carries the kind.
        let request = ExportRequest(recipe: try engine.soupRecipe(.weighted, coefficients: [1, 0], lambda: 1))
        XCTAssertThrowsError(try engine.export(request, to: train, recipe: dir.appendingPathComponent("r.recipe.yaml"))) {
            XCTAssertEqual(($0 as? BasinIOError)?.kind, .wouldOverwriteInput)
        }
    }

    func testEngineErrorsCarryAKind() throws {
        let engine = try sampleEngine()
        func kind(_ body: () throws -> Void) -> ExplorerError.Kind? {
            do { try body() } catch let e as ExplorerError { return e.kind } catch { XCTFail("\(error)") }
            return nil
        }
        XCTAssertEqual(kind { _ = try engine.soupRecipe(.ties, coefficients: [1, 1], lambda: 1) }, .needsBase)
        XCTAssertEqual(kind { _ = try engine.soupRecipe(.weighted, coefficients: [0, 0], lambda: 1) }, .invalidValue)
        XCTAssertEqual(kind { _ = try engine.soupRecipe(.slerp, coefficients: [0, 0], lambda: 1) }, .invalidValue)
        XCTAssertEqual(kind { _ = try ExplorerEngine(models: [engine.models[0]], datasets: engine.datasets) }, .missingInput)
    }
}
