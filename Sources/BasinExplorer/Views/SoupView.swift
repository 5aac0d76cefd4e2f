import BasinFusion
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
    package var selected = 0
    package var metrics: [Metrics]?
    package var error: String?
    package var ensemble: [Metrics]?
    /// Test loss over the coefficient triangle (three models; `SoupSimplex` layout): rows = c2 from 1 to 0,
    /// cols = c1; NaN outside.
    package var triangle: [[Double]]?
    package var note: String?

    /// Sliders in order: one coefficient per model, then the base's lambda (task-vector methods), then the
    /// density (TIES, DARE).
    package var sliderCount: Int {
        coefficients.count + (method.needsBase ? 1 : 0) + (method.usesDensity ? 1 : 0)
    }
}

enum SoupView: ExplorerViewModule {
    static func bind(_ m: inout Keymap<ExplorerAction>, context soup: String) {
        m.bind([.up, .char("k")], .up, "previous slider", context: soup)
        m.bind([.down, .char("j")], .down, "next slider", hint: "slider", context: soup)
        m.bind([.left, .char("h")], .left, "decrease coefficient", context: soup)
        m.bind([.right, .char("l")], .right, "increase coefficient", hint: "adjust", context: soup)
        m.bind([.shiftLeft, .char("H"), .char("[")], .fineLeft, "decrease, fine", context: soup)
        m.bind([.shiftRight, .char("L"), .char("]")], .fineRight, "increase, fine", context: soup)
        m.bind([.char("n")], .nextMethod, "next merge method", hint: "method", context: soup)
        m.bind([.char("N")], .previousMethod, "previous merge method", context: soup)
        m.bind([.char("u")], .uniformSoup, "uniform soup", hint: "uniform", context: soup)
        m.bind([.char("g")], .greedySoup, "greedy soup", hint: "greedy", context: soup)
        m.bind([.char("a")], .toggleAligned, "use B aligned to A (after m) / the models as loaded", hint: "aligned", context: soup)
    }

    static let hints: [ExplorerAction] = [.help, .down, .right, .nextMethod, .uniformSoup, .greedySoup, .toggleAligned, .export,
                                          .nextView, .quit]

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
        case .toggleAligned:
            guard app.alignedB != nil else {
                app.state.soup.note = "align first (m): the soup then uses B permuted to A"
                return []
            }
            app.state.soup.useAligned.toggle()
            let (a, b) = app.state.pair
            app.state.soup.note = app.state.soup.useAligned ? "using \(app.state.modelNames[b]) aligned to \(app.state.modelNames[a])" : "using the models as loaded"
            app.recomputeSoup()
            if app.engine.models.count == 3 { fx += app.startTriangle() }
        case .uniformSoup:
            let n = app.state.soup.coefficients.count
            app.state.soup.coefficients = Array(repeating: 1 / Double(n), count: n)
            app.state.soup.note = "uniform soup"
            app.recomputeSoup()
        case .greedySoup:
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
        switch ev.kind {
        case .press:
            // The uniform / greedy buttons.
            if let row = Layout.soupButtonRow(app.state, size: app.state.size), ev.y == row.y {
                if ev.x >= row.x && ev.x < row.x + 11 { return app.perform(.uniformSoup) }
                if ev.x >= row.x + 13 && ev.x < row.x + 23 { return app.perform(.greedySoup) }
            }
            return []
        case .wheelUp: return app.perform(.up)
        case .wheelDown: return app.perform(.down)
        case .release: return []
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
        return [o.b: al]
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

    /// The loss over the soup triangle of three models (BasinFusion's `SoupSimplex`, 16 steps per side, the last
    /// data set) with the current method. A method that cannot merge the three (the soup panel says why) gives
    /// an empty triangle.
    mutating func startTriangle() -> [Effect<ExplorerMessage>] {
        guard engine.models.count == 3 else { return [] }
        let method = state.soup.method, lambda = state.soup.lambda, density = state.soup.density
        let engine = self.engine
        let replacing = soupReplacements
        let (id, flag) = beginJob("soup triangle")
        let n = 16
        return [.spawn { inbox in
            do {
                let simplex = try SoupSimplex.compute(resolution: n, network: engine.network, data: engine.shownData, cancel: flag) { done, total in
                    inbox.post(.jobProgress(id: id, fraction: Double(done) / Double(total), detail: ""))
                } merge: { w in
                    try engine.merge(method, coefficients: w, lambda: lambda, density: density, replacing: replacing)
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
    /// Where the soup view's buttons are (for mouse clicks).
    package static func soupButtonRow(_ state: ExplorerState, size: Size) -> Point? {
        guard !TooSmall.check(size, minimum: minimum) else { return nil }
        let body = self.body(size)
        let inner = Block().inner(body).inset(left: 1, right: 1)
        let sliders = state.soup.sliderCount
        return Point(x: inner.x, y: inner.y + 2 + sliders + 1)
    }
}

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
            let bx = buffer.write(" u uniform ", x: li.x, y: y, style: button, clip: li.row(y - li.y)) + 2
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
                let cell = SoupSimplex.cell(for: s.coefficients, resolution: tri.count - 1)
                Heatmap(values: tri, marked: (row: cell.row, col: cell.column)).render(into: &buffer, area: ri.inset(bottom: 1), context: context)
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
