@testable import BasinUI
import XCTest

final class WidgetTests: XCTestCase {
    func testSliderPositionsKnobByValue() {
        let s = Slider(label: "alpha", value: 0.25, range: 0...1)
        // "alpha " (6) + "[" + track + "] " + "0.25" = 20 → track 7, knob at round(0.25*6)=2 (1.5 → 2)
        assertSnapshot(render(s, width: 20, height: 1), "alpha [──●────] 0.25")
        assertSnapshot(render(Slider(label: "t", value: 1, range: 0...1, focused: true), width: 12, height: 1, context: ascii),
                       "t [-----O] 1")
        assertSnapshot(render(Slider(label: "t", value: -3, range: -2...2), width: 12, height: 1, context: ascii),
                       "t [O----] -3")
        let focused = render(Slider(label: "a", value: 0.5, focused: true), width: 12, height: 1)
        XCTAssertEqual(focused[0, 0].style.fg, .role(.accent))
        XCTAssertTrue(focused[0, 0].style.bold)
    }

    func testProgressBar() {
        let p = ProgressBar(fraction: 0.3, label: "epoch 3/10 loss 0.123 eta 4s")
        assertSnapshot(render(p, width: 50, height: 1),
                       "epoch 3/10 loss 0.123 eta 4s █████░░░░░░░░░░░░ 30%")
        assertSnapshot(render(ProgressBar(fraction: 1, label: "done"), width: 16, height: 1, context: ascii),
                       "done ###### 100%")
        // Too narrow for a bar: label and percentage only.
        assertSnapshot(render(ProgressBar(fraction: 0.5, label: "x"), width: 6, height: 1), "x 50%")
    }

    func testListScrollsToKeepSelectionVisible() {
        let items = (1...10).map { "item \($0)" }
        var state = ListState()
        state.move(6, count: items.count)
        let list = ListView(items, state: state)
        assertSnapshot(render(list, width: 12, height: 4), """
              item 4   ▲
              item 5
              item 6
            ▶ item 7   ▼
            """)
        XCTAssertEqual(list.visibleState(height: 4).offset, 3)
        XCTAssertEqual(list.index(atRow: 2, area: Rect(x: 0, y: 0, width: 12, height: 4)), 5)
        XCTAssertNil(list.index(atRow: 4, area: Rect(x: 0, y: 0, width: 12, height: 4)))
        state.move(100, count: items.count)
        XCTAssertEqual(state.selected, 9)
        assertSnapshot(render(ListView(items, state: state), width: 12, height: 3, context: ascii), """
              item 8   ^
              item 9
            > item 10
            """)
        state.move(-100, count: items.count)
        var s2 = state
        s2.offset = 7
        s2.scrollToSelection(height: 3, count: 10)
        XCTAssertEqual(s2.offset, 0)
    }

    func testPromptEditing() {
        var t = TextInput("")
        for c in "lr=0.1" { t.handle(.char(c)) }
        XCTAssertEqual(t.text, "lr=0.1")
        t.handle(.home)
        t.handle(.delete)
        t.handle(.char("L"))
        XCTAssertEqual(t.text, "Lr=0.1")
        XCTAssertEqual(t.cursor, 1)
        t.handle(.end)
        t.handle(.backspace)
        t.handle(.left)
        t.handle(.left)
        t.handle(.char("9"))
        XCTAssertEqual(t.text, "Lr=90.")
        t.handle(.right); t.handle(.right); t.handle(.right)
        XCTAssertEqual(t.cursor, 6)
        XCTAssertEqual(t.handle(.enter), .submitted("Lr=90."))
        XCTAssertEqual(t.handle(.esc), .cancelled)
        XCTAssertEqual(t.handle(.function(5)), .ignored)
        t.handle(.home); t.handle(.backspace)
        XCTAssertEqual(t.text, "Lr=90.")

        let p = Prompt(prompt: "path: ", input: TextInput("abc"))
        let b = render(p, width: 12, height: 1)
        XCTAssertEqual(b.text(), "path: abc")
        XCTAssertEqual(p.cursorPosition(in: b.area), Point(x: 9, y: 0))
        XCTAssertTrue(b[9, 0].style.reverse)
        // Long input scrolls so the cursor stays visible.
        let long = Prompt(prompt: "> ", input: TextInput("0123456789abcdef"))
        let lb = render(long, width: 10, height: 1)
        XCTAssertEqual(lb.text(), "> 9abcdef")
        XCTAssertEqual(long.cursorPosition(in: lb.area).x, 9)
    }

    func testStatusBarAndTabs() {
        let bar = StatusBar(hints: [("q", "quit"), ("?", "help"), ("Tab", "view")], status: "aligning 40%")
        let b = render(bar, width: 40, height: 1)
        assertSnapshot(b, " q quit  ? help  Tab view  aligning 40%")
        XCTAssertEqual(b[1, 0].style.fg, .role(.accent))
        XCTAssertEqual(b[39, 0].style.bg, .role(.statusBg))
        let tabs = TabBar(["Barrier", "Align", "Soup"], selected: 1)
        let tb = render(tabs, width: 30, height: 1)
        assertSnapshot(tb, " Barrier │ Align │ Soup")
        XCTAssertEqual(tb[11, 0].style.bg, .role(.selection))
        XCTAssertEqual(tabs.tab(atColumn: 12, area: tb.area), 1)
        XCTAssertEqual(tabs.tab(atColumn: 9, area: tb.area), nil)
        XCTAssertEqual(tabs.tab(atColumn: 20, area: tb.area), 2)
    }

    func testTable() {
        let t = Table(header: ["model", "acc", "loss"],
                      rows: [["seed0", "0.97", "0.10"], ["seed1", "0.96", "0.12"], ["soup", "0.95", "0.15"]],
                      widths: [.fill(1), .fixed(5), .fixed(5)], alignments: [.left, .right, .right], selected: 2)
        let b = render(t, width: 20, height: 3, context: ascii)
        assertSnapshot(b, """
            model      acc  loss
            seed1     0.96  0.12
            soup      0.95  0.15
            """)
        XCTAssertEqual(b[0, 2].style.bg, .role(.selection))
    }

    func testPopupAndTooSmall() {
        let p = Popup(title: "Error", message: "cannot read model.safetensors", kind: .error, footer: "Esc")
        assertSnapshot(render(p, width: 40, height: 7), """

               ┌─ Error ───────────────────────┐
               │ cannot read model.safetensors │
               │                           Esc │
               └───────────────────────────────┘
            """)
        let b = render(p, width: 40, height: 7)
        XCTAssertEqual(b[4, 1].style.fg, .role(.bad))
        assertSnapshot(render(TooSmall(minimum: Size(width: 80, height: 24)), width: 30, height: 5), """

                  Terminal too small
                   30x5, need 80x24
            enlarge the window or press q
            """)
        XCTAssertTrue(TooSmall.check(Size(width: 79, height: 30), minimum: Size(width: 80, height: 24)))
        XCTAssertFalse(TooSmall.check(Size(width: 80, height: 24), minimum: Size(width: 80, height: 24)))
    }

    func testParagraphWraps() {
        assertSnapshot(render(Paragraph("the loss barrier between two models is high"), width: 12, height: 5), """
            the loss
            barrier
            between two
            models is
            high
            """)
    }

    func testFormatNumber() {
        XCTAssertEqual(formatNumber(0.123456), "0.123")
        XCTAssertEqual(formatNumber(12.5), "12.5")
        XCTAssertEqual(formatNumber(1234.6), "1235")
        XCTAssertEqual(formatNumber(1), "1")
        XCTAssertEqual(formatNumber(-0.5), "-0.5")
        XCTAssertEqual(formatNumber(2.5e-5), "2.5e-05")
        XCTAssertEqual(formatNumber(.nan), "nan")
    }
}
