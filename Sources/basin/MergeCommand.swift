import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// One row of a metrics table (`basin merge --data`, `basin soup`): easy to paste into a README table.
struct MetricsRow: Encodable {
    var name: String
    var kind: String
    var loss: Double
    var accuracy: Double
    var samples: Int
    var test: Metrics?
}

/// Prints rows as an aligned table (one row per model; columns split on two or more spaces) or JSON.
func printMetricsTable(_ rows: [MetricsRow], json: Bool, dataName: String, testName: String? = nil) throws {
    if json { return try printJSON(rows) }
    let width = max(24, rows.map(\.name.count).max() ?? 0)
    func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
    print("# metrics on \(dataName)" + (testName.map { " (test columns: \($0))" } ?? ""))
    var header = pad("model", width) + "  " + pad("kind", 16) + "  " + pad("loss", 8) + "  " + pad("accuracy", 8)
    if testName != nil { header += "  " + pad("test loss", 9) + "  test accuracy" }
    print(header)
    for r in rows {
        var line = pad(r.name, width) + "  " + pad(r.kind, 16) + "  " + pad(String(format: "%.4f", r.loss), 8) + "  "
            + pad(String(format: "%.2f%%", r.accuracy * 100), 8)
        if let t = r.test { line += "  " + pad(String(format: "%.4f", t.loss), 9) + "  " + String(format: "%.2f%%", t.accuracy * 100) }
        print(line)
    }
}

/// Parses "5GB", "500MB", "2GiB", "1000000" into bytes.
func parseByteSize(_ s: String) throws -> Int {
    let t = s.trimmingCharacters(in: .whitespaces).uppercased()
    let units: [(String, Double)] = [("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("G", 1e9), ("M", 1e6), ("K", 1e3), ("B", 1)]
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        if let v = Double(t.dropLast(suffix.count)), v > 0 { return Int(v * factor) }
    }
    if let v = Int(t), v > 0 { return v }
    throw ValidationError("cannot read '\(s)' as a size (e.g. 5GB, 500MB, 2GiB or a number of bytes)")
}

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge models with a mergekit-style YAML recipe, streaming tensor by tensor into safetensors.",
        discussion: """
        Methods: linear, task_arithmetic, ties, dare_linear, dare_ties, slerp (streamed), fisher and regmean (in memory, need --data).
        --out FILE.safetensors writes one file (split beside it with an index if larger than --shard-size);
        --out DIR writes model-0000k-of-0000N.safetensors and model.safetensors.index.json into DIR.
        """)

    @Argument(help: "Recipe YAML (paths inside are relative to it).")
    var recipe: String

    @Option(help: "Output .safetensors file or folder (sharded).")
    var out: String

    @Option(help: "Data set (safetensors with x and y): print metrics of the inputs, their ensemble and the merge. Required by fisher and regmean.")
    var data: String?

    @OptionGroup var architecture: ArchitectureOptions

    @Option(help: "Largest shard size (e.g. 5GB, 500MB).")
    var shardSize: String = "5GB"

    @Flag(help: "Print metrics as JSON.")
    var json = false

    func run() throws {
        let recipe = try MergeRecipe.load(URL(fileURLWithPath: self.recipe))
        let outURL = URL(fileURLWithPath: out)
        let shardBytes = try parseByteSize(shardSize)
        let dataset = try data.map { try Dataset(path: $0) }
        var outputs: [String]
        if recipe.method.needsData {
            guard let dataset else { throw ValidationError("\(recipe.method.rawValue) needs --data to estimate its statistics") }
            let models = try recipe.modelURLs.map { try architecture.load($0.path) }
            for m in models { try LoadedModel.check(dataset, fits: m) }
            let merged = try MergeExport.dataAwareMerge(recipe, models: models, data: dataset)
            let dtypes = models[0].dtypes
            outputs = try MergeExport.write(merged, to: outURL, dtype: { recipe.outputDType ?? dtypes[$0] ?? .f32 }, recipe: recipe,
                                            inputs: zip(recipe.models, models).map { ($0.model, $1.source) }, shardSize: shardBytes).map(\.path)
            printError("merged \(merged.count) tensors with \(recipe.method.rawValue) into \(outputs.last!)")
        } else {
            let plan = try MergePlan(recipe: recipe)
            let report = try MergeExecutor.run(plan, out: outURL, shardSize: shardBytes) { done, total in
                if standardErrorIsTerminal && (done % 16 == 0 || done == total) {
                    FileHandle.standardError.write(Data("\rmerging: \(done)/\(total) tensors".utf8))
                    if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
                }
            }
            outputs = report.outputFiles
            printError(String(format: "merged %d tensors (%@ in, %@ out) with %@ in %.2f s into %@", report.tensors, formatBytes(report.inputBytes),
                              formatBytes(report.outputBytes), recipe.method.rawValue, report.seconds, outputs.count == 1 ? outputs[0] : "\(outputs.count - 1) shards + \(outputs.last!)"))
        }
        guard let dataset else { return }
        var rows: [MetricsRow] = []
        var members: [LoadedModel] = []
        if let base = recipe.baseURL {
            let m = try architecture.load(base.path)
            let r = try m.evaluate(on: dataset)
            rows.append(MetricsRow(name: recipe.baseModel!, kind: "base", loss: r.loss, accuracy: r.accuracy, samples: r.samples))
        }
        for (entry, url) in zip(recipe.models, recipe.modelURLs) {
            let m = try architecture.load(url.path)
            members.append(m)
            let r = try m.evaluate(on: dataset)
            rows.append(MetricsRow(name: entry.model, kind: "ingredient", loss: r.loss, accuracy: r.accuracy, samples: r.samples))
        }
        if members.count > 1 {
            let e = Soup.ensembleMetrics(members: members.map { ($0.network, $0.params) }, on: dataset)
            rows.append(MetricsRow(name: "ensemble of \(members.count)", kind: "ensemble", loss: e.loss, accuracy: e.accuracy, samples: e.samples))
        }
        let merged = try architecture.load(outputs.last!)
        let r = try merged.evaluate(on: dataset)
        rows.append(MetricsRow(name: out, kind: recipe.method.rawValue, loss: r.loss, accuracy: r.accuracy, samples: r.samples))
        try printMetricsTable(rows, json: json, dataName: dataset.name)
    }
}
