@testable import BasinUI
import XCTest

final class PlotTests: XCTestCase {
    func testBrailleDiagonalExactDots() {
        // y = x from (0,0) to (1,1) on a 4x2-cell plot = 8x8 dots: dots (i, 7-i).
        let plot = BraillePlot(series: [PlotSeries(name: "", points: [(0, 0), (1, 1)], index: 0)],
                               yRange: 0...1, showLegend: false)
        let b = render(plot, width: 8, height: 4)
        assertSnapshot(b, """
              1┤  ⡠⠊
              0┤⡠⠊
               └┬─┬┬
                0  1
            """)
        XCTAssertEqual(b[4, 1].style.fg, .role(.series1))
        XCTAssertEqual(BraillePlot.bit(0, 3) | BraillePlot.bit(1, 2), 0x60)  // ⡠
    }

    func testBrailleParabolaWithCursorMarkerAndLegend() {
        // A loss barrier shape: 4x(1-x) peaking at x=0.5, plus a flat second series.
        let xs = (0...20).map { Double($0) / 20 }
        let path = PlotSeries(name: "path", points: xs.map { ($0, 4 * $0 * (1 - $0)) }, index: 0)
        let flat = PlotSeries(name: "soup", points: xs.map { ($0, 0.25) }, index: 1)
        let plot = BraillePlot(series: [path, flat], yRange: 0...1, cursorX: 0.25,
                               marker: PlotMarker(x: 0.5, y: 1, label: "barrier 1"))
        let b = render(plot, width: 30, height: 10)
        // The marker's label comes first and keeps its number; series that do not fit end in an ellipsis.
        assertSnapshot(b, """
                ◆ barrier 1  ━ path  …
              1┤      │ ⣀⠔⠒⠉⠉◆⠉⠒⠤⣀
               │      ⢀⠎          ⠱⡀
               │    ⢀⠔⠁            ⠈⠢⡀
            0.5┤   ⢠⠊ │              ⠑⢄
               │  ⡰⠁  │               ⠈⢆
               │⠉⡹⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⢏⠉
              0┤⡰⠁    │                 ⠈⢆
               └┬─────┬──────┬───────────┬
                0           0.5          1
            """)
        // Marker (col 13 = x 0.5), cursor column (col 6 = x 0.25), and series colours.
        XCTAssertEqual(b[4 + 13, 1].style.fg, .role(.barrier))
        XCTAssertEqual(b[4 + 6, 2].style.fg, .role(.series1))
        XCTAssertTrue(b[4 + 6, 2].style.underline)
        XCTAssertEqual(b[4 + 6, 4].style.fg, .role(.cursor))
        XCTAssertEqual(b[4 + 6, 4].symbol, "│")
        XCTAssertEqual(b[4 + 10, 6].style.fg, .role(.series2))
    }

    func testBrailleAsciiFallbackAndAutoRange() {
        let s = PlotSeries(name: "loss", values: [3, 1, 2], index: 0)
        let plot = BraillePlot(series: [s])
        XCTAssertEqual(plot.resolvedYRange(), 0.9...3.1)
        XCTAssertEqual(plot.resolvedXRange(), 0...1)
        let b = render(plot, width: 16, height: 6, context: ascii)
        assertSnapshot(b, """
                * loss
            3.1+**
               | ***      **
            0.9+    ******
               ++-----+----+
                0    0.5   1
            """)
    }

    func testFlatSeriesGetsARange() {
        XCTAssertEqual(BraillePlot(series: [PlotSeries(name: "", values: [2, 2], index: 0)]).resolvedYRange(), 1.8...2.2)
        XCTAssertEqual(BraillePlot(series: []).resolvedYRange(), 0...1)
    }

    func testHeatmapAsciiDensity() {
        var m = (0..<4).map { r in (0..<4).map { c in Double(r * 4 + c) } }
        m[3][3] = .nan   // not yet computed
        let h = Heatmap(values: m, range: 0...15, marked: (row: 1, col: 2), showColorBar: false)
        let b = render(h, width: 4, height: 4, context: ascii)
        assertSnapshot(b, """
              .:
            :-X=
            +**#
            %%@
            """)
        let withBar = Heatmap(values: m, range: 0...15, showColorBar: true)
        var big = CellBuffer(width: 20, height: 5)
        withBar.render(into: &big, area: big.area, context: ascii)
        XCTAssertEqual(big.line(4), "0  .:-=+*#%@ 15")
    }

    func testHeatmapHalfBlockColourIndices() {
        let m = (0..<4).map { r in (0..<4).map { c in Double(r * 4 + c) } }
        let h = Heatmap(values: m, marked: nil, showColorBar: false, ramp: .halfBlock([10, 11, 12, 13]))
        let b = render(h, width: 4, height: 2)
        XCTAssertEqual(b.text(), "▀▀▀▀\n▀▀▀▀")
        for x in 0..<4 {
            XCTAssertEqual(b[x, 0].style, Style(fg: .indexed(10), bg: .indexed(11)))
            XCTAssertEqual(b[x, 1].style, Style(fg: .indexed(12), bg: .indexed(13)))
        }
        // Stretching: a 4x2 matrix on 4x2 cells repeats columns; NaN halves are blank or '▄'.
        let small = Heatmap(values: [[0, .nan], [.nan, 1], [1, 1], [.nan, 0]], range: 0...1, showColorBar: false,
                            ramp: .halfBlock([1, 2]))
        let sb = render(small, width: 4, height: 2)
        XCTAssertEqual(sb.text(), "▀▀▄▄\n▀▀▀▀")
        XCTAssertEqual(sb[0, 0].style, Style(fg: .indexed(1)))
        XCTAssertEqual(sb[3, 0].style, Style(fg: .indexed(2)))
        XCTAssertEqual(sb[0, 1].style, Style(fg: .indexed(2)))
        XCTAssertEqual(sb[2, 1].style, Style(fg: .indexed(2), bg: .indexed(1)))
    }

    func testHeatRampChoice() {
        XCTAssertEqual(HeatRamp.make(RenderContext(capability: .none, glyphs: .unicodeSet)), .density(HeatRamp.densityChars))
        XCTAssertEqual(HeatRamp.make(RenderContext(capability: .eight, glyphs: .unicodeSet)), .halfBlock([4, 6, 2, 3, 1]))
        XCTAssertEqual(HeatRamp.make(RenderContext(capability: .eight, glyphs: .asciiSet)), .background([4, 6, 2, 3, 1]))
        guard case .halfBlock(let c) = HeatRamp.make(RenderContext(theme: .dark, capability: .c256, glyphs: .unicodeSet)) else {
            return XCTFail("expected half blocks")
        }
        XCTAssertEqual(c.count, 24)
        XCTAssertEqual(c.first, XTerm.nearest256(r: 0x0d, g: 0x08, b: 0x87))
        XCTAssertEqual(c.last, XTerm.nearest256(r: 0xf0, g: 0xf9, b: 0x21))
        XCTAssertEqual(c.last, 226)  // #f0f921 → (255,255,0) in the cube
    }
}
