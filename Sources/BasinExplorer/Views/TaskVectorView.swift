import BasinFusion
import BasinNet
import BasinUI
import Foundation

// The task-vector view (a base and its fine-tunes): how the fine-tunes' task vectors tau_i = theta_i - theta_base
// relate, tensor by tensor — pairwise cosine similarity, what TIES trimming removes, how often the trimmed vectors
// disagree in sign and what the sign election drops, and the magnitude distribution. The picture behind task
// arithmetic, TIES and DARE.

package struct TaskVectorState: Sendable {
    package var analysis: TaskVectorAnalysis?
    /// The TIES density the trimming and sign statistics use (the soup view's density to start with).
    package var density = ExplorerEngine.soupDensity
    package var computing = false
    package var error: String?
    /// The tensor selected in the per-tensor heatmap.
    package var tensor = ListState()
}

enum TaskVectorView: ExplorerViewModule {
    static func bind(_ m: inout Keymap<ExplorerAction>, context tv: String) {
        m.bind([.up, .char("k")], .up, "previous tensor", context: tv)
        m.bind([.down, .char("j")], .down, "next tensor", hint: "tensor", context: tv)
        m.bind([.left, .char("h")], .left, "TIES density - 0.05", context: tv)
        m.bind([.right, .char("l")], .right, "TIES density + 0.05", hint: "density", context: tv)
    }

    static let hints: [ExplorerAction] = [.help, .quit, .down, .right, .nextView]

    static func perform(_ action: ExplorerAction, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        let count = app.state.taskVectors.analysis?.tensors.count ?? 0
        switch action {
        case .up: app.state.taskVectors.tensor.move(-1, count: count)
        case .down: app.state.taskVectors.tensor.move(1, count: count)
        case .left, .right:
            let d = app.state.taskVectors.density + (action == .right ? 0.05 : -0.05)
            app.state.taskVectors.density = min(1, max(0.05, (d * 20).rounded() / 20))
            return app.startTaskVectors()
        default: break
        }
        return []
    }

    static func mouse(_ ev: MouseEvent, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        switch ev.kind {
        case .wheelUp: app.perform(.up)
        case .wheelDown: app.perform(.down)
        default: []
        }
    }

    static func entered(_ app: inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        app.state.taskVectors.analysis == nil && !app.state.taskVectors.computing ? app.startTaskVectors() : []
    }

    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        TaskVectorRenderer.render(state, into: &buffer, area: area, context: context)
    }
}

extension ExplorerApp {
    /// Computes the task-vector analysis of the models against the base at the view's density, in the background.
    mutating func startTaskVectors() -> [Effect<ExplorerMessage>] {
        guard let base = engine.base else {
            state.taskVectors.error = "Task vectors need a base: start the explorer with --base BASE_MODEL and its fine-tunes as the models."
            return []
        }
        if let old = state.jobs.first(where: { $0.title == "task vectors" }) { jobCancel[old.id]?.cancel() }
        state.taskVectors.computing = true
        state.taskVectors.error = nil
        let density = state.taskVectors.density
        let engine = self.engine
        let (id, flag) = beginJob("task vectors")
        return [.spawn { inbox in
            do {
                let a = try TaskVectorAnalysis.compute(base: base.params, models: engine.params, names: engine.names, density: density)
                if flag.isCancelled { return inbox.post(.jobFinished(id: id, note: "task vectors cancelled")) }
                inbox.post(.taskVectors(a))
                inbox.post(.jobFinished(id: id, note: String(format: "task vectors at density %.2f", density)))
            } catch {
                inbox.post(.taskVectorsFailed("\(error)"))
                inbox.post(.jobFailed(id: id, "\(error)"))
            }
        }]
    }
}

enum TaskVectorRenderer {
    /// The per-tensor heatmap's columns: what each shows, as a share in [0, 1].
    static let columns = ["cos", "confl", "drop", "trim"]

    /// Per-tensor values for the heatmap: mean pairwise cosine, sign-conflict rate, election-dropped share,
    /// mean trimmed mass.
    static func tensorRow(_ t: TaskVectorAnalysis.TensorStats) -> [Double] {
        var cosines: [Double] = []
        for i in t.cosine.indices { for j in t.cosine.indices where j > i { if let c = t.cosine[i][j] { cosines.append(c) } } }
        let meanCos = cosines.isEmpty ? Double.nan : cosines.reduce(0, +) / Double(cosines.count)
        let trimmed = t.trimmedMass.isEmpty ? Double.nan : t.trimmedMass.reduce(0, +) / Double(t.trimmedMass.count)
        return [meanCos, t.signConflict, t.electionDropped, trimmed]
    }

    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let muted = Style(fg: .role(.muted))
        let glyphs = context.glyphs
        let tv = state.taskVectors
        guard let a = tv.analysis else {
            let b = Block(title: "Task vectors")
            b.render(into: &buffer, area: area, context: context)
            let text = tv.error ?? (tv.computing ? "computing the task vectors…" : "Task vectors: a fine-tuned model minus its base. Start with --base BASE_MODEL and the fine-tunes as models.")
            Paragraph(text, style: tv.error != nil ? Style(fg: .role(.warning)) : muted)
                .render(into: &buffer, area: b.inner(area).inset(left: 1, right: 1), context: context)
            return
        }
        let cols = area.columns(.fill(1), .fill(1))
        // Left: whole-model cosines, TIES summary, magnitude distribution.
        let lb = Block(title: String(format: "task vectors vs base · TIES density %.2f (←→)", a.density))
        lb.render(into: &buffer, area: cols[0], context: context)
        let li = lb.inner(cols[0]).inset(left: 1, right: 1)
        let k = a.models.count
        let nameW = max(6, min(12, (li.width - 2) / (k + 1) - 1))
        var rows: [[String]] = []
        for i in 0..<k {
            rows.append([TextWidth.fit(a.models[i], to: nameW, ellipsis: glyphs.ellipsis)] + (0..<k).map { j in
                a.cosine[i][j].map { String(format: "%.2f", $0) } ?? "–"
            })
        }
        var y = li.y
        buffer.writeFitted("cosine similarity of task vectors (whole model)", in: li.row(0), style: Style(fg: .role(.title)), glyphs: glyphs)
        y += 1
        let header = [""] + (0..<k).map { "\($0 + 1)" }
        let tableRows = rows.enumerated().map { i, r in ["\(i + 1) " + r[0]] + r.dropFirst() }
        let tableH = min(li.maxY - y, k + 1)
        Table(header: header, rows: tableRows, widths: [.fixed(nameW + 2)] + (0..<k).map { _ in Constraint.fill(1) },
              alignments: [BasinUI.Alignment.left] + (0..<k).map { _ in BasinUI.Alignment.right })
            .render(into: &buffer, area: Rect(x: li.x, y: y, width: li.width, height: max(0, tableH)), context: context)
        y += tableH + 1
        let summary = [
            "TIES trims " + a.trimmedMass.map(pct).joined(separator: " / ") + " of each task vector's L1 mass;",
            "\(pct(a.signConflict)) of the entries two or more trimmed vectors touch disagree in sign;",
            "the sign election drops \(pct(a.electionDropped)) of the trimmed mass.",
            "Cosines near 0: the fine-tunes moved in unrelated directions, so adding them interferes little; trimming keeps most of the mass in few entries, and the election settles the conflicts.",
        ]
        for line in summary.flatMap({ Paragraph.wrap($0, width: li.width) }) where y < li.maxY {
            buffer.writeFitted(line, in: li.row(y - li.y), style: muted, glyphs: glyphs)
            y += 1
        }
        y += 1
        // Magnitude distribution: share of L1 mass in the largest entries, and the log-magnitude histogram.
        if y + 1 < li.maxY {
            buffer.writeFitted("share of L1 mass in the largest entries", in: li.row(y - li.y), style: Style(fg: .role(.title)), glyphs: glyphs)
            y += 1
            let fractions = [0.01, 0.05, 0.1, 0.2, 0.5]
            let idx = fractions.compactMap { f in TaskVectorAnalysis.massFractions.firstIndex(of: f) }
            let head = ["top"] + idx.map { String(format: "%g%%", TaskVectorAnalysis.massFractions[$0] * 100) }
            let mrows = (0..<k).map { i in ["\(i + 1)"] + idx.map { pct(a.massCurve[i][$0]) } }
            let h = min(li.maxY - y, k + 1)
            Table(header: head, rows: mrows, widths: [.fixed(4)] + idx.map { _ in Constraint.fill(1) },
                  alignments: [BasinUI.Alignment.left] + idx.map { _ in BasinUI.Alignment.right })
                .render(into: &buffer, area: Rect(x: li.x, y: y, width: li.width, height: max(0, h)), context: context)
            y += h + 1
        }
        if li.maxY - y >= 6 {
            let series = (0..<k).map { i in
                PlotSeries(name: "\(i + 1)", points: a.histogram[i].enumerated().map { b, n in
                    (x: (a.histogramEdges[b] + a.histogramEdges[b + 1]) / 2, y: Double(n))
                }, index: i)
            }
            BraillePlot(series: series).render(into: &buffer, area: Rect(x: li.x, y: y, width: li.width, height: li.maxY - y), context: context)
            if y < li.maxY {
                buffer.write("log10 |τ| histogram", in: li.row(y - li.y), style: muted, alignment: .right)
            }
        }

        // Right: the per-tensor heatmap (rows: tensors), the selected tensor's numbers.
        let rb = Block(title: "per tensor (↑↓)")
        rb.render(into: &buffer, area: cols[1], context: context)
        let ri = rb.inner(cols[1]).inset(left: 1, right: 1)
        let parts = ri.rows(.fill(1), .fixed(min(ri.height / 2, k + 6)))
        let labelW = min(18, max(8, a.tensors.map { TextWidth.of($0.name) }.max() ?? 8))
        let mapArea = parts[0].inset(left: labelW + 1)
        let visible = max(1, mapArea.height - 2)
        let sel = min(tv.tensor.selected, max(0, a.tensors.count - 1))
        let offset = max(0, min(sel - visible / 2, a.tensors.count - visible))
        let shown = Array(a.tensors.dropFirst(offset).prefix(visible))
        // Column labels above the map.
        let colW = max(1, mapArea.width / columns.count)
        for (c, name) in columns.enumerated() {
            buffer.write(TextWidth.fit(name, to: max(1, colW - 1), ellipsis: glyphs.ellipsis), x: mapArea.x + c * colW, y: parts[0].y, style: muted, clip: parts[0])
        }
        let values = shown.map(tensorRow)
        let mapRect = Rect(x: mapArea.x, y: parts[0].y + 1, width: colW * columns.count, height: shown.count + 1)
        Heatmap(values: values, range: 0...1, marked: (row: sel - offset, col: 0), showColorBar: true)
            .render(into: &buffer, area: mapRect, context: context)
        for (r, t) in shown.enumerated() {
            let style = offset + r == sel ? Style(fg: .role(.foreground), bg: .role(.selection), attributes: .bold) : muted
            buffer.write(TextWidth.fit(t.name, to: labelW, ellipsis: glyphs.ellipsis), x: parts[0].x, y: mapRect.y + r, style: style,
                         clip: parts[0])
        }
        // The selected tensor in numbers.
        if sel < a.tensors.count, parts[1].height > 0 {
            let t = a.tensors[sel]
            let v = tensorRow(t)
            var lines = ["\(t.name) (\(t.count) entries)",
                         "mean cosine \(fmt(v[0], 3)) · sign conflicts \(pct(v[1])) · election drops \(pct(v[2]))",
                         "trimmed mass: " + t.trimmedMass.map(pct).joined(separator: " / "),
                         "‖τ‖: " + t.norms.map { fmt($0, 3) }.joined(separator: " / ")]
            lines.append("colours 0 (low) to 1 (high): cos = mean pairwise cosine, confl = sign-conflict rate, drop = mass the election drops, trim = mass trimming removes")
            for (i, l) in lines.flatMap({ Paragraph.wrap($0, width: parts[1].width) }).prefix(parts[1].height).enumerated() {
                buffer.writeFitted(l, in: parts[1].row(i), style: i == 0 ? Style(fg: .role(.title)) : muted, glyphs: glyphs)
            }
        }
    }
}
