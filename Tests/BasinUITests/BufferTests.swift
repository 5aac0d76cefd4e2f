@testable import BasinUI
import XCTest

final class BufferTests: XCTestCase {
    func testWriteClipsAndTrimsTrailingSpaces() {
        var b = CellBuffer(width: 8, height: 3)
        b.write("hello world", x: 1, y: 0)
        b.write("abc", x: 2, y: 1, clip: Rect(x: 0, y: 0, width: 4, height: 3))
        b.write("zz", x: -1, y: 2)
        assertSnapshot(b, """
             hello w
              ab
            z
            """)
    }

    func testWideCharactersTakeTwoCellsAndDoNotSplit() {
        var b = CellBuffer(width: 5, height: 1)
        let end = b.write("a漢字", x: 0, y: 0)
        XCTAssertEqual(end, 5)
        XCTAssertEqual(b[1, 0].symbol, "漢")
        XCTAssertTrue(b[2, 0].isContinuation)
        XCTAssertEqual(b.text(), "a漢字")
        var c = CellBuffer(width: 4, height: 1)
        c.write("ab漢", x: 1, y: 0)   // 漢 would need columns 3-4: dropped
        XCTAssertEqual(c.text(), " ab")
    }

    func testWidthTable() {
        XCTAssertEqual(TextWidth.of("⣿"), 1)
        XCTAssertEqual(TextWidth.of("─"), 1)
        XCTAssertEqual(TextWidth.of("▀"), 1)
        XCTAssertEqual(TextWidth.of("漢"), 2)
        XCTAssertEqual(TextWidth.of("e\u{301}x"), 2)
        XCTAssertEqual(TextWidth.fit("abcdef", to: 4), "abc…")
    }

    func testDiffReportsOnlyChangedCells() {
        var a = CellBuffer(width: 4, height: 2)
        a.write("abcd", x: 0, y: 0)
        var b = a
        b.put(2, 0, "X")
        b.set(1, 1, Cell("Y", style: Style(fg: .role(.bad))))
        let d = b.diff(from: a)
        XCTAssertEqual(d.map { "\($0.x),\($0.y)=\($0.cell.symbol)" }, ["2,0=X", "1,1=Y"])
        // Style-only change is a change too.
        var c = b
        c.setStyle(Style(attributes: .bold), in: Rect(x: 0, y: 0, width: 1, height: 1))
        XCTAssertEqual(c.diff(from: b).map(\.x), [0])
        XCTAssertEqual(b.diff(from: b).count, 0)
        // Different size: everything.
        XCTAssertEqual(b.diff(from: CellBuffer(width: 3, height: 2)).count, 8)
        XCTAssertEqual(b.diff(from: nil).count, 8)
    }

    func testDiffRedrawsWideOwnerWhenContinuationChanges() {
        var a = CellBuffer(width: 4, height: 1)
        a.write("ab", x: 0, y: 0)
        var b = CellBuffer(width: 4, height: 1)
        b.write("漢b", x: 0, y: 0)   // cols 0,1 = 漢 + continuation, col 2 = b
        let d = b.diff(from: a)
        XCTAssertEqual(d.map { "\($0.x)=\($0.cell.symbol)" }, ["0=漢", "2=b"])
    }

    func testLayoutSplits() {
        let r = Rect(x: 0, y: 0, width: 100, height: 10)
        XCTAssertEqual(r.split(.horizontal, [.fixed(20), .percent(30), .fill(1)]).map(\.width), [20, 30, 50])
        XCTAssertEqual(r.split(.horizontal, [.fill(1), .fill(3)]).map(\.width), [25, 75])
        XCTAssertEqual(r.split(.horizontal, [.fixed(10), .fill(1), .fixed(10)], spacing: 1).map(\.x), [0, 11, 90])
        XCTAssertEqual(r.split(.vertical, [.fixed(1), .fill(1), .fixed(1)]).map(\.height), [1, 8, 1])
        XCTAssertEqual(r.split(.vertical, [.fixed(8), .fixed(8)]).map(\.height), [8, 2])
        XCTAssertEqual(r.centered(width: 10, height: 4), Rect(x: 45, y: 3, width: 10, height: 4))
    }

    func testBlockUnicodeAndAscii() {
        let block = Block(title: "Barrier")
        assertSnapshot(render(block, width: 14, height: 3), """
            ┌─ Barrier ──┐
            │            │
            └────────────┘
            """)
        assertSnapshot(render(block, width: 9, height: 3, context: ascii), """
            +- Bar~-+
            |       |
            +-------+
            """)
        XCTAssertEqual(block.inner(Rect(x: 0, y: 0, width: 14, height: 3)), Rect(x: 1, y: 1, width: 12, height: 1))
    }
}
