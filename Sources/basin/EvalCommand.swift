import ArgumentParser
import BasinIO
import BasinNet
import Foundation

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval", abstract: "Loss and accuracy of a model on a data set.")

    @Argument(help: "Model: a .safetensors file, a *.safetensors.index.json or a folder holding one.")
    var model: String

    @Option(help: "Data set: safetensors with x [N, ...] and integer labels y [N].")
    var data: String

    @OptionGroup var arch: ArchitectureOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        var io = IOPlan()
        try io.model(model)
        try io.file(data)
        try io.file(arch.archFile)
        try io.check()
        let loaded = try arch.load(model)
        warnNonFinite(loaded)
        let dataset = try Dataset(path: data)
        let m = try loaded.evaluate(on: dataset)
        if json {
            try printJSON(m)
        } else {
            print(String(format: "loss %.6f  accuracy %.4f  samples %d", m.loss, m.accuracy, m.samples))
        }
    }
}

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "List a model file's tensors and metadata.")

    @Argument(help: "A .safetensors file, a *.safetensors.index.json or a folder holding one.")
    var model: String

    @Flag(help: "Print JSON.")
    var json = false

    struct Entry: Encodable {
        var name: String
        var dtype: String
        var shape: [Int]
        var bytes: Int
    }

    struct Report: Encodable {
        var file: String
        var tensors: [Entry]
        var parameters: Int
        var bytes: Int
        var metadata: [String: String]
    }

    func run() throws {
        var io = IOPlan()
        try io.model(model)
        let source = try ModelFile.open(model)
        let entries = source.names.compactMap { n in source.info(n).map { Entry(name: n, dtype: $0.dtype.rawValue, shape: $0.shape, bytes: $0.byteCount) } }
        let report = Report(file: source.displayPath, tensors: entries,
                            parameters: entries.reduce(0) { $0 + $1.shape.reduce(1, *) },
                            bytes: entries.reduce(0) { $0 + $1.bytes }, metadata: source.metadata)
        if json { return try printJSON(report) }
        print(report.file)
        let width = max(4, entries.map(\.name.count).max() ?? 4)
        print("name".padding(toLength: width, withPad: " ", startingAt: 0) + "  dtype  shape                bytes")
        for e in entries {
            let shape = "[" + e.shape.map(String.init).joined(separator: ", ") + "]"
            print(e.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                  + e.dtype.padding(toLength: 5, withPad: " ", startingAt: 0) + "  "
                  + shape.padding(toLength: 19, withPad: " ", startingAt: 0) + "  " + String(e.bytes))
        }
        print("\(entries.count) tensors, \(report.parameters) parameters, \(formatBytes(report.bytes))")
        if !report.metadata.isEmpty {
            print("metadata:")
            for (k, v) in report.metadata.sorted(by: { $0.key < $1.key }) {
                let shown = v.count > 200 ? String(v.prefix(200)) + "..." : v
                print("  \(k): \(shown)")
            }
        }
    }
}
