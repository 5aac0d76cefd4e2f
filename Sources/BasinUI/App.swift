import Foundation

/// A thread-safe mailbox: background jobs `post`, the UI loop `drain`s on its own thread.
package final class Inbox<Message: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var queue: [Message] = []
    package init() {}
    package func post(_ m: Message) {
        lock.lock()
        queue.append(m)
        lock.unlock()
    }
    package func drain() -> [Message] {
        lock.lock()
        defer { lock.unlock() }
        let out = queue
        queue.removeAll(keepingCapacity: true)
        return out
    }
    package var isEmpty: Bool {
        lock.lock()
        defer { lock.unlock() }
        return queue.isEmpty
    }
}

/// What reaches `App.update`.
package enum AppEvent<Message: Sendable>: Sendable {
    case key(Key)
    case message(Message)
    case resize(Size)
    /// Sent once before the first frame.
    case start
}

/// What `update` asks the loop to do.
package enum Effect<Message: Sendable>: Sendable {
    case quit
    /// Redraw even if nothing else changed.
    case redraw
    /// Run work on a background thread; it reports back through the inbox.
    case spawn(@Sendable (Inbox<Message>) -> Void)
    /// Show the text cursor (e.g. in a prompt) or hide it.
    case cursor(Point?)
}

/// The explorer implements this: state + update(event) → effects + render(state, into buffer).
package protocol App {
    associatedtype Message: Sendable
    mutating func update(_ event: AppEvent<Message>) -> [Effect<Message>]
    func render(into buffer: inout CellBuffer, context: RenderContext)
}

/// Drives an `App` on a `Terminal`: polls keys with a timeout so background messages are
/// picked up, re-renders only after something happened, and draws only if the frame changed.
package final class RunLoop<A: App> {
    package private(set) var app: A
    package let inbox: Inbox<A.Message>
    package var pollTimeoutMs: Int
    /// Frames rendered / actually sent to the terminal (for tests and diagnostics).
    package private(set) var renders = 0
    package private(set) var draws = 0

    package init(app: A, inbox: Inbox<A.Message> = Inbox(), pollTimeoutMs: Int = 30) {
        self.app = app
        self.inbox = inbox
        self.pollTimeoutMs = pollTimeoutMs
    }

    /// Runs until the app returns `.quit`. Errors from the terminal propagate.
    @discardableResult
    package func run(on terminal: Terminal) throws -> A {
        var last: CellBuffer?
        var dirty = true
        var quit = false
        func apply(_ effects: [Effect<A.Message>]) {
            dirty = true
            for e in effects {
                switch e {
                case .quit: quit = true
                case .redraw: dirty = true
                case .cursor(let p): terminal.setCursor(p)
                case .spawn(let job):
                    let inbox = self.inbox
                    let t = Thread { job(inbox) }
                    t.stackSize = 8 << 20
                    t.start()
                }
            }
        }
        apply(app.update(.start))
        while !quit {
            if dirty {
                var buffer = CellBuffer(size: terminal.size)
                app.render(into: &buffer, context: terminal.context)
                renders += 1
                if buffer != last {
                    try terminal.draw(buffer)
                    draws += 1
                    last = buffer
                }
                dirty = false
            }
            if quit { break }
            let key = try terminal.readKey(timeoutMs: pollTimeoutMs)
            if let key {
                if key == .resize {
                    apply(app.update(.resize(terminal.size)))
                    last = nil
                } else {
                    apply(app.update(.key(key)))
                }
            }
            for m in inbox.drain() where !quit {
                apply(app.update(.message(m)))
            }
        }
        return app
    }
}
