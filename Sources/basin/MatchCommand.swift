import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

extension MatchMethod: ExpressibleByArgument {}

extension AlignmentStrategy: ExpressibleByArgument {}

struct MatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "match",
        abstract: "Permute models' hidden units to line up with the first model's (Git Re-Basin weight or activation matching).",
        discussion: """
        basin match A B --out B_ALIGNED aligns B to A. basin match A B C ... --out-dir DIR aligns every model after \
        the first into A's frame and writes each to DIR (named after its input): matched to A one by one \
        (--strategy reference), or by MergeMany (--strategy merge-many: each model matched to the mean of the \
        others until nothing moves, then expressed in A's units). An aligned model computes the same function as \
        its input, keeps its tensor names and dtypes (BatchNorm running statistics move with their channels), and \
        records the method and the permutations in its metadata. Permutation groups are derived from the graph \
        (an MLP inferred from names, or --arch FILE.json / G.onnx: a conv or linear layer's outputs open a group, \
        BatchNorm and pooling carry it, residual adds merge groups, image channels and classes never move) unless \
        an architecture file declares them under "permutations"; the report (--report) lists each group's tensors.
        """)

    @Argument(help: "The reference model A, then the models to permute.")
    var models: [String] = []

    @Option(help: "weight (parameter inner products) or activation (unit correlations on --data).")
    var method: MatchMethod = .weight

    @Option(help: "With more than two models: reference (each matched to A) or merge-many (each matched to the mean of the others; weight matching).")
    var strategy: AlignmentStrategy = .reference

    @Option(help: "Data set for activation matching: safetensors with x [N, ...] and labels y [N].")
    var data: String?

    @Option(help: "Seed for the order of the weight-matching sweeps (and of MergeMany's rounds).")
    var seed: UInt64 = 0

    @Option(help: "Most weight-matching sweeps over all permutations.")
    var maxSweeps: Int = 100

    @Option(help: "Most MergeMany rounds over all models.")
    var maxRounds: Int = 50

    @OptionGroup var arch: ArchitectureOptions

    @Option(name: .shortAndLong, help: "Two models: where to write aligned B: a .safetensors file, or a folder (a Hugging Face folder with B's config.json when B is one).")
    var out: String?

    @Option(help: "Where to write every aligned model after the first (a folder, created if missing).")
    var outDir: String?

    @Option(help: "Write the match report (JSON: similarity matrices, assignments, objective per step) here; with --out-dir, one report per aligned model.")
    var report: String?

    @Flag(help: "Print a JSON summary.")
    var json = false

    @OptionGroup var nonFinite: NonFiniteOptions

    struct Layer: Encodable {
        var name: String
        var size: Int
        var moved: Int
        var meanSimilarityBefore: Double
        var meanSimilarityAfter: Double
    }

    struct Summary: Encodable {
        var method: String
        var output: String
        var layers: [Layer]
        var objectiveBefore: Double
        var objectiveAfter: Double
        var sweeps: Int
        var seconds: Double
    }

    struct ManySummary: Encodable {
        struct Output: Encodable {
            var model: String
            var output: String
            var layers: [Layer]
            var objectiveBefore: Double
            var objectiveAfter: Double
            var sweeps: Int
        }
        var method: String
        var strategy: String
        var reference: String
        var rounds: Int
        var roundObjectives: [Double]
        var outputs: [Output]
        var seconds: Double
    }

    /// `--report` with `--out-dir`: every aligned model's report.
    struct ManyReport: Encodable {
        var method: MatchMethod
        var strategy: AlignmentStrategy
        var rounds: Int
        var roundObjectives: [Double]
        var reports: [MatchReport]
    }

    func validate() throws {
        if models.count < 2 { throw ValidationError("give a reference model and at least one model to align (basin match A B --out OUT)") }
        try Check.range(maxSweeps, 1...Check.maxIterations, "--max-sweeps")
        try Check.range(maxRounds, 1...Check.maxIterations, "--max-rounds")
        if method == .activation && data == nil {
            throw ValidationError("--method activation needs --data DATA to run both models on")
        }
        if out != nil && outDir != nil { throw ValidationError("give either --out (two models) or --out-dir, not both") }
        if out == nil && outDir == nil {
            throw ValidationError(models.count == 2 ? "give --out FILE for aligned B (or --out-dir DIR)"
                                                    : "give --out-dir DIR to write the \(models.count - 1) aligned models")
        }
        if out != nil && models.count > 2 { throw ValidationError("--out writes one model; give --out-dir DIR for \(models.count - 1) aligned models") }
        if strategy == .mergeMany && method == .activation {
            throw ValidationError("--strategy merge-many matches each model to the mean of the others by weight matching; it does not take --method activation")
        }
    }

    func run() throws {
        nonFinite.apply()
        var io = IOPlan()
        try io.models(models)
        try io.file(data)
        try io.file(arch.archFile)
        // A folder output (a Hugging Face folder) follows the checkpoint rule: its files, not the folder, are outputs.
        if let out, CheckpointWriter.isFolder(URL(fileURLWithPath: out)) { io.checkpoint(out) } else { io.output(out) }
        if let outDir {
            // The folder is created if missing; the files it would hold are checked like any output.
            try FileCheck.outputDirectory(outDir)
            for name in Self.outputNames(for: Array(models.dropFirst())) {
                io.output(URL(fileURLWithPath: outDir).appendingPathComponent(name).path, folderMayBeMissing: true)
            }
        }
        io.output(report)
        try io.check()
        let loaded = try models.map { try arch.load($0) }
        var bad = false
        for m in loaded where warnNonFinite(m) { bad = true }
        try refuseNonFinite(bad, "the models")
        let a = loaded[0]
        for m in loaded.dropFirst() { try a.params.checkCompatible(with: m.params, "\(a.path) and \(m.path)") }
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        guard !spec.groups.isEmpty else {
            throw ValidationError("\(a.path) has no hidden units to permute (a single layer)")
        }
        var dataset: Dataset?
        if let data {
            let d = try Dataset(path: data)
            try LoadedModel.check(d, fits: a)
            dataset = d
        }
        if let out { return try runPair(a, loaded[1], spec: spec, dataset: dataset, out: out) }
        try runMany(loaded, spec: spec, dataset: dataset, outDir: outDir!)
    }

    private func layers(_ r: MatchReport) -> [Layer] {
        r.layers.map { .init(name: $0.name, size: $0.size, moved: $0.moved, meanSimilarityBefore: $0.meanSimilarityBefore,
                             meanSimilarityAfter: $0.meanSimilarityAfter) }
    }

    private func printLayers(_ layers: [Layer]) {
        let width = max(5, layers.map(\.name.count).max() ?? 5)
        print("layer".padding(toLength: width, withPad: " ", startingAt: 0) + "  units  moved  mean similarity before -> after")
        for l in layers {
            print(l.name.padding(toLength: width, withPad: " ", startingAt: 0)
                  + String(format: "  %5d  %5d  %.6g -> %.6g", l.size, l.moved, l.meanSimilarityBefore, l.meanSimilarityAfter))
        }
    }

    /// Each group's tensors: `name[axis]` (with the entries per unit when not 1).
    private func printGroups(_ spec: PermutationSpec) {
        for g in spec.groups {
            let axes = g.axes.map { "\($0.param)[\($0.axis)]" + ($0.block == 1 ? "" : "x\($0.block)") }
            print("\(g.name): " + axes.joined(separator: " "))
        }
    }

    private func runPair(_ a: LoadedModel, _ b: LoadedModel, spec: PermutationSpec, dataset: Dataset?, out: String) throws {
        var result = try Alignment.align(reference: a.params, model: b.params, spec: spec, method: method, seed: seed,
                                         maxSweeps: maxSweeps, network: a.network, data: dataset)
        result.report.modelA = a.path
        result.report.modelB = b.path
        if method == .activation { result.report.data = data }

        let outURL = URL(fileURLWithPath: out)
        var metadata = b.source.metadata
        for (k, v) in result.metadata { metadata[k] = v }
        let dtypes = b.dtypes
        if CheckpointWriter.isFolder(outURL) {
            // A folder: as save_pretrained lays one out, with B's config.json when B is a Hugging Face model.
            try MergeExport.write(result.aligned, to: outURL, dtype: { dtypes[$0] ?? .f32 }, recipe: nil,
                                  inputs: [(b.path, b.source), (a.path, a.source)], extraMetadata: metadata)
        } else {
            try result.aligned.write(to: outURL, dtype: { dtypes[$0] ?? .f32 }, metadata: metadata, protecting: [a.url, b.url])
        }
        if let report {
            try AtomicFile.write(try result.report.jsonData(), to: URL(fileURLWithPath: report), protecting: a.source.files + b.source.files + [outURL])
        }

        let r = result.report
        let summary = Summary(method: method.rawValue, output: out, layers: layers(r), objectiveBefore: r.objectiveBefore,
                              objectiveAfter: r.objectiveAfter, sweeps: r.sweeps, seconds: r.seconds)
        if json { return try printJSON(summary) }
        print("\(method.rawValue) matching of \(b.path) to \(a.path): \(r.sweeps) sweep(s), \(String(format: "%.3f", r.seconds)) s")
        printLayers(summary.layers)
        printGroups(spec)
        print(String(format: "objective %.6g -> %.6g", r.objectiveBefore, r.objectiveAfter))
        print("wrote \(out)" + (report.map { " and \($0)" } ?? ""))
    }

    /// The output file for each model after the first: DIR/<name>.safetensors, the name taken from the input
    /// (a folder's own name, a file's name without its extensions), made unique by a -2, -3, ... suffix.
    static func outputNames(for paths: [String]) -> [String] {
        var used = Set<String>()
        return paths.map { path in
            let url = URL(fileURLWithPath: path)
            var isDirectory: ObjCBool = false
            var name = url.lastPathComponent
            if !(FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue) {
                for suffix in [".safetensors.index.json", ".safetensors", ".onnx"] where name.hasSuffix(suffix) && name.count > suffix.count {
                    name = String(name.dropLast(suffix.count))
                    break
                }
            }
            if name.isEmpty || name == "." || name == ".." || name == "/" { name = "model" }
            var candidate = name, k = 2
            while !used.insert(candidate).inserted {
                candidate = "\(name)-\(k)"
                k += 1
            }
            return candidate + ".safetensors"
        }
    }

    private func runMany(_ loaded: [LoadedModel], spec: PermutationSpec, dataset: Dataset?, outDir: String) throws {
        let a = loaded[0]
        let dir = URL(fileURLWithPath: outDir)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw BasinIOError(.invalidArgument, file: dir.path, "--out-dir must be a folder, and this is a file")
            }
        }
        let inputs = loaded.flatMap(\.source.files)
        let names = Self.outputNames(for: models.dropFirst().map { $0 })
        let outputs = names.map { dir.appendingPathComponent($0) }
        var reportURL: URL?
        if let report { reportURL = URL(fileURLWithPath: report) }
        // Refuse before any work if an output would replace an input (or the report another output).
        for url in outputs + (reportURL.map { [$0] } ?? []) { try OutputGuard.check(output: url, inputs: inputs) }
        if let reportURL { try OutputGuard.check(output: reportURL, inputs: outputs) }

        let result = try Alignment.alignMany(loaded.map(\.params), spec: spec, method: method, strategy: strategy, seed: seed,
                                             maxSweeps: maxSweeps, maxRounds: maxRounds, network: a.network, data: dataset)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var reports = result.reports
        for k in 1..<loaded.count {
            let m = loaded[k]
            if strategy == .reference { reports[k - 1].modelA = a.path }
            reports[k - 1].modelB = m.path
            if method == .activation { reports[k - 1].data = data }
            var metadata = m.source.metadata
            for (key, v) in result.metadata(model: k, reference: a.path) { metadata[key] = v }
            let dtypes = m.dtypes
            try result.aligned[k].write(to: outputs[k - 1], dtype: { dtypes[$0] ?? .f32 }, metadata: metadata, protecting: inputs)
        }
        if let reportURL {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            let many = ManyReport(method: method, strategy: strategy, rounds: result.rounds, roundObjectives: result.roundObjectives,
                                  reports: reports)
            try encoder.encode(many).write(to: reportURL, options: .atomic)
        }

        let summary = ManySummary(
            method: method.rawValue, strategy: strategy.rawValue, reference: a.path, rounds: result.rounds,
            roundObjectives: result.roundObjectives,
            outputs: (1..<loaded.count).map { k in
                let r = reports[k - 1]
                return .init(model: loaded[k].path, output: outputs[k - 1].path, layers: layers(r), objectiveBefore: r.objectiveBefore,
                             objectiveAfter: r.objectiveAfter, sweeps: r.sweeps)
            },
            seconds: result.seconds)
        if json { return try printJSON(summary) }
        let how = strategy == .reference ? "each matched to \(a.path)" : "MergeMany, \(result.rounds) round(s), in the units of \(a.path)"
        print("\(method.rawValue) matching of \(loaded.count - 1) models (\(how)): \(String(format: "%.3f", result.seconds)) s")
        for o in summary.outputs {
            print("\(o.model) -> \(o.output)")
            printLayers(o.layers)
        }
        if strategy == .mergeMany {
            print("mean objective against the mean of the others, per round: "
                  + result.roundObjectives.map { String(format: "%.6g", $0) }.joined(separator: ", "))
        }
        print("wrote \(outputs.count) model(s) to \(outDir)" + (report.map { " and \($0)" } ?? ""))
    }
}
