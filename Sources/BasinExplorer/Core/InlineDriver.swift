import BasinUI

/// Drives an `ExplorerApp` deterministically, without threads or a terminal: spawned jobs run inline and their
/// messages are fed back until none are left. The tests and the docs generator (`basin docs`) use it to reach a
/// state by keys and capture its frame.
package struct InlineDriver {
    package var app: ExplorerApp
    package let inbox = Inbox<ExplorerMessage>()
    package var size: Size
    /// Monochrome with Unicode glyphs: heatmaps draw with the ASCII density ramp, so a frame's text shows their
    /// contents (in colour they are rows of half blocks whose colours the text does not carry).
    package var context = RenderContext(theme: .dark, capability: .none, glyphs: .unicodeSet)

    package init(_ engine: ExplorerEngine, width: Int = 100, height: Int = 30, options: ExplorerOptions) {
        size = Size(width: width, height: height)
        app = ExplorerApp(engine: engine, options: options, size: size)
        send(.start)
    }

    @discardableResult
    package mutating func send(_ event: AppEvent<ExplorerMessage>) -> [Effect<ExplorerMessage>] {
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
    package mutating func keys(_ ks: Key...) -> [Effect<ExplorerMessage>] {
        var out: [Effect<ExplorerMessage>] = []
        for k in ks { out = send(.key(k)) }
        return out
    }

    package mutating func type(_ s: String) { for c in s { send(.key(.char(c))) } }

    package func frame() -> CellBuffer {
        var b = CellBuffer(size: size)
        app.render(into: &b, context: context)
        return b
    }

    /// The frame's text with trailing spaces removed from every line.
    package func text() -> String {
        frame().text().split(separator: "\n", omittingEmptySubsequences: false)
            .map { l -> String in var s = String(l); while s.last == " " { s.removeLast() }; return s }.joined(separator: "\n")
    }
}
