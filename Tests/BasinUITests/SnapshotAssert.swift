import BasinUI
import Foundation
import XCTest

/// Compares `buffer.text()` with an expected multi-line literal. On mismatch prints both (with
/// row numbers) and fails. With `BASIN_RECORD_SNAPSHOTS=1` the actual text is also written to
/// Tests/BasinUITests/__Snapshots__/<test>.<name>.txt so it can be reviewed and pasted in.
func assertSnapshot(_ buffer: CellBuffer, _ expected: String, name: String = "",
                    file: StaticString = #filePath, testName: String = #function, line: UInt = #line) {
    assertSnapshot(text: buffer.text(), expected, name: name, file: file, testName: testName, line: line)
}

func assertSnapshot(text actual: String, _ expected: String, name: String = "",
                    file: StaticString = #filePath, testName: String = #function, line: UInt = #line) {
    let trimmedExpected = expected.split(separator: "\n", omittingEmptySubsequences: false)
        .map { l -> String in var s = String(l); while s.last == " " { s.removeLast() }; return s }
        .joined(separator: "\n")
    // Trailing empty rows are insignificant in both.
    func dropTrailingEmpty(_ s: String) -> String {
        var lines = s.split(separator: "\n", omittingEmptySubsequences: false)
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines.joined(separator: "\n")
    }
    let a = dropTrailingEmpty(actual), e = dropTrailingEmpty(trimmedExpected)
    if ProcessInfo.processInfo.environment["BASIN_RECORD_SNAPSHOTS"] == "1" {
        let dir = URL(fileURLWithPath: "\(file)").deletingLastPathComponent().appendingPathComponent("__Snapshots__")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let fn = testName.replacingOccurrences(of: "()", with: "") + (name.isEmpty ? ".L\(line)" : ".\(name)") + ".txt"
        try? (actual + "\n").write(to: dir.appendingPathComponent(fn), atomically: true, encoding: .utf8)
    }
    guard a != e else { return }
    func numbered(_ s: String) -> String {
        s.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            .map { String(format: "%3d|", $0.offset) + $0.element }.joined(separator: "\n")
    }
    XCTFail("""
        Snapshot \(name.isEmpty ? testName : name) differs.
        --- expected
        \(numbered(e))
        --- actual
        \(numbered(a))
        ---
        """, file: file, line: line)
}

let uni = RenderContext(theme: .dark, capability: .c256, glyphs: .unicodeSet)
let ascii = RenderContext(theme: .dark, capability: .none, glyphs: .asciiSet)

func render(_ w: some Widget, width: Int, height: Int, context: RenderContext = uni) -> CellBuffer {
    var b = CellBuffer(width: width, height: height)
    w.render(into: &b, area: b.area, context: context)
    return b
}
