import Foundation

/// One line of a plot.
package struct PlotSeries: Sendable {
    package var name: String
    package var points: [(x: Double, y: Double)]
    package var style: Style
    /// Character used in ASCII mode.
    package var asciiMarker: String
    /// Drawn over the line at the series' points (where they are at least three columns apart) and in the
    /// legend: tells series apart without colour.
    package var pointGlyph: String?

    package init(name: String, points: [(x: Double, y: Double)], style: Style, asciiMarker: String = "*") {
        self.name = name
        self.points = points
        self.style = style
        self.asciiMarker = asciiMarker
    }

    /// Series `i` of a plot gets the theme's `series1...series4` role and markers * + o x.
    package init(name: String, points: [(x: Double, y: Double)], index: Int) {
        let markers = ["*", "+", "o", "x"]
        self.init(name: name, points: points, style: Style(fg: .role(Role.series[index % 4])),
                  asciiMarker: markers[index % 4])
    }

    /// Equally spaced samples over [0, 1] (e.g. losses along an interpolation path).
    package init(name: String, values: [Double], index: Int) {
        let n = values.count
        let pts = values.enumerated().map { (x: n > 1 ? Double($0.offset) / Double(n - 1) : 0, y: $0.element) }
        self.init(name: name, points: pts, index: index)
    }
}

/// A highlighted point (e.g. the barrier: the maximum along the path).
package struct PlotMarker: Sendable {
    package var x: Double
    package var y: Double
    package var label: String
    package var style: Style
    package init(x: Double, y: Double, label: String, style: Style = Style(fg: .role(.barrier), attributes: .bold)) {
        self.x = x
        self.y = y
        self.label = label
        self.style = style
    }
}

/// A line plot drawn with braille dots (2x4 per cell), axis labels in the margin, an optional
/// vertical cursor, a marker and a legend. ASCII mode draws each series' marker character.
///
/// Layout inside the area: legend row (if any series is named), plot rows, axis row, x-label row.
package struct BraillePlot: Widget {
    package var series: [PlotSeries]
    package var xRange: ClosedRange<Double>?
    package var yRange: ClosedRange<Double>?
    /// Fraction of the y span added above and below when auto-ranging.
    package var yPadding: Double
    package var cursorX: Double?
    package var marker: PlotMarker?
    package var showLegend: Bool

    package init(series: [PlotSeries], xRange: ClosedRange<Double>? = nil, yRange: ClosedRange<Double>? = nil,
                yPadding: Double = 0.05, cursorX: Double? = nil, marker: PlotMarker? = nil, showLegend: Bool = true) {
        self.series = series
        self.xRange = xRange
        self.yRange = yRange
        self.yPadding = yPadding
        self.cursorX = cursorX
        self.marker = marker
        self.showLegend = showLegend
    }

    /// The x range: given, or the data's extent (or [0, 1] with no data).
    package func resolvedXRange() -> ClosedRange<Double> {
        if let xRange { return xRange }
        let xs = series.flatMap { $0.points.map(\.x) }.filter(\.isFinite)
        guard let lo = xs.min(), let hi = xs.max(), hi > lo else { return 0...1 }
        return lo...hi
    }

    /// The y range: given, or the data's extent padded by `yPadding` (a flat line gets ±0.5 or ±10%).
    package func resolvedYRange() -> ClosedRange<Double> {
        if let yRange { return yRange }
        var ys = series.flatMap { $0.points.map(\.y) }
        if let m = marker { ys.append(m.y) }
        ys = ys.filter(\.isFinite)
        guard let lo = ys.min(), let hi = ys.max() else { return 0...1 }
        if hi == lo {
            let d = lo == 0 ? 0.5 : abs(lo) * 0.1
            return (lo - d)...(hi + d)
        }
        let pad = (hi - lo) * yPadding
        return (lo - pad)...(hi + pad)
    }

    package struct Geometry: Sendable {
        package var legend: Rect?
        package var plot: Rect
        package var axisRow: Int
        package var labelRow: Int
        package var axisX: Int
    }

    package func geometry(area: Rect) -> Geometry {
        let yr = resolvedYRange()
        let hasLegend = showLegend && (series.contains { !$0.name.isEmpty } || marker != nil)
        let top = area.y + (hasLegend ? 1 : 0)
        let labelW = [yr.upperBound, yr.lowerBound, (yr.lowerBound + yr.upperBound) / 2]
            .map { TextWidth.of(formatNumber($0)) }.max() ?? 1
        let plotH = area.maxY - 2 - top
        let axisX = area.x + labelW
        let plot = Rect(x: axisX + 1, y: top, width: area.maxX - axisX - 1, height: plotH)
        return Geometry(legend: hasLegend ? area.row(0) : nil, plot: plot, axisRow: top + max(0, plotH),
                        labelRow: top + max(0, plotH) + 1, axisX: axisX)
    }

    /// Braille bit for a dot at (dx 0-1, dy 0-3) within a cell.
    static func bit(_ dx: Int, _ dy: Int) -> UInt8 {
        let table: [[UInt8]] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]]
        return table[dx][dy]
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let g = geometry(area: area)
        guard g.plot.width >= 2, g.plot.height >= 1 else {
            buffer.write("plot: too small", in: area.row(0), style: Style(fg: .role(.muted)))
            return
        }
        let glyphs = context.glyphs
        let xr = resolvedXRange(), yr = resolvedYRange()
        let plot = g.plot
        let dotsW = plot.width * 2, dotsH = plot.height * 4
        func dx(_ x: Double) -> Int {
            let span = xr.upperBound - xr.lowerBound
            return Int(((x - xr.lowerBound) / (span == 0 ? 1 : span) * Double(dotsW - 1)).rounded())
        }
        func dy(_ y: Double) -> Int {
            let span = yr.upperBound - yr.lowerBound
            return Int(((yr.upperBound - y) / (span == 0 ? 1 : span) * Double(dotsH - 1)).rounded())
        }

        // Rasterise: per cell, braille bits and the index of the last series drawn there.
        var bits = [UInt8](repeating: 0, count: plot.width * plot.height)
        var owner = [Int](repeating: -1, count: plot.width * plot.height)
        func dot(_ x: Int, _ y: Int, _ s: Int) {
            guard x >= 0, y >= 0, x < dotsW, y < dotsH else { return }
            let i = (y / 4) * plot.width + x / 2
            bits[i] |= BraillePlot.bit(x % 2, y % 4)
            owner[i] = s
        }
        for (si, s) in series.enumerated() {
            var prev: (Int, Int)?
            for p in s.points {
                guard p.x.isFinite, p.y.isFinite else { prev = nil; continue }
                let cur = (dx(p.x), dy(p.y))
                if let (x0, y0) = prev {
                    // Bresenham from prev to cur.
                    var x = x0, y = y0
                    let ddx = abs(cur.0 - x0), ddy = -abs(cur.1 - y0)
                    let sx = x0 < cur.0 ? 1 : -1, sy = y0 < cur.1 ? 1 : -1
                    var err = ddx + ddy
                    while true {
                        dot(x, y, si)
                        if x == cur.0 && y == cur.1 { break }
                        let e2 = 2 * err
                        if e2 >= ddy { err += ddy; x += sx }
                        if e2 <= ddx { err += ddx; y += sy }
                    }
                } else {
                    dot(cur.0, cur.1, si)
                }
                prev = cur
            }
        }

        // Cursor column (drawn under the data).
        var cursorCol: Int?
        if let cx = cursorX, cx.isFinite, cx >= xr.lowerBound, cx <= xr.upperBound {
            cursorCol = dx(cx) / 2
        }
        for row in 0..<plot.height {
            for col in 0..<plot.width {
                let i = row * plot.width + col
                let x = plot.x + col, y = plot.y + row
                if bits[i] != 0 {
                    let s = series[owner[i]]
                    let sym = glyphs.unicode ? String(Character(Unicode.Scalar(0x2800 + UInt32(bits[i]))!)) : s.asciiMarker
                    var style = s.style
                    if col == cursorCol { style = style.patched(Style(attributes: .underline)) }
                    buffer.set(x, y, Cell(sym, style: style))
                } else if col == cursorCol {
                    buffer.set(x, y, Cell(glyphs.vertical, style: Style(fg: .role(.cursor))))
                }
            }
        }

        // Point glyphs over the lines: at most one every three columns per series.
        for s in series {
            guard let g = s.pointGlyph else { continue }
            var lastCol = -10
            for p in s.points where p.x.isFinite && p.y.isFinite {
                let col = dx(p.x) / 2, row = dy(p.y) / 4
                guard col >= 0, col < plot.width, row >= 0, row < plot.height, col - lastCol >= 3 else { continue }
                lastCol = col
                buffer.set(plot.x + col, plot.y + row, Cell(g, style: s.style))
            }
        }

        // Marker on top.
        if let m = marker, m.x.isFinite, m.y.isFinite {
            let mx = dx(m.x) / 2, my = dy(m.y) / 4
            if mx >= 0, mx < plot.width, my >= 0, my < plot.height {
                buffer.set(plot.x + mx, plot.y + my, Cell(glyphs.marker, style: m.style))
            }
        }

        // Y axis: labels at top, middle and bottom rows.
        let axisStyle = Style(fg: .role(.border))
        let labelStyle = Style(fg: .role(.muted))
        let labelW = g.axisX - area.x
        // Middle tick: the round midpoint value, at the row containing it.
        var labelled: [Int: Double] = [0: yr.upperBound, plot.height - 1: yr.lowerBound]
        let midY = (yr.upperBound + yr.lowerBound) / 2
        let midRow = dy(midY) / 4
        if plot.height >= 5, midRow > 0, midRow < plot.height - 1 { labelled[midRow] = midY }
        for row in 0..<plot.height {
            let y = plot.y + row
            if let v = labelled[row] {
                buffer.write(TextWidth.padLeft(formatNumber(v), to: labelW), x: area.x, y: y, style: labelStyle)
                buffer.set(g.axisX, y, Cell(glyphs.teeLeft, style: axisStyle))
            } else {
                buffer.set(g.axisX, y, Cell(glyphs.vertical, style: axisStyle))
            }
        }

        // X axis and labels at left, middle and right.
        if g.axisRow < area.maxY {
            buffer.set(g.axisX, g.axisRow, Cell(glyphs.bottomLeft, style: axisStyle))
            for col in 0..<plot.width {
                buffer.set(plot.x + col, g.axisRow, Cell(glyphs.horizontal, style: axisStyle))
            }
            let midX = (xr.lowerBound + xr.upperBound) / 2
            let ticks = [0, dx(midX) / 2, plot.width - 1]
            for t in ticks { buffer.set(plot.x + t, g.axisRow, Cell(glyphs.teeDown, style: axisStyle)) }
            if let c = cursorCol { buffer.set(plot.x + c, g.axisRow, Cell(glyphs.teeDown, style: Style(fg: .role(.cursor)))) }
        }
        if g.labelRow < area.maxY {
            let row = Rect(x: area.x, y: g.labelRow, width: area.width, height: 1)
            let lo = formatNumber(xr.lowerBound), hi = formatNumber(xr.upperBound)
            let midV = formatNumber((xr.lowerBound + xr.upperBound) / 2)
            var end = buffer.write(lo, x: plot.x, y: row.y, style: labelStyle, clip: row)
            let mw = TextWidth.of(midV)
            let mx = plot.x + dx((xr.lowerBound + xr.upperBound) / 2) / 2 - mw / 2
            if mx > end, mx + mw < plot.maxX - TextWidth.of(hi) {
                end = buffer.write(midV, x: mx, y: row.y, style: labelStyle, clip: row)
            }
            let hx = plot.maxX - TextWidth.of(hi)
            if hx > end { buffer.write(hi, x: hx, y: row.y, style: labelStyle, clip: row) }
        }

        // Legend: the marker first (its number matters most), then the named series while they fit, with an
        // ellipsis for the ones left out.
        if let legend = g.legend {
            var x = plot.x
            if let m = marker {
                x = buffer.write(glyphs.marker + " ", x: x, y: legend.y, style: m.style, clip: legend)
                x = buffer.write(m.label, x: x, y: legend.y, style: Style(fg: .role(.foreground)), clip: legend) + 2
            }
            let named = series.filter { !$0.name.isEmpty }
            for (i, s) in named.enumerated() {
                let sym = s.pointGlyph ?? (glyphs.unicode ? glyphs.legendLine : s.asciiMarker)
                let need = TextWidth.of(sym) + 1 + TextWidth.of(s.name)
                let room = legend.maxX - x - (i < named.count - 1 ? 2 : 0)
                if need > room {
                    if x < legend.maxX { buffer.write(glyphs.ellipsis, x: x, y: legend.y, style: Style(fg: .role(.muted)), clip: legend) }
                    break
                }
                x = buffer.write(sym + " ", x: x, y: legend.y, style: s.style, clip: legend)
                x = buffer.write(s.name, x: x, y: legend.y, style: Style(fg: .role(.foreground)), clip: legend) + 2
            }
        }
    }
}
