import BasinTestSupport
import BasinUI
import Foundation
import XCTest

/// Theme errors carry a kind (docs/reliability.md); a FIFO given as a theme is refused, never read.
final class ThemeErrorKindTests: XCTestCase {
    func testKinds() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("pipe.theme")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        XCTAssertThrowsError(try ThemeLoader.load(path: fifo.path)) { XCTAssertEqual(($0 as? ThemeError)?.kind, .unreadable) }
        XCTAssertThrowsError(try ThemeLoader.load(path: dir.appendingPathComponent("missing.theme").path)) {
            XCTAssertEqual(($0 as? ThemeError)?.kind, .unreadable)
        }
        XCTAssertThrowsError(try ThemeLoader.load(named: "no-such-theme", directories: [dir.path])) {
            XCTAssertEqual(($0 as? ThemeError)?.kind, .notFound)
        }
        let bad = dir.appendingPathComponent("bad.theme")
        try "foreground = not-a-colour\n".write(to: bad, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ThemeLoader.load(path: bad.path)) {
            XCTAssertEqual(($0 as? ThemeError)?.kind, .syntax)
            XCTAssertEqual(($0 as? ThemeError)?.line, 1)
        }
    }
}
