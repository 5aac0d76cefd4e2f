import BasinNet
import BasinUI
import Foundation

/// Screen geometry shared by rendering and mouse handling (both pure functions of state and size). Views add
/// their own areas in extensions.
package enum Layout {
    package static let minimum = Size(width: 80, height: 24)

    /// Body between the tab bar and the status bar.
    static func body(_ size: Size) -> Rect { Rect(x: 0, y: 1, width: size.width, height: size.height - 2) }

    static func promptArea(_ size: Size) -> Rect { Rect(x: 0, y: size.height - 2, width: size.width, height: 1) }

    package static func promptCursor(_ p: Prompt, size: Size) -> Point { p.cursorPosition(in: promptArea(size)) }
}

/// Formats a metric for the panels.
func fmt(_ v: Double, _ digits: Int = 4) -> String {
    v.isFinite ? String(format: "%.\(digits)f", v) : "–"
}

func pct(_ v: Double) -> String { v.isFinite ? String(format: "%.1f%%", v * 100) : "–" }
/// Perplexity exp(loss), with fewer decimals as it grows.
func ppl(_ loss: Double) -> String {
    let p = exp(loss)
    guard p.isFinite else { return "–" }
    return p < 100 ? String(format: "%.2f", p) : p < 100_000 ? String(format: "%.0f", p) : String(format: "%.1e", p)
}
/// Loss and accuracy (token data: loss, perplexity and token accuracy) as one cell.
func metricsCell(_ m: Metrics, tokens: Bool) -> String {
    tokens ? "\(fmt(m.loss, 4)) \(TextWidth.padLeft(ppl(m.loss), to: 5)) \(pct(m.accuracy))" : "\(fmt(m.loss, 4))  \(pct(m.accuracy))"
}

/// The frame around the views: tab bar, status bar with key hints and the running job, prompt, help and popup.
package enum ExplorerRenderer {
    /// Draws the whole screen for `state`. Pure: same state, same cells.
    package static func render(_ state: ExplorerState, keymap: Keymap<ExplorerAction>, into buffer: inout CellBuffer,
                               context: RenderContext) {
        let size = buffer.size
        guard !TooSmall.check(size, minimum: Layout.minimum) else {
            TooSmall(minimum: Layout.minimum).render(into: &buffer, area: buffer.area, context: context)
            return
        }
        // Tab bar + session info.
        let top = buffer.area.row(0)
        let tabs = TabBar(ExplorerView.allCases.map(\.title), selected: ExplorerView.allCases.firstIndex(of: state.view)!)
        tabs.render(into: &buffer, area: top, context: context)
        let info = "\(state.modelNames.count) models · " + state.dataNames.joined(separator: "/")
        buffer.write(info, in: top, style: Style(fg: .role(.muted)), alignment: .right)

        let body = Layout.body(size)
        state.view.module.render(state, into: &buffer, area: body, context: context)
        LessonRenderer.render(state, into: &buffer, body: body, context: context)

        // Status bar: hints + job status.
        let ascii = !context.glyphs.unicode
        let hints = keymap.hints(context: state.view.rawValue, actions: state.view.module.hints, ascii: ascii)
        let status: String
        var statusStyle = Style(fg: .role(.muted))
        if let job = state.jobs.last {
            status = "  \(job.title) \(Int(job.fraction * 100))% (Esc cancels)"
            statusStyle = Style(fg: .role(.warning), attributes: .bold)
        } else if let computing = state.path.computing {
            status = "  " + computing + (state.lastJobNote.map { " · " + $0 } ?? "")
            statusStyle = Style(fg: .role(.warning), attributes: .bold)
        } else {
            status = "  " + (state.lastJobNote ?? "ready")
        }
        let statusRow = buffer.area.row(size.height - 1)
        StatusBar(hints: hints, status: status, statusStyle: statusStyle).render(into: &buffer, area: statusRow, context: context)

        // Job progress line above the status bar.
        if let job = state.jobs.last, state.prompt == nil {
            let row = buffer.area.row(size.height - 2)
            let label = "\(job.title): \(job.detail)"
            ProgressBar(fraction: job.fraction, label: label).render(into: &buffer, area: row, context: context)
        }

        if let p = state.prompt {
            let row = Layout.promptArea(size)
            buffer.fill(row)
            p.widget.render(into: &buffer, area: row, context: context)
        }
        if state.showHelp {
            helpOverlay(state, keymap: keymap).render(into: &buffer, area: body, context: context)
        }
        if let popup = state.popup {
            popup.widget.render(into: &buffer, area: body, context: context)
        }
        if !context.glyphs.unicode { asciify(&buffer) }
    }

    /// The words the explorer uses, for the help's glossary.
    static let glossary: [(term: String, text: String)] = [
        ("", "Glossary"),
        ("barrier", "how far the loss along a path rises above the straight line between the losses at its ends (Frankle et al. 2020, Eq. 1). Near 0: the two models sit in one basin."),
        ("permutation", "reordering a layer's hidden units (and the next layer's inputs with them) leaves the network's function unchanged; matching finds the order of B's units that best fits A's (Ainsworth et al. 2023, Git Re-Basin)."),
        ("bend", "a control point θ of a polychain or Bezier curve between A and B; fitting moves it so the loss along the whole curve is low (Garipov et al. 2018)."),
        ("soup", "one model whose weights are an average of several models' (Wortsman et al. 2022); it works when they share a basin, which alignment can arrange."),
        ("task vector", "a fine-tuned model minus its base (Ilharco et al. 2023); task arithmetic adds scaled task vectors to the base, TIES trims and elects signs first, DARE drops entries at random and rescales."),
    ]

    /// The help for the current view: its keys, the global ones, and the glossary; it scrolls.
    static func helpOverlay(_ state: ExplorerState, keymap: Keymap<ExplorerAction>) -> HelpOverlay<ExplorerAction> {
        HelpOverlay(keymap: keymap, context: state.view.rawValue, title: "\(state.view.title) view: ↑↓ scroll, any other key closes",
                    footer: glossary, scroll: state.helpScroll)
    }

    /// The help's lines at the current size (for clamping the scroll).
    static func helpLineCount(_ state: ExplorerState, keymap: Keymap<ExplorerAction>) -> (lines: Int, visible: Int) {
        let overlay = helpOverlay(state, keymap: keymap)
        let body = Layout.body(state.size)
        let w = overlay.width(in: body, ascii: false)
        let n = overlay.lines(ascii: false, width: w).count
        return (n, max(1, min(body.height, n + 2) - 2))
    }

    /// Without a UTF-8 locale: replaces the few non-ASCII characters the explorer's own text uses.
    static func asciify(_ buffer: inout CellBuffer) {
        let table: [String: String] = ["→": ">", "←": "<", "·": ".", "…": "~", "–": "-", "θ": "t", "λ": "L", "π": "p",
                                       "•": ".", "×": "x", "↑": "^", "↓": "v", "●": "o", "◆": "#", "▲": "^", "■": "x", "△": "v", "□": "%", "▼": "v"]
        for y in 0..<buffer.height {
            for x in 0..<buffer.width {
                var c = buffer[x, y]
                guard !c.symbol.isEmpty, !c.symbol.unicodeScalars.allSatisfy(\.isASCII) else { continue }
                c.symbol = table[c.symbol] ?? "?"
                buffer.set(x, y, c)
            }
        }
    }
}
