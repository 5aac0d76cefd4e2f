@testable import BasinUI
import XCTest

/// A tiny app: j/k change a counter, s starts a background job that posts a result, q quits.
struct CounterApp: App {
    enum Message: Sendable { case result(Int) }
    var count = 0
    var results: [Int] = []
    var keymap: Keymap<String> = {
        var k = Keymap<String>()
        k.bind([.char("q"), .ctrl("c")], "quit", "quit")
        k.bind([.char("j"), .down], "inc", "increment")
        k.bind([.char("k"), .up], "dec", "decrement")
        k.bind(.char("s"), "job", "start job")
        return k
    }()

    mutating func update(_ event: AppEvent<Message>) -> [Effect<Message>] {
        switch event {
        case .key(let key):
            switch keymap.action(for: key) {
            case "quit": return [.quit]
            case "inc": count += 1
            case "dec": count -= 1
            case "job":
                let n = count
                return [.spawn { inbox in inbox.post(.result(n * 10)) }]
            default: break
            }
        case .message(.result(let r)): results.append(r)
        case .resize, .start: break
        }
        return []
    }

    func render(into buffer: inout CellBuffer, context: RenderContext) {
        buffer.write("count \(count)", x: 0, y: 0)
        buffer.write("results \(results.map(String.init).joined(separator: ","))", x: 0, y: 1)
    }
}

final class RunLoopTests: XCTestCase {
    func testScriptedKeysBackgroundJobAndRedrawOnlyOnChange() throws {
        let term = TestTerminal(width: 20, height: 3, script: [
            .key(.char("j")), .key(.down), .key(.char("x")), .key(.char("s")),
            .sleep(200), .idle, .key(.up), .key(.ctrl("c")),
        ])
        let loop = RunLoop(app: CounterApp())
        let app = try loop.run(on: term)
        XCTAssertEqual(app.count, 1)
        XCTAssertEqual(app.results, [20])
        assertSnapshot(term.lastFrame!, """
            count 1
            results 20
            """)
        // Frames: start, j, down, (x: no change), (s: no change), result, (idle: nothing), up.
        XCTAssertEqual(term.frames.map { $0.line(0) + "|" + $0.line(1) },
                       ["count 0|results", "count 1|results", "count 2|results", "count 2|results 20", "count 1|results 20"])
        XCTAssertEqual(loop.draws, 5)
        XCTAssertGreaterThan(loop.renders, loop.draws)
    }

    func testResizeRendersAtNewSize() throws {
        let term = TestTerminal(width: 20, height: 3, script: [.resize(Size(width: 10, height: 2)), .key(.char("q"))])
        try RunLoop(app: CounterApp()).run(on: term)
        XCTAssertEqual(term.frames.map(\.size), [Size(width: 20, height: 3), Size(width: 10, height: 2)])
    }

    func testExhaustedScriptThrows() {
        let term = TestTerminal(width: 10, height: 2, keys: [.char("j")])
        XCTAssertThrowsError(try RunLoop(app: CounterApp()).run(on: term)) { XCTAssertTrue($0 is TestTerminal.ScriptExhausted) }
    }

    func testInboxIsThreadSafe() {
        let inbox = Inbox<Int>()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            for k in 0..<1000 { inbox.post(i * 1000 + k) }
        }
        XCTAssertEqual(Set(inbox.drain()).count, 8000)
        XCTAssertTrue(inbox.isEmpty)
    }
}
