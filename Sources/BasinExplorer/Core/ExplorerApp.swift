import BasinFusion
import BasinNet
import BasinUI
import Foundation

/// Settings from the command line.
package struct ExplorerOptions: Sendable {
    /// Points evaluated along each path.
    package var pathPoints = 21
    /// Epochs of a curve fit started from the UI.
    package var fitEpochs = 10
    /// Landscape grid resolution (points per side).
    package var landscapeResolution = 21
    /// Default export file name.
    package var exportName = "basin-export.safetensors"
    package init() {}
}

/// The explorer's core: the state, the engine, the key routing, background jobs and the one `update` that
/// changes the state. What each view does lives with the view (Views/); rendering is a pure function of `state`.
package struct ExplorerApp: App {
    package typealias Message = ExplorerMessage

    package internal(set) var state: ExplorerState
    package let engine: ExplorerEngine
    package let keymap: Keymap<ExplorerAction>
    package let options: ExplorerOptions

    // Engine-side state (parameter sets) the views do not draw; changed only through `update`.
    /// Fitted bends of the selected pair, per path type.
    var bends: [PathType: [ParameterSet]] = [:]
    /// The selected pair's B permuted to A (after matching).
    var alignedB: ParameterSet?
    var curveCancel: [CurveID: CancellationFlag] = [:]
    var jobCancel: [Int: CancellationFlag] = [:]
    var nextJob = 1
    var generation = 0
    var landscapeJob: Int?

    package init(engine: ExplorerEngine, options: ExplorerOptions = ExplorerOptions(), size: Size = Size(width: 120, height: 40)) {
        self.engine = engine
        self.options = options
        self.keymap = ExplorerApp.makeKeymap()
        state = ExplorerState(modelNames: engine.names, dataNames: engine.dataNames)
        state.size = size
        state.landscape.resolution = options.landscapeResolution
    }

    // MARK: Update

    package mutating func update(_ event: AppEvent<ExplorerMessage>) -> [Effect<ExplorerMessage>] {
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

    package mutating func perform(_ action: ExplorerAction) -> [Effect<ExplorerMessage>] {
        switch action {
        case .quit:
            for c in curveCancel.values { c.cancel() }
            for c in jobCancel.values { c.cancel() }
            return [.quit]
        case .help: state.showHelp.toggle()
        case .nextView, .previousView:
            let all = ExplorerView.allCases
            let i = all.firstIndex(of: state.view)!
            return switchView(all[(i + (action == .nextView ? 1 : all.count - 1)) % all.count])
        case .nextPane, .previousPane:
            let panes = state.view.module.panes
            state.pane = (state.pane + (action == .nextPane ? 1 : panes - 1)) % panes
            if state.view == .permutation { state.permutation.focus = state.pane }
        case .export:
            var input = TextInput(options.exportName)
            _ = input.handle(.end)
            let p = PromptState(prompt: "Export to: ", input: input)
            state.prompt = p
            return [.cursor(Layout.promptCursor(p.widget, size: state.size))]
        case .cancel:
            if let job = state.jobs.last, let flag = jobCancel[job.id] {
                flag.cancel()
                state.lastJobNote = "cancelling \(job.title)…"
            }
        case .fit: return startFit()
        case .match(let method): return startMatch(method)
        case .nextPair, .previousPair:
            let all = state.selections
            guard all.count > 1 else { return [] }
            let i = all.firstIndex(of: state.selection) ?? 0
            state.selection = all[(i + (action == .nextPair ? 1 : all.count - 1)) % all.count]
            bends = [:]
            state.path.fitted = []
            alignedB = nil
            state.aligned = false
            state.path.curves[.aligned] = nil
            curveCancel[.aligned]?.cancel()
            recomputeCursor()
            return restartCurves()
        default:
            return state.view.module.perform(action, in: &self)
        }
        return []
    }

    mutating func switchView(_ v: ExplorerView) -> [Effect<ExplorerMessage>] {
        state.view = v
        state.pane = 0
        return v.module.entered(&self)
    }

    // MARK: Jobs

    /// Registers a background job the status bar shows and Esc cancels.
    mutating func beginJob(_ title: String) -> (Int, CancellationFlag) {
        let id = nextJob
        nextJob += 1
        let flag = CancellationFlag()
        jobCancel[id] = flag
        state.jobs.append(JobStatus(id: id, title: title, fraction: 0, detail: "", started: Date()))
        return (id, flag)
    }

    mutating func endJob(_ id: Int) {
        state.jobs.removeAll { $0.id == id }
        jobCancel[id] = nil
    }

    // MARK: Mouse

    mutating func mouse(_ ev: MouseEvent) -> [Effect<ExplorerMessage>] {
        if ev.kind == .press, ev.y == 0 {
            let bar = TabBar(ExplorerView.allCases.map(\.title), selected: 0)
            if let i = bar.tab(atColumn: ev.x, area: Rect(x: 0, y: 0, width: state.size.width, height: 1)) {
                return switchView(ExplorerView.allCases[i])
            }
            return []
        }
        return state.view.module.mouse(ev, in: &self)
    }

    // MARK: Messages

    mutating func handle(_ m: ExplorerMessage) -> [Effect<ExplorerMessage>] {
        switch m {
        case let .curvePoint(id, gen, p):
            guard var c = state.path.curves[id], c.generation == gen else { return [] }
            let i = c.points.firstIndex { $0.t > p.t } ?? c.points.count
            c.points.insert(p, at: i)
            state.path.curves[id] = c
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
        case let .fitted(type, sel, bend):
            guard sel == state.selection else { return [] }
            bends[type] = [bend]
            state.path.fitted.insert(type)
            if state.path.type == type { recomputeCursor() }
            return startCurve(.path(type)) + landscapeIfWaiting()
        case .matched(let o):
            state.permutation.outcome = o
            state.permutation.layer = ListState()
            state.permutation.matches = ListState()
            if state.selection == .pair(o.a, o.b) || (state.selection == .chain && o.a == 0 && o.b == 1) {
                alignedB = o.result.aligned
                state.aligned = true
                if state.soup.useAligned { recomputeSoup() }
                return startCurve(.aligned) + landscapeIfWaiting()
            }
        case .barrierMatrix(let mat):
            state.path.barrierMatrix = mat
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

    package func render(into buffer: inout CellBuffer, context: RenderContext) {
        ExplorerRenderer.render(state, keymap: keymap, into: &buffer, context: context)
    }
}
