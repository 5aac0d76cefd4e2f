import ArgumentParser
import BasinIO
import BasinNet
import BasinTensor
import Foundation

extension Activation: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}

/// How to build the network for a model file.
struct ArchitectureOptions: ParsableArguments {
    @Option(help: "Activation between inferred linear layers: relu, tanh or gelu.")
    var activation: Activation = .relu

    @Option(name: .customLong("arch"), help: "Architecture: a JSON file (docs/formats.md) or an ONNX graph (docs/onnx.md); overrides inference and --activation.")
    var archFile: String?

    var choice: ArchitectureChoice {
        ArchitectureChoice(activation: activation, file: archFile.map { URL(fileURLWithPath: $0) })
    }

    func load(_ path: String) throws -> LoadedModel {
        try LoadedModel(path: path, architecture: choice)
    }
}

/// Prints `value` as pretty, key-sorted JSON on standard output.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Writes a line to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// True when standard error is a terminal (progress bars) rather than a file or pipe (plain lines).
var standardErrorIsTerminal: Bool { isatty(2) == 1 }

func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024, u + 1 < units.count {
        v /= 1024
        u += 1
    }
    return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
}
