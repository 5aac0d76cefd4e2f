import Foundation

/// What widgets need to know besides the area: the theme, colour capability and glyph set.
package struct RenderContext: Sendable {
    package var theme: Theme
    package var capability: ColorCapability
    package var glyphs: Glyphs
    package init(theme: Theme = .dark, capability: ColorCapability = .c256, glyphs: Glyphs = .unicodeSet) {
        self.theme = theme
        self.capability = capability
        self.glyphs = glyphs
    }
}

/// A terminal the run loop can drive: the real ncurses one (BasinCurses) or `TestTerminal`.
/// All calls happen on one thread (the loop's).
package protocol Terminal: AnyObject {
    var size: Size { get }
    var context: RenderContext { get }
    /// Shows `buffer` (backends diff against the previous frame).
    func draw(_ buffer: CellBuffer) throws
    /// Waits up to `timeoutMs` for a key; nil on timeout.
    func readKey(timeoutMs: Int) throws -> Key?
    /// Shows the text cursor at a position, or hides it (nil).
    func setCursor(_ position: Point?)
}

/// An in-memory terminal: captures every drawn frame and replays a scripted list of input steps.
package final class TestTerminal: Terminal {
    package enum Step: Sendable {
        case key(Key)
        /// `readKey` times out once (lets background messages arrive).
        case idle
        /// The terminal changes size; `readKey` reports `.resize`.
        case resize(Size)
        /// Waits (really sleeps) for the given milliseconds then times out: for inbox tests.
        case sleep(Int)
        /// Stays at the head of the script, timing out every few milliseconds (so background messages arrive
        /// and the app updates) until `ready` holds; then moves on. If `ready` does not hold within `limitMs`,
        /// `readKey` throws `WaitTimedOut` naming `what`: a test waits for a state, never for a guessed duration.
        case until(_ what: String, limitMs: Int, _ ready: @Sendable () -> Bool)
    }
    package struct WaitTimedOut: Error, CustomStringConvertible {
        package var what: String
        package var limitMs: Int
        package var description: String { "TestTerminal: waited \(limitMs) ms for \(what) and it did not happen" }
    }
    package struct ScriptExhausted: Error, CustomStringConvertible {
        package var description: String { "TestTerminal: input script exhausted (did the app not quit?)" }
    }

    package private(set) var size: Size
    package var context: RenderContext
    package private(set) var frames: [CellBuffer] = []
    package private(set) var cursor: Point?
    package private(set) var script: [Step]
    /// Number of readKey calls that returned nil.
    package private(set) var timeouts = 0
    /// When the `until` step at the head of the script started waiting.
    private var waitingSince: Date?

    package init(width: Int, height: Int, context: RenderContext = RenderContext(glyphs: .unicodeSet), script: [Step] = []) {
        self.size = Size(width: width, height: height)
        self.context = context
        self.script = script
    }

    package convenience init(width: Int, height: Int, context: RenderContext = RenderContext(glyphs: .unicodeSet), keys: [Key]) {
        self.init(width: width, height: height, context: context, script: keys.map { .key($0) })
    }

    /// Adds characters of `s` as key steps.
    package func type(_ s: String) { script += s.map { .key(.char($0)) } }
    package func enqueue(_ steps: Step...) { script += steps }

    package var lastFrame: CellBuffer? { frames.last }

    package func draw(_ buffer: CellBuffer) { frames.append(buffer) }

    package func readKey(timeoutMs: Int) throws -> Key? {
        guard !script.isEmpty else { throw ScriptExhausted() }
        if case let .until(what, limitMs, ready) = script[0] {
            let since = waitingSince ?? Date()
            waitingSince = since
            timeouts += 1
            if ready() {
                waitingSince = nil
                script.removeFirst()
                return nil
            }
            if Date().timeIntervalSince(since) * 1000 > Double(limitMs) {
                waitingSince = nil
                throw WaitTimedOut(what: what, limitMs: limitMs)
            }
            usleepShim(2000)
            return nil
        }
        switch script.removeFirst() {
        case .key(let k): return k
        case .idle: timeouts += 1; return nil
        case .resize(let s): size = s; return .resize
        case .sleep(let ms):
            var remaining = ms
            while remaining > 0 { usleepShim(1000); remaining -= 1 }
            timeouts += 1
            return nil
        case .until: return nil  // handled above
        }
    }

    package func setCursor(_ position: Point?) { cursor = position }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@inline(__always) func usleepShim(_ us: UInt32) { _ = usleep(us) }
