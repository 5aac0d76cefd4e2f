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

/// Drives an ExplorerApp deterministically: spawned jobs run inline, their messages are fed back until quiet.
struct Driver {
    var app: ExplorerApp
    let inbox = Inbox<ExplorerMessage>()
    var size: Size
    /// Monochrome with Unicode glyphs: heatmaps draw with the ASCII density ramp, so a frame's text shows their
    /// contents (in colour they are rows of half blocks whose colours the text does not carry).
    var context = RenderContext(theme: .dark, capability: .none, glyphs: .unicodeSet)

    init(_ engine: ExplorerEngine, width: Int = 100, height: Int = 30, options: ExplorerOptions = Driver.fastOptions) {
        size = Size(width: width, height: height)
        app = ExplorerApp(engine: engine, options: options, size: size)
        send(.start)
    }

    static var fastOptions: ExplorerOptions {
        var o = ExplorerOptions()
        o.pathPoints = 11
        o.fitEpochs = 1
        o.landscapeResolution = 9
        return o
    }

    @discardableResult
    mutating func send(_ event: AppEvent<ExplorerMessage>) -> [Effect<ExplorerMessage>] {
        var pending = app.update(event)
        let first = pending
        while true {
            for e in pending { if case .spawn(let job) = e { job(inbox) } }
            let msgs = inbox.drain()
            if msgs.isEmpty { break }
            pending = msgs.flatMap { app.update(.message($0)) }
        }
        return first
    }

    @discardableResult
    mutating func keys(_ ks: Key...) -> [Effect<ExplorerMessage>] {
        var out: [Effect<ExplorerMessage>] = []
        for k in ks { out = send(.key(k)) }
        return out
    }

    mutating func type(_ s: String) { for c in s { send(.key(.char(c))) } }

    func frame() -> CellBuffer {
        var b = CellBuffer(size: size)
        app.render(into: &b, context: context)
        return b
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
