import ArgumentParser
import BasinExplorer
import Foundation

/// `basin docs`: regenerates the generated documentation from the explorer itself.
struct DocsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "docs",
        abstract: "Regenerate docs/explorer.md and the README's capture from the explorer (captures, key map, measured speed).",
        discussion: """
            Drives the explorer on SampleModels/ by keys, captures every view as text, writes the key map from the \
            keymap and measures the keypress-to-frame latency as `basin bench ui` does. Run it from a release build \
            (swift build -c release) on a quiet machine: the speed figures are the ones measured in this run.
            """)

    @Option(help: "Repository root to write docs/explorer.md and README.md in (default: the folder holding SampleModels/).")
    var root: String?
    @Option(help: "Repeats of the bench ui key script for the speed figures.")
    var benchRepeats: Int = 3

    func validate() throws {
        if benchRepeats < 1 { throw ValidationError("--bench-repeats must be at least 1") }
    }

    func run() throws {
        let samples = try SampleSession.locate()
        let rootURL = root.map { URL(fileURLWithPath: $0) } ?? samples.deletingLastPathComponent()
        let readmeURL = rootURL.appendingPathComponent("README.md")
        let readme: String
        do { readme = try String(contentsOf: readmeURL, encoding: .utf8) } catch {
            throw ValidationError("\(readmeURL.path): cannot be read (\(error.localizedDescription))")
        }
        var settings = ExplorerDocs.Settings()
        settings.benchRepeats = benchRepeats
        let doc = try ExplorerDocs.generate(samples: samples, settings: settings) { step in
            FileHandle.standardError.write(Data("basin docs: \(step)\n".utf8))
        }
        guard let newReadme = ExplorerDocs.replaceBlock("capture", in: readme, with: "```text\n\(doc.readmeCapture)\n```") else {
            throw ValidationError("\(readmeURL.path): no <!-- capture:begin --> ... <!-- capture:end --> markers to put the capture between")
        }
        let docs = rootURL.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        let explorer = docs.appendingPathComponent("explorer.md")
        try doc.markdown.write(to: explorer, atomically: true, encoding: .utf8)
        try newReadme.write(to: readmeURL, atomically: true, encoding: .utf8)
        print("wrote \(explorer.path) and the capture in \(readmeURL.path)")
    }
}
