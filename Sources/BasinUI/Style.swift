/// Visual attributes a terminal can show without colour.
public struct TextAttributes: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let bold = TextAttributes(rawValue: 1)
    public static let dim = TextAttributes(rawValue: 2)
    public static let reverse = TextAttributes(rawValue: 4)
    public static let underline = TextAttributes(rawValue: 8)
}

/// A colour as widgets ask for it: a theme role (resolved late, by the backend, against the
/// active theme and colour capability), a concrete xterm-256 index, or the terminal default.
public enum ThemeColor: Hashable, Sendable {
    case role(Role)
    case indexed(Int)
    case `default`
}

/// The style of one cell. `nil` colours mean "the theme's foreground / background".
public struct Style: Hashable, Sendable {
    public var fg: ThemeColor?
    public var bg: ThemeColor?
    public var attributes: TextAttributes

    public init(fg: ThemeColor? = nil, bg: ThemeColor? = nil, attributes: TextAttributes = []) {
        self.fg = fg
        self.bg = bg
        self.attributes = attributes
    }

    public static let plain = Style()
    public static func role(_ r: Role) -> Style { Style(fg: .role(r)) }

    public var bold: Bool { get { attributes.contains(.bold) } set { set(.bold, newValue) } }
    public var dim: Bool { get { attributes.contains(.dim) } set { set(.dim, newValue) } }
    public var reverse: Bool { get { attributes.contains(.reverse) } set { set(.reverse, newValue) } }
    public var underline: Bool { get { attributes.contains(.underline) } set { set(.underline, newValue) } }

    private mutating func set(_ a: TextAttributes, _ on: Bool) {
        if on { attributes.insert(a) } else { attributes.remove(a) }
    }

    /// `other` on top of `self`: its non-nil colours win and attributes are unioned.
    public func patched(_ other: Style) -> Style {
        Style(fg: other.fg ?? fg, bg: other.bg ?? bg, attributes: attributes.union(other.attributes))
    }

    public func with(fg: ThemeColor? = nil, bg: ThemeColor? = nil, _ attrs: TextAttributes = []) -> Style {
        patched(Style(fg: fg, bg: bg, attributes: attrs))
    }
}

/// A concrete style, as a backend draws it: colour indices (-1 = terminal default) and attributes.
public struct ResolvedStyle: Hashable, Sendable {
    public var fg: Int
    public var bg: Int
    public var attributes: TextAttributes
    public init(fg: Int = -1, bg: Int = -1, attributes: TextAttributes = []) {
        self.fg = fg
        self.bg = bg
        self.attributes = attributes
    }
}
