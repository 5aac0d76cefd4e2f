/// One terminal cell. `symbol` is one grapheme; the cell right of a wide grapheme holds the
/// empty string (a continuation) and is skipped by backends and `text()`.
package struct Cell: Hashable, Sendable {
    package var symbol: String
    package var style: Style
    package init(_ symbol: String = " ", style: Style = .plain) {
        self.symbol = symbol
        self.style = style
    }
    package static let blank = Cell()
    package var isContinuation: Bool { symbol.isEmpty }
}

/// A change produced by `CellBuffer.diff`: the cell now at (x, y).
package struct CellChange: Hashable, Sendable {
    package var x: Int
    package var y: Int
    package var cell: Cell
}

/// A width x height grid of cells that widgets render into and backends draw.
package struct CellBuffer: Hashable, Sendable {
    package private(set) var width: Int
    package private(set) var height: Int
    package private(set) var cells: [Cell]

    package init(width: Int, height: Int, fill: Cell = .blank) {
        self.width = max(0, width)
        self.height = max(0, height)
        self.cells = Array(repeating: fill, count: self.width * self.height)
    }
    package init(size: Size) { self.init(width: size.width, height: size.height) }

    package var area: Rect { Rect(x: 0, y: 0, width: width, height: height) }
    package var size: Size { Size(width: width, height: height) }

    package subscript(x: Int, y: Int) -> Cell {
        get {
            guard x >= 0, y >= 0, x < width, y < height else { return .blank }
            return cells[y * width + x]
        }
        set { set(x, y, newValue) }
    }

    /// Sets one cell (ignored outside the buffer).
    package mutating func set(_ x: Int, _ y: Int, _ cell: Cell) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        cells[y * width + x] = cell
    }

    /// Sets a cell's symbol, keeping the style unless one is given (then patched on top).
    package mutating func put(_ x: Int, _ y: Int, _ symbol: String, style: Style? = nil) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        var c = cells[y * width + x]
        c.symbol = symbol
        if let style { c.style = c.style.patched(style) }
        cells[y * width + x] = c
    }

    /// Patches the style of every cell in `rect` (symbols kept).
    package mutating func setStyle(_ style: Style, in rect: Rect) {
        let r = rect.intersection(area)
        guard !r.isEmpty else { return }
        for y in r.minY..<r.maxY {
            for x in r.minX..<r.maxX { cells[y * width + x].style = cells[y * width + x].style.patched(style) }
        }
    }

    package mutating func fill(_ rect: Rect, with cell: Cell = .blank) {
        let r = rect.intersection(area)
        guard !r.isEmpty else { return }
        for y in r.minY..<r.maxY {
            for x in r.minX..<r.maxX { cells[y * width + x] = cell }
        }
    }

    package mutating func clear() { fill(area) }

    /// Writes `text` starting at (x, y), clipped to `clip` (default: whole buffer) and never
    /// wrapping. Styles are patched onto existing cells. Returns the column after the last
    /// written grapheme.
    @discardableResult
    package mutating func write(_ text: String, x: Int, y: Int, style: Style = .plain, clip: Rect? = nil) -> Int {
        let c = (clip ?? area).intersection(area)
        guard y >= c.minY, y < c.maxY else { return x }
        var col = x
        for ch in text {
            if ch == "\n" { break }
            let w = TextWidth.of(ch)
            if w == 0 { continue }
            if col + w > c.maxX { break }
            if col >= c.minX {
                put(col, y, String(ch), style: style)
                if w == 2 { put(col + 1, y, "", style: style) }
            }
            col += w
        }
        return col
    }

    /// Writes `text` into the first row of `rect`, truncated to fit.
    @discardableResult
    package mutating func write(_ text: String, in rect: Rect, style: Style = .plain, alignment: Alignment = .left) -> Int {
        guard !rect.isEmpty else { return rect.x }
        let t = TextWidth.truncate(text, to: rect.width)
        let w = TextWidth.of(t)
        let x: Int
        switch alignment {
        case .left: x = rect.x
        case .center: x = rect.x + (rect.width - w) / 2
        case .right: x = rect.maxX - w
        }
        return write(t, x: x, y: rect.y, style: style, clip: rect)
    }

    /// Writes `text` into the first row of `rect`, ending with an ellipsis when it does not fit (so a reader
    /// sees that something was cut).
    @discardableResult
    package mutating func writeFitted(_ text: String, in rect: Rect, style: Style = .plain, glyphs: Glyphs = .unicodeSet) -> Int {
        guard !rect.isEmpty else { return rect.x }
        return write(TextWidth.fit(text, to: rect.width, ellipsis: glyphs.ellipsis), x: rect.x, y: rect.y, style: style, clip: rect)
    }

    /// The changes needed to turn `previous` into `self`. If sizes differ, every cell changes.
    package func diff(from previous: CellBuffer?) -> [CellChange] {
        var out: [CellChange] = []
        guard let previous, previous.width == width, previous.height == height else {
            for y in 0..<height {
                for x in 0..<width where !cells[y * width + x].isContinuation {
                    out.append(CellChange(x: x, y: y, cell: cells[y * width + x]))
                }
            }
            return out
        }
        for i in 0..<cells.count where cells[i] != previous.cells[i] {
            let (y, x) = i.quotientAndRemainder(dividingBy: width)
            if cells[i].isContinuation {
                // The wide grapheme to the left owns this cell; redraw it instead.
                if x > 0, out.last.map({ $0.x == x - 1 && $0.y == y }) != true {
                    out.append(CellChange(x: x - 1, y: y, cell: cells[i - 1]))
                }
                continue
            }
            out.append(CellChange(x: x, y: y, cell: cells[i]))
        }
        return out
    }

    /// One line per row, trailing spaces trimmed: the form snapshots compare.
    package func text() -> String {
        var lines: [String] = []
        for y in 0..<height {
            var line = ""
            for x in 0..<width {
                line += cells[y * width + x].symbol
            }
            while line.last == " " { line.removeLast() }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }

    /// The text of one row (trailing spaces trimmed).
    package func line(_ y: Int) -> String {
        guard y >= 0, y < height else { return "" }
        var line = (0..<width).map { cells[y * width + $0].symbol }.joined()
        while line.last == " " { line.removeLast() }
        return line
    }
}

package enum Alignment: Sendable { case left, center, right }
