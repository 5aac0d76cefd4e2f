import BasinNet
import BasinUI
import Foundation

/// Settings from the command line.
public struct ExplorerOptions: Sendable {
    /// Points evaluated along each path.
    public var pathPoints = 21
    /// Epochs of a curve fit started from the UI.
    public var fitEpochs = 10
    /// Landscape grid resolution (points per side).
    public var landscapeResolution = 21
    /// Default export file name.
    public var exportName = "basin-export.safetensors"
    public init() {}
}

/// The explorer: state, the engine facade, and the one `update` that changes the state.
/// Rendering (`render`) is a pure function of `state`.
public struct ExplorerApp: App {
    public typealias Message = ExplorerMessage

    public private(set) var state: ExplorerState
    public let engine: ExplorerEngine
    public let keymap: Keymap
    public let options: ExplorerOptions

    // Engine-side state (parameter sets) the view does not draw; changed only in `update`.
    private var bends: [PathKind: [ParameterSetBox]] = [:]
    private var alignedB: ParameterSetBox?
    private var curveCancel: [CurveID: CancelFlag] = [:]
    private var jobCancel: [Int: CancelFlag] = [:]
    private var nextJob = 1
    private var generation = 0
    private var landscapePlane: ExplorerEngine.Plane?
    private var landscapeJob: Int?

    public init(engine: ExplorerEngine, options: ExplorerOptions = ExplorerOptions(), size: Size = Size(width: 120, height: 40)) {
        self.engine = engine
        self.options = options
        self.keymap = ExplorerApp.makeKeymap()
        state = ExplorerState(modelNames: engine.names, dataNames: engine.dataNames)
        state.size = size
        state.landscape.resolution = options.landscapeResolution
    }

    // MARK: Keymap

    public static func makeKeymap() -> Keymap {
        var m = Keymap()
        m.bind([.char("q"), .ctrl("c")], "quit", "quit")
        m.bind([.char("?"), .function(1)], "help", "toggle this help")
        m.bind([.char("v"), .function(2)], "nextView", "next view (Path, Permutation, Soup, Landscape)")
        m.bind([.char("V")], "prevView", "previous view")
        m.bind([.tab], "nextPane", "next pane (permutation view: layers / matches)")
        m.bind([.backtab], "prevPane", "previous pane")
        m.bind([.char("e")], "export", "export the model at the cursor (+ recipe)")
        m.bind([.char("f")], "fit", "fit a curve (Bezier, or the current bent path)")
        m.bind([.char("m")], "matchWeight", "align B to A: weight matching")
        m.bind([.char("M")], "matchActivation", "align B to A: activation matching")
        m.bind([.esc], "cancel", "cancel the running job / close")
        m.bind([.char("p")], "nextPair", "next pair (or the chain through all)")
        m.bind([.char("P")], "prevPair", "previous pair")

        let path = ExplorerView.path.rawValue
        m.bind([.left, .char("h")], "left", "move t left", context: path)
        m.bind([.right, .char("l")], "right", "move t right", context: path)
        m.bind([.shiftLeft, .char("H"), .char("[")], "fineLeft", "move t left, fine", context: path)
        m.bind([.shiftRight, .char("L"), .char("]")], "fineRight", "move t right, fine", context: path)
        m.bind([.home, .char("g")], "top", "t = 0", context: path)
        m.bind([.end, .char("G")], "bottom", "t = 1", context: path)
        m.bind([.char("1")], "kind1", "linear path", context: path)
        m.bind([.char("2")], "kind2", "polygonal chain", context: path)
        m.bind([.char("3")], "kind3", "Bezier curve", context: path)
        m.bind([.char("a")], "toggleAccuracy", "plot accuracy instead of loss", context: path)

        let perm = ExplorerView.permutation.rawValue
        m.bind([.up, .char("k")], "up", "previous layer / match", context: perm)
        m.bind([.down, .char("j")], "down", "next layer / match", context: perm)
        m.bind([.pageUp, .ctrl("b")], "pageUp", "page up", context: perm)
        m.bind([.pageDown, .ctrl("f")], "pageDown", "page down", context: perm)

        let soup = ExplorerView.soup.rawValue
        m.bind([.up, .char("k")], "up", "previous slider", context: soup)
        m.bind([.down, .char("j")], "down", "next slider", context: soup)
        m.bind([.left, .char("h")], "left", "decrease coefficient", context: soup)
        m.bind([.right, .char("l")], "right", "increase coefficient", context: soup)
        m.bind([.shiftLeft, .char("H"), .char("[")], "fineLeft", "decrease, fine", context: soup)
        m.bind([.shiftRight, .char("L"), .char("]")], "fineRight", "increase, fine", context: soup)
        m.bind([.char("n")], "nextMethod", "next merge method", context: soup)
        m.bind([.char("N")], "prevMethod", "previous merge method", context: soup)
        m.bind([.char("u")], "uniform", "uniform soup", context: soup)
        m.bind([.char("g")], "greedy", "greedy soup", context: soup)
        m.bind([.char("a")], "toggleAligned", "use B aligned to A (after m) / the models as loaded", context: soup)

        let land = ExplorerView.landscape.rawValue
        m.bind([.char("r")], "landscape", "compute the landscape plane", context: land)
        m.bind([.char("o")], "otherPlane", "switch plane (bend / three models / aligned)", context: land)
        return m
    }

    // MARK: Update

    public mutating func update(_ event: AppEvent<ExplorerMessage>) -> [Effect<ExplorerMessage>] {
        switch event {
        case .start:
            var fx = restartCurves()
            recomputeCursor()
            recomputeSoup()
            state.soup.ensemble = engine.ensembleMetrics()
            if engine.models.count >= 3 { fx += startBarrierMatrix() + startTriangle() }
            return fx
        case .resize(let s):
            state.size = s
            return [.redraw]
        case .message(let m):
            return handle(m)
        case .key(let k):
            return handleKey(k)
        }
    }

    mutating func handleKey(_ key: Key) -> [Effect<ExplorerMessage>] {
        if state.popup != nil {
            if key == .enter || key == .esc || key == .char("q") || key == .char(" ") { state.popup = nil }
            if key == .ctrl("c") { return [.quit] }
            return []
        }
        if var p = state.prompt {
            switch p.input.handle(key) {
            case .submitted(let name):
                state.prompt = nil
                return [.cursor(nil)] + export(to: name)
            case .cancelled:
                state.prompt = nil
                return [.cursor(nil)]
            default:
                if key == .ctrl("c") { return [.quit] }
                state.prompt = p
                return [.cursor(Layout.promptCursor(p.widget, size: state.size))]
            }
        }
        if state.showHelp {
            if key == .ctrl("c") || key == .char("q") { return [.quit] }
            state.showHelp = false
            return []
        }
        if case .mouse(let ev) = key { return mouse(ev) }
        guard let action = keymap.action(for: key, context: state.view.rawValue) else { return [] }
        return perform(action)
    }

    public mutating func perform(_ action: String) -> [Effect<ExplorerMessage>] {
        switch action {
        case "quit":
            for c in curveCancel.values { c.cancel() }
            for c in jobCancel.values { c.cancel() }
            return [.quit]
        case "help": state.showHelp.toggle()
        case "nextView", "prevView":
            let all = ExplorerView.allCases
            let i = all.firstIndex(of: state.view)!
            return switchView(all[(i + (action == "nextView" ? 1 : all.count - 1)) % all.count])
        case "nextPane", "prevPane":
            let panes = state.view == .permutation ? 2 : (state.view == .path ? 2 : 1)
            state.pane = (state.pane + (action == "nextPane" ? 1 : panes - 1)) % panes
            if state.view == .permutation { state.permutation.focus = state.pane }
        case "export":
            var input = TextInput(options.exportName)
            _ = input.handle(.end)
            let p = PromptState(prompt: "Export to: ", input: input)
            state.prompt = p
            return [.cursor(Layout.promptCursor(p.widget, size: state.size))]
        case "cancel":
            if let job = state.jobs.last, let flag = jobCancel[job.id] {
                flag.cancel()
                state.lastJobNote = "cancelling \(job.title)…"
            }
        case "fit": return startFit()
        case "matchWeight": return startMatch(.weight)
        case "matchActivation": return startMatch(.activation)
        case "nextPair", "prevPair":
            let all = state.selections
            guard all.count > 1 else { return [] }
            let i = all.firstIndex(of: state.selection) ?? 0
            state.selection = all[(i + (action == "nextPair" ? 1 : all.count - 1)) % all.count]
            bends = [:]
            state.fitted = []
            alignedB = nil
            state.aligned = false
            state.curves[.aligned] = nil
            curveCancel[.aligned]?.cancel()
            recomputeCursor()
            return restartCurves()
        default:
            switch state.view {
            case .path: return pathAction(action)
            case .permutation: permutationAction(action)
            case .soup: return soupAction(action)
            case .landscape:
                if action == "landscape" { return startLandscape() }
                if action == "otherPlane" { return startLandscape(next: true) }
            }
        }
        return []
    }

    mutating func switchView(_ v: ExplorerView) -> [Effect<ExplorerMessage>] {
        state.view = v
        state.pane = 0
        if v == .landscape, state.landscape.grid.isEmpty { return startLandscape() }
        return []
    }

    // MARK: Path view

    mutating func pathAction(_ action: String) -> [Effect<ExplorerMessage>] {
        let step = 0.05, fine = 0.01
        switch action {
        case "left": setT(state.t - step)
        case "right": setT(state.t + step)
        case "fineLeft": setT(state.t - fine)
        case "fineRight": setT(state.t + fine)
        case "top": setT(0)
        case "bottom": setT(1)
        case "kind1", "kind2", "kind3":
            let k: PathKind = action == "kind1" ? .linear : (action == "kind2" ? .polychain : .bezier)
            state.kind = k
            recomputeCursor()
            if state.curves[.path(k)] == nil { return startCurve(.path(k)) }
        case "toggleAccuracy": state.showAccuracy.toggle()
        default: break
        }
        return []
    }

    mutating func setT(_ t: Double) {
        let snapped = (min(1, max(0, t)) * 1000).rounded() / 1000
        guard snapped != state.t else { return }
        state.t = snapped
        recomputeCursor()
    }

    /// The control points of the path of `kind` for the current selection.
    func spec(_ id: CurveID) -> PathSpec {
        let p = engine.params
        switch id {
        case .aligned:
            let (a, _) = pairIndices
            return PathSpec(kind: .linear, points: [p[a], alignedB?.params ?? p[pairIndices.1]])
        case .path(let kind):
            switch state.selection {
            case .chain:
                return PathSpec(kind: kind == .bezier ? .bezier : .polychain, points: p)
            case let .pair(a, b):
                if kind == .linear { return PathSpec(kind: .linear, points: [p[a], p[b]]) }
                let mid = bends[kind]?.map(\.params) ?? [ParameterSet.lerp(p[a], p[b], 0.5)]
                return PathSpec(kind: kind, points: [p[a]] + mid + [p[b]])
            }
        }
    }

    var pairIndices: (Int, Int) {
        if case let .pair(a, b) = state.selection { return (a, b) }
        return (0, 1)
    }

    func curveLabel(_ id: CurveID) -> String {
        switch id {
        case .aligned: return "aligned"
        case .path(let k):
            if case .chain = state.selection { return k == .bezier ? "chain Bezier" : "chain" }
            if k == .linear { return "linear" }
            return state.fitted.contains(k) ? "\(k.label) fit" : "\(k.label) (unfitted)"
        }
    }

    mutating func recomputeCursor() {
        let p = spec(.path(state.kind)).parameters(at: state.t)
        state.cursorMetrics = engine.evaluate(p)
    }

    mutating func restartCurves() -> [Effect<ExplorerMessage>] {
        for id in state.curves.keys where id != .aligned { state.curves[id] = nil }
        var fx = startCurve(.path(.linear))
        if state.kind != .linear { fx += startCurve(.path(state.kind)) }
        return fx
    }

    /// Evaluates a curve in the background, posting points as they come (latest request wins).
    mutating func startCurve(_ id: CurveID) -> [Effect<ExplorerMessage>] {
        curveCancel[id]?.cancel()
        generation += 1
        let gen = generation
        let n = options.pathPoints
        state.curves[id] = Curve(label: curveLabel(id), points: [], expected: n, generation: gen)
        let flag = CancelFlag()
        curveCancel[id] = flag
        let spec = self.spec(id)
        let engine = self.engine
        let ts = (0..<n).map { Double($0) / Double(n - 1) }
        return [.spawn { inbox in
            engine.evaluatePath(spec, ts: ts, cancel: flag) { t, m in
                inbox.post(.curvePoint(id, generation: gen, CurvePoint(t: t, loss: m.map(\.loss), accuracy: m.map(\.accuracy))))
            }
        }]
    }

    // MARK: Jobs

    mutating func beginJob(_ title: String) -> (Int, CancelFlag) {
        let id = nextJob
        nextJob += 1
        let flag = CancelFlag()
        jobCancel[id] = flag
        state.jobs.append(JobStatus(id: id, title: title, fraction: 0, detail: "", started: Date()))
        return (id, flag)
    }

    mutating func endJob(_ id: Int) {
        state.jobs.removeAll { $0.id == id }
        jobCancel[id] = nil
    }

    mutating func startFit() -> [Effect<ExplorerMessage>] {
        guard case let .pair(a, b) = state.selection else {
            state.popup = PopupState(title: "Fit", message: "Curve fitting works on a pair: press p to choose one.", isError: true)
            return []
        }
        if state.kind == .linear { state.kind = .bezier }
        let kind = state.kind
        if state.jobs.contains(where: { $0.title.hasPrefix("fit") }) { return [] }
        let (id, flag) = beginJob("fit \(kind.label)")
        let engine = self.engine
        let epochs = options.fitEpochs
        let sel = state.selection
        let pa = engine.params[a], pb = engine.params[b]
        let start = Date()
        return [.spawn { inbox in
            do {
                let bend = try engine.fitBend(kind: kind, from: pa, to: pb, epochs: epochs, cancel: flag) { p in
                    let elapsed = Date().timeIntervalSince(start)
                    let left = p.fraction > 0 ? elapsed * (1 - p.fraction) / p.fraction : 0
                    inbox.post(.jobProgress(id: id, fraction: p.fraction,
                                            detail: String(format: "epoch %d/%d loss %.3f, %.0fs left", p.epoch, p.epochs, p.loss, left)))
                }
                if flag.isCancelled {
                    inbox.post(.jobFinished(id: id, note: "fit cancelled"))
                } else {
                    inbox.post(.fitted(kind, selection: sel, ParameterSetBox(bend)))
                    inbox.post(.jobFinished(id: id, note: String(format: "fit %@ done in %.1fs", kind.label, Date().timeIntervalSince(start))))
                }
            } catch {
                inbox.post(.jobFailed(id: id, "\(error)"))
            }
        }]
    }

    mutating func startMatch(_ kind: ExplorerEngine.MatchKind) -> [Effect<ExplorerMessage>] {
        if state.jobs.contains(where: { $0.title.hasPrefix("match") }) { return [] }
        let (a, b) = pairIndices
        let (id, flag) = beginJob("match \(kind.rawValue)")
        let engine = self.engine
        return [.spawn { inbox in
            do {
                let outcome = try engine.match(kind, a: a, b: b, cancel: flag)
                if flag.isCancelled {
                    inbox.post(.jobFinished(id: id, note: "matching cancelled"))
                } else {
                    inbox.post(.matched(outcome))
                    let moved = outcome.layers.reduce(0) { $0 + $1.moved }
                    inbox.post(.jobFinished(id: id, note: String(format: "%@ matching: %d units moved (%.2fs)", kind.rawValue, moved, outcome.seconds)))
                }
            } catch {
                inbox.post(.jobFailed(id: id, "\(error)"))
            }
        }]
    }

    mutating func startBarrierMatrix() -> [Effect<ExplorerMessage>] {
        let (id, flag) = beginJob("barriers")
        let engine = self.engine
        let n = engine.models.count
        return [.spawn { inbox in
            var mat = Array(repeating: Array(repeating: Double.nan, count: n), count: n)
            let ts = (0...10).map { Double($0) / 10 }
            let pairs = n * (n - 1) / 2
            var done = 0
            let d = engine.datasets.count - 1
            for a in 0..<n {
                for b in (a + 1)..<n where b < n {
                    var curve = Curve(label: "", expected: ts.count, generation: 0)
                    engine.evaluatePath(PathSpec(kind: .linear, points: [engine.params[a], engine.params[b]]), ts: ts, cancel: flag) { t, m in
                        curve.points.append(CurvePoint(t: t, loss: m.map(\.loss), accuracy: m.map(\.accuracy)))
                    }
                    if flag.isCancelled { inbox.post(.jobFinished(id: id, note: "barriers cancelled")); return }
                    let h = curve.barrier(d)?.height ?? .nan
                    mat[a][b] = h
                    mat[b][a] = h
                    done += 1
                    inbox.post(.jobProgress(id: id, fraction: Double(done) / Double(pairs), detail: "\(done)/\(pairs) pairs"))
                }
            }
            inbox.post(.barrierMatrix(mat))
            inbox.post(.jobFinished(id: id, note: nil))
        }]
    }

    // MARK: Permutation view

    mutating func permutationAction(_ action: String) {
        guard let o = state.permutation.outcome, !o.layers.isEmpty else { return }
        let delta: Int
        switch action {
        case "up": delta = -1
        case "down": delta = 1
        case "pageUp": delta = -10
        case "pageDown": delta = 10
        default: return
        }
        if state.permutation.focus == 0 {
            state.permutation.layer.move(delta, count: o.layers.count)
            state.permutation.matches = ListState()
        } else {
            let n = o.layers[state.permutation.layer.selected].size
            state.permutation.matches.move(delta, count: n)
        }
    }

    // MARK: Soup view

    mutating func soupAction(_ action: String) -> [Effect<ExplorerMessage>] {
        let sliders = state.soup.sliderCount
        var fx: [Effect<ExplorerMessage>] = []
        switch action {
        case "up": state.soup.selected = (state.soup.selected + sliders - 1) % sliders
        case "down": state.soup.selected = (state.soup.selected + 1) % sliders
        case "left": adjust(-0.05)
        case "right": adjust(0.05)
        case "fineLeft": adjust(-0.01)
        case "fineRight": adjust(0.01)
        case "nextMethod", "prevMethod":
            let all = ExplorerEngine.SoupMethod.allCases
            let i = all.firstIndex(of: state.soup.method)!
            state.soup.method = all[(i + (action == "nextMethod" ? 1 : all.count - 1)) % all.count]
            state.soup.selected = min(state.soup.selected, state.soup.sliderCount - 1)
            recomputeSoup()
            if engine.models.count == 3 { fx += startTriangle() }
        case "toggleAligned":
            guard alignedB != nil else {
                state.soup.note = "align first (m): the soup then uses B permuted to A"
                return []
            }
            state.soup.useAligned.toggle()
            state.soup.note = state.soup.useAligned ? "using \(state.modelNames[pairIndices.1]) aligned to \(state.modelNames[pairIndices.0])" : "using the models as loaded"
            recomputeSoup()
            if engine.models.count == 3 { fx += startTriangle() }
        case "uniform":
            let n = state.soup.coefficients.count
            state.soup.coefficients = Array(repeating: 1 / Double(n), count: n)
            state.soup.note = "uniform soup"
            recomputeSoup()
        case "greedy":
            let (id, _) = beginJob("greedy soup")
            let engine = self.engine
            let replacing = soupReplacements
            fx.append(.spawn { inbox in
                do {
                    let c = try engine.greedySoup(replacing: replacing)
                    inbox.post(.soupCoefficients(c, note: "greedy soup: " + zip(engine.names, c).filter { $0.1 > 0 }.map(\.0).joined(separator: " + ")))
                    inbox.post(.jobFinished(id: id, note: nil))
                } catch {
                    inbox.post(.jobFailed(id: id, "\(error)"))
                }
            })
        default: break
        }
        return fx
    }

    mutating func adjust(_ d: Double) {
        let i = state.soup.selected
        let n = state.soup.coefficients.count
        if i < n {
            state.soup.coefficients[i] = ((min(1, max(0, state.soup.coefficients[i] + d))) * 100).rounded() / 100
        } else if i == n {
            state.soup.lambda = ((min(2, max(0, state.soup.lambda + d))) * 100).rounded() / 100
        } else {
            // A density of 0 would drop every task vector entry: keep at least 1%.
            state.soup.density = ((min(1, max(0.01, state.soup.density + d))) * 100).rounded() / 100
        }
        state.soup.note = nil
        recomputeSoup()
    }

    /// Models the soup replaces: B by B aligned to A, when matched and switched on.
    var soupReplacements: [Int: ParameterSet] {
        guard state.soup.useAligned, let al = alignedB, let o = state.permutation.outcome else { return [:] }
        return [o.b: al.params]
    }

    func mergedSoup() throws -> ParameterSet {
        try engine.merge(state.soup.method, coefficients: state.soup.coefficients, lambda: state.soup.lambda, density: state.soup.density,
                         replacing: soupReplacements)
    }

    /// The merged model is evaluated synchronously (about a millisecond on the sample models).
    mutating func recomputeSoup() {
        do {
            state.soup.metrics = engine.evaluate(try mergedSoup())
            state.soup.error = nil
        } catch {
            state.soup.metrics = nil
            state.soup.error = "\(error)"
        }
    }

    mutating func startTriangle() -> [Effect<ExplorerMessage>] {
        guard engine.models.count == 3 else { return [] }
        let method = state.soup.method, lambda = state.soup.lambda, density = state.soup.density
        let engine = self.engine
        let replacing = soupReplacements
        let (id, flag) = beginJob("soup triangle")
        return [.spawn { inbox in
            let n = 16
            var grid = Array(repeating: Array(repeating: Double.nan, count: n + 1), count: n + 1)
            let d = engine.datasets.count - 1
            for r in 0...n {
                if flag.isCancelled { break }
                let c2 = Double(n - r) / Double(n)
                for c in 0...n {
                    let c1 = Double(c) / Double(n)
                    let c0 = 1 - c1 - c2
                    guard c0 >= -1e-9 else { continue }
                    if let p = try? engine.merge(method, coefficients: [max(0, c0), c1, c2], lambda: lambda, density: density, replacing: replacing) {
                        grid[r][c] = engine.network.evaluate(p, on: engine.datasets[d]).loss
                    }
                }
                inbox.post(.jobProgress(id: id, fraction: Double(r + 1) / Double(n + 1), detail: ""))
            }
            inbox.post(.soupTriangle(grid))
            inbox.post(.jobFinished(id: id, note: nil))
        }]
    }

    // MARK: Landscape view

    /// Planes the landscape can show, in order of preference: through the fitted bend, three models, aligned B.
    var landscapePlanes: [String] {
        var out: [String] = []
        if bends[.bezier] != nil || bends[.polychain] != nil { out.append("bend") }
        if engine.models.count >= 3 { out.append("models") }
        if alignedB != nil { out.append("aligned") }
        return out
    }

    mutating func startLandscape(next: Bool = false) -> [Effect<ExplorerMessage>] {
        let p = engine.params
        let (a, b) = pairIndices
        let available = landscapePlanes
        guard !available.isEmpty else {
            state.landscape.title = "Needs three points: fit a curve (f), align (m), or load three models."
            return []
        }
        var choice = available.firstIndex(of: state.landscape.plane) ?? 0
        if next { choice = (choice + 1) % available.count }
        let which = available[choice]
        let points: [ParameterSet], labels: [String], title: String
        var pathSpec: PathSpec?
        switch which {
        case "bend":
            let kind: PathKind = bends[.bezier] != nil ? .bezier : .polychain
            points = [p[a], bends[kind]![0].params, p[b]]
            labels = ["A", "θ", "B"]
            title = "plane through A, the fitted bend θ and B"
            pathSpec = spec(.path(kind))
        case "models":
            points = [p[0], p[1], p[2]]
            labels = ["1", "2", "3"]
            title = "plane through \(engine.names[0]), \(engine.names[1]), \(engine.names[2])"
            pathSpec = PathSpec(kind: .polychain, points: points)
        default:
            points = [p[a], alignedB!.params, p[b]]
            labels = ["A", "π(B)", "B"]
            title = "plane through A, aligned B and B"
            pathSpec = PathSpec(kind: .linear, points: [p[a], alignedB!.params])
        }
        if let old = landscapeJob { jobCancel[old]?.cancel() }
        let plane: ExplorerEngine.Plane
        do { plane = try engine.plane(points[0], points[1], points[2]) } catch {
            state.popup = PopupState(title: "Landscape", message: "\(error)", isError: true)
            return []
        }
        landscapePlane = plane
        generation += 1
        let gen = generation
        let n = state.landscape.resolution
        var l = LandscapeState()
        l.resolution = n
        l.grid = Array(repeating: Array(repeating: .nan, count: n), count: n)
        l.xRange = plane.xRange
        l.yRange = plane.yRange
        l.anchors = zip(plane.coords, labels).map { (x: $0.0.x, y: $0.0.y, label: $0.1) }
        if let s = pathSpec { l.path = (0...40).map { plane.project(s.parameters(at: Double($0) / 40)) } }
        l.title = title + (available.count > 1 ? "  (o: other plane)" : "")
        l.generation = gen
        l.plane = which
        state.landscape = l
        let (id, flag) = beginJob("landscape")
        landscapeJob = id
        let engine = self.engine
        let d = engine.datasets.count - 1
        return [.spawn { inbox in
            for r in 0..<n {
                if flag.isCancelled { inbox.post(.jobFinished(id: id, note: "landscape cancelled")); return }
                let y = plane.yRange.upperBound - (plane.yRange.upperBound - plane.yRange.lowerBound) * Double(r) / Double(n - 1)
                var row: [Double] = []
                for c in 0..<n {
                    let x = plane.xRange.lowerBound + (plane.xRange.upperBound - plane.xRange.lowerBound) * Double(c) / Double(n - 1)
                    row.append(engine.network.evaluate(plane.point(x, y), on: engine.datasets[d]).loss)
                }
                inbox.post(.landscapeRow(generation: gen, row: r, row))
                inbox.post(.jobProgress(id: id, fraction: Double(r + 1) / Double(n), detail: "row \(r + 1)/\(n)"))
            }
            inbox.post(.jobFinished(id: id, note: nil))
        }]
    }

    /// The landscape view waiting for a third point computes as soon as one exists.
    mutating func landscapeIfWaiting() -> [Effect<ExplorerMessage>] {
        state.view == .landscape && state.landscape.grid.isEmpty ? startLandscape() : []
    }

    // MARK: Export

    mutating func export(to name: String) -> [Effect<ExplorerMessage>] {
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else {
            state.popup = PopupState(title: "Export", message: "No file name given.", isError: true)
            return []
        }
        do {
            let params: ParameterSet
            let recipeText: String
            switch state.view {
            case .soup:
                params = try mergedSoup()
                recipeText = try engine.soupRecipe(state.soup.method, coefficients: state.soup.coefficients, lambda: state.soup.lambda,
                                                   density: state.soup.density).yaml()
                    + soupReplacements.keys.sorted().map { "# model \($0 + 1) (\(engine.names[$0])) was permuted to align with \(engine.names[state.permutation.outcome?.a ?? 0]) (\(state.permutation.outcome?.kind.rawValue ?? "") matching) before merging\n" }.joined()
            default:
                params = spec(.path(state.kind)).parameters(at: state.t)
                var recipe: [String: String] = ["models": "[" + engine.models.map(\.path).joined(separator: ", ") + "]",
                                                "tool": "basin explore"]
                recipe["kind"] = "path"
                recipe["path"] = state.kind.rawValue
                recipe["t"] = String(format: "%.4g", state.t)
                recipe["selection"] = "\"\(state.selectionLabel)\""
                recipe["bends"] = state.fitted.contains(state.kind) ? "fitted" : (state.kind == .linear ? "none" : "midpoint")
                recipeText = engine.recipe(recipe)
            }
            let out = try engine.export(params, to: trimmed, recipe: recipeText)
            state.lastJobNote = "exported \(out.model.lastPathComponent)"
            state.popup = PopupState(title: "Exported", message: "Wrote \(out.model.path)\nand \(out.recipe.lastPathComponent)")
        } catch {
            state.popup = PopupState(title: "Export failed", message: "\(error)", isError: true)
        }
        return []
    }

    // MARK: Mouse

    mutating func mouse(_ ev: MouseEvent) -> [Effect<ExplorerMessage>] {
        let size = state.size
        if ev.kind == .press, ev.y == 0 {
            let bar = TabBar(ExplorerView.allCases.map(\.title), selected: 0)
            if let i = bar.tab(atColumn: ev.x, area: Rect(x: 0, y: 0, width: size.width, height: 1)) {
                return switchView(ExplorerView.allCases[i])
            }
            return []
        }
        switch (state.view, ev.kind) {
        case (.path, .wheelUp): return perform("right")
        case (.path, .wheelDown): return perform("left")
        case (.path, .press):
            if let plot = Layout.pathPlotArea(state, size: size), plot.contains(Point(x: ev.x, y: ev.y)), plot.width > 1 {
                setT(Double(ev.x - plot.x) / Double(plot.width - 1))
            }
        case (.soup, .press):
            // The uniform / greedy buttons.
            if let row = Layout.soupButtonRow(state, size: size), ev.y == row.y {
                if ev.x >= row.x && ev.x < row.x + 11 { return perform("uniform") }
                if ev.x >= row.x + 13 && ev.x < row.x + 23 { return perform("greedy") }
            }
        case (.permutation, .wheelUp), (.soup, .wheelUp): return perform("up")
        case (.permutation, .wheelDown), (.soup, .wheelDown): return perform("down")
        default: break
        }
        return []
    }

    // MARK: Messages

    mutating func handle(_ m: ExplorerMessage) -> [Effect<ExplorerMessage>] {
        switch m {
        case let .curvePoint(id, gen, p):
            guard var c = state.curves[id], c.generation == gen else { return [] }
            let i = c.points.firstIndex { $0.t > p.t } ?? c.points.count
            c.points.insert(p, at: i)
            state.curves[id] = c
        case let .jobProgress(id, f, detail):
            if let i = state.jobs.firstIndex(where: { $0.id == id }) {
                state.jobs[i].fraction = f
                state.jobs[i].detail = detail
            }
        case let .jobFinished(id, note):
            endJob(id)
            if let note { state.lastJobNote = note }
        case let .jobFailed(id, message):
            let title = state.jobs.first { $0.id == id }?.title ?? "job"
            endJob(id)
            state.lastJobNote = "\(title) failed"
            state.popup = PopupState(title: "\(title) failed", message: message, isError: true)
        case let .fitted(kind, sel, bend):
            guard sel == state.selection else { return [] }
            bends[kind] = [bend]
            state.fitted.insert(kind)
            if state.kind == kind { recomputeCursor() }
            return startCurve(.path(kind)) + landscapeIfWaiting()
        case .matched(let o):
            state.permutation.outcome = o
            state.permutation.layer = ListState()
            state.permutation.matches = ListState()
            if state.selection == .pair(o.a, o.b) || (state.selection == .chain && o.a == 0 && o.b == 1) {
                alignedB = ParameterSetBox(o.aligned)
                state.aligned = true
                if state.soup.useAligned { recomputeSoup() }
                return startCurve(.aligned) + landscapeIfWaiting()
            }
        case .barrierMatrix(let mat):
            state.barrierMatrix = mat
        case let .landscapeRow(gen, r, row):
            guard gen == state.landscape.generation, r < state.landscape.grid.count else { return [] }
            state.landscape.grid[r] = row
            state.landscape.filled += 1
        case .soupTriangle(let g):
            state.soup.triangle = g
        case let .soupCoefficients(c, note):
            state.soup.coefficients = c
            state.soup.note = note
            recomputeSoup()
        }
        return []
    }

    // MARK: Render

    public func render(into buffer: inout CellBuffer, context: RenderContext) {
        ExplorerRenderer.render(state, keymap: keymap, into: &buffer, context: context)
    }
}
