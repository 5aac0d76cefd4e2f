/// Visual attributes a terminal can show without colour.
package struct TextAttributes: OptionSet, Hashable, Sendable {
    package let rawValue: UInt8
    package init(rawValue: UInt8) { self.rawValue = rawValue }
    package static let bold = TextAttributes(rawValue: 1)
    package static let dim = TextAttributes(rawValue: 2)
    package static let reverse = TextAttributes(rawValue: 4)
    package static let underline = TextAttributes(rawValue: 8)
}

/// A colour as widgets ask for it: a theme role (resolved late, by the backend, against the
/// active theme and colour capability), a concrete xterm-256 index, or the terminal default.
package enum ThemeColor: Hashable, Sendable {
    case role(Role)
    case indexed(Int)
    case `default`
}

/// The style of one cell. `nil` colours mean "the theme's foreground / background".
package struct Style: Hashable, Sendable {
    package var fg: ThemeColor?
    package var bg: ThemeColor?
    package var attributes: TextAttributes

    package init(fg: ThemeColor? = nil, bg: ThemeColor? = nil, attributes: TextAttributes = []) {
        self.fg = fg
        self.bg = bg
        self.attributes = attributes
    }

    package static let plain = Style()
    package static func role(_ r: Role) -> Style { Style(fg: .role(r)) }

    package var bold: Bool { get { attributes.contains(.bold) } set { set(.bold, newValue) } }
    package var dim: Bool { get { attributes.contains(.dim) } set { set(.dim, newValue) } }
    package var reverse: Bool { get { attributes.contains(.reverse) } set { set(.reverse, newValue) } }
    package var underline: Bool { get { attributes.contains(.underline) } set { set(.underline, newValue) } }

    private mutating func set(_ a: TextAttributes, _ on: Bool) {
        if on { attributes.insert(a) } else { attributes.remove(a) }
    }

    /// `other` on top of `self`: its non-nil colours win and attributes are unioned.
    package func patched(_ other: Style) -> Style {
        Style(fg: other.fg ?? fg, bg: other.bg ?? bg, attributes: attributes.union(other.attributes))
    }

    package func with(fg: ThemeColor? = nil, bg: ThemeColor? = nil, _ attrs: TextAttributes = []) -> Style {
        patched(Style(fg: fg, bg: bg, attributes: attrs))
    }
}

/// A concrete style, as a backend draws it: colour indices (-1 = terminal default) and attributes.
package struct ResolvedStyle: Hashable, Sendable {
    package var fg: Int
    package var bg: Int
    package var attributes: TextAttributes
    package init(fg: Int = -1, bg: Int = -1, attributes: TextAttributes = []) {
        self.fg = fg
        self.bg = bg
        self.attributes = attributes
    }
}
