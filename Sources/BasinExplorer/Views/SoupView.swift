import BasinFusion
import BasinIO
import BasinNet
import BasinUI
import Foundation

// The soup view: one slider per model (plus lambda and density for task-vector methods), the merged model's
// metrics next to the ensemble's, uniform and greedy soups, and with three models the loss over the soup
// triangle.

package struct SoupState: Sendable {
    package var coefficients: [Double]
    package var lambda: Double = 1
    /// TIES / DARE: the fraction of each task vector kept.
    package var density: Double = ExplorerEngine.soupDensity
    package var method: ExplorerEngine.SoupMethod = .weighted
    /// Merge B aligned to A (after matching) instead of B as loaded.
    package var useAligned = false
    /// BatchNorm networks (b, as in the path view): the merged model as merged (naive), with its running
    /// statistics recomputed on the train set (BN reset), or REPAIRed to the weighted mean of the models'
    /// statistics (weighted soup and SLERP), before it is evaluated and exported.
    package var correction: ExplorerEngine.Correction = .naive
    package var bnReset: Bool { correction == .bnReset }
    package var selected = 0
    package var metrics: [Metrics]?
    package var error: String?
    package var ensemble: [Metrics]?
    /// Test loss over the coefficient triangle (three models; `SoupSimplex` layout): rows = c2 from 1 to 0,
    /// cols = c1; NaN outside.
    package var triangle: [[Double]]?
    package var note: String?
    /// `--evaluate CMD`: the external evaluator's latest metrics for the soup.
    package var external = ExternalSoupMetrics()

    /// Sliders in order: one coefficient per model, then the base's lambda (task-vector methods), then the
    /// density (TIES, DARE).
    package var sliderCount: Int {
        coefficients.count + (method.needsBase ? 1 : 0) + (method.usesDensity ? 1 : 0)
    }
}

/// What the external evaluator (`--evaluate CMD`) said about the soup.
package struct ExternalSoupMetrics: Sendable, Equatable {
    /// The evaluator's command (nil: no evaluator).
    package var command: String?
    /// The metrics shown: the current soup's, else (`stale`) the latest an earlier soup got.
    package var metrics: [String: Double]?
    /// The failed evaluation's message (its standard error included).
    package var failure: String?
    /// Evaluations are running.
    package var running = false
    /// How many are running, and how many may (`--evaluate-jobs`).
    package var inFlight = 0
    package var jobs = 1
    /// The metrics are for an earlier soup (the current one is queued or running).
    package var stale = false
    /// Where the shown metrics came from when not from the soup's own evaluation (e.g. the greedy soup's).
    package var source: String?
    /// Greedy soup is choosing by the evaluator (g).
    package var greedyRunning = false
    /// The last greedy soup chosen by the evaluator: the metric and each candidate's value.
    package var greedy: [String] = []
}

/// One soup's external evaluation, kept for the session (a soup is evaluated once; moving back to it shows it).
struct ExternalOutcome: Sendable {
    /// Orders outcomes by when their evaluation started.
    var serial: Int
    var result: Result<[String: Double], ExternalFailure>
    var source: String?
}

/// Greedy soup chosen by the external evaluator (`ExternalSoup`): the coefficients (uniform over the chosen
/// ingredients), a summary, and the chosen soup's metrics.
package struct ExternalGreedyOutcome: Sendable {
    package var coefficients: [Double]
    package var note: String
    package var lines: [String]
    package var metrics: [String: Double]?
}

enum SoupView: ExplorerViewModule {
    static func bind(_ m: inout Keymap<ExplorerAction>, context soup: String) {
        m.bind([.up, .char("k")], .up, "previous slider", context: soup)
        m.bind([.down, .char("j")], .down, "next slider", hint: "slider", context: soup)
        m.bind([.left, .char("h")], .left, "decrease coefficient", context: soup)
        m.bind([.right, .char("l")], .right, "increase coefficient", hint: "adjust", context: soup)
        m.bind([.shiftLeft, .char("[")], .fineLeft, "decrease, fine", context: soup)
        m.bind([.shiftRight, .char("]")], .fineRight, "increase, fine", context: soup)
        m.bind([.char("n")], .nextMethod, "next merge method", hint: "method", context: soup)
        m.bind([.char("N")], .previousMethod, "previous merge method", context: soup)
        m.bind([.char("u")], .uniformSoup, "uniform soup", hint: "uniform", context: soup)
        m.bind([.char("g")], .greedySoup, "greedy soup", hint: "greedy", context: soup)
        m.bind([.char("b")], .bnMode, "BatchNorm: the merged model naive / BN reset / REPAIR", hint: "BN", context: soup)
    }

    static let hints: [ExplorerAction] = [.help, .quit, .down, .right, .nextMethod, .uniformSoup, .greedySoup, .aligned, .export,
                                          .nextView]

    static func perform(_ action: ExplorerAction, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        let sliders = app.state.soup.sliderCount
        var fx: [Effect<ExplorerMessage>] = []
        switch action {
        case .up: app.state.soup.selected = (app.state.soup.selected + sliders - 1) % sliders
        case .down: app.state.soup.selected = (app.state.soup.selected + 1) % sliders
        case .left: app.adjustSoup(-0.05)
        case .right: app.adjustSoup(0.05)
        case .fineLeft: app.adjustSoup(-0.01)
        case .fineRight: app.adjustSoup(0.01)
        case .nextMethod, .previousMethod:
            let all = ExplorerEngine.SoupMethod.allCases
            let i = all.firstIndex(of: app.state.soup.method)!
            app.state.soup.method = all[(i + (action == .nextMethod ? 1 : all.count - 1)) % all.count]
            app.state.soup.selected = min(app.state.soup.selected, app.state.soup.sliderCount - 1)
            app.recomputeSoup()
            if app.engine.models.count == 3 { fx += app.startTriangle() }
        case .aligned:
            let ref = app.state.reference
            let aligned = (app.state.alignments[ref] ?? [:]).keys.sorted()
            guard !aligned.isEmpty else {
                app.state.soup.note = "align first (m): the soup then uses the models permuted to \(app.state.modelNames[ref])"
                return []
            }
            app.state.soup.useAligned.toggle()
            let jointly = app.state.alignments[ref]?.values.contains { $0.strategy == .mergeMany } == true
            app.state.soup.note = app.state.soup.useAligned
                ? "using " + aligned.map { app.state.modelNames[$0] }.joined(separator: ", ")
                    + (jointly ? " aligned jointly with \(app.state.modelNames[ref]) (MergeMany, in its frame)" : " aligned to \(app.state.modelNames[ref])")
                : "using the models as loaded"
            app.recomputeSoup()
            if app.engine.models.count == 3 { fx += app.startTriangle() }
        case .bnMode:
            let all = app.engine.corrections
            guard all.count > 1 else {
                app.state.soup.note = "no BatchNorm in this network: the merged model needs no statistics reset"
                return []
            }
            let next = all[((all.firstIndex(of: app.state.soup.correction) ?? 0) + 1) % all.count]
            app.state.soup.correction = next
            let train = app.engine.correctionDataName
            switch next {
            case .naive: app.state.soup.note = "BN statistics merged like every other tensor (b: reset them)"
            case .bnReset: app.state.soup.note = "BN statistics of the merged model recomputed on \(train) (b: REPAIR)"
            case .repair: app.state.soup.note = "REPAIR: each channel renormalised to the weighted mean of the models' statistics (b: naive)"
            }
            app.recomputeSoup()
            if app.engine.models.count == 3 { fx += app.startTriangle() }
        case .uniformSoup:
            let n = app.state.soup.coefficients.count
            app.state.soup.coefficients = Array(repeating: 1 / Double(n), count: n)
            app.state.soup.note = "uniform soup"
            app.recomputeSoup()
        case .greedySoup:
            if app.options.evaluator != nil { return app.startEvaluatorGreedySoup() }
            let (id, _) = app.beginJob("greedy soup")
            let engine = app.engine
            let replacing = app.soupReplacements
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

    static func mouse(_ ev: MouseEvent, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        guard let layout = Layout.soup(app.state, size: app.state.size) else { return [] }
        switch ev.kind {
        case .press, .drag:
            // A slider: pressing selects it and sets its value; dragging follows the pointer.
            if ev.kind == .press, let i = layout.sliders.firstIndex(where: { $0.y == ev.y }) {
                app.state.soup.selected = i
                app.dragging = i
            }
            if let i = app.dragging, i < layout.sliders.count,
               let v = SoupRenderer.slider(app.state, i).value(atColumn: ev.x, in: layout.sliders[i]) {
                app.setSlider(i, v)
                return []
            }
            // The uniform / greedy buttons.
            if ev.kind == .press, let row = layout.buttons, ev.y == row.y {
                if ev.x >= row.x && ev.x < row.x + 11 { return app.perform(.uniformSoup) }
                if ev.x >= row.x + 13 && ev.x < row.x + 23 { return app.perform(.greedySoup) }
            }
            return []
        case .release:
            app.dragging = nil
            return []
        case .wheelUp: return app.perform(.up)
        case .wheelDown: return app.perform(.down)
        }
    }

    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        SoupRenderer.render(state, into: &buffer, area: area, context: context)
    }
}

extension ExplorerApp {
    mutating func adjustSoup(_ d: Double) {
        let i = state.soup.selected
        let n = state.soup.coefficients.count
        let current = i < n ? state.soup.coefficients[i] : (i == n && state.soup.method.needsBase ? state.soup.lambda : state.soup.density)
        setSlider(i, current + d)
    }

    /// Sets slider i (a coefficient, the base's lambda or the density), rounded to 0.01 and kept in its range.
    mutating func setSlider(_ i: Int, _ value: Double) {
        let n = state.soup.coefficients.count
        func r(_ v: Double, _ lo: Double, _ hi: Double) -> Double { ((min(hi, max(lo, v))) * 100).rounded() / 100 }
        if i < n {
            state.soup.coefficients[i] = r(value, 0, 1)
        } else if i == n && state.soup.method.needsBase {
            state.soup.lambda = r(value, 0, 2)
        } else {
            // A density of 0 would drop every task vector entry: keep at least 1%.
            state.soup.density = r(value, 0.01, 1)
        }
        state.soup.note = nil
        recomputeSoup()
    }

    /// Models the soup replaces, when switched on (a): every model aligned to the reference by its permuted self.
    var soupReplacements: [Int: ParameterSet] {
        guard state.soup.useAligned else { return [:] }
        return (state.alignments[state.reference] ?? [:]).mapValues { $0.result.aligned }
    }

    /// The soup as evaluated (and exported): the merge, with its BN statistics reset or REPAIRed (folded into its
    /// tensors) as b says.
    func mergedSoup() throws -> ParameterSet {
        let s = state.soup
        let merged = try engine.merge(s.method, coefficients: s.coefficients, lambda: s.lambda, density: s.density, replacing: soupReplacements)
        return try engine.correctedSoup(merged, correction: s.correction, method: s.method, coefficients: s.coefficients, lambda: s.lambda,
                                        density: s.density, statistics: s.correction == .repair ? soupStatistics() : [])
    }

    /// The key of model i's REPAIR statistics: the model as loaded, or its aligned copy when the soup uses it.
    func soupStatisticsKey(_ i: Int) -> String { soupReplacements[i] != nil ? "\(i):aligned" : "\(i)" }

    /// Every ingredient's REPAIR statistics (one eval pass over the train set each), from the cache when measured.
    func soupStatistics() -> [Repair.Statistics] {
        guard let repair = engine.repair else { return [] }
        let replacing = soupReplacements
        return engine.models.indices.map { soupRepairStatistics[soupStatisticsKey($0)] ?? repair.statistics(replacing[$0] ?? engine.params[$0]) }
    }

    /// Measures and keeps the statistics `soupStatistics` needs (before the soup is corrected, so each ingredient
    /// is measured once, not at every slider step).
    mutating func cacheSoupStatistics() {
        guard state.soup.correction == .repair else { return }
        for (i, statistics) in soupStatistics().enumerated() { soupRepairStatistics[soupStatisticsKey(i)] = statistics }
    }

    /// What identifies the soup as evaluated: method, coefficients, lambda, density, aligned ingredients, BN reset.
    var soupSignature: String {
        let s = state.soup
        let aligned = soupReplacements.keys.sorted().map { "\($0):\(state.alignments[state.reference]?[$0]?.strategy.rawValue ?? "")" }
        return "\(s.method.rawValue) \(s.coefficients) \(s.lambda) \(s.density) \(aligned) \(s.correction.rawValue)"
    }

    /// `--evaluate CMD`: when the soup has not been evaluated this session, is not being evaluated and fewer than
    /// `--evaluate-jobs` evaluations run, writes it as a model folder in the session's temporary folder and runs the
    /// evaluator on it in the background (the folder is removed once evaluated). Otherwise the soup waits: the
    /// newest soup starts when a running evaluation ends. Then shows the soup's metrics, if any.
    mutating func startExternalEvaluations() -> [Effect<ExplorerMessage>] {
        guard let evaluator = options.evaluator else { return [] }
        var fx: [Effect<ExplorerMessage>] = []
        let signature = soupSignature
        if state.soup.error == nil, !evaluatorGreedyRunning, evaluationOutcomes[signature] == nil,
           !evaluationsRunning.values.contains(signature), evaluationsRunning.count < max(1, options.evaluateJobs) {
            fx = startExternalEvaluation(evaluator, signature: signature)
        }
        showExternalMetrics()
        return fx
    }

    mutating func startExternalEvaluation(_ evaluator: ExternalEvaluator, signature: String) -> [Effect<ExplorerMessage>] {
        let params: ParameterSet, recipe: MergeRecipe
        do {
            params = try mergedSoup()
            recipe = try engine.soupRecipe(state.soup.method, coefficients: state.soup.coefficients, lambda: state.soup.lambda,
                                           density: state.soup.density)
        } catch { return [] }
        evaluationSerial += 1
        let serial = evaluationSerial
        evaluationsRunning[serial] = signature
        let folder = evaluationFolder.appendingPathComponent("candidate-\(serial)")
        let root = evaluationFolder
        let engine = self.engine
        let (job, flag) = beginJob("evaluate")
        return [evaluationJobs.spawn { inbox in
            let result: Result<[String: Double], ExternalFailure>
            do {
                try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
                let dtypes = engine.models[0].dtypes
                try MergeExport.write(params, to: folder, dtype: { dtypes[$0] ?? .f32 }, recipe: recipe,
                                      inputs: zip(engine.names, engine.models).map { ($0, $1.source) })
                // Quitting while the candidate was written: do not start the evaluator.
                if flag.isCancelled { throw ExternalFailure(message: "cancelled") }
                result = .success(try evaluator.evaluate(folder))
            } catch let failure as ExternalFailure {
                result = .failure(failure)
            } catch {
                result = .failure(ExternalFailure(message: "\(error)"))
            }
            try? FileManager.default.removeItem(at: folder)
            inbox.post(.externalMetrics(serial: serial, signature: signature, result))
            inbox.post(.jobFinished(id: job, note: { if case .success = result { return "evaluator done" } else { return "evaluator failed" } }()))
        }]
    }

    mutating func externalMetricsArrived(serial: Int, signature: String, _ result: Result<[String: Double], ExternalFailure>) {
        evaluationsRunning[serial] = nil
        evaluationOutcomes[signature] = ExternalOutcome(serial: serial, result: result, source: nil)
    }

    /// What the soup view shows: the current soup's outcome, else the latest outcome (marked as an earlier soup's).
    mutating func showExternalMetrics() {
        guard let evaluator = options.evaluator else { return }
        var e = state.soup.external
        e.command = evaluator.command
        e.jobs = max(1, options.evaluateJobs)
        e.inFlight = evaluationsRunning.count
        e.running = !evaluationsRunning.isEmpty
        e.greedyRunning = evaluatorGreedyRunning
        let current = evaluationOutcomes[soupSignature]
        let shown = current ?? evaluationOutcomes.values.max { $0.serial < $1.serial }
        e.stale = current == nil && shown != nil
        e.source = shown?.source
        switch shown?.result {
        case .success(let m)?:
            e.metrics = m
            e.failure = nil
        case .failure(let f)?:
            e.metrics = nil
            e.failure = f.message
        case nil:
            e.metrics = nil
            e.failure = nil
        }
        state.soup.external = e
    }

    /// g with `--evaluate`: greedy soup chosen by the evaluator's metric, as `basin soup --evaluate --greedy` does
    /// (BasinFusion's `ExternalSoup`: each ingredient and the uniform soup scored `--evaluate-jobs` at a time, then
    /// ingredients added in order of the metric while the soup does not get worse), in the background. The
    /// ingredients are the model files as loaded (the evaluator gets folders written from them).
    mutating func startEvaluatorGreedySoup() -> [Effect<ExplorerMessage>] {
        guard let evaluator = options.evaluator else { return [] }
        guard !evaluatorGreedyRunning else {
            state.soup.note = "greedy soup by the evaluator is already running"
            return []
        }
        if state.soup.useAligned || state.soup.correction != .naive {
            state.soup.note = "greedy soup by the evaluator merges the model files as loaded: switch off "
                + (state.soup.useAligned ? "a (aligned models)" : "b (\(state.soup.correction.label))") + " first"
            return []
        }
        evaluatorGreedyRunning = true
        evaluationSerial += 1
        let work = evaluationFolder.appendingPathComponent("greedy-\(evaluationSerial)")
        let names = engine.names
        let soup = ExternalSoup(models: engine.models.indices.map(engine.modelPath), evaluator: evaluator, jobs: max(1, options.evaluateJobs),
                                metric: options.evaluatorMetric, higherIsBetter: options.evaluatorHigherIsBetter, workDirectory: work)
        let (id, flag) = beginJob("greedy soup (evaluator)")
        state.soup.note = "greedy soup: the evaluator scores each ingredient and the uniform soup, \(soup.jobs) at a time"
        showExternalMetrics()
        return [evaluationJobs.spawn { inbox in
            let outcome: Result<ExternalGreedyOutcome, ExternalFailure>
            do {
                let r = try soup.run(greedy: true, cancel: flag) { line in inbox.post(.jobProgress(id: id, fraction: 0, detail: line)) }
                let k = Double(r.chosen.count)
                let metric = r.metric ?? ""
                var lines = ["greedy soup by \(metric) (" + ((soup.higherIsBetter ?? ExternalEvaluator.higherIsBetter(metric)) ? "larger" : "smaller") + " is better):"]
                for (i, row) in r.rows.enumerated() where row.kind != "greedy soup" {
                    let name = i < names.count ? names[i] : row.name
                    let value = row.metrics?[metric].map { String(format: "%.4g", $0) } ?? (row.failure == nil ? "-" : "failed")
                    lines.append("  \(name)  \(value)")
                }
                outcome = .success(ExternalGreedyOutcome(
                    coefficients: names.indices.map { r.chosen.contains($0) ? 1 / k : 0 },
                    note: "greedy soup by the evaluator's \(metric): " + r.chosen.map { names[$0] }.joined(separator: " + "),
                    lines: lines, metrics: r.chosenMetrics))
            } catch {
                outcome = .failure(ExternalFailure(message: "\(error)"))
            }
            try? FileManager.default.removeItem(at: work)
            inbox.post(.externalGreedy(outcome))
            switch outcome {
            case .success: inbox.post(.jobFinished(id: id, note: "greedy soup chosen by the evaluator"))
            case .failure(let f): inbox.post(.jobFailed(id: id, f.message))
            }
        }]
    }

    mutating func externalGreedyFinished(_ outcome: Result<ExternalGreedyOutcome, ExternalFailure>) {
        evaluatorGreedyRunning = false
        guard case .success(let g) = outcome else { return }
        state.soup.coefficients = g.coefficients
        recomputeSoup()
        state.soup.note = g.note
        state.soup.external.greedy = g.lines
        // The chosen soup was scored during the greedy search: show those metrics instead of evaluating it again.
        if let m = g.metrics {
            evaluationSerial += 1
            evaluationOutcomes[soupSignature] = ExternalOutcome(serial: evaluationSerial, result: .success(m), source: "from the greedy search")
        }
    }

    /// On quit: stops every running evaluator (their process groups, through BasinIO's cleanup registry) and
    /// removes the candidates' folder. Called by the executable once the terminal is restored.
    package func stopExternalEvaluations() {
        guard options.evaluator != nil else { return }
        for c in jobCancel.values { c.cancel() }
        if !evaluationsRunning.isEmpty || evaluatorGreedyRunning { CleanupRegistry.cleanUpNow() }
        // A stopped evaluation's job may still be removing its candidate (two recursive removals of one tree can
        // fail each other half-way): wait for the jobs, then remove the folder once. Their evaluators were just
        // stopped, so they end at once; the bound only keeps q prompt should one be stuck in a write.
        evaluationJobs.join(timeout: 10)
        try? FileManager.default.removeItem(at: evaluationFolder)
    }

    /// The merged model is evaluated synchronously (about a millisecond on the sample models).
    mutating func recomputeSoup() {
        cacheSoupStatistics()
        do {
            state.soup.metrics = engine.evaluateSoup(try mergedSoup())
            state.soup.error = nil
        } catch {
            state.soup.metrics = nil
            state.soup.error = "\(error)"
        }
    }

    /// The loss over the soup triangle of three models (BasinFusion's `SoupSimplex`, 16 steps per side, the last
    /// data set) with the current method. A method that cannot merge the three (the soup panel says why) gives
    /// an empty triangle.
    mutating func startTriangle() -> [Effect<ExplorerMessage>] {
        guard engine.models.count == 3 else { return [] }
        let method = state.soup.method, lambda = state.soup.lambda, density = state.soup.density
        let engine = self.engine
        let replacing = soupReplacements
        let correction = state.soup.correction
        cacheSoupStatistics()
        let statistics = correction == .repair ? soupStatistics() : []
        let (id, flag) = beginJob("soup triangle")
        let n = 16
        return [.spawn { inbox in
            do {
                let simplex = try SoupSimplex.compute(resolution: n, network: engine.network, data: engine.shownData, cancel: flag) { done, total in
                    inbox.post(.jobProgress(id: id, fraction: Double(done) / Double(total), detail: ""))
                } merge: { w in
                    let merged = try engine.merge(method, coefficients: w, lambda: lambda, density: density, replacing: replacing)
                    return try engine.correctedSoup(merged, correction: correction, method: method, coefficients: w, lambda: lambda,
                                                    density: density, statistics: statistics)
                }
                guard let simplex else { return inbox.post(.jobFinished(id: id, note: "soup triangle cancelled")) }
                inbox.post(.soupTriangle(simplex.loss))
            } catch {
                inbox.post(.soupTriangle(SoupSimplex.empty(resolution: n).loss))
            }
            inbox.post(.jobFinished(id: id, note: nil))
        }]
    }
}

extension Layout {
    /// Where the soup view's parts are: the method strip's rows, one row per slider, the buttons.
    package struct SoupLayout {
        package var left: Rect
        package var right: Rect
        package var methods: Rect
        package var sliders: [Rect]
        package var buttons: Point?
        package var below: Int
    }

    package static func soup(_ state: ExplorerState, size: Size) -> SoupLayout? {
        guard !TooSmall.check(size, minimum: minimum) else { return nil }
        let body = self.body(size)
        let hasTriangle = state.modelNames.count == 3
        let cols = body.columns(.fill(1), .fixed(min(hasTriangle ? 44 : 40, body.width * 2 / 5)))
        let li = Block().inner(cols[0]).inset(left: 1, right: 1)
        let stripRows = SoupRenderer.methodStrip(state, width: li.width).count
        var y = li.y + stripRows + 1
        var sliders: [Rect] = []
        for _ in 0..<state.soup.sliderCount where y < li.maxY {
            sliders.append(Rect(x: li.x, y: y, width: li.width, height: 1))
            y += 1
        }
        var buttons: Point?
        if y + 1 < li.maxY {
            buttons = Point(x: li.x, y: y + 1)
            y += 2
        }
        return SoupLayout(left: cols[0], right: cols[1], methods: Rect(x: li.x, y: li.y, width: li.width, height: stripRows),
                          sliders: sliders, buttons: buttons, below: y + 1)
    }

    /// Where the soup view's buttons are (for mouse clicks).
    package static func soupButtonRow(_ state: ExplorerState, size: Size) -> Point? { soup(state, size: size)?.buttons }
}

package enum SoupRenderer {
    /// The method names laid out in rows of `width` (wrapping rather than cutting one off).
    static func methodStrip(_ state: ExplorerState, width: Int) -> [[ExplorerEngine.SoupMethod]] {
        var rows: [[ExplorerEngine.SoupMethod]] = [[]]
        var x = 0
        for m in ExplorerEngine.SoupMethod.allCases {
            let w = TextWidth.of(m.label) + 3
            if x + w - 1 > width && !rows[rows.count - 1].isEmpty {
                rows.append([])
                x = 0
            }
            rows[rows.count - 1].append(m)
            x += w
        }
        return rows
    }

    /// Slider i as drawn (and as the mouse reads it).
    package static func slider(_ state: ExplorerState, _ i: Int) -> Slider {
        let s = state.soup
        let n = s.coefficients.count
        let two = { @Sendable (v: Double) in String(format: "%.2f", v) }
        if i < n {
            let label = TextWidth.padRight(TextWidth.fit(state.modelNames[i], to: 16), to: 16)
            return Slider(label: label, value: s.coefficients[i], range: 0...1, focused: s.selected == i, format: two)
        }
        if i == n && s.method.needsBase {
            return Slider(label: TextWidth.padRight("base λ", to: 16), value: s.lambda, range: 0...2, focused: s.selected == i, format: two)
        }
        return Slider(label: TextWidth.padRight("density", to: 16), value: s.density, range: 0...1, focused: s.selected == i, format: two)
    }

    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        guard let layout = Layout.soup(state, size: Size(width: area.width, height: area.height + 2)) else { return }
        let s = state.soup
        let glyphs = context.glyphs
        let hasTriangle = state.modelNames.count == 3
        let lb = Block(title: TextWidth.fit("soup · \(s.method.label) (n)" + (s.useAligned ? " · aligned to \(state.modelNames[state.reference]) (a)" : ""), to: max(0, layout.left.width - 6), ellipsis: glyphs.ellipsis))
        lb.render(into: &buffer, area: layout.left, context: context)
        let li = lb.inner(layout.left).inset(left: 1, right: 1)
        // Method strip.
        for (r, row) in methodStrip(state, width: li.width).enumerated() {
            var x = li.x
            for m in row {
                let on = m == s.method
                x = buffer.write(" \(m.label) ", x: x, y: li.y + r, style: on ? Style(fg: .role(.foreground), bg: .role(.selection), attributes: .bold) : Style(fg: .role(.muted)), clip: li.row(r)) + 1
            }
        }
        for (i, r) in layout.sliders.enumerated() { slider(state, i).render(into: &buffer, area: r, context: context) }
        if let b = layout.buttons {
            let button = Style(fg: .role(.foreground), bg: .role(.selection))
            let row = Rect(x: li.x, y: b.y, width: li.width, height: 1)
            let bx = buffer.write(" u uniform ", x: li.x, y: b.y, style: button, clip: row) + 2
            buffer.write(" g greedy ", x: bx, y: b.y, style: button, clip: row)
        }
        var y = layout.below
        let total = s.coefficients.reduce(0, +)
        let muted = Style(fg: .role(.muted))
        // BatchNorm networks: the BN mode (b), shown as the path view shows its selected curve's.
        if let train = state.batchNorm, y < li.maxY {
            buffer.writeFitted(s.correction.modeLine(train: state.dataNames.first ?? train), in: li.row(y - li.y),
                               style: Style(fg: .role(s.correction == .naive ? .warning : .good), attributes: .bold), glyphs: glyphs)
            y += 1
        }
        if s.method == .weighted, y < li.maxY {
            buffer.writeFitted("normalised weights: " + s.coefficients.map { fmt(total > 0 ? $0 / total : 0, 2) }.joined(separator: " "), in: li.row(y - li.y), style: muted, glyphs: glyphs)
            y += 1
        }
        if let note = s.note, y < li.maxY {
            let lines = Paragraph.wrap(note, width: li.width).prefix(2)
            for l in lines where y < li.maxY {
                buffer.writeFitted(l, in: li.row(y - li.y), style: Style(fg: .role(.accent)), glyphs: glyphs)
                y += 1
            }
        }
        y += 1
        // Metrics: the merged model beside the ensemble, on every data set (and the held-out set).
        if y < li.maxY {
            var rows: [[String]] = []
            let names = state.soupDataNames
            for (d, name) in names.enumerated() {
                let m = s.metrics.map { d < $0.count ? metricsCell($0[d], tokens: state.tokenData) : "–" } ?? "–"
                let e = s.ensemble.map { d < $0.count ? metricsCell($0[d], tokens: state.tokenData) : "–" } ?? "n/a"
                rows.append([name, m, e])
            }
            let nameW = min(9, max(5, names.map { TextWidth.of($0) }.max() ?? 5) + 1)
            // Token data: three figures per cell, named once above the table (the header has no room for them).
            if state.tokenData {
                buffer.writeFitted("each cell: loss, perplexity, token accuracy", in: li.row(y - li.y), style: muted, glyphs: glyphs)
                y += 1
            }
            let header = state.tokenData ? ["data", "merged", "ensemble"] : ["data", "merged loss  acc", "ensemble loss  acc"]
            Table(header: header, rows: rows, widths: [.fixed(nameW), .fill(1), .fill(1)])
                .render(into: &buffer, area: Rect(x: li.x, y: y, width: li.width, height: min(li.maxY - y, rows.count + 1)), context: context)
            y += rows.count + 2
        }
        if let e = s.error, y < li.maxY {
            Paragraph(e, style: Style(fg: .role(.bad))).render(into: &buffer, area: Rect(x: li.x, y: y, width: li.width, height: li.maxY - y), context: context)
            y = li.maxY
        }
        // The external evaluator's metrics (--evaluate), as they arrive.
        if s.external.command != nil, y < li.maxY {
            let e = s.external
            var lines: [(String, Style)] = []
            let count = e.jobs > 1 ? " \(e.inFlight) of \(e.jobs)" : ""
            let status: String
            if e.greedyRunning { status = "choosing the greedy soup…" }
            else if e.running { status = e.metrics == nil && e.failure == nil ? "running\(count)…" : e.stale ? "running\(count) on the new soup…" : "running\(count) on other soups…" }
            else { status = e.stale ? "(an earlier soup)" : e.source.map { "(\($0))" } ?? "" }
            lines.append(("external evaluator (--evaluate) " + status, Style(fg: .role(.title), attributes: .bold)))
            if let m = e.metrics {
                let w = min(24, m.keys.map { TextWidth.of($0) }.max() ?? 8)
                for (k, v) in m.sorted(by: { $0.key < $1.key }) {
                    lines.append((TextWidth.padRight(TextWidth.fit(k, to: w, ellipsis: glyphs.ellipsis), to: w) + "  " + String(format: "%.4g", v), Style(fg: .role(e.stale ? .muted : .foreground))))
                }
            }
            if let f = e.failure {
                for l in Paragraph.wrap("failed: " + f, width: li.width) { lines.append((l, Style(fg: .role(.bad)))) }
            }
            for l in e.greedy { lines.append((l, Style(fg: .role(.muted)))) }
            for (text, style) in lines where y < li.maxY {
                buffer.writeFitted(text, in: li.row(y - li.y), style: style, glyphs: glyphs)
                y += 1
            }
        }

        // Right: triangle or help text.
        let rb = Block(title: hasTriangle ? "\(state.dataNames.last ?? "") loss over the coefficient triangle" : "about")
        rb.render(into: &buffer, area: layout.right, context: context)
        let ri = rb.inner(layout.right)
        if hasTriangle {
            if let tri = s.triangle {
                let cell = SoupSimplex.cell(for: s.coefficients, resolution: tri.count - 1)
                Heatmap(values: tri, marked: (row: cell.row, col: cell.column)).render(into: &buffer, area: ri.inset(bottom: 2), context: context)
                let corners = "top: \(state.modelNames[2]) · left: \(state.modelNames[0]) · right: \(state.modelNames[1])"
                for (k, l) in Paragraph.wrap(corners, width: ri.width).prefix(2).enumerated() {
                    buffer.writeFitted(l, in: ri.row(ri.height - 2 + k), style: muted, glyphs: glyphs)
                }
            } else {
                buffer.write("computing…", x: ri.x + 1, y: ri.y, style: muted, clip: ri)
            }
        } else {
            Paragraph("One slider per model; the merged model is evaluated as you move them (keys or mouse: click or drag a slider). u: uniform soup, g: greedy soup (ingredients added in order of " + (s.external.command == nil ? "held-out accuracy while it improves; held-out data: --heldout, else the last data set" : "the external evaluator's metric while it does not get worse") + "). a: merge the models aligned to A (after m). Methods other than weighted need a base for task vectors: start with --base BASE_MODEL. With three models a loss map over the coefficient triangle appears here.", style: muted)
                .render(into: &buffer, area: ri.inset(left: 1, right: 1), context: context)
        }
    }
}
