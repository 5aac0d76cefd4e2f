/// A mouse event in cell coordinates.
package struct MouseEvent: Hashable, Sendable {
    /// `drag`: the pointer moved with the button held (SGR button-event tracking).
    package enum Kind: Hashable, Sendable { case press, release, drag, wheelUp, wheelDown }
    package var kind: Kind
    package var x: Int
    package var y: Int
    package init(_ kind: Kind, x: Int, y: Int) { self.kind = kind; self.x = x; self.y = y }
}

extension MouseEvent {
    /// Decodes an SGR (1006) mouse report: `ESC [ <` then `params` = "b;x;y" and `final` 'M' (press, drag,
    /// wheel) or 'm' (release), with 1-based cell coordinates. Left button only (others are ignored); bit 32 of
    /// b marks motion with a button held (1002 button-event tracking), bit 64 the wheel.
    package static func sgr(_ params: String, final: Character) -> MouseEvent? {
        let parts = params.split(separator: ";").map { Int($0) }
        guard parts.count == 3, let b = parts[0], let x = parts[1], let y = parts[2], x >= 1, y >= 1,
              final == "M" || final == "m" else { return nil }
        if b & 64 != 0 { return final == "M" ? MouseEvent(b & 1 == 0 ? .wheelUp : .wheelDown, x: x - 1, y: y - 1) : nil }
        guard b & 3 == 0 else { return nil }
        if final == "m" { return MouseEvent(.release, x: x - 1, y: y - 1) }
        return MouseEvent(b & 32 != 0 ? .drag : .press, x: x - 1, y: y - 1)
    }
}

/// A key press (or resize / mouse event) as the UI sees it.
package enum Key: Hashable, Sendable, CustomStringConvertible {
    case char(Character)
    case ctrl(Character)          // lower-case letter: .ctrl("c")
    case up, down, left, right
    case shiftLeft, shiftRight
    case enter, esc, tab, backtab, backspace, delete
    case home, end, pageUp, pageDown
    case function(Int)
    case resize
    case mouse(MouseEvent)

    /// Human-readable name, as shown in help and status hints.
    package var description: String {
        switch self {
        case .char(" "): return "Space"
        case .char(let c): return String(c)
        case .ctrl(let c): return "C-\(c)"
        case .up: return "↑"
        case .down: return "↓"
        case .left: return "←"
        case .right: return "→"
        case .shiftLeft: return "S-←"
        case .shiftRight: return "S-→"
        case .enter: return "Enter"
        case .esc: return "Esc"
        case .tab: return "Tab"
        case .backtab: return "S-Tab"
        case .backspace: return "Bksp"
        case .delete: return "Del"
        case .home: return "Home"
        case .end: return "End"
        case .pageUp: return "PgUp"
        case .pageDown: return "PgDn"
        case .function(let n): return "F\(n)"
        case .resize: return "<resize>"
        case .mouse(let m): return "<mouse \(m.kind) \(m.x),\(m.y)>"
        }
    }

    /// ASCII-only name (for non-UTF-8 terminals).
    package var asciiDescription: String {
        switch self {
        case .up: return "Up"
        case .down: return "Down"
        case .left: return "Left"
        case .right: return "Right"
        case .shiftLeft: return "S-Left"
        case .shiftRight: return "S-Right"
        default: return description
        }
    }

    /// Decodes a raw byte/code point as read from a terminal in raw mode (control codes).
    package static func fromControl(_ code: UInt32) -> Key? {
        switch code {
        case 9: return .tab
        case 10, 13: return .enter
        case 27: return .esc
        case 8, 127: return .backspace
        case 1...26: return .ctrl(Character(Unicode.Scalar(code + 96)!))
        default: return nil
        }
    }
}

/// One binding: keys → an action, with a description (help) and an optional short hint (status bar), in a
/// context ("global" or a view name).
package struct KeyBinding<Action: Hashable & Sendable>: Hashable, Sendable {
    package var keys: [Key]
    package var action: Action
    package var description: String
    /// The status bar's label (the description when nil).
    package var hint: String?
    package var context: String
    package init(_ keys: [Key], action: Action, description: String, hint: String? = nil, context: String = Keymaps.global) {
        self.keys = keys
        self.action = action
        self.description = description
        self.hint = hint
        self.context = context
    }
}

/// One line of a help overlay: the keys, what they do, and the context they belong to.
package struct HelpEntry: Hashable, Sendable {
    package var keys: String
    package var description: String
    package var context: String
}

/// Names shared by every keymap.
package enum Keymaps {
    /// The context whose bindings apply everywhere (unless a view binds the same key).
    package static let global = "global"
}

/// Key bindings per context. Lookups try the context first, then `global`. The help overlay is
/// generated from here, so it is always true to what the keys do.
package struct Keymap<Action: Hashable & Sendable>: Sendable {
    package private(set) var bindings: [KeyBinding<Action>] = []

    package init(_ bindings: [KeyBinding<Action>] = []) { self.bindings = bindings }

    package mutating func bind(_ keys: [Key], _ action: Action, _ description: String, hint: String? = nil,
                              context: String = Keymaps.global) {
        bindings.append(KeyBinding(keys, action: action, description: description, hint: hint, context: context))
    }
    package mutating func bind(_ key: Key, _ action: Action, _ description: String, hint: String? = nil,
                              context: String = Keymaps.global) {
        bind([key], action, description, hint: hint, context: context)
    }

    /// The action for a key in a context (context bindings shadow global ones).
    package func action(for key: Key, context: String = Keymaps.global) -> Action? {
        if context != Keymaps.global,
           let b = bindings.first(where: { $0.context == context && $0.keys.contains(key) }) {
            return b.action
        }
        return bindings.first(where: { $0.context == Keymaps.global && $0.keys.contains(key) })?.action
    }

    /// Bindings that conflict: the same key bound twice in the same context.
    package func conflicts() -> [(Key, String)] {
        var seen = Set<String>()
        var out: [(Key, String)] = []
        for b in bindings {
            for k in b.keys {
                let id = "\(b.context)\u{0}\(k)"
                if !seen.insert(id).inserted { out.append((k, b.context)) }
            }
        }
        return out
    }

    /// Help entries for a context: its own bindings, then the global ones not shadowed. Bindings without a
    /// description are left out (e.g. keys 2-6 when key 1's line describes all six).
    package func help(context: String? = nil, ascii: Bool = false) -> [HelpEntry] {
        helpEntries(context: context, ascii: ascii).filter { !$0.description.isEmpty }
    }

    private func helpEntries(context: String?, ascii: Bool) -> [HelpEntry] {
        func entry(_ b: KeyBinding<Action>) -> HelpEntry {
            HelpEntry(keys: b.keys.map { ascii ? $0.asciiDescription : $0.description }.joined(separator: "/"),
                      description: b.description, context: b.context)
        }
        guard let context, context != Keymaps.global else {
            return bindings.map(entry)
        }
        let own = bindings.filter { $0.context == context }
        let ownKeys = Set(own.flatMap(\.keys))
        let globals = bindings.filter { $0.context == Keymaps.global }.compactMap { b -> KeyBinding<Action>? in
            let keys = b.keys.filter { !ownKeys.contains($0) }
            if keys.isEmpty { return nil }
            var c = b
            c.keys = keys
            return c
        }
        return (own + globals).map(entry)
    }

    /// Short "key label" hints for a status bar: the first key and the hint (else the description) of each
    /// action's binding in the context or, failing that, the global one.
    package func hints(context: String? = nil, actions: [Action], ascii: Bool = false) -> [(key: String, label: String)] {
        actions.compactMap { a in
            let b = bindings.first { $0.action == a && ($0.context == context || $0.context == Keymaps.global) }
            guard let b, let k = b.keys.first else { return nil }
            return (ascii ? k.asciiDescription : k.description, b.hint ?? b.description)
        }
    }
}
