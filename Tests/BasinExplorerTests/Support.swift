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
