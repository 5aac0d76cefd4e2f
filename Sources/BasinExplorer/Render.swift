import BasinNet
import BasinUI
import Foundation

/// Screen geometry shared by rendering and mouse handling (both pure functions of state and size).
public enum Layout {
    public static let minimum = Size(width: 80, height: 24)

    /// Body between the tab bar and the status bar.
    static func body(_ size: Size) -> Rect { Rect(x: 0, y: 1, width: size.width, height: size.height - 2) }

    static func pathColumns(_ state: ExplorerState, size: Size) -> (plot: Rect, side: Rect) {
        let body = self.body(size)
        let cols = body.columns(.fill(1), .fixed(min(38, body.width / 3)))
        return (cols[0], cols[1])
    }

    /// The plot's drawing area (inside its block), for mouse clicks.
    public static func pathPlotArea(_ state: ExplorerState, size: Size) -> Rect? {
        guard !TooSmall.check(size, minimum: minimum) else { return nil }
        let (plotBox, _) = pathColumns(state, size: size)
        let inner = Block().inner(plotBox).inset(top: 1)
        return PathRenderer.plot(state).geometry(area: inner).plot
    }

    /// Where the soup view's buttons are (for mouse clicks).
    public static func soupButtonRow(_ state: ExplorerState, size: Size) -> Point? {
        guard !TooSmall.check(size, minimum: minimum) else { return nil }
        let body = self.body(size)
        let inner = Block().inner(body).inset(left: 1, right: 1)
        let sliders = state.soup.sliderCount
        return Point(x: inner.x, y: inner.y + 2 + sliders + 1)
    }

    static func promptArea(_ size: Size) -> Rect { Rect(x: 0, y: size.height - 2, width: size.width, height: 1) }

    public static func promptCursor(_ p: Prompt, size: Size) -> Point { p.cursorPosition(in: promptArea(size)) }
}

/// Formats a metric for the panels.
func fmt(_ v: Double, _ digits: Int = 4) -> String {
    v.isFinite ? String(format: "%.\(digits)f", v) : "–"
}

func pct(_ v: Double) -> String { v.isFinite ? String(format: "%.1f%%", v * 100) : "–" }

public enum ExplorerRenderer {
    /// Draws the whole screen for `state`. Pure: same state, same cells.
    public static func render(_ state: ExplorerState, keymap: Keymap, into buffer: inout CellBuffer, context: RenderContext) {
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
        switch state.view {
        case .path: PathRenderer.render(state, into: &buffer, area: body, context: context)
        case .permutation: PermutationRenderer.render(state, into: &buffer, area: body, context: context)
        case .soup: SoupRenderer.render(state, into: &buffer, area: body, context: context)
        case .landscape: LandscapeRenderer.render(state, into: &buffer, area: body, context: context)
        }

        // Status bar: hints + job status.
        let ascii = !context.glyphs.unicode
        let hintActions: [String]
        switch state.view {
        case .path: hintActions = ["help", "left", "kind1", "kind2", "kind3", "fit", "matchWeight", "export", "nextView", "quit"]
        case .permutation: hintActions = ["help", "down", "nextPane", "matchWeight", "export", "nextView", "quit"]
        case .soup: hintActions = ["help", "down", "right", "nextMethod", "uniform", "greedy", "toggleAligned", "export", "nextView", "quit"]
        case .landscape: hintActions = ["help", "landscape", "otherPlane", "fit", "matchWeight", "export", "nextView", "quit"]
        }
        var hints = keymap.hints(context: state.view.rawValue, actions: hintActions, ascii: ascii)
        hints = hints.map { (key: $0.key, label: shortLabel($0.label)) }
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

    static func shortLabel(_ s: String) -> String {
        let map = ["toggle this help": "help", "move t left": "scrub", "linear path": "linear", "polygonal chain": "chain",
                   "Bezier curve": "Bezier", "fit a curve (Bezier, or the current bent path)": "fit",
                   "align B to A: weight matching": "match", "export the model at the cursor (+ recipe)": "export",
                   "next view (Path, Permutation, Soup, Landscape)": "view", "next layer / match": "move",
                   "next pane (permutation view: layers / matches)": "pane", "next slider": "slider", "increase coefficient": "adjust",
                   "next merge method": "method", "uniform soup": "uniform", "greedy soup": "greedy",
                   "compute the landscape plane": "compute", "use B aligned to A (after m) / the models as loaded": "aligned", "switch plane (bend / three models / aligned)": "plane"]
        return map[s] ?? s
    }
}

// MARK: Path view

enum PathRenderer {
    static let curveOrder: [CurveID] = [.path(.linear), .aligned, .path(.polychain), .path(.bezier)]

    /// The plot widget for the current state (series per curve and data set).
    static func plot(_ state: ExplorerState) -> BraillePlot {
        // One colour per curve; the last data set (test) bright and named in the legend, the others dim.
        var series: [PlotSeries] = []
        var index = 0
        let ds = state.dataNames.count
        for id in curveOrder {
            guard let c = state.curves[id], !c.points.isEmpty else { continue }
            for d in 0..<ds {
                let pts = c.points.map { (x: $0.t, y: state.showAccuracy ? $0.accuracy[d] : $0.loss[d]) }
                var s = PlotSeries(name: d == ds - 1 ? c.label : "", points: pts, index: index)
                if d < ds - 1 { s.style = s.style.patched(Style(attributes: .dim)) }
                series.append(s)
            }
            index += 1
        }
        var marker: PlotMarker?
        if !state.showAccuracy, let c = state.activeCurve, let b = c.barrier(ds - 1) {
            marker = PlotMarker(x: b.t, y: b.loss, label: "barrier " + fmt(b.height, 3))
        }
        let yRange: ClosedRange<Double>? = state.showAccuracy ? nil : nil
        return BraillePlot(series: series, xRange: 0...1, yRange: yRange, cursorX: state.t, marker: marker, showLegend: true)
    }

    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let (plotBox, side) = Layout.pathColumns(state, size: Size(width: area.width, height: area.height + 2))
        let what = state.showAccuracy ? "accuracy" : "loss"
        let block = Block(title: "\(what) along the path · \(state.selectionLabel)")
        block.render(into: &buffer, area: plotBox, context: context)
        let inner = block.inner(plotBox)
        // Path kind selector.
        var x = inner.x
        for (i, k) in PathKind.allCases.enumerated() {
            let on = k == state.kind
            let fitted = state.fitted.contains(k) ? "*" : ""
            let label = " \(i + 1) \(k.label)\(fitted) "
            x = buffer.write(label, x: x, y: inner.y, style: on ? Style(fg: .role(.foreground), bg: .role(.selection), attributes: .bold) : Style(fg: .role(.muted)), clip: inner.row(0)) + 1
        }
        let tText = "t = " + String(format: "%.3f", state.t)
        if state.dataNames.count > 1 {
            let note = "\(state.dataNames.last!) bright, \(state.dataNames.dropLast().joined(separator: "/")) dim"
            if x + TextWidth.of(note) + TextWidth.of(tText) + 2 < inner.maxX {
                buffer.write(note, x: x + 1, y: inner.y, style: Style(fg: .role(.muted)), clip: inner.row(0))
            }
        }
        buffer.write(tText, in: inner.row(0), style: Style(fg: .role(.cursor), attributes: .bold), alignment: .right)
        let plotArea = inner.inset(top: 1)
        let p = plot(state)
        if p.series.isEmpty {
            buffer.write("evaluating the path…", in: plotArea.row(plotArea.height / 2), style: Style(fg: .role(.muted)), alignment: .center)
        } else {
            p.render(into: &buffer, area: plotArea, context: context)
        }

        // Side panel.
        let hasMatrix = state.modelNames.count >= 3
        let parts = hasMatrix ? side.rows(.fill(1), .fixed(min(side.height / 2, state.modelNames.count + 4))) : [side]
        let sb = Block(title: "model at t")
        sb.render(into: &buffer, area: parts[0], context: context)
        let si = sb.inner(parts[0]).inset(left: 1, right: 1)
        var lines: [(String, Style)] = []
        let head = Style(fg: .role(.title), attributes: .bold)
        let plain = Style(fg: .role(.foreground))
        let muted = Style(fg: .role(.muted))
        lines.append(("\(state.kind.label) at t=\(String(format: "%.3f", state.t))", head))
        if let m = state.cursorMetrics {
            lines.append(("\(TextWidth.padRight("", to: 6)) loss    acc", muted))
            for (d, name) in state.dataNames.enumerated() where d < m.count {
                lines.append(("\(TextWidth.padRight(TextWidth.fit(name, to: 6), to: 6)) \(fmt(m[d].loss)) \(pct(m[d].accuracy))", plain))
            }
        }
        if let c = state.activeCurve {
            lines.append(("", plain))
            lines.append(("endpoints", head))
            if let f = c.points.first, f.t == 0, let l = c.points.last, l.t == 1 {
                for (d, name) in state.dataNames.enumerated() {
                    lines.append(("\(TextWidth.padRight(name, to: 6)) \(fmt(f.loss[d], 3)) · \(fmt(l.loss[d], 3))", plain))
                }
            } else {
                lines.append(("evaluating \(c.points.count)/\(c.expected)…", muted))
            }
        }
        lines.append(("", plain))
        let labelW = max(8, min(18, si.width - 6 * state.dataNames.count))
        lines.append((TextWidth.padRight("barrier (loss)", to: labelW) + state.dataNames.map { TextWidth.padLeft(TextWidth.fit($0, to: 5), to: 5) }.joined(separator: " "), head))
        for id in curveOrder {
            guard let c = state.curves[id] else { continue }
            var s = TextWidth.padRight(TextWidth.fit(c.label, to: labelW - 1), to: labelW)
            if c.done {
                s += state.dataNames.indices.map { fmt(c.barrier($0)?.height ?? .nan, 3) }.joined(separator: " ")
            } else {
                s += "\(c.points.count)/\(c.expected)…"
            }
            lines.append((s, id == .path(state.kind) ? Style(fg: .role(.barrier), attributes: .bold) : plain))
        }
        if state.aligned { lines.append(("aligned: B permuted to A (m)", muted)) }
        for (i, l) in lines.prefix(si.height).enumerated() {
            buffer.write(l.0, x: si.x, y: si.y + i, style: l.1, clip: si.row(i))
        }

        if hasMatrix {
            let mb = Block(title: "barrier matrix (\(state.dataNames.last ?? "") loss)")
            mb.render(into: &buffer, area: parts[1], context: context)
            let mi = mb.inner(parts[1]).inset(left: 1)
            guard let mat = state.barrierMatrix else {
                buffer.write("computing…", x: mi.x, y: mi.y, style: muted, clip: mi)
                return
            }
            let n = mat.count
            let cw = 7
            var line = TextWidth.padRight("", to: 4)
            for j in 0..<n { line += TextWidth.padLeft("#\(j)", to: cw) }
            buffer.write(line, x: mi.x, y: mi.y, style: muted, clip: mi.row(0))
            for i in 0..<n where i + 1 < mi.height {
                let r = mi.row(i + 1)
                var x = buffer.write(TextWidth.padRight("#\(i)", to: 4), x: r.x, y: r.y, style: muted, clip: r)
                for j in 0..<n {
                    let v = mat[i][j]
                    let sel: Bool
                    if case let .pair(a, b) = state.selection { sel = (a == i && b == j) || (a == j && b == i) } else { sel = false }
                    let style = sel ? Style(fg: .role(.barrier), attributes: .bold) : plain
                    x = buffer.write(TextWidth.padLeft(i == j ? "·" : fmt(v, 3), to: cw), x: x, y: r.y, style: style, clip: r)
                }
            }
        }
    }
}

// MARK: Permutation view

enum PermutationRenderer {
    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let muted = Style(fg: .role(.muted))
        guard let o = state.permutation.outcome, !o.layers.isEmpty else {
            let b = Block(title: "Permutation alignment")
            b.render(into: &buffer, area: area, context: context)
            let i = b.inner(area).inset(left: 1)
            Paragraph("No alignment yet.\n\nPress m for weight matching or M for activation matching: model \(state.modelNames[pairB(state).1]) is permuted to \(state.modelNames[pairB(state).0]). The job runs in the background; the similarity matrices, the matches and the objective per step appear here, and the aligned straight line joins the path view.", style: muted)
                .render(into: &buffer, area: i, context: context)
            return
        }
        let li = min(state.permutation.layer.selected, o.layers.count - 1)
        let layer = o.layers[li]
        let cols = area.columns(.fixed(26), .fill(1), .fixed(30))
        // Left: layers + summary + objective.
        let left = cols[0].rows(.fixed(min(o.layers.count + 2, cols[0].height / 3)), .fill(1))
        let lb = Block(title: "layers", borderStyle: Style(fg: .role(state.permutation.focus == 0 ? .accent : .border)))
        lb.render(into: &buffer, area: left[0], context: context)
        ListView(o.layers.map { "\($0.name) (\($0.size))" }, state: state.permutation.layer)
            .render(into: &buffer, area: lb.inner(left[0]), context: context)
        let sb = Block(title: "\(o.kind.rawValue) matching")
        sb.render(into: &buffer, area: left[1], context: context)
        let si = sb.inner(left[1]).inset(left: 1)
        let lines = [
            "\(state.modelNames[o.b]) → \(state.modelNames[o.a])",
            "units moved  \(layer.moved)/\(layer.size)",
            "mean sim before \(fmt(layer.meanBefore, 3))",
            "mean sim after  \(fmt(layer.meanAfter, 3))",
            "all layers moved \(o.layers.reduce(0) { $0 + $1.moved })",
            String(format: "time %.2fs", o.seconds),
            "objective per step:",
        ]
        for (i, l) in lines.prefix(si.height).enumerated() {
            buffer.write(l, x: si.x, y: si.y + i, style: i == 0 ? Style(fg: .role(.title), attributes: .bold) : Style(fg: .role(.foreground)), clip: si.row(i))
        }
        if si.height > lines.count + 3 {
            let objs = [o.objectiveBefore] + o.objectives
            let plotArea = Rect(x: si.x, y: si.y + lines.count, width: si.width, height: si.height - lines.count)
            BraillePlot(series: [PlotSeries(name: "", points: objs.enumerated().map { (x: Double($0.offset), y: $0.element) }, index: 0)],
                        showLegend: false).render(into: &buffer, area: plotArea, context: context)
        }

        // Middle: before / after heatmaps.
        let mid = cols[1].rows(.fill(1), .fill(1))
        let n = layer.size
        // A square window of units (one cell column and one half-cell row per unit, so it looks square)
        // that follows the selected match; the colour range is the layer's.
        let perCell = context.capability == .none || !context.glyphs.unicode ? 1 : 2
        let probe = Block(title: "").inner(mid[0])
        let k = max(1, min(n, probe.width, (probe.height - 1) * perCell))
        let sel = min(state.permutation.matches.selected, n - 1)
        let s0 = max(0, min(n - k, sel - k / 2))
        let window = "units \(s0)–\(s0 + k - 1) of \(n)"
        let titles = ["before: A rows × B cols, \(window)", "after: matches on the diagonal"]
        let all = layer.similarity.filter(\.isFinite)
        let range = (all.min() ?? 0)...(all.max() ?? 1)
        for (idx, aligned) in [false, true].enumerated() {
            let b = Block(title: titles[idx])
            b.render(into: &buffer, area: mid[idx], context: context)
            let inner = b.inner(mid[idx])
            let values = (s0..<(s0 + k)).map { i in
                (s0..<(s0 + k)).map { j in layer.similarity[i * n + (aligned ? layer.permutation[j] : j)] }
            }
            let cellsHigh = (k + perCell - 1) / perCell + 1
            let area = Rect(x: inner.x, y: inner.y, width: min(inner.width, max(k, 24)), height: min(inner.height, cellsHigh))
            let mapArea = Rect(x: area.x, y: area.y, width: k, height: area.height)
            BasinUI.Heatmap(values: values, range: range, marked: aligned ? (row: sel - s0, col: sel - s0) : nil, showColorBar: false)
                .render(into: &buffer, area: mapArea.inset(bottom: 1), context: context)
            // The ramp from the layer's lowest to highest similarity, under the map.
            let ramp = (0..<max(2, min(inner.width - 16, 24))).map { range.lowerBound + (range.upperBound - range.lowerBound) * Double($0) / Double(max(1, min(inner.width - 16, 24) - 1)) }
            let barRow = Rect(x: inner.x, y: area.maxY - 1, width: inner.width, height: 1)
            var bx = buffer.write(formatNumber(range.lowerBound) + " ", x: barRow.x, y: barRow.y, style: Style(fg: .role(.muted)), clip: barRow)
            BasinUI.Heatmap(values: [ramp], range: range, showColorBar: false)
                .render(into: &buffer, area: Rect(x: bx, y: barRow.y, width: ramp.count, height: 1), context: context)
            bx += ramp.count
            buffer.write(" " + formatNumber(range.upperBound), x: bx, y: barRow.y, style: Style(fg: .role(.muted)), clip: barRow)
        }

        // Right: matches.
        let rb = Block(title: "matches (\(layer.name))", borderStyle: Style(fg: .role(state.permutation.focus == 1 ? .accent : .border)))
        rb.render(into: &buffer, area: cols[2], context: context)
        let items = (0..<n).map { k -> String in
            let j = layer.permutation[k]
            let mark = j == k ? " " : "*"
            return "A\(TextWidth.padRight(String(k), to: 4))← B\(TextWidth.padRight(String(j), to: 4))\(mark)\(TextWidth.padLeft(fmt(layer.pairScores[k], 3), to: 9))"
        }
        let ri = rb.inner(cols[2])
        buffer.write(" unit    match     score", x: ri.x, y: ri.y, style: muted, clip: ri.row(0))
        ListView(items, state: state.permutation.matches).render(into: &buffer, area: ri.inset(top: 1), context: context)
    }

    /// Averages an n x m matrix down to at most rows x cols blocks.
    static func pool(_ m: [[Double]], rows: Int, cols: Int) -> [[Double]] {
        let n = m.count, w = m.first?.count ?? 0
        guard n > rows || w > cols else { return m }
        let r = min(rows, n), c = min(cols, w)
        return (0..<r).map { i in
            let r0 = i * n / r, r1 = max(r0 + 1, (i + 1) * n / r)
            return (0..<c).map { j in
                let c0 = j * w / c, c1 = max(c0 + 1, (j + 1) * w / c)
                var sum = 0.0
                for a in r0..<r1 { for b in c0..<c1 { sum += m[a][b] } }
                return sum / Double((r1 - r0) * (c1 - c0))
            }
        }
    }

    static func pairB(_ s: ExplorerState) -> (Int, Int) {
        if case let .pair(a, b) = s.selection { return (a, b) }
        return (0, 1)
    }
}

// MARK: Soup view

enum SoupRenderer {
    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let s = state.soup
        let hasTriangle = state.modelNames.count == 3
        let cols = area.columns(.fill(1), .fixed(min(hasTriangle ? 44 : 40, area.width * 2 / 5)))
        let lb = Block(title: "soup · method: \(s.method.label) (n)" + (s.useAligned ? " · B aligned (a)" : ""))
        lb.render(into: &buffer, area: cols[0], context: context)
        let li = lb.inner(cols[0]).inset(left: 1, right: 1)
        var y = li.y
        // Method strip.
        var x = li.x
        for m in ExplorerEngine.SoupMethod.allCases {
            let on = m == s.method
            x = buffer.write(" \(m.label) ", x: x, y: y, style: on ? Style(fg: .role(.foreground), bg: .role(.selection), attributes: .bold) : Style(fg: .role(.muted)), clip: li.row(0)) + 1
        }
        y += 2
        let total = s.coefficients.reduce(0, +)
        for (i, c) in s.coefficients.enumerated() where y < li.maxY {
            let label = TextWidth.padRight(TextWidth.fit(state.modelNames[i], to: 16), to: 16)
            Slider(label: label, value: c, range: 0...1, focused: s.selected == i, format: { String(format: "%.2f", $0) })
                .render(into: &buffer, area: Rect(x: li.x, y: y, width: li.width, height: 1), context: context)
            y += 1
        }
        if s.method.needsBase, y < li.maxY {
            Slider(label: TextWidth.padRight("base λ", to: 16), value: s.lambda, range: 0...2, focused: s.selected == s.coefficients.count,
                   format: { String(format: "%.2f", $0) })
                .render(into: &buffer, area: Rect(x: li.x, y: y, width: li.width, height: 1), context: context)
            y += 1
        }
        if s.method.usesDensity, y < li.maxY {
            Slider(label: TextWidth.padRight("density", to: 16), value: s.density, range: 0...1, focused: s.selected == s.coefficients.count + 1,
                   format: { String(format: "%.2f", $0) })
                .render(into: &buffer, area: Rect(x: li.x, y: y, width: li.width, height: 1), context: context)
            y += 1
        }
        // Buttons (keys u and g).
        if y + 1 < li.maxY {
            y += 1
            let button = Style(fg: .role(.foreground), bg: .role(.selection))
            var bx = buffer.write(" u uniform ", x: li.x, y: y, style: button, clip: li.row(y - li.y)) + 2
            buffer.write(" g greedy ", x: bx, y: y, style: button, clip: li.row(y - li.y))
            y += 1
        }
        y += 1
        let muted = Style(fg: .role(.muted))
        if s.method == .weighted, y < li.maxY {
            buffer.write("normalised weights: " + s.coefficients.map { fmt(total > 0 ? $0 / total : 0, 2) }.joined(separator: " "), x: li.x, y: y, style: muted, clip: li.row(y - li.y))
            y += 1
        }
        if let note = s.note, y < li.maxY {
            buffer.write(note, x: li.x, y: y, style: Style(fg: .role(.accent)), clip: li.row(y - li.y))
            y += 1
        }
        y += 1
        // Metrics table: merged vs ensemble vs each model? (merged and ensemble).
        if y < li.maxY {
            var rows: [[String]] = []
            for (d, name) in state.dataNames.enumerated() {
                let m = s.metrics.map { d < $0.count ? "\(fmt($0[d].loss, 4))  \(pct($0[d].accuracy))" : "–" } ?? "–"
                let e = s.ensemble.map { d < $0.count ? "\(fmt($0[d].loss, 4))  \(pct($0[d].accuracy))" : "–" } ?? "n/a"
                rows.append([name, m, e])
            }
            Table(header: ["data", "merged loss  acc", "ensemble loss  acc"], rows: rows, widths: [.fixed(7), .fill(1), .fill(1)])
                .render(into: &buffer, area: Rect(x: li.x, y: y, width: li.width, height: min(li.maxY - y, rows.count + 1)), context: context)
            y += rows.count + 2
        }
        if let e = s.error, y < li.maxY {
            Paragraph(e, style: Style(fg: .role(.bad))).render(into: &buffer, area: Rect(x: li.x, y: y, width: li.width, height: li.maxY - y), context: context)
        }

        // Right: triangle or help text.
        let rb = Block(title: hasTriangle ? "\(state.dataNames.last ?? "") loss over the coefficient triangle" : "about")
        rb.render(into: &buffer, area: cols[1], context: context)
        let ri = rb.inner(cols[1])
        if hasTriangle {
            if let tri = s.triangle {
                let n = tri.count - 1
                let c1 = total > 0 ? s.coefficients[1] / total : 0, c2 = total > 0 ? s.coefficients[2] / total : 0
                let mark = (row: Int(((1 - c2) * Double(n)).rounded()), col: Int((c1 * Double(n)).rounded()))
                BasinUI.Heatmap(values: tri, marked: mark).render(into: &buffer, area: ri.inset(bottom: 1), context: context)
                buffer.write("top: \(state.modelNames[2]) · left: \(state.modelNames[0]) · right: \(state.modelNames[1])", x: ri.x, y: ri.maxY - 1, style: muted, clip: ri.row(ri.height - 1))
            } else {
                buffer.write("computing…", x: ri.x + 1, y: ri.y, style: muted, clip: ri)
            }
        } else {
            Paragraph("One slider per model; the merged model is evaluated as you move them. u: uniform soup, g: greedy soup (ingredients added in order of held-out accuracy while it improves; held-out data: --heldout, else the last data set). Methods other than weighted need a base (--base) for task vectors. With three models a loss map over the coefficient triangle appears here.", style: muted)
                .render(into: &buffer, area: ri.inset(left: 1, right: 1), context: context)
        }
    }
}

// MARK: Landscape view

enum LandscapeRenderer {
    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let l = state.landscape
        let b = Block(title: "loss landscape (\(state.dataNames.last ?? "")) · " + (l.title.isEmpty ? "press r" : l.title))
        b.render(into: &buffer, area: area, context: context)
        let inner = b.inner(area)
        guard !l.grid.isEmpty else {
            Paragraph(l.title.isEmpty ? "Press r to compute the plane." : l.title, style: Style(fg: .role(.muted)))
                .render(into: &buffer, area: inner.inset(left: 1), context: context)
            return
        }
        let mapArea = inner.inset(left: 1, right: 1)
        let heat = BasinUI.Heatmap(values: l.grid, showColorBar: true)
        heat.render(into: &buffer, area: mapArea, context: context)
        // Path and anchors on top of the map.
        let cells = mapArea.inset(bottom: 1)
        func cell(_ x: Double, _ y: Double) -> Point? {
            let fx = (x - l.xRange.lowerBound) / (l.xRange.upperBound - l.xRange.lowerBound)
            let fy = (l.yRange.upperBound - y) / (l.yRange.upperBound - l.yRange.lowerBound)
            guard fx >= 0, fx <= 1, fy >= 0, fy <= 1 else { return nil }
            return Point(x: cells.x + min(cells.width - 1, Int(fx * Double(cells.width - 1) + 0.5)),
                         y: cells.y + min(cells.height - 1, Int(fy * Double(cells.height - 1) + 0.5)))
        }
        let dot = context.glyphs.unicode ? "•" : "."
        for p in l.path {
            if let c = cell(p.x, p.y) {
                var cur = buffer[c.x, c.y]
                cur.symbol = dot
                cur.style = Style(fg: .role(.cursor), bg: cur.style.bg, attributes: .bold)
                buffer.set(c.x, c.y, cur)
            }
        }
        for a in l.anchors {
            if let c = cell(a.x, a.y) {
                buffer.write(a.label, x: c.x, y: c.y, style: Style(fg: .role(.marker), bg: .role(.background), attributes: .bold), clip: cells)
            }
        }
        if l.filled < l.grid.count {
            buffer.write(" filling \(l.filled)/\(l.grid.count) rows ", in: inner.row(0), style: Style(fg: .role(.warning)), alignment: .right)
        }
    }
}
