import Foundation

/// Colour roles a theme assigns. The raw value is the key used in `.theme` files.
package enum Role: String, CaseIterable, Hashable, Sendable {
    case background, foreground, accent, muted, title, border
    case series1, series2, series3, series4
    case barrier, cursor, marker
    case good, bad, warning
    case selection
    case statusBg = "status_bg"
    case statusFg = "status_fg"
    case popupBg = "popup_bg"
    case heatmapLow = "heatmap_low"
    case heatmapMid = "heatmap_mid"
    case heatmapHigh = "heatmap_high"

    /// The series roles in order, for plots with several lines.
    package static let series: [Role] = [.series1, .series2, .series3, .series4]
}

/// How many colours the terminal can show (after NO_COLOR is honoured).
package enum ColorCapability: Int, Comparable, Sendable, CustomStringConvertible {
    case none = 0
    case eight = 8
    case c256 = 256

    package static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    package var description: String { self == .none ? "none" : "\(rawValue)" }

    /// NO_COLOR (present and non-empty, per no-color.org) forces `.none`; otherwise the
    /// terminal's colour count decides (`BASIN_COLORS=none|8|256` overrides it, for testing).
    package static func detect(environment: [String: String] = ProcessInfo.processInfo.environment,
                              terminalColors: Int) -> ColorCapability {
        if let nc = environment["NO_COLOR"], !nc.isEmpty { return .none }
        switch environment["BASIN_COLORS"] {
        case "none", "0": return .none
        case "8": return terminalColors >= 8 ? .eight : .none
        case "256": return terminalColors >= 256 ? .c256 : (terminalColors >= 8 ? .eight : .none)
        default: break
        }
        if terminalColors >= 256 { return .c256 }
        if terminalColors >= 8 { return .eight }
        return .none
    }
}

/// A colour value in a theme: the terminal default, or an xterm-256 index (0-7 are the
/// named colours, 8-15 their bright forms).
package enum ColorValue: Hashable, Sendable, CustomStringConvertible {
    case `default`
    case indexed(Int)

    package var description: String {
        switch self {
        case .default: return "default"
        case .indexed(let i): return "\(i)"
        }
    }
}

/// What a role maps to: a colour and optional attributes.
package struct RoleStyle: Hashable, Sendable {
    package var color: ColorValue
    package var attributes: TextAttributes
    package init(_ color: ColorValue = .default, _ attributes: TextAttributes = []) {
        self.color = color
        self.attributes = attributes
    }
}

package struct ThemeError: Error, CustomStringConvertible, Equatable {
    /// What went wrong, for tests and callers to match on.
    package enum Kind: String, Sendable {
        /// The file cannot be read (missing, not a regular file, not UTF-8).
        case unreadable
        /// No theme of that name in the themes folders.
        case notFound
        /// A line of the file is wrong (the line number says which).
        case syntax
    }

    package var kind: Kind
    package var file: String
    package var line: Int?
    package var message: String
    package init(_ kind: Kind = .syntax, file: String, line: Int?, message: String) {
        self.kind = kind
        self.file = file
        self.line = line
        self.message = message
    }
    package var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

package struct Theme: Hashable, Sendable {
    package var name: String
    package var roles: [Role: RoleStyle]

    package init(name: String, roles: [Role: RoleStyle] = [:]) {
        self.name = name
        self.roles = roles
    }

    /// Unset roles are the terminal default with no attributes.
    package subscript(role: Role) -> RoleStyle { roles[role] ?? RoleStyle() }

    // MARK: Resolution

    /// Resolves a cell style to concrete colour indices (-1 = terminal default) for a capability.
    /// `nil` fg/bg mean the `foreground`/`background` roles. Attributes of the roles used are
    /// added. With no colour, a background role other than `background` that would have been
    /// coloured (e.g. `selection`, `status_bg`) becomes reverse video so it stays visible.
    package func resolve(_ style: Style, capability: ColorCapability) -> ResolvedStyle {
        let fgc = style.fg ?? .role(.foreground)
        let bgc = style.bg ?? .role(.background)
        var attrs = style.attributes
        if case .role(let r) = fgc { attrs.formUnion(self[r].attributes) }
        if case .role(let r) = bgc { attrs.formUnion(self[r].attributes) }
        if capability == .none {
            if case .role(let r) = bgc, r != .background, r != .popupBg, self[r].color != .default,
               self[r].attributes.isEmpty, style.bg != nil {
                attrs.insert(.reverse)
            }
            return ResolvedStyle(fg: -1, bg: -1, attributes: attrs)
        }
        return ResolvedStyle(fg: index(fgc, capability), bg: index(bgc, capability), attributes: attrs)
    }

    /// The concrete index of a colour under a capability (-1 = default).
    package func index(_ c: ThemeColor, _ capability: ColorCapability) -> Int {
        let raw: Int
        switch c {
        case .default: return -1
        case .indexed(let i): raw = i
        case .role(let r):
            guard case .indexed(let i) = self[r].color else { return -1 }
            raw = i
        }
        switch capability {
        case .none: return -1
        case .eight: return XTerm.nearest8(raw)
        case .c256: return max(0, min(255, raw))
        }
    }

    // MARK: Parsing

    /// Parses the `.theme` format (see Themes/README.md). `file` is used in error messages.
    package static func parse(_ text: String, name: String, file: String = "<theme>") throws -> Theme {
        var theme = Theme(name: name)
        var seen: [Role: Int] = [:]
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (i, raw) in lines.enumerated() {
            let lineNo = i + 1
            func fail(_ m: String) -> ThemeError { ThemeError(file: file, line: lineNo, message: m) }
            var line = String(raw)
            if line.hasSuffix("\r") { line.removeLast() }
            line = stripComment(line).trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            guard let eq = line.firstIndex(of: "=") else {
                throw fail("expected 'key = value', got '\(line)'")
            }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if key.isEmpty { throw fail("missing key before '='") }
            if key == "name" {
                if value.isEmpty { throw fail("empty theme name") }
                theme.name = value
                continue
            }
            guard let role = Role(rawValue: key) else {
                let known = Role.allCases.map(\.rawValue).joined(separator: ", ")
                throw fail("unknown role '\(key)' (known roles: name, \(known))")
            }
            if let prev = seen[role] { throw fail("role '\(key)' already set on line \(prev)") }
            seen[role] = lineNo
            let words = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let first = words.first else { throw fail("missing value for '\(key)'") }
            var attrs: TextAttributes = []
            var color: ColorValue = .default
            var rest = words[...]
            if let a = attribute(first) {
                attrs.insert(a)  // attributes only, colour default
                rest = words.dropFirst()
            } else {
                guard let c = parseColor(first) else {
                    throw fail("invalid colour '\(first)' for '\(key)' (expected 0-255, #rrggbb, a colour name such as red or bright_blue, or default)")
                }
                color = c
                rest = words.dropFirst()
            }
            for w in rest {
                guard let a = attribute(w) else {
                    throw fail("unknown attribute '\(w)' for '\(key)' (expected bold, dim, reverse, underline)")
                }
                attrs.insert(a)
            }
            theme.roles[role] = RoleStyle(color, attrs)
        }
        return theme
    }

    /// A `#` starts a comment at the start of a line or after whitespace, unless it is a
    /// `#rrggbb` colour.
    static func stripComment(_ line: String) -> String {
        let chars = Array(line)
        var i = 0
        while i < chars.count {
            if chars[i] == "#" && (i == 0 || chars[i - 1] == " " || chars[i - 1] == "\t") {
                // #rrggbb followed by end/space is a colour, not a comment.
                let hex = chars[(i + 1)...].prefix { $0.isHexDigit }
                let after = i + 1 + hex.count
                let before = String(chars[..<i]).trimmingCharacters(in: .whitespaces)
                // First word of a value: a colour attempt (valid or not, the parser reports it).
                let isColor = before.hasSuffix("=")
                    || (hex.count == 6 && (after == chars.count || chars[after] == " " || chars[after] == "\t") && before.contains("="))
                if !isColor { return String(chars[..<i]) }
            }
            i += 1
        }
        return line
    }

    static func attribute(_ w: String) -> TextAttributes? {
        switch w.lowercased() {
        case "bold": return .bold
        case "dim": return .dim
        case "reverse": return .reverse
        case "underline": return .underline
        default: return nil
        }
    }

    static let names = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"]

    package static func parseColor(_ w: String) -> ColorValue? {
        let s = w.lowercased()
        if s == "default" || s == "none" { return .default }
        if let n = Int(s) { return (0...255).contains(n) ? .indexed(n) : nil }
        if s.hasPrefix("#") {
            let hex = s.dropFirst()
            guard hex.count == 6, let v = Int(hex, radix: 16) else { return nil }
            return .indexed(XTerm.nearest256(r: (v >> 16) & 255, g: (v >> 8) & 255, b: v & 255))
        }
        if let i = names.firstIndex(of: s) { return .indexed(i) }
        if s == "gray" || s == "grey" { return .indexed(8) }
        for prefix in ["bright_", "bright-", "bright"] where s.hasPrefix(prefix) {
            if let i = names.firstIndex(of: String(s.dropFirst(prefix.count))) { return .indexed(8 + i) }
        }
        return nil
    }

    /// The default theme, embedded so the app works without the Themes/ directory.
    /// Kept identical to Themes/dark.theme (a test checks this).
    package static let dark: Theme = {
        do { return try parse(embeddedDarkSource, name: "dark", file: "<embedded dark.theme>") } catch {
            fatalError("embedded dark theme does not parse: \(error)")
        }
    }()

    package static let embeddedDarkSource = """
    # Basin dark theme (the default). Format: see Themes/README.md.
    name = dark

    background   = default
    foreground   = 252
    accent       = 39 bold
    muted        = 244
    title        = 81 bold
    border       = 240

    series1      = 39
    series2      = 214
    series3      = 120
    series4      = 205
    barrier      = 196 bold
    cursor       = 226
    marker       = 231 bold

    good         = 114
    bad          = 203 bold
    warning      = 221
    selection    = 24
    status_bg    = 236
    status_fg    = 250
    popup_bg     = 235

    heatmap_low  = #0d0887
    heatmap_mid  = #cc4778
    heatmap_high = #f0f921

    """
}

/// The xterm 256-colour palette and nearest-colour searches.
package enum XTerm {
    static let base16: [(Int, Int, Int)] = [
        (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205), (0, 205, 205), (229, 229, 229),
        (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0), (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255),
    ]
    static let levels = [0, 95, 135, 175, 215, 255]

    package static func rgb(_ i: Int) -> (r: Int, g: Int, b: Int) {
        let i = max(0, min(255, i))
        if i < 16 { let c = base16[i]; return (c.0, c.1, c.2) }
        if i < 232 {
            let n = i - 16
            return (levels[n / 36], levels[(n / 6) % 6], levels[n % 6])
        }
        let g = 8 + 10 * (i - 232)
        return (g, g, g)
    }

    static func dist(_ a: (r: Int, g: Int, b: Int), _ b: (r: Int, g: Int, b: Int)) -> Int {
        let dr = a.r - b.r, dg = a.g - b.g, db = a.b - b.b
        return dr * dr + dg * dg + db * db
    }

    /// Nearest index in the colour cube or grey ramp (16-255; 0-15 vary between terminals).
    package static func nearest256(r: Int, g: Int, b: Int) -> Int {
        var best = 16, bestD = Int.max
        for i in 16..<256 {
            let d = dist(rgb(i), (r, g, b))
            if d < bestD { bestD = d; best = i }
        }
        return best
    }

    /// Maps any index to one of the 8 basic colours.
    package static func nearest8(_ i: Int) -> Int {
        if i < 0 { return -1 }
        if i < 8 { return i }
        if i < 16 { return i - 8 }
        let c = rgb(i)
        // Greys: pick black or white by lightness rather than by distance to saturated colours.
        if c.r == c.g && c.g == c.b { return c.r < 128 ? 0 : 7 }
        var best = 0, bestD = Int.max
        for k in 0..<8 {
            let d = dist(rgb(k), c)
            if d < bestD { bestD = d; best = k }
        }
        return best
    }
}
