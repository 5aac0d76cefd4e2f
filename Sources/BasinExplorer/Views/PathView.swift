import BasinFusion
import BasinNet
import BasinUI
import Foundation

// The path view: loss or accuracy along every curve between the selected models (the straight line or the
// chain through them, fitted polychain / Bezier curves, and the same between aligned models), the model at
// the cursor t on the selected curve, each curve's barrier, and the pairwise barrier matrix.

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

/// A curve of the path view: a `ModelPath` between the selected models, straight (the line, or the chain
/// through every model) or through a fitted bend, between the models as loaded or with every model but the
/// reference permuted to it (after m / M), each point evaluated as interpolated or (networks with BatchNorm)
/// with its statistics reset or REPAIRed. The list of curves is `CurveID.all` filtered by what exists.
package struct CurveID: Hashable, Sendable, Comparable, CustomStringConvertible {
    package var type: PathType
    /// Through the models aligned to the reference.
    package var aligned: Bool
    /// What is done to each point before it is evaluated (BatchNorm networks).
    package var correction: ExplorerEngine.Correction

    package init(_ type: PathType = .linear, aligned: Bool = false, correction: ExplorerEngine.Correction = .naive) {
        self.type = type
        self.aligned = aligned
        self.correction = correction
    }

    package static let linear = CurveID(.linear)
    package static let alignedLine = CurveID(.linear, aligned: true)

    /// The curves between models, before corrections (their order, colour and glyph order).
    static let shapes: [CurveID] = [.linear, .alignedLine, CurveID(.polychain), CurveID(.bezier),
                                    CurveID(.polychain, aligned: true), CurveID(.bezier, aligned: true)]

    /// Every curve in list order: each shape followed by its corrected versions.
    package static let all: [CurveID] = shapes.flatMap { s in
        ExplorerEngine.Correction.allCases.map { CurveID(s.type, aligned: s.aligned, correction: $0) }
    }

    /// The same curve with another correction.
    package func with(_ c: ExplorerEngine.Correction) -> CurveID { CurveID(type, aligned: aligned, correction: c) }
    package var naive: CurveID { with(.naive) }

    package var rank: Int { CurveID.all.firstIndex(of: self) ?? CurveID.all.count }
    package static func < (l: CurveID, r: CurveID) -> Bool { l.rank < r.rank }

    /// The curve's colour and glyph: the shapes keep 0..<6 (as before corrections existed), BN-reset versions
    /// 6..<12, REPAIR versions 12..<18.
    package var styleIndex: Int {
        let shape = CurveID.shapes.firstIndex(of: naive) ?? 0
        return shape + 6 * (ExplorerEngine.Correction.allCases.firstIndex(of: correction) ?? 0)
    }

    /// The glyph marking the curve's points and its legend entry: the shape tells curves apart without colour
    /// (monochrome terminals, colour-blind users). Unicode and ASCII forms.
    package var glyph: (unicode: String, ascii: String) {
        let glyphs = [("●", "o"), ("◆", "#"), ("▲", "^"), ("■", "x"), ("△", "v"), ("□", "%"),
                      ("▼", "*"), ("◇", "+"), ("◀", "<"), ("◐", "("), ("▣", "="), ("◈", "&"),
                      ("▽", "w"), ("○", "@"), ("▶", ">"), ("◑", ")"), ("◉", "$"), ("◎", "~")]
        return glyphs[styleIndex % glyphs.count]
    }

    package func glyph(_ glyphs: Glyphs) -> String { glyphs.unicode ? glyph.unicode : glyph.ascii }

    package var description: String {
        (aligned ? "aligned " : "") + type.rawValue + (correction == .naive ? "" : " " + correction.rawValue)
    }
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
    /// The previous evaluation's points while the curve is evaluated again (a fit's next epoch): drawn past the
    /// new points so the curve bends in place instead of blinking out.
    package var stale: [CurvePoint] = []
    package var done: Bool { points.count >= expected }

    /// What the plot draws: the new points, then the stale ones beyond them.
    package var drawn: [CurvePoint] {
        guard !stale.isEmpty else { return points }
        let last = points.last?.t ?? -1
        return points + stale.filter { $0.t > last }
    }

    /// Barrier on data set d (Eq. 1): max over t of loss(t) minus the straight line between the endpoint losses.
    package func barrier(_ d: Int) -> (t: Double, height: Double, loss: Double)? {
        guard let first = points.first, let last = points.last, first.t == 0, last.t == 1, points.count >= 3 else { return nil }
        let b = PathMetrics.excessOverChord(ts: points.map(\.t), values: points.map { $0.loss[d] })
        return (t: points[b.index].t, height: b.height, loss: points[b.index].loss[d])
    }
}

/// A running fit, for the plot title (the curve redraws every epoch).
package struct FitStatus: Sendable, Equatable {
    package var curve: CurveID
    package var epoch: Int
    package var epochs: Int
    package var loss: Double
}

package struct PathState: Sendable {
    /// The curve the cursor moves on ("model at t", export).
    package var selected: CurveID = .linear
    package var t: Double = 0.5
    package var showAccuracy = false
    /// Scale the y axis to the selected curve only (else to every visible curve).
    package var zoomed = false
    package var curves: [CurveID: Curve] = [:]
    /// Curves switched off (x): not drawn, still listed.
    package var hidden: Set<CurveID> = []
    /// Metrics of the model at the cursor (the selected curve at t).
    package var cursorMetrics: [Metrics]?
    /// Pairwise linear-path barriers (test loss), nil until computed; NaN on the diagonal.
    package var barrierMatrix: [[Double]]?
    package var fit: FitStatus?

    /// The curves that exist, in list order.
    package var order: [CurveID] { curves.keys.sorted() }
    package var activeCurve: Curve? { curves[selected] }
    /// Fitted curves (polychain / Bezier) that exist.
    package var fitted: [CurveID] { order.filter { $0.type != .linear } }

    /// What the curves are still computing, for the status bar (curves are not jobs, so it would otherwise say
    /// "ready" while, say, BN-reset curves take a train pass per point): for each correction with an unfinished
    /// curve, its finished curves of all of its curves ("BN reset: 3/8 curves"); nil once every curve is complete.
    package var computing: String? {
        let parts = ExplorerEngine.Correction.allCases.compactMap { c -> String? in
            let mine = curves.filter { $0.key.correction == c }.values
            guard mine.contains(where: { !$0.done }) else { return nil }
            return "\(c == .naive ? "paths" : c.label): \(mine.filter(\.done).count)/\(mine.count) curves"
        }
        return parts.isEmpty ? nil : parts.joined(separator: " · ")
    }

    /// The y range of the plot: the visible curves' (or, zoomed, the selected curve's) values with a little
    /// room, never below 0 for a loss nor outside [0, 1] for an accuracy.
    package var yRange: ClosedRange<Double>? {
        let ids = zoomed ? [selected] : order.filter { !hidden.contains($0) }
        let ys = ids.compactMap { curves[$0] }.flatMap { c in
            c.drawn.flatMap { showAccuracy ? $0.accuracy : $0.loss }
        }.filter(\.isFinite)
        guard var lo = ys.min(), var hi = ys.max() else { return nil }
        if hi - lo < 1e-9 { lo -= max(0.05, abs(lo) * 0.1); hi += max(0.05, abs(hi) * 0.1) }
        let pad = (hi - lo) * 0.06
        lo = max(0, lo - pad)
        hi += pad
        if showAccuracy { hi = min(1, hi) }
        return lo...hi
    }
}

enum PathView: ExplorerViewModule {
    static func bind(_ m: inout Keymap<ExplorerAction>, context path: String) {
        m.bind([.left, .char("h")], .left, "move t left", hint: "scrub", context: path)
        m.bind([.right, .char("l")], .right, "move t right", context: path)
        m.bind([.shiftLeft, .char("[")], .fineLeft, "move t left, fine", context: path)
        m.bind([.shiftRight, .char("]")], .fineRight, "move t right, fine", context: path)
        m.bind([.home], .toStart, "t = 0 (model A)", context: path)
        m.bind([.end], .toEnd, "t = 1 (model B)", context: path)
        m.bind([.up, .char("k")], .up, "previous curve", context: path)
        m.bind([.down, .char("j")], .down, "next curve", hint: "curve", context: path)
        for n in 1...9 {
            // One help line for the nine keys (the others have no description, so help skips them).
            m.bind([.char(Character(String(n)))], .select(n), n == 1 ? "1-9: select a curve by its number in the side panel" : "", context: path)
        }
        m.bind([.char("x"), .char(" ")], .toggleCurve, "show / hide the selected curve", hint: "show", context: path)
        m.bind([.char("y")], .toggleAccuracy, "plot accuracy (token accuracy on token data) instead of loss", context: path)
        m.bind([.char("b")], .bnMode, "BatchNorm: the selected curve naive / BN reset / REPAIR (model at t follows)", hint: "BN", context: path)
        m.bind([.char("z")], .zoom, "zoom the y axis on the selected curve / all visible curves", hint: "zoom", context: path)
    }

    static let hints: [ExplorerAction] = [.help, .quit, .left, .down, .toggleCurve, .zoom, .fit(.bezier), .match(.weight), .aligned,
                                          .export, .nextView]
    static let panes = 1

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
        case .up, .down:
            let order = app.state.path.order
            guard let i = order.firstIndex(of: app.state.path.selected), order.count > 1 else { return [] }
            app.selectCurve(order[(i + (action == .down ? 1 : order.count - 1)) % order.count])
        case .select(let n):
            let order = app.state.path.order
            if n >= 1 && n <= order.count { app.selectCurve(order[n - 1]) }
        case .toggleCurve:
            let id = app.state.path.selected
            if app.state.path.hidden.contains(id) { app.state.path.hidden.remove(id) } else { app.state.path.hidden.insert(id) }
        case .bnMode: return app.cycleCorrection()
        case .toggleAccuracy: app.state.path.showAccuracy.toggle()
        case .zoom: app.state.path.zoomed.toggle()
        case .aligned:
            let id = CurveID(app.state.path.selected.type, aligned: true)
            if app.state.path.curves[id] != nil { app.selectCurve(id) }
            else if app.state.path.curves[.alignedLine] != nil { app.selectCurve(.alignedLine) }
            else { app.state.lastJobNote = "no aligned curve yet: press m to align" }
        default: break
        }
        return []
    }

    static func mouse(_ ev: MouseEvent, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        switch ev.kind {
        case .wheelUp: return app.perform(.right)
        case .wheelDown: return app.perform(.left)
        case .press, .drag:
            if let plot = Layout.pathPlotArea(app.state, size: app.state.size), plot.contains(Point(x: ev.x, y: ev.y)), plot.width > 1 {
                app.setT(Double(ev.x - plot.x) / Double(plot.width - 1))
            } else if ev.kind == .press, let rows = Layout.curveRows(app.state, size: app.state.size),
                      let i = rows.firstIndex(where: { $0.y == ev.y && ev.x >= $0.x && ev.x < $0.maxX }) {
                app.selectCurve(app.state.path.order[i])
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

    mutating func selectCurve(_ id: CurveID) {
        state.path.selected = id
        state.path.hidden.remove(id)
        recomputeCursor()
    }

    /// The parameters of the selection's models, in path order; with `aligned`, every model but the reference
    /// permuted to it.
    func curveModels(aligned: Bool) throws -> [ParameterSet] {
        let p = engine.params
        return try state.selectedModels.map { i in
            guard aligned, i != state.reference else { return p[i] }
            guard let o = state.alignment(of: i) else {
                throw ExplorerError("\(engine.names[i]) is not aligned to \(engine.names[state.reference]) yet: press m")
            }
            return o.result.aligned
        }
    }

    /// The path of a curve for the current selection: the straight line (the chain through every model), or
    /// the pair's polychain / Bezier through its fitted bend.
    func path(_ id: CurveID) throws -> ModelPath {
        let models = try curveModels(aligned: id.aligned)
        if id.type == .linear { return try .chain(models) }
        guard models.count == 2, let b = bends[id.naive] else { throw ExplorerError("the \(id.type.label) curve has no fitted bend yet: press f") }
        return try .withBends(id.type, from: models[0], to: models[1], bends: b)
    }

    func curveLabel(_ id: CurveID) -> String {
        let chain = state.selection == .chain
        let shape: String
        switch (id.type, id.aligned) {
        case (.linear, false): shape = chain ? "chain" : "linear"
        case (.linear, true): shape = chain ? "aligned chain" : "aligned"
        case (let type, let aligned): shape = (aligned ? "aligned " : "") + "\(type.label) fit"
        }
        switch id.correction {
        case .naive: return shape
        case .bnReset: return shape + "+reset"
        case .repair: return shape + "+REPAIR"
        }
    }

    mutating func recomputeCursor() {
        if state.path.curves[state.path.selected] == nil { state.path.selected = .linear }
        let id = state.path.selected
        do {
            state.path.cursorMetrics = engine.evaluatePoint(try path(id), t: state.path.t, correction: id.correction)
        } catch {
            state.path.cursorMetrics = nil
            state.lastJobNote = "\(error)"
        }
    }

    /// A curve and its corrected versions: on a network with BatchNorm the straight lines always come with
    /// their BN-reset and REPAIR versions; a fitted curve with those asked for (b).
    func withCorrections(_ id: CurveID) -> [CurveID] {
        let naive = id.naive
        return engine.corrections.map { naive.with($0) }.filter { $0.correction == .naive || naive.type == .linear || requestedCorrections.contains($0) }
    }

    /// Starts every curve of the selection afresh (a new pair, new alignments).
    mutating func restartCurves() -> [Effect<ExplorerMessage>] {
        for c in curveCancel.values { c.cancel() }
        curveCancel = [:]
        state.path.curves = [:]
        var shapes: [CurveID] = [.linear]
        if state.selectionAligned { shapes.append(.alignedLine) }
        shapes += bends.keys.sorted().filter { !$0.aligned || state.selectionAligned }
        var fx: [Effect<ExplorerMessage>] = []
        for shape in shapes { for id in withCorrections(shape) { fx += startCurve(id) } }
        if state.path.curves[state.path.selected] == nil { state.path.selected = .linear }
        recomputeCursor()
        return fx
    }

    /// b: the selected curve's next correction (naive, BN reset, REPAIR), started when it does not exist yet.
    /// Model at t, its metrics and an export follow the selected curve's correction.
    mutating func cycleCorrection() -> [Effect<ExplorerMessage>] {
        let all = engine.corrections
        guard all.count > 1 else {
            state.lastJobNote = "no BatchNorm in this network: its points need no statistics reset"
            return []
        }
        let current = state.path.selected
        let i = all.firstIndex(of: current.correction) ?? 0
        let next = current.with(all[(i + 1) % all.count])
        var fx: [Effect<ExplorerMessage>] = []
        if state.path.curves[next] == nil {
            if next.correction != .naive { requestedCorrections.insert(next) }
            fx = startCurve(next)
        }
        guard state.path.curves[next] != nil else { return fx }
        selectCurve(next)
        state.lastJobNote = "BN mode: " + correctionDescription(next.correction)
        return fx
    }

    /// What a correction does, for the side panel and notes.
    func correctionDescription(_ c: ExplorerEngine.Correction) -> String {
        switch c {
        case .naive: return "naive (statistics interpolated)"
        case .bnReset: return "BN statistics reset on \(engine.correctionDataName)"
        case .repair: return "REPAIR on \(engine.correctionDataName)"
        }
    }

    /// Evaluates a curve in the background, posting points as they come (latest request wins). A curve still
    /// being evaluated is refreshed once its evaluation ends (`refreshCurve`), so a fast fit does not starve it.
    mutating func startCurve(_ id: CurveID) -> [Effect<ExplorerMessage>] {
        curveCancel[id]?.cancel()
        generation += 1
        let gen = generation
        let n = options.pathPoints
        let modelPath: ModelPath
        do { modelPath = try path(id) } catch {
            state.lastJobNote = "\(error)"
            return []
        }
        let old = state.path.curves[id]
        state.path.curves[id] = Curve(label: curveLabel(id), points: [], expected: n, generation: gen, stale: old?.drawn ?? [])
        pendingRefresh.remove(id)
        let flag = CancellationFlag()
        curveCancel[id] = flag
        let engine = self.engine
        let ts = ModelPath.grid(n)
        let correction = id.correction
        return [.spawn { inbox in
            engine.evaluatePath(modelPath, ts: ts, correction: correction, cancel: flag) { t, m in
                inbox.post(.curvePoint(id, generation: gen, CurvePoint(t: t, loss: m.map(\.loss), accuracy: m.map(\.accuracy))))
            }
        }]
    }

    /// Evaluates a curve again with its newest bend: now if it is idle, else when its evaluation ends.
    mutating func refreshCurve(_ id: CurveID) -> [Effect<ExplorerMessage>] {
        if let c = state.path.curves[id], !c.done {
            pendingRefresh.insert(id)
            return []
        }
        return startCurve(id)
    }

    /// Refreshes a fitted curve and its corrected versions that exist.
    mutating func refreshWithCorrections(_ id: CurveID) -> [Effect<ExplorerMessage>] {
        var fx: [Effect<ExplorerMessage>] = []
        for c in withCorrections(id) where c == id || state.path.curves[c] != nil { fx += refreshCurve(c) }
        return fx
    }

    mutating func startFit(_ type: PathType) -> [Effect<ExplorerMessage>] {
        guard case .pair = state.selection else {
            state.lastJobNote = "curve fitting works on a pair: press p to choose one"
            return []
        }
        if state.path.fit != nil || state.jobs.contains(where: { $0.title.hasPrefix("fit") }) {
            state.lastJobNote = "a fit is running: Esc stops it"
            return []
        }
        let aligned = state.path.selected.aligned
        let models: [ParameterSet]
        do { models = try curveModels(aligned: aligned) } catch {
            state.lastJobNote = "\(error)"
            return []
        }
        let id = CurveID(type, aligned: aligned)
        let label = curveLabel(id)
        let (job, flag) = beginJob("fit " + (aligned ? "aligned " : "") + type.label)
        let engine = self.engine
        let epochs = options.fitEpochs
        let sel = state.selection
        let start = Date()
        state.path.fit = FitStatus(curve: id, epoch: 0, epochs: epochs, loss: .nan)
        return [.spawn { inbox in
            do {
                var lastLoss = Double.nan
                let bend = try engine.fitBend(type, from: models[0], to: models[1], epochs: epochs, cancel: flag) { p in
                    lastLoss = p.loss
                    let elapsed = Date().timeIntervalSince(start)
                    let left = p.fraction > 0 ? elapsed * (1 - p.fraction) / p.fraction : 0
                    inbox.post(.jobProgress(id: job, fraction: p.fraction,
                                            detail: String(format: "epoch %d/%d loss %.3f, %.0fs left", p.epoch, p.epochs, p.loss, left)))
                } epochEnd: { epoch, bend in
                    inbox.post(.fitEpoch(id, selection: sel, bend, epoch: epoch, epochs: epochs, loss: lastLoss))
                }
                let seconds = Date().timeIntervalSince(start)
                let note = flag.isCancelled ? String(format: "%@ stopped early (%.1fs)", label, seconds)
                    : String(format: "%@ done in %.1fs", label, seconds)
                inbox.post(.fitted(id, selection: sel, bend, note: note))
                inbox.post(.jobFinished(id: job, note: note))
            } catch {
                inbox.post(.jobFailed(id: job, "\(error)"))
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
        let cols = body.columns(.fill(1), .fixed(min(40, max(30, body.width / 3))))
        return (cols[0], cols[1])
    }

    /// The plot's drawing area (inside its block), for mouse clicks.
    package static func pathPlotArea(_ state: ExplorerState, size: Size) -> Rect? {
        guard !TooSmall.check(size, minimum: minimum) else { return nil }
        let (plotBox, _) = pathColumns(state, size: size)
        let inner = Block().inner(plotBox).inset(top: 1)
        return PathRenderer.plot(state, glyphs: .unicodeSet).geometry(area: inner).plot
    }

    /// The rows of the side panel's curve list (one per curve in `order`), for mouse clicks; nil if not shown.
    package static func curveRows(_ state: ExplorerState, size: Size) -> [Rect]? {
        guard !TooSmall.check(size, minimum: minimum) else { return nil }
        let (_, side) = pathColumns(state, size: size)
        let parts = PathRenderer.sideParts(state, side: side)
        let inner = Block().inner(parts[0]).inset(left: 1, right: 1)
        let first = inner.y + PathRenderer.curveListOffset(state)
        let rows = state.path.order.indices.map { Rect(x: inner.x, y: first + $0, width: inner.width, height: 1) }
        return rows.filter { $0.y < inner.maxY }
    }
}

enum PathRenderer {
    /// The plot widget for the current state: per visible curve one series per data set (the last, test,
    /// bright with the curve's glyph at its points; the others dim).
    static func plot(_ state: ExplorerState, glyphs: Glyphs) -> BraillePlot {
        let path = state.path
        var series: [PlotSeries] = []
        let ds = state.dataNames.count
        for id in path.order where !path.hidden.contains(id) {
            guard let c = path.curves[id], !c.drawn.isEmpty else { continue }
            for d in 0..<ds {
                let pts = c.drawn.map { (x: $0.t, y: path.showAccuracy ? $0.accuracy[d] : $0.loss[d]) }
                var s = PlotSeries(name: d == ds - 1 ? c.label : "", points: pts, index: id.styleIndex)
                s.asciiMarker = id.glyph.ascii
                if d == ds - 1 {
                    s.pointGlyph = id.glyph(glyphs)
                    if id == path.selected { s.style = s.style.patched(Style(attributes: .bold)) }
                } else {
                    s.style = s.style.patched(Style(attributes: .dim))
                }
                series.append(s)
            }
        }
        var marker: PlotMarker?
        if !path.showAccuracy, !path.hidden.contains(path.selected), let c = path.activeCurve, let b = c.barrier(ds - 1) {
            marker = PlotMarker(x: b.t, y: b.loss, label: "barrier " + fmt(b.height, 3))
        }
        return BraillePlot(series: series, xRange: 0...1, yRange: path.yRange, cursorX: path.t, marker: marker, showLegend: true)
    }

    static func sideParts(_ state: ExplorerState, side: Rect) -> [Rect] {
        let hasMatrix = state.modelNames.count >= 3
        let matrixRows = min(state.modelNames.count + 3, side.height / 2)
        return hasMatrix && side.height - matrixRows >= 12 ? side.rows(.fill(1), .fixed(matrixRows)) : [side]
    }

    /// Rows between the side panel's top and its first curve row.
    static func curveListOffset(_ state: ExplorerState) -> Int {
        2 + state.dataNames.count + 1 + (state.batchNorm == nil ? 0 : 1) + 1
    }

    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let path = state.path
        let glyphs = context.glyphs
        let (plotBox, side) = Layout.pathColumns(state, size: Size(width: area.width, height: area.height + 2))
        let what = path.showAccuracy ? (state.tokenData ? "token accuracy" : "accuracy") : "loss"
        let block = Block(title: TextWidth.fit("\(what) along the path · \(state.selectionLabel)", to: max(0, plotBox.width - 6), ellipsis: glyphs.ellipsis))
        block.render(into: &buffer, area: plotBox, context: context)
        let inner = block.inner(plotBox)
        let muted = Style(fg: .role(.muted))
        // Title row: the fit in progress or which data set is bright; t on the right.
        let tText = "t = " + String(format: "%.3f", path.t) + (path.zoomed ? " · zoom" : "")
        let left = Rect(x: inner.x, y: inner.y, width: max(0, inner.width - TextWidth.of(tText) - 2), height: 1)
        if let f = path.fit {
            let text = f.epoch == 0 ? "fitting \(f.curve.type.label)…" : String(format: "fitting %@: epoch %d/%d, loss %.3f (Esc stops)", f.curve.type.label, f.epoch, f.epochs, f.loss)
            buffer.writeFitted(text, in: left, style: Style(fg: .role(.warning), attributes: .bold), glyphs: glyphs)
        } else if state.dataNames.count > 1 {
            buffer.writeFitted("\(state.dataNames.last!) bright, \(state.dataNames.dropLast().joined(separator: "/")) dim", in: left, style: muted, glyphs: glyphs)
        }
        buffer.write(tText, in: inner.row(0), style: Style(fg: .role(.cursor), attributes: .bold), alignment: .right)
        let plotArea = inner.inset(top: 1)
        let p = plot(state, glyphs: glyphs)
        if p.series.isEmpty {
            let msg = path.curves.isEmpty ? "evaluating the path…" : "every curve is hidden: x shows the selected one"
            buffer.write(msg, in: plotArea.row(plotArea.height / 2), style: muted, alignment: .center)
        } else {
            p.render(into: &buffer, area: plotArea, context: context)
        }
        renderSide(state, side: side, into: &buffer, context: context)
    }

    static func renderSide(_ state: ExplorerState, side: Rect, into buffer: inout CellBuffer, context: RenderContext) {
        let path = state.path
        let glyphs = context.glyphs
        let parts = sideParts(state, side: side)
        let sb = Block(title: "model at t")
        sb.render(into: &buffer, area: parts[0], context: context)
        let si = sb.inner(parts[0]).inset(left: 1, right: 1)
        let head = Style(fg: .role(.title), attributes: .bold)
        let plain = Style(fg: .role(.foreground))
        let muted = Style(fg: .role(.muted))
        var lines: [(String, Style)] = []
        // The selected curve (with the matching that aligned it), then its metrics at t.
        lines.append((path.activeCurve?.label ?? "linear", head))
        let nameW = 6
        lines.append((TextWidth.padRight("t=" + String(format: "%.3f", path.t), to: nameW + 2) + (state.tokenData ? "loss     ppl tok acc" : "loss    acc"), muted))
        for (d, name) in state.dataNames.enumerated() {
            if let m = path.cursorMetrics, d < m.count {
                let cell = state.tokenData ? metricsCell(m[d], tokens: true) : "\(fmt(m[d].loss)) \(pct(m[d].accuracy))"
                lines.append((TextWidth.padRight(TextWidth.fit(name, to: nameW, ellipsis: glyphs.ellipsis), to: nameW) + " " + cell, plain))
            } else {
                lines.append((TextWidth.padRight(name, to: nameW) + " –", muted))
            }
        }
        // Which matching made the aligned models (it changes with m / M).
        if path.selected.aligned, let method = state.alignmentMethod {
            lines.append(("by \(method) matching", muted))
        } else {
            lines.append(("", plain))
        }
        // BatchNorm networks: the BN mode of the selected curve (what model at t is evaluated and exported with).
        if state.batchNorm != nil {
            let mode = path.selected.correction.modeLine(train: state.dataNames.first ?? "train")
            lines.append((mode, Style(fg: .role(path.selected.correction == .naive ? .warning : .good), attributes: .bold)))
        }
        // The curve list: glyph, number, label, barrier on each data set.
        let ds = state.dataNames.count
        let numW = 5 * ds + (ds - 1)
        let labelW = max(6, si.width - 3 - numW - 1)
        lines.append(("   " + TextWidth.padRight("curve", to: labelW) + " " + state.dataNames.map { TextWidth.padLeft(TextWidth.fit($0, to: 5, ellipsis: glyphs.ellipsis), to: 5) }.joined(separator: " "), head))
        let listStart = lines.count
        var styles: [Int: (glyph: String, style: Style)] = [:]
        for id in path.order {
            guard let c = path.curves[id] else { continue }
            let hidden = path.hidden.contains(id)
            var s = "   " + TextWidth.padRight(TextWidth.fit(c.label, to: labelW, ellipsis: glyphs.ellipsis), to: labelW) + " "
            if c.done {
                s += (0..<ds).map { TextWidth.padLeft(fmt(c.barrier($0)?.height ?? .nan, 3), to: 5) }.joined(separator: " ")
            } else {
                s += "\(c.points.count)/\(c.expected)…"
            }
            let selected = id == path.selected
            let style = selected ? Style(fg: .role(.foreground), bg: .role(.selection), attributes: .bold) : (hidden ? muted : plain)
            styles[lines.count] = (hidden ? " " : id.glyph(glyphs), Style(fg: .role(Role.series[id.styleIndex % 4]), bg: selected ? .role(.selection) : nil, attributes: .bold))
            lines.append((s, style))
        }
        if path.curves.count > 1 || state.alignments.isEmpty {
            lines.append(("", plain))
            lines.append((path.order.count > 1 ? "↑↓ select  x hide  z zoom" : "barrier: loss above the chord", muted))
        }
        for (i, l) in lines.prefix(si.height).enumerated() {
            let row = si.row(i)
            if l.1.bg != nil { buffer.fill(row, with: Cell(" ", style: l.1)) }
            buffer.writeFitted(l.0, in: row, style: l.1, glyphs: glyphs)
            if let g = styles[i] {
                buffer.write(String(i - listStart + 1), x: row.x, y: row.y, style: l.1, clip: row)
                buffer.write(g.glyph, x: row.x + 1, y: row.y, style: g.style, clip: row)
            }
        }

        guard parts.count > 1 else { return }
        let mb = Block(title: "barrier matrix (\(state.dataNames.last ?? "") loss)")
        mb.render(into: &buffer, area: parts[1], context: context)
        let mi = mb.inner(parts[1]).inset(left: 1)
        guard let mat = path.barrierMatrix else {
            buffer.write("computing…", x: mi.x, y: mi.y, style: muted, clip: mi)
            return
        }
        let n = mat.count
        let cw = max(5, min(7, (mi.width - 4) / max(1, n)))
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
                let style = sel ? Style(fg: .role(.foreground), bg: .role(.selection), attributes: .bold) : plain
                x = buffer.write(TextWidth.padLeft(i == j ? "·" : fmt(v, cw >= 6 ? 3 : 2), to: cw), x: x, y: r.y, style: style, clip: r)
            }
        }
    }
}
