import BasinFusion
import BasinNet
import BasinUI
import Foundation

// The path view: loss or accuracy along paths between the selected models (linear, polychain, Bezier, and
// the straight line to B aligned to A), the model at the cursor t, barriers, and the pairwise barrier matrix.

extension PathType {
    /// The name the explorer shows.
    var label: String {
        switch self {
        case .linear: "linear"
        case .polychain: "polychain"
        case .bezier: "Bezier"
        }
    }
}

/// Curves the path view can overlay.
package enum CurveID: Hashable, Sendable {
    /// The selected pair's (or chain's) path of the given type, with fitted bends if any.
    case path(PathType)
    /// The straight line from A to B aligned to A.
    case aligned
}

package struct CurvePoint: Sendable, Equatable {
    package var t: Double
    /// Loss / accuracy per data set.
    package var loss: [Double]
    package var accuracy: [Double]
}

package struct Curve: Sendable, Equatable {
    package var label: String
    package var points: [CurvePoint] = []
    package var expected: Int
    package var generation: Int
    package var done: Bool { points.count >= expected }

    /// Barrier on data set d (Eq. 1): max over t of loss(t) minus the straight line between the endpoint losses.
    package func barrier(_ d: Int) -> (t: Double, height: Double, loss: Double)? {
        guard let first = points.first, let last = points.last, first.t == 0, last.t == 1, points.count >= 3 else { return nil }
        let b = PathMetrics.excessOverChord(ts: points.map(\.t), values: points.map { $0.loss[d] })
        return (t: points[b.index].t, height: b.height, loss: points[b.index].loss[d])
    }
}

package struct PathState: Sendable {
    /// The path type the cursor moves on (number keys 1-3).
    package var type: PathType = .linear
    package var t: Double = 0.5
    package var showAccuracy = false
    package var curves: [CurveID: Curve] = [:]
    /// Metrics of the model at the cursor (the active curve at t).
    package var cursorMetrics: [Metrics]?
    /// Fitted bends exist for these types (for the current selection).
    package var fitted: Set<PathType> = []
    /// Pairwise linear-path barriers (test loss), nil until computed; NaN on the diagonal.
    package var barrierMatrix: [[Double]]?

    package var activeCurve: Curve? { curves[.path(type)] }
}

enum PathView: ExplorerViewModule {
    static func bind(_ m: inout Keymap<ExplorerAction>, context path: String) {
        m.bind([.left, .char("h")], .left, "move t left", hint: "scrub", context: path)
        m.bind([.right, .char("l")], .right, "move t right", context: path)
        m.bind([.shiftLeft, .char("H"), .char("[")], .fineLeft, "move t left, fine", context: path)
        m.bind([.shiftRight, .char("L"), .char("]")], .fineRight, "move t right, fine", context: path)
        m.bind([.home, .char("g")], .toStart, "t = 0", context: path)
        m.bind([.end, .char("G")], .toEnd, "t = 1", context: path)
        m.bind([.char("1")], .pathType(.linear), "linear path", hint: "linear", context: path)
        m.bind([.char("2")], .pathType(.polychain), "polygonal chain", hint: "chain", context: path)
        m.bind([.char("3")], .pathType(.bezier), "Bezier curve", hint: "Bezier", context: path)
        m.bind([.char("a")], .toggleAccuracy, "plot accuracy instead of loss", context: path)
    }

    static let hints: [ExplorerAction] = [.help, .left, .pathType(.linear), .pathType(.polychain), .pathType(.bezier), .fit,
                                          .match(.weight), .export, .nextView, .quit]
    static let panes = 2

    static func perform(_ action: ExplorerAction, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        let step = 0.05, fine = 0.01
        let t = app.state.path.t
        switch action {
        case .left: app.setT(t - step)
        case .right: app.setT(t + step)
        case .fineLeft: app.setT(t - fine)
        case .fineRight: app.setT(t + fine)
        case .toStart: app.setT(0)
        case .toEnd: app.setT(1)
        case .pathType(let type):
            app.state.path.type = type
            app.recomputeCursor()
            if app.state.path.curves[.path(type)] == nil { return app.startCurve(.path(type)) }
        case .toggleAccuracy: app.state.path.showAccuracy.toggle()
        default: break
        }
        return []
    }

    static func mouse(_ ev: MouseEvent, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        switch ev.kind {
        case .wheelUp: return app.perform(.right)
        case .wheelDown: return app.perform(.left)
        case .press:
            if let plot = Layout.pathPlotArea(app.state, size: app.state.size), plot.contains(Point(x: ev.x, y: ev.y)), plot.width > 1 {
                app.setT(Double(ev.x - plot.x) / Double(plot.width - 1))
            }
        case .release: break
        }
        return []
    }

    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        PathRenderer.render(state, into: &buffer, area: area, context: context)
    }
}

// MARK: Paths, curves, fits and the barrier matrix

extension ExplorerApp {
    mutating func setT(_ t: Double) {
        let snapped = (min(1, max(0, t)) * 1000).rounded() / 1000
        guard snapped != state.path.t else { return }
        state.path.t = snapped
        recomputeCursor()
    }

    /// The path of a curve for the current selection: the chain through every model, or the pair's segment, or
    /// the pair's polychain / Bezier through the fitted bend (the midpoint until fitted).
    func path(_ id: CurveID) throws -> ModelPath {
        let p = engine.params
        let (a, b) = state.pair
        switch id {
        case .aligned:
            return try .linear(p[a], alignedB ?? p[b])
        case .path(let type):
            switch state.selection {
            case .chain:
                return type == .bezier ? try ModelPath(type: .bezier, controlPoints: p) : try .chain(p)
            case .pair:
                if type == .linear { return try .linear(p[a], p[b]) }
                return try .withBends(type, from: p[a], to: p[b], bends: bends[type] ?? [ParameterSet.lerp(p[a], p[b], 0.5)])
            }
        }
    }

    func curveLabel(_ id: CurveID) -> String {
        switch id {
        case .aligned: return "aligned"
        case .path(let type):
            if case .chain = state.selection { return type == .bezier ? "chain Bezier" : "chain" }
            if type == .linear { return "linear" }
            return state.path.fitted.contains(type) ? "\(type.label) fit" : "\(type.label) (unfitted)"
        }
    }

    mutating func recomputeCursor() {
        do {
            state.path.cursorMetrics = engine.evaluate(try path(.path(state.path.type)).parameters(at: state.path.t))
        } catch {
            state.path.cursorMetrics = nil
            state.lastJobNote = "\(error)"
        }
    }

    mutating func restartCurves() -> [Effect<ExplorerMessage>] {
        for id in state.path.curves.keys where id != .aligned { state.path.curves[id] = nil }
        var fx = startCurve(.path(.linear))
        if state.path.type != .linear { fx += startCurve(.path(state.path.type)) }
        return fx
    }

    /// Evaluates a curve in the background, posting points as they come (latest request wins).
    mutating func startCurve(_ id: CurveID) -> [Effect<ExplorerMessage>] {
        curveCancel[id]?.cancel()
        generation += 1
        let gen = generation
        let n = options.pathPoints
        let modelPath: ModelPath
        do { modelPath = try path(id) } catch {
            state.popup = PopupState(title: curveLabel(id), message: "\(error)", isError: true)
            return []
        }
        state.path.curves[id] = Curve(label: curveLabel(id), points: [], expected: n, generation: gen)
        let flag = CancellationFlag()
        curveCancel[id] = flag
        let engine = self.engine
        let ts = ModelPath.grid(n)
        return [.spawn { inbox in
            engine.evaluatePath(modelPath, ts: ts, cancel: flag) { t, m in
                inbox.post(.curvePoint(id, generation: gen, CurvePoint(t: t, loss: m.map(\.loss), accuracy: m.map(\.accuracy))))
            }
        }]
    }

    mutating func startFit() -> [Effect<ExplorerMessage>] {
        guard case let .pair(a, b) = state.selection else {
            state.popup = PopupState(title: "Fit", message: "Curve fitting works on a pair: press p to choose one.", isError: true)
            return []
        }
        if state.path.type == .linear { state.path.type = .bezier }
        let type = state.path.type
        if state.jobs.contains(where: { $0.title.hasPrefix("fit") }) { return [] }
        let (id, flag) = beginJob("fit \(type.label)")
        let engine = self.engine
        let epochs = options.fitEpochs
        let sel = state.selection
        let pa = engine.params[a], pb = engine.params[b]
        let start = Date()
        return [.spawn { inbox in
            do {
                let bend = try engine.fitBend(type, from: pa, to: pb, epochs: epochs, cancel: flag) { p in
                    let elapsed = Date().timeIntervalSince(start)
                    let left = p.fraction > 0 ? elapsed * (1 - p.fraction) / p.fraction : 0
                    inbox.post(.jobProgress(id: id, fraction: p.fraction,
                                            detail: String(format: "epoch %d/%d loss %.3f, %.0fs left", p.epoch, p.epochs, p.loss, left)))
                }
                if flag.isCancelled {
                    inbox.post(.jobFinished(id: id, note: "fit cancelled"))
                } else {
                    inbox.post(.fitted(type, selection: sel, bend))
                    inbox.post(.jobFinished(id: id, note: String(format: "fit %@ done in %.1fs", type.label, Date().timeIntervalSince(start))))
                }
            } catch {
                inbox.post(.jobFailed(id: id, "\(error)"))
            }
        }]
    }

    /// The pairwise barriers of the straight paths between all models (11 points, the last data set).
    mutating func startBarrierMatrix() -> [Effect<ExplorerMessage>] {
        let (id, flag) = beginJob("barriers")
        let engine = self.engine
        return [.spawn { inbox in
            do {
                let matrix = try BarrierMatrix.compute(models: engine.params, network: engine.network, datasets: [engine.shownData],
                                                       points: 11, cancel: flag) { done, total in
                    inbox.post(.jobProgress(id: id, fraction: Double(done) / Double(total), detail: "\(done)/\(total) pairs"))
                }
                guard let matrix else { return inbox.post(.jobFinished(id: id, note: "barriers cancelled")) }
                inbox.post(.barrierMatrix(matrix.lossBarriers(data: 0)))
                inbox.post(.jobFinished(id: id, note: nil))
            } catch {
                inbox.post(.jobFailed(id: id, "\(error)"))
            }
        }]
    }
}

// MARK: Drawing

extension Layout {
    static func pathColumns(_ state: ExplorerState, size: Size) -> (plot: Rect, side: Rect) {
        let body = self.body(size)
        let cols = body.columns(.fill(1), .fixed(min(38, body.width / 3)))
        return (cols[0], cols[1])
    }

    /// The plot's drawing area (inside its block), for mouse clicks.
    package static func pathPlotArea(_ state: ExplorerState, size: Size) -> Rect? {
        guard !TooSmall.check(size, minimum: minimum) else { return nil }
        let (plotBox, _) = pathColumns(state, size: size)
        let inner = Block().inner(plotBox).inset(top: 1)
        return PathRenderer.plot(state).geometry(area: inner).plot
    }
}

enum PathRenderer {
    static let curveOrder: [CurveID] = [.path(.linear), .aligned, .path(.polychain), .path(.bezier)]

    /// The plot widget for the current state (series per curve and data set).
    static func plot(_ state: ExplorerState) -> BraillePlot {
        // One colour per curve; the last data set (test) bright and named in the legend, the others dim.
        let path = state.path
        var series: [PlotSeries] = []
        var index = 0
        let ds = state.dataNames.count
        for id in curveOrder {
            guard let c = path.curves[id], !c.points.isEmpty else { continue }
            for d in 0..<ds {
                let pts = c.points.map { (x: $0.t, y: path.showAccuracy ? $0.accuracy[d] : $0.loss[d]) }
                var s = PlotSeries(name: d == ds - 1 ? c.label : "", points: pts, index: index)
                if d < ds - 1 { s.style = s.style.patched(Style(attributes: .dim)) }
                series.append(s)
            }
            index += 1
        }
        var marker: PlotMarker?
        if !path.showAccuracy, let c = path.activeCurve, let b = c.barrier(ds - 1) {
            marker = PlotMarker(x: b.t, y: b.loss, label: "barrier " + fmt(b.height, 3))
        }
        return BraillePlot(series: series, xRange: 0...1, cursorX: path.t, marker: marker, showLegend: true)
    }

    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let path = state.path
        let (plotBox, side) = Layout.pathColumns(state, size: Size(width: area.width, height: area.height + 2))
        let what = path.showAccuracy ? "accuracy" : "loss"
        let block = Block(title: "\(what) along the path · \(state.selectionLabel)")
        block.render(into: &buffer, area: plotBox, context: context)
        let inner = block.inner(plotBox)
        // Path type selector.
        var x = inner.x
        for (i, type) in PathType.allCases.enumerated() {
            let on = type == path.type
            let fitted = path.fitted.contains(type) ? "*" : ""
            let label = " \(i + 1) \(type.label)\(fitted) "
            x = buffer.write(label, x: x, y: inner.y, style: on ? Style(fg: .role(.foreground), bg: .role(.selection), attributes: .bold) : Style(fg: .role(.muted)), clip: inner.row(0)) + 1
        }
        let tText = "t = " + String(format: "%.3f", path.t)
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
        lines.append(("\(path.type.label) at t=\(String(format: "%.3f", path.t))", head))
        if let m = path.cursorMetrics {
            lines.append(("\(TextWidth.padRight("", to: 6)) loss    acc", muted))
            for (d, name) in state.dataNames.enumerated() where d < m.count {
                lines.append(("\(TextWidth.padRight(TextWidth.fit(name, to: 6), to: 6)) \(fmt(m[d].loss)) \(pct(m[d].accuracy))", plain))
            }
        }
        if let c = path.activeCurve {
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
            guard let c = path.curves[id] else { continue }
            var s = TextWidth.padRight(TextWidth.fit(c.label, to: labelW - 1), to: labelW)
            if c.done {
                s += state.dataNames.indices.map { fmt(c.barrier($0)?.height ?? .nan, 3) }.joined(separator: " ")
            } else {
                s += "\(c.points.count)/\(c.expected)…"
            }
            lines.append((s, id == .path(path.type) ? Style(fg: .role(.barrier), attributes: .bold) : plain))
        }
        if state.aligned { lines.append(("aligned: B permuted to A (m)", muted)) }
        for (i, l) in lines.prefix(si.height).enumerated() {
            buffer.write(l.0, x: si.x, y: si.y + i, style: l.1, clip: si.row(i))
        }

        if hasMatrix {
            let mb = Block(title: "barrier matrix (\(state.dataNames.last ?? "") loss)")
            mb.render(into: &buffer, area: parts[1], context: context)
            let mi = mb.inner(parts[1]).inset(left: 1)
            guard let mat = path.barrierMatrix else {
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
