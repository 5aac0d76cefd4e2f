@testable import BasinUI
import XCTest

final class InputTests: XCTestCase {
    func testContextBindingsShadowGlobal() {
        var km = Keymap()
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

    func testHelpIsGeneratedFromKeymap() {
        var km = Keymap()
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
        // Every standard binding appears in the help.
        let std = Keymap.standard
        XCTAssertEqual(std.help().count, std.bindings.count)
        XCTAssertTrue(std.conflicts().isEmpty)
        XCTAssertEqual(std.action(for: .char("l")), "right")
        XCTAssertEqual(std.action(for: .right), "right")
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
