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

        // Status bar: hints + job status.
        let ascii = !context.glyphs.unicode
        let hints = keymap.hints(context: state.view.rawValue, actions: state.view.module.hints, ascii: ascii)
        let status: String
        var statusStyle = Style(fg: .role(.muted))
        if let job = state.jobs.last {
            status = "  \(job.title) \(Int(job.fraction * 100))% (Esc cancels)"
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
            HelpOverlay(keymap: keymap, context: state.view.rawValue, title: "Keys: \(state.view.title) view (any key closes)")
                .render(into: &buffer, area: body, context: context)
        }
        if let popup = state.popup {
            popup.widget.render(into: &buffer, area: body, context: context)
        }
        if !context.glyphs.unicode { asciify(&buffer) }
    }

    /// Without a UTF-8 locale: replaces the few non-ASCII characters the explorer's own text uses.
    static func asciify(_ buffer: inout CellBuffer) {
        let table: [String: String] = ["→": ">", "←": "<", "·": ".", "…": "~", "–": "-", "θ": "t", "λ": "L", "π": "p",
                                       "•": ".", "×": "x", "↑": "^", "↓": "v"]
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
