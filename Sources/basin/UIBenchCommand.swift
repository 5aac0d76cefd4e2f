import ArgumentParser
import BasinExplorer
import BasinUI
import Foundation

struct UIBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ui",
        abstract: "Keypress-to-frame latency (p50/p95) of the explorer on the sample session, and the time to render and diff a 200x60 frame.")

    @OptionGroup var options: BenchOptions

    @Option(help: "Times the key script is replayed.")
    var repeats: Int = 3

    func validate() throws {
        try Check.range(repeats, 1...1000, "--repeats")
    }

    func run() throws {
        options.apply()
        let samples = try SampleSession.locate()
        let engine = try ExplorerEngine.load(
            models: ["seeds/mlp-seed0.safetensors", "seeds/mlp-seed1.safetensors"].map { samples.appendingPathComponent($0).path },
            data: ["data/digits-train.safetensors", "data/digits-test.safetensors"].map { samples.appendingPathComponent($0).path })
        let app = ExplorerApp(engine: engine, size: Size(width: 120, height: 40))
        let r = ExplorerBench.run(app: app, repeats: repeats)
        if options.json { return try printJSON(r) }
        print("sample session: \(engine.names.joined(separator: ", ")); data " + zip(engine.dataNames, engine.datasets).map { "\($0.0) \($0.1.count) rows" }.joined(separator: ", "))
        print(String(format: "keypress to frame (update + render 120x40), %d keys: p50 %.2f ms, p95 %.2f ms, max %.2f ms (target <= 50 ms)",
                     r.keys, r.p50Ms, r.p95Ms, r.maxMs))
        print(String(format: "%dx%d frame: render %.2f ms, render + diff %.2f ms (median of 50)", r.frameWidth, r.frameHeight, r.renderMs, r.renderAndDiffMs))
    }
}
