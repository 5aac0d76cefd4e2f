import BasinFusion
import BasinNet
import BasinUI
import Foundation

// The permutation view: an alignment of B to A layer by layer (similarity before and after, the matches and
// their scores, the objective per step).

package struct PermutationState: Sendable {
    package var outcome: ExplorerEngine.MatchOutcome?
    package var layer: ListState = ListState()
    package var matches: ListState = ListState()
    /// 0 = layer list, 1 = match list.
    package var focus = 0
}

enum PermutationView: ExplorerViewModule {
    static func bind(_ m: inout Keymap<ExplorerAction>, context perm: String) {
        m.bind([.up, .char("k")], .up, "previous layer / match", context: perm)
        m.bind([.down, .char("j")], .down, "next layer / match", hint: "move", context: perm)
        m.bind([.pageUp, .ctrl("b")], .pageUp, "page up", context: perm)
        m.bind([.pageDown, .ctrl("f")], .pageDown, "page down", context: perm)
    }

    static let hints: [ExplorerAction] = [.help, .quit, .down, .nextPane, .match(.weight), .export, .nextView]
    static let panes = 2

    static func perform(_ action: ExplorerAction, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        guard let o = app.state.permutation.outcome, !o.report.layers.isEmpty else { return [] }
        let delta: Int
        switch action {
        case .up: delta = -1
        case .down: delta = 1
        case .pageUp: delta = -10
        case .pageDown: delta = 10
        default: return []
        }
        if app.state.permutation.focus == 0 {
            app.state.permutation.layer.move(delta, count: o.report.layers.count)
            app.state.permutation.matches = ListState()
        } else {
            let n = o.report.layers[app.state.permutation.layer.selected].size
            app.state.permutation.matches.move(delta, count: n)
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

    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        PermutationRenderer.render(state, into: &buffer, area: area, context: context)
    }
}

extension ExplorerApp {
    /// Aligns every other model to the reference (A of the pair, the first model of the chain) in the
    /// background, the selection's B first so its aligned curve appears soonest. Each alignment is posted as
    /// it is done.
    mutating func startMatch(_ method: MatchMethod) -> [Effect<ExplorerMessage>] {
        if state.jobs.contains(where: { $0.title.hasPrefix("match") }) {
            state.lastJobNote = "matching is running: Esc cancels it"
            return []
        }
        let ref = state.reference
        let b = state.selectedModels[1]
        let targets = [b] + engine.models.indices.filter { $0 != ref && $0 != b }
        // The soup view with three or more models aligns them jointly (MergeMany): no model but the frame's is
        // privileged, as a soup of many wants.
        if method == .weight && state.view == .soup && engine.models.count >= 3 { return startMergeMany() }
        let (id, flag) = beginJob("match \(method.rawValue)")
        let engine = self.engine
        return [.spawn { inbox in
            do {
                var moved = 0
                var seconds = 0.0
                for (k, i) in targets.enumerated() {
                    inbox.post(.jobProgress(id: id, fraction: Double(k) / Double(targets.count),
                                            detail: "\(engine.names[i]) to \(engine.names[ref]) (\(k + 1)/\(targets.count))"))
                    let outcome = try engine.match(method, a: ref, b: i, cancel: flag)
                    inbox.post(.matched(outcome))
                    moved += outcome.report.layers.reduce(0) { $0 + $1.moved }
                    seconds += outcome.report.seconds
                }
                let what = targets.count == 1 ? "\(moved) units moved" : "\(targets.count) models aligned to \(engine.names[ref]), \(moved) units moved"
                inbox.post(.jobFinished(id: id, note: String(format: "%@ matching: %@ (%.2fs)", method.rawValue, what, seconds)))
            } catch is CancellationError {
                inbox.post(.jobFinished(id: id, note: "matching cancelled"))
            } catch {
                inbox.post(.jobFailed(id: id, "\(error)"))
            }
        }]
    }
}

extension ExplorerApp {
    /// MergeMany over every model, in the frame of the reference (A); each outcome arrives as a `.matched`.
    mutating func startMergeMany() -> [Effect<ExplorerMessage>] {
        let ref = state.reference
        let (id, flag) = beginJob("match merge-many")
        let engine = self.engine
        return [.spawn { inbox in
            do {
                let r = try engine.mergeMany(reference: ref, cancel: flag) { round in
                    inbox.post(.jobProgress(id: id, fraction: 0, detail: "round \(round)"))
                }
                for o in r.outcomes { inbox.post(.matched(o)) }
                let moved = r.outcomes.reduce(0) { $0 + $1.report.layers.reduce(0) { $0 + $1.moved } }
                inbox.post(.jobFinished(id: id, note: "MergeMany: \(engine.models.count) models aligned jointly in \(engine.names[ref])'s frame, \(r.rounds) rounds, \(moved) units moved"))
            } catch is CancellationError {
                inbox.post(.jobFinished(id: id, note: "matching cancelled"))
            } catch {
                inbox.post(.jobFailed(id: id, "\(error)"))
            }
        }]
    }
}

enum PermutationRenderer {
    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let muted = Style(fg: .role(.muted))
        guard let o = state.permutation.outcome, !o.report.layers.isEmpty else {
            let b = Block(title: "Permutation alignment")
            b.render(into: &buffer, area: area, context: context)
            let i = b.inner(area).inset(left: 1)
            let (a, bIndex) = state.pair
            Paragraph("No alignment yet.\n\nPress m for weight matching or M for activation matching: \(state.modelNames.count > 2 ? "every other model" : "model \(state.modelNames[bIndex])") is permuted to \(state.modelNames[a]). The job runs in the background; the similarity matrices, the matches and the objective per step appear here, and the aligned straight line joins the path view.", style: muted)
                .render(into: &buffer, area: i, context: context)
            return
        }
        let report = o.report
        let li = min(state.permutation.layer.selected, report.layers.count - 1)
        let layer = report.layers[li]
        let cols = area.columns(.fixed(26), .fill(1), .fixed(30))
        // Left: layers + summary + objective.
        let left = cols[0].rows(.fixed(min(report.layers.count + 2, cols[0].height / 3)), .fill(1))
        let lb = Block(title: "layers", borderStyle: Style(fg: .role(state.permutation.focus == 0 ? .accent : .border)))
        lb.render(into: &buffer, area: left[0], context: context)
        ListView(report.layers.map { "\($0.name) (\($0.size))" }, state: state.permutation.layer)
            .render(into: &buffer, area: lb.inner(left[0]), context: context)
        let sb = Block(title: (o.strategy == .mergeMany ? "MergeMany " : "") + "\(report.method.rawValue) matching")
        sb.render(into: &buffer, area: left[1], context: context)
        let si = sb.inner(left[1]).inset(left: 1)
        let lines = [
            "\(state.modelNames[o.b]) → \(state.modelNames[o.a])",
            "units moved  \(layer.moved)/\(layer.size)",
            "mean sim before \(fmt(layer.meanSimilarityBefore, 3))",
            "mean sim after  \(fmt(layer.meanSimilarityAfter, 3))",
            "all layers moved \(report.layers.reduce(0) { $0 + $1.moved })",
            String(format: "time %.2fs", report.seconds),
            "objective per step:",
        ]
        for (i, l) in lines.prefix(si.height).enumerated() {
            buffer.write(l, x: si.x, y: si.y + i, style: i == 0 ? Style(fg: .role(.title), attributes: .bold) : Style(fg: .role(.foreground)), clip: si.row(i))
        }
        if si.height > lines.count + 3 {
            let objs = [report.objectiveBefore] + report.steps.map(\.objective)
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
        let titles = ["before: A rows × B cols, \(window)", "after: B reordered, matches on the diagonal"]
        // Colours span the 2nd to 98th percentile of the layer's similarities (a few extreme pairs would wash
        // out the rest); the colour bar says so.
        let range = Heatmap.percentileRange(layer.similarity) ?? 0...1
        let window0 = s0..<(s0 + k)
        for (idx, aligned) in [false, true].enumerated() {
            let b = Block(title: titles[idx])
            b.render(into: &buffer, area: mid[idx], context: context)
            let inner = b.inner(mid[idx])
            let values = window0.map { i in
                window0.map { j in layer.similarity[i * n + (aligned ? layer.permutation[j] : j)] }
            }
            // The chosen matches: (i, π(i)) before, the diagonal after.
            let points: [(row: Int, col: Int)] = window0.compactMap { i in
                let j = aligned ? i : layer.permutation[i]
                return window0.contains(j) && i != sel ? (row: i - s0, col: j - s0) : nil
            }
            let selCol = aligned ? sel : layer.permutation[sel]
            let cellsHigh = (k + perCell - 1) / perCell + 1
            let area = Rect(x: inner.x, y: inner.y, width: min(inner.width, max(k, 24)), height: min(inner.height, cellsHigh))
            let mapArea = Rect(x: area.x, y: area.y, width: k, height: area.height)
            Heatmap(values: values, range: range, marked: window0.contains(selCol) ? (row: sel - s0, col: selCol - s0) : nil,
                    showColorBar: false, points: points)
                .render(into: &buffer, area: mapArea.inset(bottom: 1), context: context)
            // Beside the map: the legend; under it the colour ramp over the clipped range.
            let legendX = mapArea.maxX + 2
            if inner.maxX - legendX >= 14 {
                let legend = ["colour: similarity", report.method == .weight ? " (weight inner" : " (activation", report.method == .weight ? "  product)" : "  correlation)", "\(context.glyphs.unicode ? "•" : "o") chosen match", "\(context.glyphs.marker) selected match",
                              "score: similarity", " of the matched pair"]
                for (r, l) in legend.enumerated() where inner.y + r < area.maxY - 1 {
                    buffer.writeFitted(l, in: Rect(x: legendX, y: inner.y + r, width: inner.maxX - legendX, height: 1), style: Style(fg: .role(.muted)), glyphs: context.glyphs)
                }
            }
            let rampWidth = max(2, min(inner.width - 22, 24))
            let ramp = (0..<rampWidth).map { range.lowerBound + (range.upperBound - range.lowerBound) * Double($0) / Double(rampWidth - 1) }
            let barRow = Rect(x: inner.x, y: area.maxY - 1, width: inner.width, height: 1)
            var bx = buffer.write(formatNumber(range.lowerBound) + " ", x: barRow.x, y: barRow.y, style: Style(fg: .role(.muted)), clip: barRow)
            Heatmap(values: [ramp], range: range, showColorBar: false)
                .render(into: &buffer, area: Rect(x: bx, y: barRow.y, width: ramp.count, height: 1), context: context)
            bx += ramp.count
            buffer.write(" " + formatNumber(range.upperBound) + " (2–98%)", x: bx, y: barRow.y, style: Style(fg: .role(.muted)), clip: barRow)
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
}
