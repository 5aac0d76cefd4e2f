@testable import BasinUI
import BasinTestSupport
import Foundation
import XCTest

final class ThemeTests: XCTestCase {
    let themesDir = Fixtures.repositoryRoot.appendingPathComponent("Themes").path

    func testParsesColoursNamesHexAndAttributes() throws {
        let t = try Theme.parse("""
            # a comment
            name = test
            foreground = 252          # trailing comment
            accent = #ff0000 bold underline
            muted = bright_black
            good = green
            selection = default reverse
            border = dim
            """, name: "x")
        XCTAssertEqual(t.name, "test")
        XCTAssertEqual(t[.foreground], RoleStyle(.indexed(252)))
        XCTAssertEqual(t[.accent], RoleStyle(.indexed(196), [.bold, .underline]))
        XCTAssertEqual(t[.muted], RoleStyle(.indexed(8)))
        XCTAssertEqual(t[.good], RoleStyle(.indexed(2)))
        XCTAssertEqual(t[.selection], RoleStyle(.default, .reverse))
        XCTAssertEqual(t[.border], RoleStyle(.default, .dim))
        XCTAssertEqual(t[.series3], RoleStyle())  // unset
    }

    func testHexMapsToNearestXterm256() {
        XCTAssertEqual(Theme.parseColor("#ff0000"), .indexed(196))
        XCTAssertEqual(Theme.parseColor("#000000"), .indexed(16))
        XCTAssertEqual(Theme.parseColor("#808080"), .indexed(244))
        XCTAssertEqual(Theme.parseColor("#5fafff"), .indexed(75))
        XCTAssertNil(Theme.parseColor("#12345"))
        XCTAssertNil(Theme.parseColor("256"))
        XCTAssertNil(Theme.parseColor("purple"))
    }

    func testErrorsCarryFileAndLine() {
        func error(_ text: String) -> String {
            do { _ = try Theme.parse(text, name: "t", file: "my.theme"); return "no error" } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(error("foreground = 1\n\nseris1 = 4"),
                       "my.theme:3: unknown role 'seris1' (known roles: name, " + Role.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        XCTAssertEqual(error("# c\naccent = 300"),
                       "my.theme:2: invalid colour '300' for 'accent' (expected 0-255, #rrggbb, a colour name such as red or bright_blue, or default)")
        XCTAssertEqual(error("accent = 3 blink"),
                       "my.theme:1: unknown attribute 'blink' for 'accent' (expected bold, dim, reverse, underline)")
        XCTAssertEqual(error("\n\naccent 3"), "my.theme:3: expected 'key = value', got 'accent 3'")
        XCTAssertEqual(error("accent = 3\naccent = 4"), "my.theme:2: role 'accent' already set on line 1")
        XCTAssertEqual(error("accent ="), "my.theme:1: missing value for 'accent'")
    }

    func testResolutionUnderCapabilities() {
        let t = Theme.dark
        let accent = Style(fg: .role(.accent))
        XCTAssertEqual(t.resolve(accent, capability: .c256), ResolvedStyle(fg: 39, bg: -1, attributes: .bold))
        XCTAssertEqual(t.resolve(accent, capability: .eight), ResolvedStyle(fg: 6, bg: -1, attributes: .bold))
        XCTAssertEqual(t.resolve(accent, capability: .none), ResolvedStyle(fg: -1, bg: -1, attributes: .bold))
        // Plain style → theme foreground/background.
        XCTAssertEqual(t.resolve(.plain, capability: .c256), ResolvedStyle(fg: 252, bg: -1))
        XCTAssertEqual(t.resolve(.plain, capability: .eight), ResolvedStyle(fg: 7, bg: -1))
        // A coloured background role becomes reverse video without colour.
        let sel = Style(bg: .role(.selection))
        XCTAssertEqual(t.resolve(sel, capability: .c256), ResolvedStyle(fg: 252, bg: 24))
        XCTAssertEqual(t.resolve(sel, capability: .eight), ResolvedStyle(fg: 7, bg: 6))  // 24 = (0,95,135): nearest is cyan
        XCTAssertEqual(t.resolve(sel, capability: .none), ResolvedStyle(fg: -1, bg: -1, attributes: .reverse))
        // Concrete indices pass through at 256 and are reduced at 8.
        let heat = Style(fg: .indexed(196), bg: .indexed(21))
        XCTAssertEqual(t.resolve(heat, capability: .c256), ResolvedStyle(fg: 196, bg: 21))
        XCTAssertEqual(t.resolve(heat, capability: .eight), ResolvedStyle(fg: 1, bg: 4))
        XCTAssertEqual(XTerm.nearest8(236), 0)
        XCTAssertEqual(XTerm.nearest8(252), 7)
        XCTAssertEqual(XTerm.nearest8(12), 4)
    }

    func testCapabilityDetectionHonoursNoColor() {
        XCTAssertEqual(ColorCapability.detect(environment: ["NO_COLOR": "1"], terminalColors: 256), .none)
        XCTAssertEqual(ColorCapability.detect(environment: ["NO_COLOR": ""], terminalColors: 256), .c256)
        XCTAssertEqual(ColorCapability.detect(environment: [:], terminalColors: 8), .eight)
        XCTAssertEqual(ColorCapability.detect(environment: [:], terminalColors: 0), .none)
        XCTAssertEqual(ColorCapability.detect(environment: ["BASIN_COLORS": "8"], terminalColors: 256), .eight)
        XCTAssertEqual(ColorCapability.detect(environment: ["BASIN_COLORS": "none"], terminalColors: 256), .none)
    }

    func testMonoThemeUsesAttributesOnly() throws {
        let mono = try ThemeLoader.load(named: "mono", directories: [themesDir])
        for role in Role.allCases where ![.heatmapLow, .heatmapMid, .heatmapHigh].contains(role) {
            XCTAssertEqual(mono[role].color, .default, "\(role)")
        }
        XCTAssertEqual(mono.resolve(Style(bg: .role(.selection)), capability: .c256), ResolvedStyle(fg: -1, bg: -1, attributes: .reverse))
    }

    func testThemeFilesParseAndDarkMatchesEmbedded() throws {
        let names = ThemeLoader.availableThemes(in: [themesDir])
        XCTAssertEqual(names, ["dark", "high-contrast", "light", "mono"])
        for n in names {
            let t = try ThemeLoader.load(named: n, directories: [themesDir])
            XCTAssertEqual(t.name, n)
        }
        let file = try String(contentsOfFile: themesDir + "/dark.theme", encoding: .utf8)
        XCTAssertEqual(file.trimmingCharacters(in: .whitespacesAndNewlines),
                       Theme.embeddedDarkSource.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertEqual(try ThemeLoader.load(named: "dark", directories: [themesDir]).roles, Theme.dark.roles)
    }

    func testLoaderPrecedenceAndErrors() throws {
        let env = ["BASIN_THEME": "mono", "BASIN_THEMES_DIR": themesDir]
        XCTAssertEqual(try ThemeLoader.resolve(choice: nil, environment: env).name, "mono")
        XCTAssertEqual(try ThemeLoader.resolve(choice: "light", environment: env).name, "light")
        XCTAssertEqual(try ThemeLoader.resolve(choice: nil, environment: ["BASIN_THEMES_DIR": themesDir]).name, "dark")
        // dark works with no themes directory at all (embedded).
        XCTAssertEqual(try ThemeLoader.resolve(choice: nil, environment: [:]).roles, Theme.dark.roles)
        XCTAssertThrowsError(try ThemeLoader.resolve(choice: "nope", environment: env)) { e in
            XCTAssertEqual("\(e)", "nope.theme: theme 'nope' not found; searched: \(themesDir); available: dark, high-contrast, light, mono")
        }
        XCTAssertEqual(ThemeLoader.findThemesDirectory(from: Fixtures.repositoryRoot.appendingPathComponent("Sources/BasinUI").path),
                       URL(fileURLWithPath: themesDir).standardizedFileURL.path)

        let exe = Fixtures.repositoryRoot.appendingPathComponent(".build/debug/basin").path
        XCTAssertEqual(try ThemeLoader.resolve(choice: "high-contrast", executablePath: exe, environment: [:]).name, "high-contrast")

        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("bad.theme").path
        try "foreground = 1\naccent = #zzzzzz\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ThemeLoader.resolve(choice: path, environment: [:])) { e in
            XCTAssertTrue("\(e)".hasPrefix("\(path):2: invalid colour '#zzzzzz'"), "\(e)")
        }
    }
}
