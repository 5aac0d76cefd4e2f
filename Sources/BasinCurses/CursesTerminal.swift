import BasinUI
import CNcurses
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

package struct CursesError: Error, CustomStringConvertible {
    /// What went wrong, for tests and callers to match on.
    package enum Kind: String, Sendable {
        /// Standard input or output is not a terminal.
        case notATerminal
        /// TERM is unset or "dumb".
        case noTerminalType
        /// ncurses could not start on this terminal.
        case initFailed
    }

    package var kind: Kind
    package var description: String
    package init(_ kind: Kind, _ d: String) {
        self.kind = kind
        description = d
    }
}

/// The real terminal, on ncursesw. Create it, run a loop on it, call `shutdown()` (or use
/// `CursesTerminal.run`, which always restores the terminal). Every ncurses call must happen
/// on the thread that created it.
package final class CursesTerminal: Terminal {
    package private(set) var context: RenderContext
    package let unicode: Bool
    package let terminalColors: Int
    private var previous: CellBuffer?
    private var pairs: [Int64: Int16] = [:]
    private var nextPair: Int16 = 1
    private var defaultColorsOK = false
    private var currentTimeout = Int.min
    private var cursor: Point?
    private var active = false

    /// Initialises curses. `theme` is resolved per frame under the detected capability.
    package init(theme: Theme = .dark, environment: [String: String] = ProcessInfo_environment()) throws {
        guard isatty(STDIN_FILENO) != 0, isatty(STDOUT_FILENO) != 0 else {
            throw CursesError(.notATerminal, "the explorer needs an interactive terminal (stdin/stdout are not a TTY)")
        }
        guard let term = environment["TERM"], !term.isEmpty, term != "dumb" else {
            throw CursesError(.noTerminalType, "TERM is not set (or is 'dumb'): cannot start the terminal UI")
        }
        setlocale(LC_ALL, "")
        unicode = basin_locale_is_utf8() != 0
        set_escdelay(25)
        guard initscr() != nil else { throw CursesError(.initFailed, "initscr failed for TERM=\(term)") }
        active = true
        basin_install_signal_handlers()
        raw()           // ^C arrives as a key (the app quits on it); handlers cover kill -INT etc.
        noecho()
        nonl()
        keypad(basin_stdscr(), true)
        intrflush(basin_stdscr(), false)
        curs_set(0)
        // Mouse: SGR reports requested directly (see basin_mouse_on), decoded by MouseEvent.sgr.
        mousemask(0, nil)
        basin_define_sgr_mouse_key()
        basin_mouse_on()
        var colors = 0
        if has_colors() {
            start_color()
            defaultColorsOK = use_default_colors() == basin_ok()
            colors = Int(basin_colors())
        }
        terminalColors = colors
        let cap = ColorCapability.detect(environment: environment, terminalColors: colors)
        context = RenderContext(theme: theme, capability: cap, glyphs: Glyphs.forUnicode(unicode))
    }

    deinit { shutdown() }

    /// Restores the terminal (idempotent).
    package func shutdown() {
        guard active else { return }
        active = false
        basin_mark_curses_inactive()
        basin_mouse_off()
        basin_clear_before_exit()
        curs_set(1)
        endwin()
    }

    package func setTheme(_ theme: Theme) {
        context.theme = theme
        previous = nil
    }

    package var size: Size { Size(width: Int(basin_cols()), height: Int(basin_lines())) }

    // MARK: Drawing

    private func pair(fg: Int, bg: Int) -> Int16 {
        if context.capability == .none { return 0 }
        var f = fg, b = bg
        if !defaultColorsOK {
            if f < 0 { f = 7 }
            if b < 0 { b = 0 }
        }
        if f == -1 && b == -1 { return 0 }
        let key = Int64(f + 1) << 16 | Int64(b + 1)
        if let p = pairs[key] { return p }
        let limit = min(Int(basin_color_pairs()) - 1, Int(Int16.max))
        if Int(nextPair) > limit {
            // Out of pairs: start over (rare; the screen is redrawn in full).
            pairs.removeAll()
            nextPair = 1
            previous = nil
        }
        let p = nextPair
        nextPair += 1
        init_pair(p, Int16(f), Int16(b))
        pairs[key] = p
        return p
    }

    private func attrs(_ a: TextAttributes) -> attr_t {
        var r = basin_a_normal()
        if a.contains(.bold) { r |= basin_a_bold() }
        if a.contains(.dim) { r |= basin_a_dim() }
        if a.contains(.reverse) { r |= basin_a_reverse() }
        if a.contains(.underline) { r |= basin_a_underline() }
        return r
    }

    package func draw(_ buffer: CellBuffer) throws {
        if previous == nil || previous?.size != buffer.size {
            erase()
            previous = nil
        }
        for change in buffer.diff(from: previous) {
            let rs = context.theme.resolve(change.cell.style, capability: context.capability)
            let p = pair(fg: rs.fg, bg: rs.bg)
            var wcs: [wchar_t] = change.cell.symbol.unicodeScalars.prefix(4).map { wchar_t(bitPattern: $0.value) }
            if wcs.isEmpty { wcs = [wchar_t(32)] }
            if !unicode, wcs.contains(where: { $0 > 126 }) { wcs = [wchar_t(63)] } // '?'
            wcs.append(0)
            _ = basin_put_wch(Int32(change.y), Int32(change.x), wcs, attrs(rs.attributes), p)
        }
        previous = buffer
        if let c = cursor, c.x >= 0, c.y >= 0, c.x < buffer.width, c.y < buffer.height {
            curs_set(1)
            move(Int32(c.y), Int32(c.x))
        } else {
            curs_set(0)
        }
        refresh()
    }

    package func setCursor(_ position: Point?) { cursor = position }

    // MARK: Input

    package func readKey(timeoutMs: Int) throws -> Key? {
        if timeoutMs != currentTimeout {
            wtimeout(basin_stdscr(), Int32(timeoutMs))
            currentTimeout = timeoutMs
        }
        var ch: wint_t = 0
        let rc = basin_get_wch(&ch)
        if rc == basin_err() { return nil }
        if rc == basin_key_code_yes() { return decodeFunctionKey(Int32(ch)) }
        let code = UInt32(ch)
        if let k = Key.fromControl(code) { return k }
        guard let s = Unicode.Scalar(code) else { return nil }
        return .char(Character(s))
    }

    private func decodeFunctionKey(_ k: Int32) -> Key? {
        switch k {
        case basin_key_up(): return .up
        case basin_key_down(): return .down
        case basin_key_left(): return .left
        case basin_key_right(): return .right
        case basin_key_sleft(): return .shiftLeft
        case basin_key_sright(): return .shiftRight
        case basin_key_home(): return .home
        case basin_key_end(): return .end
        case basin_key_ppage(): return .pageUp
        case basin_key_npage(): return .pageDown
        case basin_key_backspace(): return .backspace
        case basin_key_dc(): return .delete
        case basin_key_enter(): return .enter
        case basin_key_btab(): return .backtab
        case basin_key_resize():
            previous = nil
            return .resize
        case basin_key_sgr_mouse():
            return readSGRMouse()
        default:
            for n in 1...12 where k == basin_key_f(Int32(n)) { return .function(n) }
            return nil
        }
    }

    /// Reads the rest of an SGR mouse report ("b;x;y" then M or m) that follows ESC [ <.
    private func readSGRMouse() -> Key? {
        wtimeout(basin_stdscr(), 50)
        currentTimeout = 50
        var params = ""
        for _ in 0..<24 {
            var ch: wint_t = 0
            guard basin_get_wch(&ch) != basin_err(), let s = Unicode.Scalar(UInt32(ch)) else { return nil }
            let c = Character(s)
            if c == "M" || c == "m" { return MouseEvent.sgr(params, final: c).map { .mouse($0) } }
            guard c.isNumber || c == ";" else { return nil }
            params.append(c)
        }
        return nil
    }

    // MARK: Running

    /// Runs `app` full-screen until it quits, always restoring the terminal (normal exit,
    /// thrown errors; signals via the installed handlers). Returns the final app value.
    @discardableResult
    package static func run<A: App>(_ app: A, theme: Theme = .dark, inbox: Inbox<A.Message> = Inbox(),
                                   pollTimeoutMs: Int = 30) throws -> A {
        let terminal = try CursesTerminal(theme: theme)
        defer { terminal.shutdown() }
        let loop = RunLoop(app: app, inbox: inbox, pollTimeoutMs: pollTimeoutMs)
        return try loop.run(on: terminal)
    }
}

/// The process environment without Foundation (BasinCurses stays light).
package func ProcessInfo_environment() -> [String: String] {
    var out: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
        p += 1
    }
    return out
}
