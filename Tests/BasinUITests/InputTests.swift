@testable import BasinUI
import XCTest

final class InputTests: XCTestCase {
    func testContextBindingsShadowGlobal() {
        var km = Keymap<String>()
        km.bind([.char("q"), .ctrl("c")], "quit", "quit")
        km.bind([.char("j"), .down], "down", "move down")
        km.bind(.char("j"), "nextLayer", "next layer", context: "align")
        XCTAssertEqual(km.action(for: .ctrl("c")), "quit")
        XCTAssertEqual(km.action(for: .char("j")), "down")
        XCTAssertEqual(km.action(for: .char("j"), context: "align"), "nextLayer")
        XCTAssertEqual(km.action(for: .down, context: "align"), "down")
        XCTAssertEqual(km.action(for: .char("q"), context: "align"), "quit")
        XCTAssertNil(km.action(for: .char("z")))
        XCTAssertTrue(km.conflicts().isEmpty)
        km.bind(.char("q"), "other", "dup")
        XCTAssertEqual(km.conflicts().map { "\($0.0)@\($0.1)" }, ["q@global"])
    }

    func testHintsPreferTheShortLabel() {
        var km = Keymap<String>()
        km.bind([.char("?")], "help", "toggle this help", hint: "help")
        km.bind([.char("q")], "quit", "quit")
        km.bind([.char("h"), .left], "left", "move left", hint: "scrub", context: "path")
        km.bind([.char("h")], "left", "decrease", context: "soup")
        XCTAssertEqual(km.hints(context: "path", actions: ["help", "left", "quit"]).map { "\($0.key) \($0.label)" },
                       ["? help", "h scrub", "q quit"])
        XCTAssertEqual(km.hints(context: "soup", actions: ["left", "missing"]).map { "\($0.key) \($0.label)" }, ["h decrease"])
    }

    func testHelpIsGeneratedFromKeymap() {
        var km = Keymap<String>()
        km.bind([.char("q"), .ctrl("c")], "quit", "quit")
        km.bind([.up, .char("k")], "up", "move up")
        km.bind(.char("k"), "keep", "keep layer", context: "align")
        let entries = km.help(context: "align")
        XCTAssertEqual(entries.map { "\($0.keys)=\($0.description)" }, ["k=keep layer", "q/C-c=quit", "↑=move up"])
        XCTAssertEqual(km.help(context: "align", ascii: true).last?.keys, "Up")
        let overlay = HelpOverlay(keymap: km, context: "align", title: "Help")
        assertSnapshot(render(overlay, width: 24, height: 7), """

             ┌─ Help ────────────┐
             │ k      keep layer │
             │ q/C-c  quit       │
             │ ↑      move up    │
             └───────────────────┘
            """)
        // The footer (a glossary) wraps inside the box: no line is wider than the box's inner width, so none
        // loses its end.
        let long = HelpOverlay(keymap: Keymap<String>(), context: "align", title: "Help",
                               footer: [("barrier", String(repeating: "how far the loss rises above the chord ", count: 6))])
        for width in [30, 64, 80] {
            let ls = long.lines(ascii: false, width: width)
            XCTAssertTrue(ls.allSatisfy { TextWidth.of($0.head) + TextWidth.of($0.text) <= width - 4 }, "\(width): \(ls)")
            XCTAssertEqual(ls.map { ($0.head + $0.text).trimmingCharacters(in: .whitespaces) }.joined(separator: " ").split(separator: " ").count,
                           1 + 8 * 6, "every word kept")
        }
        // Without a context: every binding, once.
        XCTAssertEqual(km.help().count, km.bindings.count)
    }

    /// SGR (1006) mouse reports: press, drag (motion with the button held), release, wheel; 1-based cells.
    func testSGRMouseDecoding() {
        XCTAssertEqual(MouseEvent.sgr("0;10;5", final: "M"), MouseEvent(.press, x: 9, y: 4))
        XCTAssertEqual(MouseEvent.sgr("32;12;5", final: "M"), MouseEvent(.drag, x: 11, y: 4))
        XCTAssertEqual(MouseEvent.sgr("0;12;5", final: "m"), MouseEvent(.release, x: 11, y: 4))
        XCTAssertEqual(MouseEvent.sgr("64;1;1", final: "M"), MouseEvent(.wheelUp, x: 0, y: 0))
        XCTAssertEqual(MouseEvent.sgr("65;300;2", final: "M"), MouseEvent(.wheelDown, x: 299, y: 1), "no 223-column limit")
        XCTAssertNil(MouseEvent.sgr("2;3;3", final: "M"), "right button ignored")
        XCTAssertNil(MouseEvent.sgr("0;0;3", final: "M"))
        XCTAssertNil(MouseEvent.sgr("0;3", final: "M"))
        XCTAssertNil(MouseEvent.sgr("0;3;4", final: "x"))
    }

    func testKeyNamesAndControlDecoding() {
        XCTAssertEqual(Key.fromControl(3), .ctrl("c"))
        XCTAssertEqual(Key.fromControl(13), .enter)
        XCTAssertEqual(Key.fromControl(127), .backspace)
        XCTAssertEqual(Key.fromControl(27), .esc)
        XCTAssertEqual(Key.fromControl(9), .tab)
        XCTAssertNil(Key.fromControl(65))
        XCTAssertEqual(Key.char(" ").description, "Space")
        XCTAssertEqual(Key.function(2).description, "F2")
        XCTAssertEqual(Key.pageDown.description, "PgDn")
    }
}
