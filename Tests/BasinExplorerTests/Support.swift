import BasinExplorer
import BasinTestSupport
import BasinUI
import Foundation
import XCTest

let samples = Fixtures.repositoryRoot.appendingPathComponent("SampleModels")

/// The sample session (seeds 0 and 1, or more) with the digits train and test splits.
func sampleEngine(seeds: [Int] = [0, 1], base: Bool = false) throws -> ExplorerEngine {
    try ExplorerEngine.load(
        models: seeds.map { samples.appendingPathComponent("seeds/mlp-seed\($0).safetensors").path },
        data: ["train", "test"].map { samples.appendingPathComponent("data/digits-\($0).safetensors").path },
        base: base ? samples.appendingPathComponent("finetune/base.safetensors").path : nil)
}

/// The tests drive the explorer through BasinExplorer's inline driver (jobs run inline, messages fed back).
typealias Driver = InlineDriver

extension InlineDriver {
    init(_ engine: ExplorerEngine, width: Int = 100, height: Int = 30) {
        self.init(engine, width: width, height: height, options: Self.fastOptions)
    }

    /// Few points, one fit epoch, a coarse landscape: the tests check behaviour, not the figures.
    static var fastOptions: ExplorerOptions {
        var o = ExplorerOptions()
        o.pathPoints = 11
        o.fitEpochs = 1
        o.landscapeResolution = 9
        return o
    }
}

/// Compares a frame with Tests/BasinExplorerTests/__Snapshots__/NAME.txt. When the file is missing, or with
/// BASIN_RECORD_SNAPSHOTS=1, writes it and fails: a recorded snapshot passes only on a later run, after its
/// diff has been reviewed and committed.
func assertFrame(_ buffer: CellBuffer, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
    let dir = URL(fileURLWithPath: "\(file)").deletingLastPathComponent().appendingPathComponent("__Snapshots__")
    let url = dir.appendingPathComponent(name + ".txt")
    // Durations ("0.04s", "in 0.3s") vary from run to run: masked, with the spaces before them.
    let duration = try! NSRegularExpression(pattern: " *[0-9]+\\.[0-9]+s\\b")
    func norm(_ s: String) -> String {
        var lines = s.split(separator: "\n", omittingEmptySubsequences: false).map { l -> String in
            var x = String(l)
            x = duration.stringByReplacingMatches(in: x, range: NSRange(x.startIndex..., in: x), withTemplate: " <time>")
            while x.last == " " { x.removeLast() }
            return x
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines.joined(separator: "\n")
    }
    let actual = norm(buffer.text())
    let record = ProcessInfo.processInfo.environment["BASIN_RECORD_SNAPSHOTS"] == "1"
    guard !record, let expected = try? String(contentsOf: url, encoding: .utf8) else {
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try (actual + "\n").write(to: url, atomically: true, encoding: .utf8)
            XCTFail("snapshot \(name) recorded at \(url.path): review it and run the test again", file: file, line: line)
        } catch {
            XCTFail("snapshot \(name) missing and could not be recorded at \(url.path): \(error)", file: file, line: line)
        }
        return
    }
    if norm(expected) != actual {
        XCTFail("snapshot \(name) differs:\n--- expected\n\(norm(expected))\n--- actual\n\(actual)", file: file, line: line)
    }
}

/// Export tests: a temporary folder per test (removed after it), exports typed into the `e` prompt, and rebuilds
/// with the `basin` executable compared byte for byte with what the explorer wrote.
class ExportTestCase: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
        dir = try Fixtures.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    /// Presses e, types dir/NAME, confirms and dismisses the popup (which must not be an error); returns the
    /// exported model and its recipe. `popup` receives the popup's message.
    @discardableResult
    func export(_ d: inout Driver, _ name: String, popup: ((String) -> Void)? = nil,
                file: StaticString = #filePath, line: UInt = #line) -> (model: URL, recipe: URL) {
        d.keys(.char("e"))
        for _ in 0..<60 { d.keys(.backspace) }
        d.type(dir.appendingPathComponent(name).path)
        d.keys(.enter)
        XCTAssertEqual(d.app.state.popup?.isError, false, d.app.state.popup?.message ?? "", file: file, line: line)
        popup?(d.app.state.popup?.message ?? "")
        d.keys(.enter)
        return (dir.appendingPathComponent(name + ".safetensors"), dir.appendingPathComponent(name + ".recipe.yaml"))
    }

    /// `basin merge RECIPE NAME-rebuilt.safetensors OPTIONS` (from another folder); asserts it succeeds and writes
    /// the exported file byte for byte.
    func assertRebuilds(_ out: (model: URL, recipe: URL), _ options: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws {
        let rebuilt = out.model.deletingPathExtension().appendingPathExtension("rebuilt.safetensors")
        let r = try BasinBinary.run(["merge", out.recipe.path, rebuilt.path] + options, currentDirectory: FileManager.default.temporaryDirectory)
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        let a = try Data(contentsOf: out.model), b = try Data(contentsOf: rebuilt)
        XCTAssertEqual(a, b, "basin merge on \(out.recipe.lastPathComponent) rebuilds the exported file byte for byte", file: file, line: line)
    }
}
