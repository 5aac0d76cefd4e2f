import BasinUI
import Foundation

/// A labelled point of a figure (a model, a bend, a knot of a chain).
package struct FigureAnchor: Sendable, Equatable, Codable {
    package var x: Double
    package var y: Double
    package var label: String
    package init(x: Double, y: Double, label: String) {
        self.x = x
        self.y = y
        self.label = label
    }
}

/// One line of a line figure.
package struct FigureSeries: Sendable, Equatable {
    package var name: String
    package var points: [FigureAnchor]
    package init(name: String, points: [(x: Double, y: Double)]) {
        self.name = name
        self.points = points.map { FigureAnchor(x: $0.x, y: $0.y, label: "") }
    }
}

/// The plot of an analysis command (`basin landscape`, `barriers`, `simplex`, `fit`), drawn two ways from the
/// same data and the same colour range: as text for the terminal (BasinUI's widgets into a cell buffer) and as
/// SVG for slides and papers. Hand-written SVG: the format is a few elements here, and no maintained Swift
/// plotting library writes SVG on Linux.
package struct Figure: Sendable {
    package enum Body: Sendable {
        /// A grid over a rectangle (row 0 at the top, largest y), with labelled anchors and a path drawn over it.
        case heatmap(values: [[Double]], x: ClosedRange<Double>, y: ClosedRange<Double>, anchors: [FigureAnchor], path: [FigureAnchor])
        /// `SoupSimplex`'s grid: row r holds the third corner's share (n - r) / n, column c the second's c / n.
        case triangle(values: [[Double]], corners: [String])
        /// A symmetric matrix between labelled items (NaN on the diagonal).
        case matrix(values: [[Double]], labels: [String])
        /// Lines over x, with labelled vertical marks (e.g. the models along a chain).
        case lines(series: [FigureSeries], marks: [FigureAnchor])
    }

    package var title: String
    /// What the colours (or the y axis of a line figure) show, e.g. "test loss".
    package var valueLabel: String
    package var xLabel: String
    package var yLabel: String
    package var body: Body

    package init(title: String, valueLabel: String, xLabel: String = "", yLabel: String = "", body: Body) {
        self.title = title
        self.valueLabel = valueLabel
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.body = body
    }

    /// The values the colours span. Landscapes and triangles clip at the 98th percentile (the loss far from
    /// the models explodes and would wash the basin out); the barrier matrix spans its values.
    package var colorRange: ClosedRange<Double> {
        switch body {
        case let .heatmap(values, _, _, _, _), let .triangle(values, _):
            return Heatmap.percentileRange(values.flatMap { $0 }, lower: 0, upper: 0.98) ?? 0...1
        case let .matrix(values, _):
            let v = values.flatMap { $0 }.filter(\.isFinite)
            guard let lo = v.min(), let hi = v.max() else { return 0...1 }
            return min(0, lo)...max(hi, min(0, lo) + 1e-12)
        case .lines(let series, _):
            let v = series.flatMap { $0.points.map(\.y) }.filter(\.isFinite)
            guard let lo = v.min(), let hi = v.max() else { return 0...1 }
            return lo...max(hi, lo + 1e-12)
        }
    }

    // MARK: Text

    /// The figure as text for a terminal `width` columns wide: density characters (no colour, so it survives
    /// pipes and logs) or braille lines, the anchors' labels, and the colour bar or legend.
    package func text(width: Int = 72, height: Int = 22, unicode: Bool = false) -> String {
        let context = RenderContext(theme: .dark, capability: .none, glyphs: .forUnicode(unicode))
        var lines = [title]
        switch body {
        case let .heatmap(values, xr, yr, anchors, path):
            var buffer = CellBuffer(width: width, height: height)
            let area = Rect(x: 0, y: 0, width: width, height: height)
            Heatmap(values: values, range: colorRange, showColorBar: true).render(into: &buffer, area: area, context: context)
            let cells = area.inset(bottom: 1)
            func cell(_ x: Double, _ y: Double) -> Point? {
                let fx = (x - xr.lowerBound) / (xr.upperBound - xr.lowerBound)
                let fy = (yr.upperBound - y) / (yr.upperBound - yr.lowerBound)
                guard fx.isFinite, fy.isFinite, fx >= 0, fx <= 1, fy >= 0, fy <= 1 else { return nil }
                return Point(x: min(cells.width - 1, Int(fx * Double(cells.width - 1) + 0.5)),
                             y: min(cells.height - 1, Int(fy * Double(cells.height - 1) + 0.5)))
            }
            for p in path { if let c = cell(p.x, p.y) { buffer.put(c.x, c.y, "o") } }
            for a in anchors { if let c = cell(a.x, a.y) { _ = buffer.write(a.label, x: c.x, y: c.y, clip: cells) } }
            lines.append(buffer.text())
            lines.append("\(valueLabel) (density characters low to high: \"\(HeatRamp.densityChars.joined())\"); "
                         + "x \(formatNumber(xr.lowerBound))...\(formatNumber(xr.upperBound)), y \(formatNumber(yr.lowerBound))...\(formatNumber(yr.upperBound))"
                         + (path.isEmpty ? "" : "; o: the path"))
        case let .triangle(values, corners):
            let n = values.count
            var buffer = CellBuffer(width: min(width, 2 * n + 2), height: n + 1)
            let area = Rect(x: 0, y: 0, width: buffer.width, height: buffer.height)
            Heatmap(values: values.map { row in row.flatMap { [$0, $0] } }, range: colorRange, showColorBar: false)
                .render(into: &buffer, area: area.inset(bottom: 1), context: context)
            lines.append(buffer.text())
            lines.append("top: \(corners[2]) alone; bottom left: \(corners[0]); bottom right: \(corners[1]); "
                         + "\(valueLabel) from \(formatNumber(colorRange.lowerBound)) (\" \") to \(formatNumber(colorRange.upperBound)) (\"@\")")
        case let .matrix(values, labels):
            let w = max(8, labels.map { TextWidth.of($0) }.max() ?? 0) + 1
            func pad(_ s: String) -> String { String(repeating: " ", count: max(0, w - TextWidth.of(s))) + s }
            lines.append(pad("") + labels.map(pad).joined())
            for (i, row) in values.enumerated() {
                lines.append(pad(labels[i]) + row.map { $0.isFinite ? pad(String(format: "%.4f", $0)) : pad("–") }.joined())
            }
            lines.append(valueLabel)
        case let .lines(series, marks):
            var buffer = CellBuffer(width: width, height: height)
            let plotSeries = series.enumerated().map { i, s in PlotSeries(name: s.name, points: s.points.map { (x: $0.x, y: $0.y) }, index: i) }
            let plot = BraillePlot(series: plotSeries)
            plot.render(into: &buffer, area: Rect(x: 0, y: 0, width: width, height: height), context: context)
            lines.append(buffer.text())
            if !marks.isEmpty {
                lines.append(xLabel + "; " + marks.map { "\($0.label) at \(formatNumber($0.x))" }.joined(separator: ", "))
            }
        }
        return lines.joined(separator: "\n")
    }

    // MARK: SVG

    /// The figure as a standalone SVG document (viridis colours, axes, labels, a colour bar or legend).
    package func svg() -> String {
        var s = SVGCanvas(width: 640, height: 520)
        s.text(title, x: 320, y: 24, size: 15, anchor: "middle", weight: "bold")
        let range = colorRange
        switch body {
        case let .heatmap(values, xr, yr, anchors, path):
            let plot = (x: 70.0, y: 44.0, w: 440.0, h: 400.0)
            let rows = values.count, cols = values.map(\.count).max() ?? 0
            let cw = plot.w / Double(max(cols, 1)), ch = plot.h / Double(max(rows, 1))
            for (r, row) in values.enumerated() {
                for (c, v) in row.enumerated() {
                    s.rect(x: plot.x + Double(c) * cw, y: plot.y + Double(r) * ch, w: cw + 0.5, h: ch + 0.5, fill: SVGCanvas.color(v, range))
                }
            }
            func px(_ x: Double) -> Double { plot.x + (x - xr.lowerBound) / (xr.upperBound - xr.lowerBound) * plot.w }
            func py(_ y: Double) -> Double { plot.y + (yr.upperBound - y) / (yr.upperBound - yr.lowerBound) * plot.h }
            if path.count >= 2 {
                s.polyline(path.map { (px($0.x), py($0.y)) }, stroke: "#ffffff", width: 2, dash: "5,3")
            }
            for a in anchors {
                s.circle(x: px(a.x), y: py(a.y), r: 5, fill: "#ffffff", stroke: "#000000")
                s.text(a.label, x: px(a.x) + 8, y: py(a.y) - 8, size: 13, fill: "#ffffff", weight: "bold", stroke: "#000000")
            }
            s.frame(x: plot.x, y: plot.y, w: plot.w, h: plot.h)
            s.axisTicks(xRange: xr, yRange: yr, x: plot.x, y: plot.y, w: plot.w, h: plot.h)
            s.text(xLabel, x: plot.x + plot.w / 2, y: plot.y + plot.h + 40, size: 12, anchor: "middle")
            s.text(yLabel, x: 18, y: plot.y + plot.h / 2, size: 12, anchor: "middle", rotate: true)
            s.colorBar(range: range, x: 560, y: plot.y, h: plot.h, label: valueLabel)
        case let .triangle(values, corners):
            let n = values.count - 1
            // Corners: the first model bottom left, the second bottom right, the third at the top.
            let c0 = (x: 60.0, y: 460.0), c1 = (x: 500.0, y: 460.0), c2 = (x: 280.0, y: 460.0 - 440 * 3.0.squareRoot() / 2)
            func point(_ a: Double, _ b: Double, _ c: Double) -> (Double, Double) {
                (a * c0.x + b * c1.x + c * c2.x, a * c0.y + b * c1.y + c * c2.y)
            }
            func value(_ i: Int, _ j: Int) -> Double {
                // Lattice point with shares (i, j) of the second and third models, in SoupSimplex's grid.
                let r = n - j, c = i
                return r >= 0 && r <= n && c <= n ? values[r][c] : .nan
            }
            func lattice(_ i: Int, _ j: Int) -> (Double, Double) {
                point(Double(n - i - j) / Double(n), Double(i) / Double(n), Double(j) / Double(n))
            }
            for j in 0..<n {
                for i in 0..<(n - j) {
                    let up = [value(i, j), value(i + 1, j), value(i, j + 1)].filter(\.isFinite)
                    s.polygon([lattice(i, j), lattice(i + 1, j), lattice(i, j + 1)],
                              fill: up.isEmpty ? "none" : SVGCanvas.color(up.reduce(0, +) / Double(up.count), range))
                    if i + j + 2 <= n {
                        let down = [value(i + 1, j), value(i, j + 1), value(i + 1, j + 1)].filter(\.isFinite)
                        s.polygon([lattice(i + 1, j), lattice(i, j + 1), lattice(i + 1, j + 1)],
                                  fill: down.isEmpty ? "none" : SVGCanvas.color(down.reduce(0, +) / Double(down.count), range))
                    }
                }
            }
            s.polygon([(c0.x, c0.y), (c1.x, c1.y), (c2.x, c2.y)], fill: "none", stroke: "#000000")
            s.text(corners[0], x: c0.x, y: c0.y + 22, size: 13, anchor: "middle")
            s.text(corners[1], x: c1.x, y: c1.y + 22, size: 13, anchor: "middle")
            s.text(corners[2], x: c2.x, y: c2.y - 10, size: 13, anchor: "middle")
            s.colorBar(range: range, x: 560, y: 60, h: 380, label: valueLabel)
        case let .matrix(values, labels):
            let k = values.count
            let side = min(420.0, 60.0 * Double(k)), cell = side / Double(max(k, 1))
            let x0 = 140.0, y0 = 90.0
            for (r, row) in values.enumerated() {
                for (c, v) in row.enumerated() {
                    s.rect(x: x0 + Double(c) * cell, y: y0 + Double(r) * cell, w: cell, h: cell,
                           fill: v.isFinite ? SVGCanvas.color(v, range) : "#dddddd", stroke: "#ffffff")
                    if v.isFinite {
                        s.text(String(format: "%.3f", v), x: x0 + (Double(c) + 0.5) * cell, y: y0 + (Double(r) + 0.5) * cell + 4,
                               size: min(12, cell / 4.5), anchor: "middle", fill: SVGCanvas.textColor(v, range))
                    }
                }
            }
            for (i, l) in labels.enumerated() {
                s.text(l, x: x0 - 6, y: y0 + (Double(i) + 0.5) * cell + 4, size: 11, anchor: "end")
                s.text(l, x: x0 + (Double(i) + 0.5) * cell, y: y0 - 8, size: 11, anchor: "middle")
            }
            s.colorBar(range: range, x: 580, y: y0, h: side, label: valueLabel)
        case let .lines(series, marks):
            let plot = (x: 80.0, y: 60.0, w: 520.0, h: 380.0)
            let xs = series.flatMap { $0.points.map(\.x) }.filter(\.isFinite)
            let xr = (xs.min() ?? 0)...max(xs.max() ?? 1, (xs.min() ?? 0) + 1e-12)
            let pad = (range.upperBound - range.lowerBound) * 0.05
            let yr = (range.lowerBound - pad)...(range.upperBound + pad)
            func px(_ x: Double) -> Double { plot.x + (x - xr.lowerBound) / (xr.upperBound - xr.lowerBound) * plot.w }
            func py(_ y: Double) -> Double { plot.y + (yr.upperBound - y) / (yr.upperBound - yr.lowerBound) * plot.h }
            for m in marks {
                s.polyline([(px(m.x), plot.y), (px(m.x), plot.y + plot.h)], stroke: "#bbbbbb", width: 1, dash: "3,3")
                s.text(m.label, x: px(m.x), y: plot.y - 6, size: 11, anchor: "middle")
            }
            let palette = SVGCanvas.seriesColors
            for (i, ser) in series.enumerated() {
                let pts = ser.points.filter { $0.y.isFinite }.map { (px($0.x), py($0.y)) }
                s.polyline(pts, stroke: palette[i % palette.count], width: 2, dash: i % 2 == 1 ? "6,3" : nil)
                s.polyline([(plot.x + 10, plot.y + plot.h + 50 + Double(i) * 16), (plot.x + 40, plot.y + plot.h + 50 + Double(i) * 16)],
                           stroke: palette[i % palette.count], width: 2, dash: i % 2 == 1 ? "6,3" : nil)
                s.text(ser.name, x: plot.x + 48, y: plot.y + plot.h + 54 + Double(i) * 16, size: 12)
            }
            s.frame(x: plot.x, y: plot.y, w: plot.w, h: plot.h)
            s.axisTicks(xRange: xr, yRange: yr, x: plot.x, y: plot.y, w: plot.w, h: plot.h)
            s.text(xLabel, x: plot.x + plot.w / 2, y: plot.y + plot.h + 34, size: 12, anchor: "middle")
            s.text(valueLabel, x: 20, y: plot.y + plot.h / 2, size: 12, anchor: "middle", rotate: true)
            s.height = max(s.height, Int(plot.y + plot.h + 60 + Double(series.count) * 16))
        }
        return s.document()
    }
}

/// A few SVG elements, written as text.
struct SVGCanvas {
    var width: Int
    var height: Int
    var elements: [String] = []

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    static let seriesColors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]

    /// Viridis, sampled at nine stops (matplotlib's values), interpolated linearly.
    static let viridis: [(Double, Double, Double)] = [
        (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
        (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
    ]

    static func fraction(_ v: Double, _ r: ClosedRange<Double>) -> Double {
        let span = r.upperBound - r.lowerBound
        return span > 0 ? max(0, min(1, (v - r.lowerBound) / span)) : 0.5
    }

    static func color(_ v: Double, _ r: ClosedRange<Double>) -> String {
        guard v.isFinite else { return "none" }
        return rampColor(fraction(v, r))
    }

    static func rampColor(_ t: Double) -> String {
        let pos = t * Double(viridis.count - 1)
        let i = min(viridis.count - 2, Int(pos)), f = pos - Double(i)
        let a = viridis[i], b = viridis[i + 1]
        return String(format: "#%02x%02x%02x", Int((a.0 + (b.0 - a.0) * f).rounded()), Int((a.1 + (b.1 - a.1) * f).rounded()),
                      Int((a.2 + (b.2 - a.2) * f).rounded()))
    }

    static func textColor(_ v: Double, _ r: ClosedRange<Double>) -> String { fraction(v, r) > 0.6 ? "#000000" : "#ffffff" }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func n(_ v: Double) -> String { String(format: "%.2f", v) }

    mutating func rect(x: Double, y: Double, w: Double, h: Double, fill: String, stroke: String? = nil) {
        elements.append("<rect x=\"\(Self.n(x))\" y=\"\(Self.n(y))\" width=\"\(Self.n(w))\" height=\"\(Self.n(h))\" fill=\"\(fill)\""
                        + (stroke.map { " stroke=\"\($0)\"" } ?? "") + "/>")
    }

    mutating func circle(x: Double, y: Double, r: Double, fill: String, stroke: String) {
        elements.append("<circle cx=\"\(Self.n(x))\" cy=\"\(Self.n(y))\" r=\"\(Self.n(r))\" fill=\"\(fill)\" stroke=\"\(stroke)\"/>")
    }

    mutating func polygon(_ points: [(Double, Double)], fill: String, stroke: String? = nil) {
        let p = points.map { "\(Self.n($0.0)),\(Self.n($0.1))" }.joined(separator: " ")
        elements.append("<polygon points=\"\(p)\" fill=\"\(fill)\"" + (stroke.map { " stroke=\"\($0)\"" } ?? " stroke=\"\(fill)\" stroke-width=\"0.5\"") + "/>")
    }

    mutating func polyline(_ points: [(Double, Double)], stroke: String, width: Double, dash: String? = nil) {
        guard points.count >= 2 else { return }
        let p = points.map { "\(Self.n($0.0)),\(Self.n($0.1))" }.joined(separator: " ")
        elements.append("<polyline points=\"\(p)\" fill=\"none\" stroke=\"\(stroke)\" stroke-width=\"\(Self.n(width))\""
                        + (dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + "/>")
    }

    mutating func text(_ t: String, x: Double, y: Double, size: Double, anchor: String = "start", fill: String = "#000000",
                       weight: String? = nil, stroke: String? = nil, rotate: Bool = false) {
        guard !t.isEmpty else { return }
        var a = "x=\"\(Self.n(x))\" y=\"\(Self.n(y))\" font-size=\"\(Self.n(size))\" text-anchor=\"\(anchor)\" fill=\"\(fill)\""
        if let weight { a += " font-weight=\"\(weight)\"" }
        if let stroke { a += " stroke=\"\(stroke)\" stroke-width=\"0.4\" paint-order=\"stroke\"" }
        if rotate { a += " transform=\"rotate(-90 \(Self.n(x)) \(Self.n(y)))\"" }
        elements.append("<text \(a)>\(Self.escape(t))</text>")
    }

    mutating func frame(x: Double, y: Double, w: Double, h: Double) {
        elements.append("<rect x=\"\(Self.n(x))\" y=\"\(Self.n(y))\" width=\"\(Self.n(w))\" height=\"\(Self.n(h))\" fill=\"none\" stroke=\"#000000\"/>")
    }

    mutating func axisTicks(xRange: ClosedRange<Double>, yRange: ClosedRange<Double>, x: Double, y: Double, w: Double, h: Double) {
        for k in 0...4 {
            let f = Double(k) / 4
            let xv = xRange.lowerBound + f * (xRange.upperBound - xRange.lowerBound)
            text(formatNumber(xv), x: x + f * w, y: y + h + 16, size: 11, anchor: "middle")
            let yv = yRange.upperBound - f * (yRange.upperBound - yRange.lowerBound)
            text(formatNumber(yv), x: x - 6, y: y + f * h + 4, size: 11, anchor: "end")
        }
    }

    mutating func colorBar(range: ClosedRange<Double>, x: Double, y: Double, h: Double, label: String) {
        let steps = 48
        for k in 0..<steps {
            let t = 1 - Double(k) / Double(steps - 1)
            rect(x: x, y: y + Double(k) * h / Double(steps), w: 18, h: h / Double(steps) + 0.5, fill: Self.rampColor(t))
        }
        frame(x: x, y: y, w: 18, h: h)
        text(formatNumber(range.upperBound), x: x + 22, y: y + 10, size: 11)
        text(formatNumber(range.lowerBound), x: x + 22, y: y + h, size: 11)
        text(label, x: x + 9, y: y + h + 18, size: 11, anchor: "middle")
    }

    func document() -> String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            + "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" font-family=\"sans-serif\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
            + elements.joined(separator: "\n") + "\n</svg>\n"
    }
}
