import BasinFusion
import BasinNet
import BasinUI
import Foundation

/// Settings from the command line.
package struct ExplorerOptions: Sendable {
    /// Points evaluated along each path.
    package var pathPoints = 21
    /// Epochs of a curve fit started from the UI.
    package var fitEpochs = 60
    /// Landscape grid resolution (points per side).
    package var landscapeResolution = 21
    /// Default export file name.
    package var exportName = "basin-export.safetensors"
    /// Open the guided lesson at start (`basin lesson`).
    package var startWithLesson = false
    /// Which tour the lesson takes (`basin lesson` goes on from the MLP samples to the CNN samples).
    package var lessonTour: LessonTour = .session
    /// `--evaluate CMD`: the soup view hands each soup (as a model folder) to this evaluator in the background.
    package var evaluator: ExternalEvaluator?
    /// `--evaluate-jobs N`: soups evaluated at a time (each evaluator in its own process group).
    package var evaluateJobs = 1
    /// `--metric` / `--minimize`: what greedy soup (g) chooses by when an evaluator is given (nil: `ExternalSoup`'s
    /// defaults: the only metric or the one named like an accuracy; larger is better unless named like a loss).
    package var evaluatorMetric: String?
    package var evaluatorHigherIsBetter: Bool?
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
    /// Fitted bends of the selected pair, per curve.
    var bends: [CurveID: [ParameterSet]] = [:]
    /// Curves to evaluate again when their running evaluation ends (a fit moved on meanwhile).
    var pendingRefresh: Set<CurveID> = []
    /// Corrected versions of fitted curves asked for with b (the straight lines' always exist).
    var requestedCorrections: Set<CurveID> = []
    /// The soup slider being dragged with the mouse.
    var dragging: Int?
    var curveCancel: [CurveID: CancellationFlag] = [:]
    var jobCancel: [Int: CancellationFlag] = [:]
    var nextJob = 1
    var generation = 0
    var landscapeJob: Int?
    /// External evaluation of the soup (`--evaluate`): the folder candidates are written in (made on first use,
    /// removed on quit), the evaluations running (serial -> soup signature; at most --evaluate-jobs, the newest
    /// soup next), every soup's outcome this session, and whether greedy soup is choosing by the evaluator.
    package let evaluationFolder: URL
    var evaluationsRunning: [Int: String] = [:]
    var evaluationOutcomes: [String: ExternalOutcome] = [:]
    var evaluatorGreedyRunning = false
    var evaluationSerial = 0
    /// The background jobs that write into `evaluationFolder` (each removes what it wrote when it ends), so quitting
    /// can wait for them (join) before removing the folder.
    let evaluationJobs = JobGroup()
    /// REPAIR statistics of the soup's ingredients (`soupStatisticsKey`), measured once each.
    var soupRepairStatistics: [String: Repair.Statistics] = [:]
    /// The lesson's last MLP step was passed (`LessonTour.continuingOnCNN`): the session quit so that `basin
    /// lesson` opens the CNN samples next.
    package internal(set) var continueOnCNN = false

    package init(engine: ExplorerEngine, options: ExplorerOptions = ExplorerOptions(), size: Size = Size(width: 120, height: 40)) {
        self.engine = engine
        self.options = options
        self.keymap = ExplorerApp.makeKeymap()
        evaluationFolder = FileManager.default.temporaryDirectory
            .appendingPathComponent("basin-explore-evaluate-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))")
        state = ExplorerState(modelNames: engine.names, dataNames: engine.dataNames, heldOut: engine.heldOut != nil,
                              evalNames: engine.evalSets.map(\.name))
        state.size = size
        state.landscape.resolution = options.landscapeResolution
        state.batchNorm = engine.hasBatchNorm ? engine.correctionDataName : nil
        state.tokenData = engine.tokenData
        state.lessonTour = options.lessonTour
    }

    // MARK: Update

    package mutating func update(_ event: AppEvent<ExplorerMessage>) -> [Effect<ExplorerMessage>] {
        let fx = updateState(event)
        if fx.contains(where: { if case .quit = $0 { return true } else { return false } }) { return fx }
        return fx + startExternalEvaluations()
    }

    mutating func updateState(_ event: AppEvent<ExplorerMessage>) -> [Effect<ExplorerMessage>] {
        switch event {
        case .start:
            var fx = restartCurves()
            recomputeSoup()
            state.soup.ensemble = engine.ensembleMetrics()
            if engine.models.count >= 3 { fx += startBarrierMatrix() + startTriangle() }
            if options.startWithLesson { fx += toggleLesson() }
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
        // While "terminal too small" covers the screen only quitting works: other keys would change what
        // nobody can see.
        if TooSmall.check(state.size, minimum: Layout.minimum) {
            return key == .char("q") || key == .ctrl("c") ? perform(.quit) : []
        }
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
        if state.showHelp { return helpKey(key) }
        if case .mouse(let ev) = key { return mouse(ev) }
        if let fx = lessonKey(key) { return fx }
        guard let action = keymap.action(for: key, context: state.view.rawValue) else { return [] }
        return perform(action)
    }

    package mutating func perform(_ action: ExplorerAction) -> [Effect<ExplorerMessage>] {
        switch action {
        case .quit:
            for c in curveCancel.values { c.cancel() }
            for c in jobCancel.values { c.cancel() }
            return [.quit]
        case .help:
            state.showHelp.toggle()
            state.helpScroll = 0
        case .lesson:
            return toggleLesson()
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
                state.lastJobNote = job.title.hasPrefix("fit") ? "stopping \(job.title)…" : "cancelling \(job.title)…"
            }
        case .fit(let type): return startFit(type)
        case .match(let method): return startMatch(method)
        case .nextPair, .previousPair:
            let all = state.selections
            guard all.count > 1 else { return [] }
            let i = all.firstIndex(of: state.selection) ?? 0
            state.selection = all[(i + (action == .nextPair ? 1 : all.count - 1)) % all.count]
            bends = [:]
            pendingRefresh = []
            requestedCorrections = []
            state.permutation.outcome = state.alignment(of: state.selectedModels[1])
            state.permutation.layer = ListState()
            state.permutation.matches = ListState()
            if state.soup.useAligned { recomputeSoup() }
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

    /// Nothing is computing: no job runs and every curve has all its points (tests wait for this instead of
    /// sleeping).
    package var isIdle: Bool {
        state.jobs.isEmpty && pendingRefresh.isEmpty && evaluationsRunning.isEmpty && !evaluatorGreedyRunning && state.path.curves.values.allSatisfy(\.done)
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
            if c.done { c.stale = [] }
            state.path.curves[id] = c
            if c.done && pendingRefresh.contains(id) { return startCurve(id) }
        case let .jobProgress(id, f, detail):
            if let i = state.jobs.firstIndex(where: { $0.id == id }) {
                state.jobs[i].fraction = f
                state.jobs[i].detail = detail
            }
        case let .jobFinished(id, note):
            let title = state.jobs.first { $0.id == id }?.title ?? "job"
            let started = state.jobs.first { $0.id == id }?.started
            endJob(id)
            // Every finished job replaces the note, so the status bar never shows an older job's outcome.
            state.lastJobNote = note ?? (started.map { String(format: "%@ done in %.1fs", title, Date().timeIntervalSince($0)) } ?? "\(title) done")
        case let .jobFailed(id, message):
            let title = state.jobs.first { $0.id == id }?.title ?? "job"
            endJob(id)
            state.lastJobNote = "\(title) failed"
            state.popup = PopupState(title: "\(title) failed", message: message, isError: true)
        case let .fitEpoch(id, sel, bend, epoch, epochs, loss):
            guard sel == state.selection else { return [] }
            let first = bends[id] == nil
            bends[id] = [bend]
            state.path.fit = FitStatus(curve: id, epoch: epoch, epochs: epochs, loss: loss)
            if first || state.path.curves[id] == nil {
                let fx = startCurve(id)
                selectCurve(id)
                return fx
            }
            if state.path.selected.naive == id { recomputeCursor() }
            return refreshWithCorrections(id)
        case let .fitted(id, sel, bend, _):
            state.path.fit = nil
            guard sel == state.selection else { return [] }
            bends[id] = [bend]
            let fx = state.path.curves[id] == nil ? startCurve(id) : refreshWithCorrections(id)
            if state.path.selected.naive != id { selectCurve(id) } else { recomputeCursor() }
            return fx + landscapeIfWaiting()
        case .matched(let o):
            state.alignments[o.a, default: [:]][o.b] = o
            soupRepairStatistics["\(o.b):aligned"] = nil
            guard o.a == state.reference, state.selectedModels.contains(o.b) else { return [] }
            if o.b == state.selectedModels[1] {
                state.permutation.outcome = o
                state.permutation.layer = ListState()
                state.permutation.matches = ListState()
            }
            if state.soup.useAligned { recomputeSoup() }
            guard state.selectionAligned else { return [] }
            // The aligned curves (and any fitted before between the aligned models) start again with this alignment.
            var fx: [Effect<ExplorerMessage>] = []
            for id in withCorrections(.alignedLine) { fx += startCurve(id) }
            for id in bends.keys.sorted() where id.aligned {
                bends[id] = nil
                for c in ExplorerEngine.Correction.allCases {
                    state.path.curves[id.with(c)] = nil
                    curveCancel[id.with(c)]?.cancel()
                    requestedCorrections.remove(id.with(c))
                }
            }
            if state.path.selected.aligned { selectCurve(state.path.curves[.alignedLine.with(state.path.selected.correction)] != nil ? .alignedLine.with(state.path.selected.correction) : .alignedLine) }
            fx += landscapeIfWaiting()
            return fx
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
        case .taskVectors(let a):
            state.taskVectors.analysis = a
            state.taskVectors.computing = false
            state.taskVectors.tensor.selected = min(state.taskVectors.tensor.selected, max(0, a.tensors.count - 1))
        case .taskVectorsFailed(let message):
            state.taskVectors.computing = false
            state.taskVectors.error = message
        case let .externalMetrics(serial, signature, result):
            externalMetricsArrived(serial: serial, signature: signature, result)
        case .externalGreedy(let outcome):
            externalGreedyFinished(outcome)
        }
        return []
    }

    /// Keys while the help is open: scrolling, else closing it (q and Ctrl-C quit).
    mutating func helpKey(_ key: Key) -> [Effect<ExplorerMessage>] {
        let page = max(1, state.size.height - 6)
        switch key {
        case .ctrl("c"), .char("q"): return perform(.quit)
        case .down, .char("j"): state.helpScroll += 1
        case .up, .char("k"): state.helpScroll -= 1
        case .pageDown, .char(" "), .ctrl("f"): state.helpScroll += page
        case .pageUp, .ctrl("b"): state.helpScroll -= page
        case .home: state.helpScroll = 0
        case .end: state.helpScroll = Int.max / 2
        case .mouse(let ev) where ev.kind == .wheelDown: state.helpScroll += 3
        case .mouse(let ev) where ev.kind == .wheelUp: state.helpScroll -= 3
        default:
            state.showHelp = false
            return []
        }
        let (lines, visible) = ExplorerRenderer.helpLineCount(state, keymap: keymap)
        state.helpScroll = max(0, min(state.helpScroll, lines - visible))
        return []
    }

    // MARK: Render

    package func render(into buffer: inout CellBuffer, context: RenderContext) {
        ExplorerRenderer.render(state, keymap: keymap, into: &buffer, context: context)
    }
}

/// Background jobs that can be waited for: `spawn` wraps a job's work so the group counts it from the moment the
/// effect is made (not only once its thread runs) until the work returns; `join` waits for every such job. Used
/// where a cancelled job still has something to finish (an evaluation removing its candidate folder) before the
/// caller may touch what the job was using.
package final class JobGroup: @unchecked Sendable {
    private let group = DispatchGroup()

    package init() {}

    package func spawn<Message: Sendable>(_ work: @escaping @Sendable (Inbox<Message>) -> Void) -> Effect<Message> {
        group.enter()
        let group = self.group
        return .spawn { inbox in
            defer { group.leave() }
            work(inbox)
        }
    }

    /// Waits until every job spawned through the group has returned, at most `timeout` seconds (a safety net: a
    /// cancelled job normally ends within its current step); whether they all did.
    @discardableResult
    package func join(timeout: Double) -> Bool {
        group.wait(timeout: .now() + timeout) == .success
    }
}
