import ArgumentParser
import BasinExplorer
import BasinIO
import BasinNet
import Foundation

/// The outputs every analysis command (landscape, barriers, simplex, fit) shares: `--json` or `--csv` on
/// standard output instead of the text report, and `--svg FILE` for the plot.
struct AnalysisOutputOptions: ParsableArguments {
    @Flag(help: "Print JSON instead of the text report.")
    var json = false

    @Flag(help: "Print CSV instead of the text report.")
    var csv = false

    @Option(help: "Also write the plot as SVG to this file (the same data as the terminal plot).")
    var svg: String?

    func validate() throws {
        if json && csv { throw ValidationError("choose one of --json and --csv") }
        if let svg, svg.isEmpty { throw ValidationError("--svg needs a file name") }
    }

    /// Adds the SVG file to the command's outputs (checked with its inputs before any work).
    func plan(_ io: inout IOPlan) { io.output(svg) }

    /// Writes the figure's SVG (when asked) by BasinIO's output rule: never over an input, atomically.
    func writeSVG(_ figure: Figure, inputs: [URL]) throws {
        guard let svg else { return }
        try AtomicFile.write(Data(figure.svg().utf8), to: URL(fileURLWithPath: svg), protecting: inputs)
        if text { print("wrote \(svg)") }
    }

    /// Prints the text report unless JSON or CSV was asked for.
    var text: Bool { !json && !csv }
}

/// A JSON number that is null when not finite (JSON has no NaN or infinity).
func finite(_ v: Double) -> Double? { v.isFinite ? v : nil }

func finite(_ m: [[Double]]) -> [[Double?]] { m.map { $0.map(finite) } }

/// Progress on standard error while a command computes (only on a terminal, and not with --json/--csv).
struct ProgressLine {
    let on: Bool
    init(_ output: AnalysisOutputOptions) { on = standardErrorIsTerminal && output.text }
    func show(_ s: String) { if on { FileHandle.standardError.write(Data("\r\u{1B}[K\(s)".utf8)) } }
    func clear() { if on { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) } }
}

/// Loads models of one architecture and checks the data sets against them.
func loadCompatible(_ paths: [String], arch: ArchitectureOptions) throws -> [LoadedModel] {
    let loaded = try paths.map { try arch.load($0) }
    for (i, m) in loaded.enumerated().dropFirst() {
        try loaded[0].params.checkCompatible(with: m.params, "\(loaded[0].path) and \(m.path)")
        guard m.architecture == loaded[0].architecture else {
            throw ValidationError("\(paths[i]) has a different architecture from \(paths[0])")
        }
    }
    return loaded
}

/// The short names figures label models with (file names without folders and extensions).
func shortName(_ path: String) -> String { URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent }
