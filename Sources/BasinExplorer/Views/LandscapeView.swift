import BasinFusion
import BasinNet
import BasinUI
import Foundation

// The landscape view: test loss over a plane in weight space through three points (Garipov et al. 2018), with
// the current path projected onto it.

/// The planes the landscape view can show.
package enum LandscapePlane: String, Sendable, CaseIterable {
    /// Through A, the fitted bend and B.
    case bend
    /// Through the first three models.
    case models
    /// Through A, B aligned to A, and B.
    case aligned
    /// Through A along two filter-normalised random directions (Li et al. 2018), seeded.
    case random
}

package struct LandscapeState: Sendable {
    /// Rows top (max y) to bottom; NaN until computed.
    package var grid: [[Double]] = []
    package var xRange: ClosedRange<Double> = 0...1
    package var yRange: ClosedRange<Double> = 0...1
    /// Plane coordinates of the three points and their labels.
    package var anchors: [(x: Double, y: Double, label: String)] = []
    /// The path drawn on the plane.
    package var path: [(x: Double, y: Double)] = []
    package var title = ""
    package var generation = 0
    package var filled = 0
    package var resolution = 21
    /// The plane shown (nil before the first).
    package var plane: LandscapePlane?
    /// Seed of the random directions (d draws the next).
    package var seed: UInt64 = 0
    /// BatchNorm networks (b): every grid point's statistics recomputed on the train set (as `basin path
    /// --bn-reset`), else interpolated like every other tensor.
    package var bnReset = false
}

enum LandscapeView: ExplorerViewModule {
    static func bind(_ m: inout Keymap<ExplorerAction>, context land: String) {
        m.bind([.char("r")], .computeLandscape, "compute the landscape plane", hint: "compute", context: land)
        m.bind([.char("o")], .otherPlane, "switch plane (bend / three models / aligned / random directions)", hint: "plane", context: land)
        m.bind([.char("d")], .randomPlane, "random filter-normalised directions around A (again: the next seed)", hint: "random", context: land)
        m.bind([.char("b")], .bnMode, "BatchNorm: every grid point naive / BN reset on train (computed again)", hint: "BN", context: land)
    }

    static let hints: [ExplorerAction] = [.help, .quit, .computeLandscape, .otherPlane, .randomPlane, .fit(.bezier), .match(.weight), .export, .nextView]

    static func perform(_ action: ExplorerAction, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        switch action {
        case .computeLandscape: return app.startLandscape()
        case .otherPlane: return app.startLandscape(next: true)
        case .randomPlane:
            if app.state.landscape.plane == .random { app.state.landscape.seed &+= 1 }
            app.state.landscape.plane = .random
            return app.startLandscape()
        case .bnMode:
            guard app.engine.hasBatchNorm else {
                app.state.lastJobNote = "no BatchNorm in this network: its points need no statistics reset"
                return []
            }
            app.state.landscape.bnReset.toggle()
            return app.startLandscape()
        case .aligned:
            if app.landscapePlanes.contains(.aligned) {
                app.state.landscape.plane = .aligned
                return app.startLandscape()
            }
            app.state.lastJobNote = "no aligned model yet: press m"
            return []
        default: return []
        }
    }

    static func entered(_ app: inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        app.state.landscape.grid.isEmpty ? app.startLandscape() : []
    }

    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        LandscapeRenderer.render(state, into: &buffer, area: area, context: context)
    }
}

extension ExplorerApp {
    /// The fitted curve whose bend the landscape's plane goes through: the selected one, else any.
    var bendForPlane: CurveID? {
        if state.path.selected.type != .linear, bends[state.path.selected.naive] != nil { return state.path.selected.naive }
        return bends.keys.sorted().last
    }

    /// Planes the landscape can show, in order of preference: through the fitted bend, three models, aligned B.
    var landscapePlanes: [LandscapePlane] {
        var out: [LandscapePlane] = []
        if bendForPlane != nil { out.append(.bend) }
        if engine.models.count >= 3 { out.append(.models) }
        if state.alignment(of: state.pair.b) != nil { out.append(.aligned) }
        out.append(.random)
        return out
    }

    /// Computes the current plane (or, with `next`, the next available one) in the background, row by row,
    /// through BasinFusion's `LossLandscape`; a new plane cancels the previous grid.
    mutating func startLandscape(next: Bool = false) -> [Effect<ExplorerMessage>] {
        let p = engine.params
        let (a, b) = state.pair
        let available = landscapePlanes
        var choice = state.landscape.plane.flatMap { available.firstIndex(of: $0) } ?? 0
        if next { choice = (choice + 1) % available.count }
        let which = available[choice]
        let seed = state.landscape.seed
        let bnReset = state.landscape.bnReset && engine.hasBatchNorm
        var points: [ParameterSet] = [], labels: [String], title: String
        let drawn: ModelPath?
        switch which {
        case .bend:
            let id = bendForPlane!
            let ends = (try? curveModels(aligned: id.aligned)) ?? [p[a], p[b]]
            points = [ends[0], bends[id]![0], ends[1]]
            labels = ["A", "θ", id.aligned ? "π(B)" : "B"]
            title = "plane through A, the fitted bend θ and \(id.aligned ? "aligned B" : "B")"
            drawn = try? path(id)
        case .models:
            points = [p[0], p[1], p[2]]
            labels = ["1", "2", "3"]
            title = "plane through \(engine.names[0]), \(engine.names[1]), \(engine.names[2])"
            drawn = try? ModelPath.chain(points)
        case .aligned:
            let alignedB = state.alignment(of: b)!.result.aligned
            points = [p[a], alignedB, p[b]]
            labels = ["A", "π(B)", "B"]
            title = "plane through A, aligned B and B"
            drawn = try? ModelPath.linear(p[a], alignedB)
        case .random:
            labels = ["A"]
            title = "A + x d1 + y d2: filter-normalised random directions (seed \(seed); d: next)"
            drawn = nil
        }
        if let old = landscapeJob { jobCancel[old]?.cancel() }
        let plane: WeightPlane
        do {
            plane = which == .random ? try WeightPlane.randomDirections(center: p[a], seed: seed)
                : try WeightPlane.through(points[0], points[1], points[2])
        } catch {
            state.popup = PopupState(title: "Landscape", message: "\(error)", isError: true)
            return []
        }
        generation += 1
        let gen = generation
        let n = state.landscape.resolution
        var l = LandscapeState()
        l.resolution = n
        l.grid = Array(repeating: Array(repeating: .nan, count: n), count: n)
        l.xRange = plane.xRange
        l.yRange = plane.yRange
        l.anchors = zip(plane.anchors, labels).map { (x: $0.0.x, y: $0.0.y, label: $0.1) }
        if let drawn {
            l.path = (0...40).map { plane.project(drawn.parameters(at: Double($0) / 40)) }.map { (x: $0.x, y: $0.y) }
        }
        // BatchNorm networks: every point evaluated with its running statistics as interpolated, or recomputed (b).
        let bn = !engine.hasBatchNorm ? "" : bnReset ? " · BN reset" : " · BN naive"
        l.title = title + bn + (available.count > 1 ? "  (o: other plane)" : "")
        l.bnReset = bnReset
        l.generation = gen
        l.plane = which
        l.seed = seed
        state.landscape = l
        let (id, flag) = beginJob("landscape")
        landscapeJob = id
        let engine = self.engine
        return [.spawn { inbox in
            do {
                // With BN reset each point is a train pass: progress moves per point, else per row.
                let done = try LossLandscape.compute(plane: plane, network: engine.network, data: engine.shownData, resolution: n,
                                                     reset: bnReset ? engine.bnReset : nil, cancel: flag, onPoint: { k, total in
                    if bnReset {
                        inbox.post(.jobProgress(id: id, fraction: Double(k) / Double(total), detail: "point \(k)/\(total), row \((k - 1) / n + 1)/\(n) (BN reset per point)"))
                    }
                }) { r, row in
                    inbox.post(.landscapeRow(generation: gen, row: r, row.map(\.loss)))
                    if !bnReset { inbox.post(.jobProgress(id: id, fraction: Double(r + 1) / Double(n), detail: "row \(r + 1)/\(n)")) }
                }
                inbox.post(.jobFinished(id: id, note: done == nil ? "landscape cancelled" : nil))
            } catch {
                inbox.post(.jobFailed(id: id, "\(error)"))
            }
        }]
    }

    /// The landscape view waiting for a third point computes as soon as one exists.
    mutating func landscapeIfWaiting() -> [Effect<ExplorerMessage>] {
        state.view == .landscape && state.landscape.grid.isEmpty ? startLandscape() : []
    }
}

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
        let heat = Heatmap(values: l.grid, showColorBar: true)
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
        // BatchNorm networks: the BN mode (b), as the path and soup views show theirs, beside the colour bar.
        if state.batchNorm != nil, mapArea.height > 0 {
            let mode = (l.bnReset ? ExplorerEngine.Correction.bnReset : .naive).modeLine(train: state.dataNames.first ?? "train")
            buffer.write(" " + mode, in: mapArea.row(mapArea.height - 1), style: Style(fg: .role(l.bnReset ? .good : .warning), attributes: .bold), alignment: .right)
        }
        if l.filled < l.grid.count {
            buffer.write(" filling \(l.filled)/\(l.grid.count) rows ", in: inner.row(0), style: Style(fg: .role(.warning)), alignment: .right)
        }
    }
}
