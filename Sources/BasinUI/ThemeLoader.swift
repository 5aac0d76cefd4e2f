import Foundation

/// Finds and loads themes. Precedence: an explicit choice (the CLI's `--theme NAME|PATH`), then
/// `BASIN_THEME`, then `dark`. A choice is a path if it contains `/` or ends in `.theme`;
/// otherwise a name looked up as `NAME.theme` in the themes directories:
/// `BASIN_THEMES_DIR` (colon-separated), then the given extra directories. `dark` always
/// works: if no file is found the embedded copy is used.
package enum ThemeLoader {
    package static func load(path: String) throws -> Theme {
        let url = URL(fileURLWithPath: path)
        // A FIFO or device would block or never end: only regular files are read (docs/reliability.md).
        if let type = try? FileManager.default.attributesOfItem(atPath: url.resolvingSymlinksInPath().path)[.type] as? FileAttributeType,
           type != .typeRegular {
            throw ThemeError(.unreadable, file: path, line: nil, message: "is not a regular file; a theme is a text file")
        }
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw ThemeError(.unreadable, file: path, line: nil, message: "cannot read theme file (\(error.localizedDescription))")
        }
        let name = url.deletingPathExtension().lastPathComponent
        return try Theme.parse(text, name: name, file: path)
    }

    /// Directories searched for `NAME.theme`, in order.
    package static func searchDirectories(environment: [String: String] = ProcessInfo.processInfo.environment,
                                         extra: [String] = []) -> [String] {
        var dirs: [String] = []
        if let d = environment["BASIN_THEMES_DIR"], !d.isEmpty {
            dirs += d.split(separator: ":").map(String.init)
        }
        dirs += extra
        return dirs
    }

    /// Walks up from `start` (e.g. the executable's directory) looking for a `Themes` directory
    /// holding `dark.theme`: finds the package's Themes/ from `.build/debug/basin`.
    package static func findThemesDirectory(from start: String) -> String? {
        var url = URL(fileURLWithPath: start).standardizedFileURL
        for _ in 0..<8 {
            let candidate = url.appendingPathComponent("Themes")
            if FileManager.default.fileExists(atPath: candidate.appendingPathComponent("dark.theme").path) {
                return candidate.path
            }
            let parent = url.deletingLastPathComponent()
            if parent.path == url.path { break }
            url = parent
        }
        return nil
    }

    package static func load(named name: String, directories: [String]) throws -> Theme {
        for dir in directories {
            let p = URL(fileURLWithPath: dir).appendingPathComponent("\(name).theme").path
            if FileManager.default.fileExists(atPath: p) { return try load(path: p) }
        }
        if name == "dark" { return Theme.dark }
        let where_ = directories.isEmpty ? "no themes directory found (set BASIN_THEMES_DIR)"
            : "searched: " + directories.joined(separator: ", ")
        let avail = availableThemes(in: directories)
        throw ThemeError(.notFound, file: "\(name).theme", line: nil,
                         message: "theme '\(name)' not found; \(where_)" + (avail.isEmpty ? "" : "; available: " + avail.joined(separator: ", ")))
    }

    /// Loads the theme chosen by `choice` (CLI), else BASIN_THEME, else dark.
    package static func resolve(choice: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
                               extraDirectories: [String] = []) throws -> Theme {
        let pick = choice ?? environment["BASIN_THEME"].flatMap { $0.isEmpty ? nil : $0 } ?? "dark"
        if pick.contains("/") || pick.hasSuffix(".theme") { return try load(path: pick) }
        return try load(named: pick, directories: searchDirectories(environment: environment, extra: extraDirectories))
    }

    /// The usual search: BASIN_THEMES_DIR, then the Themes/ found by walking up from the
    /// executable (e.g. `.build/debug/basin` → the package's `Themes/`), then `./Themes`.
    package static func resolve(choice: String?, executablePath: String,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Theme {
        var extra: [String] = []
        let exeDir = URL(fileURLWithPath: executablePath).resolvingSymlinksInPath().deletingLastPathComponent().path
        if let d = findThemesDirectory(from: exeDir) { extra.append(d) }
        let cwd = FileManager.default.currentDirectoryPath + "/Themes"
        if !extra.contains(cwd) { extra.append(cwd) }
        return try resolve(choice: choice, environment: environment, extraDirectories: extra)
    }

    package static func availableThemes(in directories: [String]) -> [String] {
        var names = Set<String>()
        for d in directories {
            for f in (try? FileManager.default.contentsOfDirectory(atPath: d)) ?? [] where f.hasSuffix(".theme") {
                names.insert(String(f.dropLast(6)))
            }
        }
        return names.sorted()
    }
}
