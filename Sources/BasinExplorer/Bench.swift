import BasinUI
import Foundation

/// Keypress-to-frame latency of the explorer: replays keys through `update` + `render` (the work the run
/// loop does per key), running spawned jobs on threads as the real loop does, and times a large frame.
package enum ExplorerBench {
    package struct Report: Sendable, Codable {
        package var keys: Int
        package var p50Ms: Double
        package var p95Ms: Double
        package var maxMs: Double
        package var frameWidth: Int
        package var frameHeight: Int
        package var renderMs: Double
        package var renderAndDiffMs: Double
    }

    /// A scripted session: scrubbing, path types, views, soup sliders.
    package static var script: [Key] {
        var k: [Key] = []
        for _ in 0..<10 { k.append(.char("l")) }
        for _ in 0..<10 { k.append(.char("[")) }
        k += [.char("2"), .char("l"), .char("h"), .char("3"), .char("l"), .char("1"), .char("a"), .char("a")]
        for _ in 0..<10 { k.append(.char("h")) }
        k += [.char("v"), .char("j"), .char("k"), .char("v")]
        for _ in 0..<10 { k.append(.char("l")) }
        k += [.char("j")]
        for _ in 0..<10 { k.append(.char("h")) }
        k += [.char("u"), .char("v"), .char("v"), .char("?"), .char("?")]
        for _ in 0..<20 { k.append(.char("l")) }
        return k
    }

    package static func run(app initial: ExplorerApp, size: Size = Size(width: 120, height: 40), repeats: Int = 3,
                           frame: Size = Size(width: 200, height: 60)) -> Report {
        var app = initial
        let inbox = Inbox<ExplorerMessage>()
        let context = RenderContext(theme: .dark, capability: .c256, glyphs: .unicodeSet)
        func apply(_ fx: [Effect<ExplorerMessage>]) {
            for e in fx {
                if case .spawn(let job) = e {
                    let t = Thread { job(inbox) }
                    t.stackSize = 8 << 20
                    t.start()
                }
            }
        }
        apply(app.update(.resize(size)))
        apply(app.update(.start))
        var samples: [Double] = []
        for _ in 0..<repeats {
            for key in script {
                let t0 = DispatchTime.now().uptimeNanoseconds
                apply(app.update(.key(key)))
                var b = CellBuffer(size: size)
                app.render(into: &b, context: context)
                let t1 = DispatchTime.now().uptimeNanoseconds
                samples.append(Double(t1 - t0) / 1e6)
                for m in inbox.drain() { apply(app.update(.message(m))) }
            }
        }
        // Let background jobs finish, then time a big frame.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            usleep(20_000)
            for m in inbox.drain() { apply(app.update(.message(m))) }
            if app.state.jobs.isEmpty && app.state.path.curves.values.allSatisfy(\.done) { break }
        }
        apply(app.update(.resize(frame)))
        _ = app.perform(.nextView)  // back to the path view from wherever the script ended
        while app.state.view != .path { _ = app.perform(.nextView) }
        var prev: CellBuffer?
        var render: [Double] = [], both: [Double] = []
        for i in 0..<50 {
            _ = app.update(.key(.char(i % 2 == 0 ? "l" : "h")))
            let t0 = DispatchTime.now().uptimeNanoseconds
            var b = CellBuffer(size: frame)
            app.render(into: &b, context: context)
            let t1 = DispatchTime.now().uptimeNanoseconds
            _ = b.diff(from: prev)
            let t2 = DispatchTime.now().uptimeNanoseconds
            prev = b
            render.append(Double(t1 - t0) / 1e6)
            both.append(Double(t2 - t0) / 1e6)
        }
        func q(_ xs: [Double], _ p: Double) -> Double {
            let s = xs.sorted()
            return s[min(s.count - 1, Int(Double(s.count - 1) * p + 0.5))]
        }
        return Report(keys: samples.count, p50Ms: q(samples, 0.5), p95Ms: q(samples, 0.95), maxMs: samples.max() ?? 0,
                      frameWidth: frame.width, frameHeight: frame.height, renderMs: q(render, 0.5), renderAndDiffMs: q(both, 0.5))
    }
}
