/// Terminal column width of text. Deliberately small: East Asian wide/fullwidth and emoji are 2,
/// control and combining marks 0, everything else 1 (braille, box drawing and block elements
/// included, which is what Basin draws).
package enum TextWidth {
    package static func of(_ scalar: Unicode.Scalar) -> Int {
        let v = scalar.value
        if v == 0 { return 0 }
        if v < 0x20 || (v >= 0x7F && v < 0xA0) { return 0 }
        if v < 0x300 { return 1 }
        // Combining marks, zero-width joiners, variation selectors.
        if (0x0300...0x036F).contains(v) || (0x1AB0...0x1AFF).contains(v) || (0x1DC0...0x1DFF).contains(v)
            || (0x20D0...0x20FF).contains(v) || (0xFE20...0xFE2F).contains(v)
            || v == 0x200B || v == 0x200C || v == 0x200D || (0xFE00...0xFE0F).contains(v) {
            return 0
        }
        // Braille, box drawing, block elements, geometric shapes, arrows: 1.
        if (0x2190...0x2BFF).contains(v) { return 1 }
        if (0x1100...0x115F).contains(v) || (0x2E80...0x303E).contains(v) || (0x3041...0x33FF).contains(v)
            || (0x3400...0x4DBF).contains(v) || (0x4E00...0x9FFF).contains(v) || (0xA000...0xA4CF).contains(v)
            || (0xAC00...0xD7A3).contains(v) || (0xF900...0xFAFF).contains(v) || (0xFE30...0xFE4F).contains(v)
            || (0xFF00...0xFF60).contains(v) || (0xFFE0...0xFFE6).contains(v)
            || (0x1F300...0x1F64F).contains(v) || (0x1F900...0x1F9FF).contains(v)
            || (0x20000...0x3FFFD).contains(v) {
            return 2
        }
        return 1
    }

    /// Width of one grapheme: its first scalar decides.
    package static func of(_ c: Character) -> Int {
        guard let first = c.unicodeScalars.first else { return 0 }
        return of(first)
    }

    package static func of(_ s: String) -> Int { s.reduce(0) { $0 + of($1) } }

    /// The longest prefix of `s` fitting in `columns`.
    package static func truncate(_ s: String, to columns: Int) -> String {
        var used = 0
        var out = ""
        for c in s {
            let w = of(c)
            if used + w > columns { break }
            used += w
            out.append(c)
        }
        return out
    }

    /// `s` truncated with an ellipsis if it does not fit.
    package static func fit(_ s: String, to columns: Int, ellipsis: String = "…") -> String {
        if of(s) <= columns { return s }
        if columns <= 0 { return "" }
        let e = of(ellipsis) <= columns ? ellipsis : ""
        return truncate(s, to: columns - of(e)) + e
    }

    package static func padRight(_ s: String, to columns: Int) -> String {
        let t = truncate(s, to: columns)
        return t + String(repeating: " ", count: max(0, columns - of(t)))
    }
    package static func padLeft(_ s: String, to columns: Int) -> String {
        let t = truncate(s, to: columns)
        return String(repeating: " ", count: max(0, columns - of(t))) + t
    }
}
