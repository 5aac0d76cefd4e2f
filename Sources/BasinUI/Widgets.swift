import Foundation

/// Anything that renders into a rectangle of a buffer.
package protocol Widget {
    func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext)
}

extension CellBuffer {
    package mutating func render(_ w: some Widget, in area: Rect, context: RenderContext) {
        w.render(into: &self, area: area, context: context)
    }
}

// MARK: Block

/// A bordered box with an optional title; `inner(_:)` gives the area inside.
package struct Block: Widget {
    package var title: String?
    package var borders: Bool
    package var style: Style
    package var borderStyle: Style
    package var titleStyle: Style
    /// Clear the area (with `style`) before drawing.
    package var fill: Bool

    package init(title: String? = nil, borders: Bool = true, style: Style = .plain,
                borderStyle: Style = Style(fg: .role(.border)), titleStyle: Style = Style(fg: .role(.title)),
                fill: Bool = true) {
        self.title = title
        self.borders = borders
        self.style = style
        self.borderStyle = borderStyle
        self.titleStyle = titleStyle
        self.fill = fill
    }

    package func inner(_ area: Rect) -> Rect {
        if borders { return area.inset(by: 1) }
        return title == nil ? area : area.inset(top: 1)
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        guard !area.isEmpty else { return }
        let g = context.glyphs
        if fill { buffer.fill(area, with: Cell(" ", style: style)) }
        if borders && area.width >= 2 && area.height >= 2 {
            let bs = style.patched(borderStyle)
            for x in area.minX + 1..<area.maxX - 1 {
                buffer.set(x, area.minY, Cell(g.horizontal, style: bs))
                buffer.set(x, area.maxY - 1, Cell(g.horizontal, style: bs))
            }
            for y in area.minY + 1..<area.maxY - 1 {
                buffer.set(area.minX, y, Cell(g.vertical, style: bs))
                buffer.set(area.maxX - 1, y, Cell(g.vertical, style: bs))
            }
            buffer.set(area.minX, area.minY, Cell(g.topLeft, style: bs))
            buffer.set(area.maxX - 1, area.minY, Cell(g.topRight, style: bs))
            buffer.set(area.minX, area.maxY - 1, Cell(g.bottomLeft, style: bs))
            buffer.set(area.maxX - 1, area.maxY - 1, Cell(g.bottomRight, style: bs))
        }
        if let title, !title.isEmpty {
            let titleArea = borders ? Rect(x: area.x + 2, y: area.y, width: area.width - 4, height: 1) : area.row(0)
            let t = TextWidth.fit(borders ? " \(title) " : title, to: titleArea.width, ellipsis: g.ellipsis)
            buffer.write(t, in: titleArea, style: style.patched(titleStyle))
        }
    }
}

// MARK: Paragraph

/// Lines of text, optionally word-wrapped, clipped to the area.
package struct Paragraph: Widget {
    package var lines: [String]
    package var style: Style
    package var alignment: Alignment
    package var wrap: Bool
    package var scroll: Int

    package init(_ text: String, style: Style = .plain, alignment: Alignment = .left, wrap: Bool = true, scroll: Int = 0) {
        self.lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        self.style = style
        self.alignment = alignment
        self.wrap = wrap
        self.scroll = scroll
    }

    /// Greedy word wrap to `width` columns (words longer than a line are broken).
    package static func wrap(_ line: String, width: Int) -> [String] {
        guard width > 0 else { return [] }
        if TextWidth.of(line) <= width { return [line] }
        var out: [String] = []
        var cur = ""
        for word in line.split(separator: " ", omittingEmptySubsequences: false).map(String.init) {
            var w = word
            let sep = cur.isEmpty ? "" : " "
            if TextWidth.of(cur) + TextWidth.of(sep) + TextWidth.of(w) <= width {
                cur += sep + w
                continue
            }
            if !cur.isEmpty { out.append(cur); cur = "" }
            while TextWidth.of(w) > width {
                let head = TextWidth.truncate(w, to: width)
                out.append(head)
                w = String(w.dropFirst(head.count))
            }
            cur = w
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    package func wrappedLines(width: Int) -> [String] {
        wrap ? lines.flatMap { $0.isEmpty ? [""] : Paragraph.wrap($0, width: width) } : lines
    }

    /// Lines cut off at the bottom end the last visible line with an ellipsis, so a reader sees there is more.
    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let all = wrappedLines(width: area.width)
        let shown = Array(all.dropFirst(scroll).prefix(area.height))
        for (i, l) in shown.enumerated() {
            var text = l
            if i == shown.count - 1, scroll + shown.count < all.count {
                let e = context.glyphs.ellipsis
                text = TextWidth.truncate(l, to: max(0, area.width - TextWidth.of(e))) + e
            }
            buffer.write(text, in: area.row(i), style: style, alignment: alignment)
        }
    }
}

// MARK: Status bar

/// One line: key hints on the left, a job status (e.g. "aligning 40%") on the right.
package struct StatusBar: Widget {
    package var hints: [(key: String, label: String)]
    package var status: String
    package var statusStyle: Style

    package init(hints: [(key: String, label: String)], status: String = "", statusStyle: Style = .plain) {
        self.hints = hints
        self.status = status
        self.statusStyle = statusStyle
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        guard !area.isEmpty else { return }
        let base = Style(fg: .role(.statusFg), bg: .role(.statusBg))
        let row = area.row(0)
        buffer.fill(row, with: Cell(" ", style: base))
        let statusText = TextWidth.fit(status, to: max(0, row.width / 2), ellipsis: context.glyphs.ellipsis)
        let sw = TextWidth.of(statusText)
        let hintsArea = Rect(x: row.x, y: row.y, width: row.width - sw - (sw > 0 ? 1 : 0), height: 1)
        var x = row.x + 1
        for h in hints {
            let need = TextWidth.of(h.key) + 1 + TextWidth.of(h.label)
            if x + need > hintsArea.maxX { break }
            x = buffer.write(h.key, x: x, y: row.y, style: base.patched(Style(fg: .role(.accent), attributes: .bold)), clip: hintsArea)
            x = buffer.write(" " + h.label, x: x, y: row.y, style: base, clip: hintsArea)
            x += 2
        }
        if sw > 0 {
            buffer.write(statusText, x: row.maxX - sw - 1, y: row.y, style: base.patched(statusStyle), clip: row)
        }
    }
}

// MARK: Tab bar

package struct TabBar: Widget {
    package var titles: [String]
    package var selected: Int

    package init(_ titles: [String], selected: Int) {
        self.titles = titles
        self.selected = selected
    }

    /// The column range each tab occupies starting at `x` (for mouse clicks).
    package func tabRanges(startX: Int) -> [Range<Int>] {
        var x = startX
        return titles.map { t in
            let w = TextWidth.of(t) + 2
            defer { x += w + 1 }
            return x..<(x + w)
        }
    }

    package func tab(atColumn col: Int, area: Rect) -> Int? {
        tabRanges(startX: area.x).firstIndex { $0.contains(col) }
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        guard !area.isEmpty else { return }
        let ranges = tabRanges(startX: area.x)
        for (i, t) in titles.enumerated() {
            let style = i == selected
                ? Style(fg: .role(.foreground), bg: .role(.selection), attributes: .bold)
                : Style(fg: .role(.muted))
            buffer.write(" \(t) ", x: ranges[i].lowerBound, y: area.y, style: style, clip: area.row(0))
            if i < titles.count - 1 {
                buffer.write(context.glyphs.vertical, x: ranges[i].upperBound, y: area.y, style: Style(fg: .role(.border)), clip: area.row(0))
            }
        }
    }
}

// MARK: List

/// Selection and scroll offset of a list; keeps the selection visible.
package struct ListState: Hashable, Sendable {
    package var selected: Int
    package var offset: Int
    package init(selected: Int = 0, offset: Int = 0) {
        self.selected = selected
        self.offset = offset
    }

    package mutating func select(_ i: Int, count: Int) {
        selected = count == 0 ? 0 : max(0, min(count - 1, i))
    }
    package mutating func move(_ delta: Int, count: Int) { select(selected + delta, count: count) }

    /// Adjusts `offset` so the selection is inside a window of `height` rows.
    package mutating func scrollToSelection(height: Int, count: Int) {
        guard height > 0 else { return }
        if selected < offset { offset = selected }
        if selected >= offset + height { offset = selected - height + 1 }
        offset = max(0, min(offset, max(0, count - height)))
    }
}

package struct ListView: Widget {
    package var items: [String]
    package var state: ListState
    package var highlight: Style

    package init(_ items: [String], state: ListState, highlight: Style = Style(bg: .role(.selection), attributes: .bold)) {
        self.items = items
        self.state = state
        self.highlight = highlight
    }

    /// The state after scrolling the selection into view for `area`: call and store before render.
    package func visibleState(height: Int) -> ListState {
        var s = state
        s.scrollToSelection(height: height, count: items.count)
        return s
    }

    /// The item index shown at screen row `y` of `area` (for mouse clicks), if any.
    package func index(atRow y: Int, area: Rect) -> Int? {
        guard y >= area.minY, y < area.maxY else { return nil }
        let i = visibleState(height: area.height).offset + (y - area.minY)
        return i < items.count ? i : nil
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        guard !area.isEmpty else { return }
        let s = visibleState(height: area.height)
        let g = context.glyphs
        let pw = TextWidth.of(g.selectionPointer) + 1
        let needsBar = items.count > area.height
        let textArea = area.inset(right: needsBar ? 1 : 0)
        for row in 0..<area.height {
            let i = s.offset + row
            guard i < items.count else { break }
            let r = textArea.row(row)
            let sel = i == s.selected
            if sel { buffer.fill(r, with: Cell(" ", style: highlight)) }
            let prefix = sel ? g.selectionPointer + " " : String(repeating: " ", count: pw)
            let text = TextWidth.fit(prefix + items[i], to: r.width, ellipsis: g.ellipsis)
            buffer.write(text, in: r, style: sel ? highlight : .plain)
        }
        if needsBar {
            let x = area.maxX - 1
            if s.offset > 0 { buffer.set(x, area.minY, Cell(g.scrollUp, style: Style(fg: .role(.muted)))) }
            if s.offset + area.height < items.count {
                buffer.set(x, area.maxY - 1, Cell(g.scrollDown, style: Style(fg: .role(.muted))))
            }
        }
    }
}

// MARK: Slider

/// `label [────●──────] value`, focused sliders highlighted.
package struct Slider: Widget {
    package var label: String
    package var value: Double
    package var range: ClosedRange<Double>
    package var focused: Bool
    package var format: @Sendable (Double) -> String

    package init(label: String, value: Double, range: ClosedRange<Double> = 0...1, focused: Bool = false,
                format: @escaping @Sendable (Double) -> String = { formatNumber($0) }) {
        self.label = label
        self.value = value
        self.range = range
        self.focused = focused
        self.format = format
    }

    package var fraction: Double {
        let span = range.upperBound - range.lowerBound
        guard span > 0, value.isFinite else { return 0 }
        return max(0, min(1, (value - range.lowerBound) / span))
    }

    /// The track's columns in a row (nil when the row is too narrow for one).
    package func track(in area: Rect) -> Range<Int>? {
        let row = area.row(0)
        let start = row.x + TextWidth.of(label) + 1 + 1
        let width = row.maxX - (start - 1) - 2 - 1 - TextWidth.of(format(value))
        return width >= 3 ? start..<(start + width) : nil
    }

    /// The value at a column of the track (clamped to the range), for clicks and drags.
    package func value(atColumn x: Int, in area: Rect) -> Double? {
        guard let t = track(in: area), t.count > 1 else { return nil }
        let f = Double(min(max(x, t.lowerBound), t.upperBound - 1) - t.lowerBound) / Double(t.count - 1)
        return range.lowerBound + f * (range.upperBound - range.lowerBound)
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        guard !area.isEmpty else { return }
        let g = context.glyphs
        let row = area.row(0)
        let labelStyle = focused ? Style(fg: .role(.accent), attributes: .bold) : Style(fg: .role(.foreground))
        let valueText = format(value)
        var x = buffer.write(label + " ", x: row.x, y: row.y, style: labelStyle, clip: row)
        let trackWidth = row.maxX - x - 2 - 1 - TextWidth.of(valueText)
        guard trackWidth >= 3 else {
            buffer.write(valueText, x: x, y: row.y, style: labelStyle, clip: row)
            return
        }
        let knob = Int((fraction * Double(trackWidth - 1)).rounded())
        let edge = focused ? Style(fg: .role(.accent)) : Style(fg: .role(.border))
        x = buffer.write("[", x: x, y: row.y, style: edge, clip: row)
        for i in 0..<trackWidth {
            let isKnob = i == knob
            let style = isKnob ? (focused ? Style(fg: .role(.accent), attributes: .bold) : Style(fg: .role(.foreground)))
                : (i < knob ? Style(fg: .role(.accent)) : Style(fg: .role(.muted)))
            buffer.set(x + i, row.y, Cell(isKnob ? g.sliderKnob : g.sliderTrack, style: style))
        }
        x += trackWidth
        x = buffer.write("] ", x: x, y: row.y, style: edge, clip: row)
        buffer.write(valueText, x: x, y: row.y, style: labelStyle, clip: row)
    }
}

/// Compact number formatting used by sliders, axes and legends: up to 3 significant digits.
package func formatNumber(_ v: Double, digits: Int = 3) -> String {
    if v.isNaN { return "nan" }
    if v.isInfinite { return v > 0 ? "inf" : "-inf" }
    if v == 0 { return "0" }
    let a = abs(v)
    if a >= 1e5 || a < 1e-3 {
        var s = String(format: "%.\(max(0, digits - 1))e", v)
        // 1.00e+05 → 1e+05
        if let e = s.firstIndex(of: "e"), s[..<e].contains(".") {
            var mant = String(s[..<e])
            while mant.last == "0" { mant.removeLast() }
            if mant.last == "." { mant.removeLast() }
            s = mant + s[e...]
        }
        return s
    }
    let intDigits = a >= 1 ? Int(log10(a)) + 1 : 0
    let decimals = max(0, digits - intDigits)
    var s = String(format: "%.\(decimals)f", v)
    if s.contains(".") {
        while s.last == "0" { s.removeLast() }
        if s.last == "." { s.removeLast() }
    }
    if s == "-0" { s = "0" }
    return s
}

// MARK: Progress bar

/// `label ███████░░░░░ 42%`
package struct ProgressBar: Widget {
    package var fraction: Double
    package var label: String
    package var style: Style

    package init(fraction: Double, label: String = "", style: Style = Style(fg: .role(.accent))) {
        self.fraction = fraction.isFinite ? max(0, min(1, fraction)) : 0
        self.label = label
        self.style = style
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        guard !area.isEmpty else { return }
        let g = context.glyphs
        let row = area.row(0)
        let pct = "\(Int((fraction * 100).rounded(.down)))%"
        let labelText = label.isEmpty ? "" : label + " "
        let barWidth = max(0, min(row.width - TextWidth.of(labelText) - TextWidth.of(pct) - 1, row.width))
        var x = row.x
        if barWidth < 4 {
            buffer.write(TextWidth.fit(labelText + pct, to: row.width, ellipsis: g.ellipsis), in: row)
            return
        }
        x = buffer.write(labelText, x: x, y: row.y, style: Style(fg: .role(.foreground)), clip: row)
        let filled = Int((fraction * Double(barWidth)).rounded(.down))
        for i in 0..<barWidth {
            buffer.set(x + i, row.y, i < filled ? Cell(g.progressFull, style: style) : Cell(g.progressEmpty, style: Style(fg: .role(.muted))))
        }
        buffer.write(" " + pct, x: x + barWidth, y: row.y, style: Style(fg: .role(.foreground)), clip: row)
    }
}

// MARK: Table

package struct Table: Widget {
    package var header: [String]
    package var rows: [[String]]
    package var widths: [Constraint]
    package var alignments: [Alignment]
    package var selected: Int?
    package var offset: Int

    package init(header: [String], rows: [[String]], widths: [Constraint]? = nil, alignments: [Alignment]? = nil,
                selected: Int? = nil, offset: Int = 0) {
        self.header = header
        self.rows = rows
        self.widths = widths ?? header.map { _ in .fill(1) }
        self.alignments = alignments ?? header.map { _ in .left }
        self.selected = selected
        self.offset = offset
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        guard !area.isEmpty else { return }
        let cols = area.row(0).split(.horizontal, widths, spacing: 1)
        let head = Style(fg: .role(.title), attributes: [.bold, .underline])
        for (c, r) in cols.enumerated() where c < header.count {
            buffer.write(TextWidth.fit(header[c], to: r.width, ellipsis: context.glyphs.ellipsis), in: r, style: head,
                         alignment: c < alignments.count ? alignments[c] : .left)
        }
        let visible = area.height - 1
        guard visible > 0 else { return }
        var off = offset
        if let s = selected {
            if s < off { off = s }
            if s >= off + visible { off = s - visible + 1 }
        }
        for (k, row) in rows.dropFirst(off).prefix(visible).enumerated() {
            let y = area.y + 1 + k
            let isSel = selected == off + k
            let style: Style = isSel ? Style(bg: .role(.selection), attributes: .bold) : .plain
            if isSel { buffer.fill(Rect(x: area.x, y: y, width: area.width, height: 1), with: Cell(" ", style: style)) }
            for (c, r) in cols.enumerated() where c < row.count {
                let rr = Rect(x: r.x, y: y, width: r.width, height: 1)
                buffer.write(TextWidth.fit(row[c], to: r.width, ellipsis: context.glyphs.ellipsis), in: rr, style: style,
                             alignment: c < alignments.count ? alignments[c] : .left)
            }
        }
    }
}

// MARK: Help overlay

/// A centred box listing the keymap's bindings for a context (generated, so always accurate).
package struct HelpOverlay<Action: Hashable & Sendable>: Widget {
    package var keymap: Keymap<Action>
    package var context: String?
    package var title: String
    /// Text after the keys (e.g. a glossary), wrapped to the box: `(term, definition)` pairs; an empty term
    /// makes a heading line of the definition.
    package var footer: [(term: String, text: String)]
    /// First line shown; the box scrolls when the lines do not fit.
    package var scroll: Int

    package init(keymap: Keymap<Action>, context: String? = nil, title: String = "Keys",
                 footer: [(term: String, text: String)] = [], scroll: Int = 0) {
        self.keymap = keymap
        self.context = context
        self.title = title
        self.footer = footer
        self.scroll = scroll
    }

    /// One line of the overlay: a highlighted part (keys, a term) and the rest.
    package struct Line: Equatable, Sendable {
        package var head: String
        package var text: String
    }

    /// The box width for an area: the widest key line (at most the area's width less a margin).
    package func width(in area: Rect, ascii: Bool) -> Int {
        let entries = keymap.help(context: context, ascii: ascii)
        let kw = entries.map { TextWidth.of($0.keys) }.max() ?? 0
        let widest = entries.map { kw + 2 + TextWidth.of($0.description) }.max() ?? 0
        return min(area.width, max(widest, footer.isEmpty ? 0 : 60, TextWidth.of(title) + 2) + 4)
    }

    /// Every line at a box width (inner width = width - 4), long descriptions and the footer wrapped.
    package func lines(ascii: Bool, width: Int) -> [Line] {
        let inner = max(10, width - 4)
        let entries = keymap.help(context: context, ascii: ascii)
        let kw = entries.map { TextWidth.of($0.keys) }.max() ?? 0
        var out: [Line] = []
        for e in entries {
            let wrapped = Paragraph.wrap(e.description, width: max(8, inner - kw - 2))
            for (i, w) in wrapped.enumerated() {
                out.append(Line(head: TextWidth.padRight(i == 0 ? e.keys : "", to: kw), text: "  " + w))
            }
        }
        for f in footer {
            if f.term.isEmpty {
                out.append(Line(head: "", text: ""))
                out.append(Line(head: f.text, text: ""))
                continue
            }
            // Continuation lines are indented by two: wrapped two narrower, or their ends were clipped.
            let wrapped = Paragraph.wrap(f.term + ": " + f.text, width: max(8, inner - 2))
            for (i, w) in wrapped.enumerated() {
                if i == 0, w.hasPrefix(f.term) {
                    out.append(Line(head: f.term, text: String(w.dropFirst(f.term.count))))
                } else {
                    out.append(Line(head: "", text: "  " + w))
                }
            }
        }
        return out
    }

    /// The scroll offset clamped to the lines an area shows.
    package func clampedScroll(in area: Rect, ascii: Bool) -> Int {
        let w = width(in: area, ascii: ascii)
        let ls = lines(ascii: ascii, width: w)
        let visible = max(1, min(area.height, ls.count + 2) - 2)
        return max(0, min(scroll, ls.count - visible))
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context ctx: RenderContext) {
        let ascii = !ctx.glyphs.unicode
        let w = width(in: area, ascii: ascii)
        let ls = lines(ascii: ascii, width: w)
        let h = min(area.height, ls.count + 2)
        let box = area.centered(width: w, height: h)
        let block = Block(title: TextWidth.fit(title, to: max(0, w - 4), ellipsis: ctx.glyphs.ellipsis), style: Style(bg: .role(.popupBg)))
        block.render(into: &buffer, area: box, context: ctx)
        let inner = block.inner(box).inset(left: 1, right: 1)
        let first = clampedScroll(in: area, ascii: ascii)
        for (i, l) in ls.dropFirst(first).prefix(inner.height).enumerated() {
            let r = inner.row(i)
            let end = buffer.write(l.head, x: r.x, y: r.y, style: Style(fg: .role(.accent), attributes: .bold), clip: r)
            buffer.write(l.text, x: end, y: r.y, style: Style(fg: .role(.foreground)), clip: r)
        }
        let muted = Style(fg: .role(.muted), bg: .role(.popupBg))
        if first > 0, inner.height > 0 {
            buffer.write(ctx.glyphs.scrollUp, x: inner.maxX, y: inner.y, style: muted)
        }
        if first + inner.height < ls.count, inner.height > 0 {
            buffer.write(ctx.glyphs.scrollDown, x: inner.maxX, y: inner.maxY - 1, style: muted)
            let more = " \(ls.count - first - inner.height) more: ↓ "
            let text = ascii ? more.replacingOccurrences(of: "↓", with: "Down") : more
            buffer.write(text, x: max(box.x + 1, box.maxX - 1 - TextWidth.of(text)), y: box.maxY - 1, style: muted)
        }
    }
}

// MARK: Text input

/// A one-line editor: insert, backspace, delete, left/right, home/end; scrolls horizontally.
package struct TextInput: Hashable, Sendable {
    package var text: String { String(chars) }
    package private(set) var chars: [Character]
    package private(set) var cursor: Int

    package init(_ text: String = "") {
        chars = Array(text)
        cursor = chars.count
    }

    package enum Outcome: Equatable, Sendable { case edited, submitted(String), cancelled, ignored }

    /// Applies an editing key. Enter submits, Esc cancels.
    @discardableResult
    package mutating func handle(_ key: Key) -> Outcome {
        switch key {
        case .char(let c): chars.insert(c, at: cursor); cursor += 1
        case .backspace:
            guard cursor > 0 else { return .edited }
            chars.remove(at: cursor - 1); cursor -= 1
        case .delete, .ctrl("d"):
            guard cursor < chars.count else { return .edited }
            chars.remove(at: cursor)
        case .left, .ctrl("b"): cursor = max(0, cursor - 1)
        case .right, .ctrl("f"): cursor = min(chars.count, cursor + 1)
        case .home, .ctrl("a"): cursor = 0
        case .end, .ctrl("e"): cursor = chars.count
        case .ctrl("u"): chars.removeFirst(cursor); cursor = 0
        case .ctrl("k"): chars.removeLast(chars.count - cursor)
        case .enter: return .submitted(text)
        case .esc: return .cancelled
        default: return .ignored
        }
        return .edited
    }
}

/// Renders a `TextInput` as `prompt text` and reports where the terminal cursor belongs.
package struct Prompt: Widget {
    package var prompt: String
    package var input: TextInput

    package init(prompt: String, input: TextInput) {
        self.prompt = prompt
        self.input = input
    }

    /// Where the text cursor should be shown for this area.
    package func cursorPosition(in area: Rect) -> Point {
        let (start, _) = window(width: area.width - TextWidth.of(prompt))
        let before = input.chars[start..<input.cursor].reduce(0) { $0 + TextWidth.of($1) }
        return Point(x: area.x + TextWidth.of(prompt) + before, y: area.y)
    }

    /// First visible character index so the cursor stays in view.
    func window(width: Int) -> (Int, Int) {
        guard width > 1 else { return (input.cursor, input.cursor) }
        var start = 0
        var used = input.chars[0..<input.cursor].reduce(0) { $0 + TextWidth.of($1) }
        while used > width - 1 && start < input.cursor {
            used -= TextWidth.of(input.chars[start])
            start += 1
        }
        return (start, width)
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        guard !area.isEmpty else { return }
        let row = area.row(0)
        let x = buffer.write(prompt, x: row.x, y: row.y, style: Style(fg: .role(.accent), attributes: .bold), clip: row)
        let (start, _) = window(width: row.maxX - x)
        let visible = String(input.chars[start...])
        buffer.write(visible, x: x, y: row.y, style: Style(fg: .role(.foreground)), clip: row)
        // A visible block cursor in the buffer too (the hardware cursor may be hidden).
        let c = cursorPosition(in: row)
        if c.x < row.maxX {
            var cell = buffer[c.x, c.y]
            if cell.isContinuation { cell.symbol = " " }
            cell.style = cell.style.patched(Style(attributes: .reverse))
            buffer.set(c.x, c.y, cell)
        }
    }
}

// MARK: Popups

/// A centred message box; `.error` popups use the `bad` role for the title and border.
package struct Popup: Widget {
    package enum Kind: Sendable { case info, error }
    package var title: String
    package var message: String
    package var kind: Kind
    package var footer: String

    package init(title: String, message: String, kind: Kind = .info, footer: String = "Enter/Esc to close") {
        self.title = title
        self.message = message
        self.kind = kind
        self.footer = footer
    }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        let maxW = max(10, min(area.width - 2, 60))
        let inner = maxW - 4
        let body = Paragraph(message).wrappedLines(width: inner)
        let h = min(area.height, body.count + 3)
        let contentW = max(body.map { TextWidth.of($0) }.max() ?? 0, TextWidth.of(footer), TextWidth.of(title) + 2)
        let box = area.centered(width: min(maxW, contentW + 4), height: h)
        let accent: Role = kind == .error ? .bad : .accent
        let block = Block(title: title, style: Style(bg: .role(.popupBg)),
                          borderStyle: Style(fg: .role(accent)), titleStyle: Style(fg: .role(accent), attributes: .bold))
        block.render(into: &buffer, area: box, context: context)
        let ib = block.inner(box).inset(left: 1, right: 1)
        for (i, l) in body.prefix(max(0, ib.height - 1)).enumerated() {
            buffer.write(l, in: ib.row(i))
        }
        if ib.height > 0 {
            buffer.write(footer, in: ib.row(ib.height - 1), style: Style(fg: .role(.muted)), alignment: .right)
        }
    }
}

/// Shown instead of the UI when the terminal is smaller than the app needs.
package struct TooSmall: Widget {
    package var minimum: Size
    package init(minimum: Size) { self.minimum = minimum }

    package func render(into buffer: inout CellBuffer, area: Rect, context: RenderContext) {
        buffer.fill(area)
        let lines = ["Terminal too small",
                     "\(area.width)x\(area.height), need \(minimum.width)x\(minimum.height)",
                     "enlarge the window or press q"]
        let top = area.y + max(0, (area.height - lines.count) / 2)
        for (i, l) in lines.enumerated() where top + i < area.maxY {
            buffer.write(TextWidth.truncate(l, to: area.width),
                         in: Rect(x: area.x, y: top + i, width: area.width, height: 1),
                         style: i == 0 ? Style(fg: .role(.warning), attributes: .bold) : .plain, alignment: .center)
        }
    }

    package static func check(_ size: Size, minimum: Size) -> Bool {
        size.width < minimum.width || size.height < minimum.height
    }
}
