/// How a heatmap turns values into cells.
package enum HeatRamp: Hashable, Sendable {
    /// Two data rows per cell with '▀' (fg = upper, bg = lower colour index).
    case halfBlock([Int])
    /// One data row per cell, a space with the colour as background (colour but no Unicode).
    case background([Int])
    /// One data row per cell, density characters (no colour).
    case density([String])

    package static let densityChars = [" ", ".", ":", "-", "=", "+", "*", "#", "%", "@"]
    /// Eight-colour steps, low to high: blue, cyan, green, yellow, red.
    package static let eightColorSteps = [4, 6, 2, 3, 1]

    package var count: Int {
        switch self {
        case .halfBlock(let c), .background(let c): return c.count
        case .density(let d): return d.count
        }
    }

    /// The ramp for a context: density with no colour, 8-colour steps, or `steps` xterm-256
    /// colours interpolated through the theme's heatmap_low, heatmap_mid (if set), heatmap_high.
    package static func make(_ context: RenderContext, steps: Int = 24) -> HeatRamp {
        let colors: [Int]
        switch context.capability {
        case .none: return .density(densityChars)
        case .eight: colors = eightColorSteps
        case .c256: colors = interpolated(theme: context.theme, steps: steps)
        }
        return context.glyphs.unicode ? .halfBlock(colors) : .background(colors)
    }

    static func interpolated(theme: Theme, steps: Int) -> [Int] {
        func rgb(_ r: Role) -> (Double, Double, Double)? {
            guard case .indexed(let i) = theme[r].color else { return nil }
            let c = XTerm.rgb(i)
            return (Double(c.r), Double(c.g), Double(c.b))
        }
        var stops = [rgb(.heatmapLow) ?? (13, 8, 135), rgb(.heatmapHigh) ?? (240, 249, 33)]
        if let m = rgb(.heatmapMid) { stops.insert(m, at: 1) }
        let n = max(2, steps)
        return (0..<n).map { k in
            let t = Double(k) / Double(n - 1) * Double(stops.count - 1)
            let i = min(stops.count - 2, Int(t))
            let f = t - Double(i)
            let a = stops[i], b = stops[i + 1]
            return XTerm.nearest256(r: Int((a.0 + (b.0 - a.0) * f).rounded()),
                                    g: Int((a.1 + (b.1 - a.1) * f).rounded()),
                                    b: Int((a.2 + (b.2 - a.2) * f).rounded()))
        }
    }
}

/// A matrix (row 0 at the top) drawn as a heatmap, stretched to the area by nearest sampling.
/// NaN cells are blank (for maps filled in progressively). An optional marked (row, col) and a
/// colour bar with min/max under the map.
package struct Heatmap: Widget {
    package var values: [[Double]]
    package var range: ClosedRange<Double>?
    package var marked: (row: Int, col: Int)?
    package var showColorBar: Bool
    package var ramp: HeatRamp?
    /// Cells drawn with a small dot over their colour (e.g. the chosen matches), under `marked`.
    package var points: [(row: Int, col: Int)]

    package init(values: [[Double]], range: ClosedRange<Double>? = nil, marked: (row: Int, col: Int)? = nil,
                showColorBar: Bool = true, ramp: HeatRamp? = nil, points: [(row: Int, col: Int)] = []) {
        self.values = values
        self.range = range
        self.marked = marked
        self.showColorBar = showColorBar
        self.ramp = ramp
        self.points = points
    }

    /// The range between two percentiles of the finite values (e.g. 2% and 98%), so a few extreme values do
    /// not wash the colours of the rest out; values beyond it take the end colours. Nil without finite values.
    package static func percentileRange(_ values: [Double], lower: Double = 0.02, upper: Double = 0.98) -> ClosedRange<Double>? {
        let v = values.filter(\.isFinite).sorted()
        guard !v.isEmpty else { return nil }
        func at(_ q: Double) -> Double {
            let pos = q * Double(v.count - 1)
            let i = Int(pos.rounded(.down)), f = pos - Double(i)
            return i + 1 < v.count ? v[i] * (1 - f) + v[i + 1] * f : v[i]
        }
        let lo = at(lower), hi = at(upper)
        return hi > lo ? lo...hi : v[0]...v[v.count - 1]
    }

    package var rows: Int { values.count }
    package var cols: Int { values.map(\.count).max() ?? 0 }

    package func resolvedRange() -> ClosedRange<Double> {
        if let range { return range }
        let all = values.flatMap { $0 }.filter(\.isFinite)
        guard let lo = all.min(), let hi = all.max() else { return 0...1 }
        return lo...hi
    }

    /// Ramp index of a value (nil for NaN/infinite).
    package func level(_ v: Double, count: Int) -> Int? {
        guard v.isFinite, count > 0 else { return nil }
        let r = resolvedRange()
        let span = r.upperBound - r.lowerBound
        guard span > 0 else { return count / 2 }
        let t = (v - r.lowerBound) / span
        return max(0, min(count - 1, Int(t * Double(count))))
    }

    func value(_ r: Int, _ c: Int) -> Double {
        guard r >= 0, r < values.count, c >= 0, c < values[r].count else { return .nan }
        return values[r][c]
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let ramp = self.ramp ?? HeatRamp.make(context)
        let mapArea = showColorBar && area.height >= 2 ? area.inset(bottom: 1) : area
        guard !mapArea.isEmpty, rows > 0, cols > 0 else { return }
        let W = mapArea.width
        let perCell = { if case .halfBlock = ramp { return 2 } else { return 1 } }()
        let subRows = mapArea.height * perCell
        func dataRow(_ sub: Int) -> Int { sub * rows / subRows }
        func dataCol(_ x: Int) -> Int { x * cols / W }

        for cy in 0..<mapArea.height {
            for cx in 0..<W {
                let x = mapArea.x + cx, y = mapArea.y + cy
                let c = dataCol(cx)
                switch ramp {
                case .halfBlock(let colors):
                    let up = level(value(dataRow(cy * 2), c), count: colors.count)
                    let lo = level(value(dataRow(cy * 2 + 1), c), count: colors.count)
                    switch (up, lo) {
                    case (nil, nil): buffer.set(x, y, Cell(" "))
                    case (let u?, nil): buffer.set(x, y, Cell("▀", style: Style(fg: .indexed(colors[u]))))
                    case (nil, let l?): buffer.set(x, y, Cell("▄", style: Style(fg: .indexed(colors[l]))))
                    case (let u?, let l?):
                        buffer.set(x, y, Cell("▀", style: Style(fg: .indexed(colors[u]), bg: .indexed(colors[l]))))
                    }
                case .background(let colors):
                    if let l = level(value(dataRow(cy), c), count: colors.count) {
                        buffer.set(x, y, Cell(" ", style: Style(bg: .indexed(colors[l]))))
                    } else {
                        buffer.set(x, y, Cell(" "))
                    }
                case .density(let chars):
                    let l = level(value(dataRow(cy), c), count: chars.count)
                    buffer.set(x, y, Cell(l.map { chars[$0] } ?? " "))
                }
            }
        }

        for p in points where p.row >= 0 && p.row < rows && p.col >= 0 && p.col < cols {
            let cx = min(W - 1, Int((Double(p.col) + 0.5) * Double(W) / Double(cols)))
            let sub = min(subRows - 1, Int((Double(p.row) + 0.5) * Double(subRows) / Double(rows)))
            var cell = buffer[mapArea.x + cx, mapArea.y + sub / perCell]
            // On a half block the dot replaces the two colours with the lower one as background.
            if case .halfBlock = ramp { cell.style = Style(fg: .role(.marker), bg: cell.style.bg ?? cell.style.fg, attributes: .bold) }
            else { cell.style = Style(fg: .role(.marker), bg: cell.style.bg, attributes: .bold) }
            cell.symbol = context.glyphs.unicode ? "•" : "o"
            buffer.set(mapArea.x + cx, mapArea.y + sub / perCell, cell)
        }

        if let m = marked, m.row >= 0, m.row < rows, m.col >= 0, m.col < cols {
            let cx = min(W - 1, Int((Double(m.col) + 0.5) * Double(W) / Double(cols)))
            let sub = min(subRows - 1, Int((Double(m.row) + 0.5) * Double(subRows) / Double(rows)))
            let cy = sub / perCell
            var cell = buffer[mapArea.x + cx, mapArea.y + cy]
            cell.symbol = context.glyphs.marker
            cell.style = Style(fg: .role(.marker), bg: cell.style.bg, attributes: .bold)
            buffer.set(mapArea.x + cx, mapArea.y + cy, cell)
        }

        if showColorBar && area.height >= 2 {
            let r = resolvedRange()
            let row = area.row(area.height - 1)
            let lo = formatNumber(r.lowerBound), hi = formatNumber(r.upperBound)
            var x = buffer.write(lo + " ", x: row.x, y: row.y, style: Style(fg: .role(.muted)), clip: row)
            let room = row.maxX - x - TextWidth.of(hi) - 1
            let n = min(ramp.count, max(0, room))
            guard n > 0 else { return }
            for k in 0..<n {
                let idx = n == 1 ? 0 : k * (ramp.count - 1) / (n - 1)
                switch ramp {
                case .halfBlock(let c), .background(let c): buffer.set(x + k, row.y, Cell(" ", style: Style(bg: .indexed(c[idx]))))
                case .density(let d): buffer.set(x + k, row.y, Cell(d[idx]))
                }
            }
            x += n
            buffer.write(" " + hi, x: x, y: row.y, style: Style(fg: .role(.muted)), clip: row)
        }
    }
}
