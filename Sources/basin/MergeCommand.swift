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

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge models with a mergekit YAML recipe, streaming tensor by tensor into safetensors or a Hugging Face folder.",
        discussion: """
        Reads everything mergekit 0.1.5's mergekit-yaml reads, for every method it registers (linear, task_arithmetic, ties,
        dare_ties, dare_linear, breadcrumbs, breadcrumbs_ties, della, della_linear, model_stock, slerp, nuslerp, multislerp,
        karcher, sce, nearswap, arcee_fusion, ram, ramplus_tl, passthrough), models: and slices:, plus Basin's fisher and
        regmean (in memory, need --data) and basin_path. Relative model paths: the working directory first, then the
        recipe's folder. A model is a Hugging Face folder (config.json + model.safetensors or an index), a .safetensors
        file or an index.
        OUT ending in .safetensors writes one file (split beside it with an index if larger than --shard-size); any other
        OUT is a Hugging Face folder: model.safetensors (or shards + model.safetensors.index.json), config.json from the
        base (else first) model, its tokenizer files, and as mergekit-yaml writes them the recipe as mergekit_config.yml
        (`basin merge OUT/mergekit_config.yml` rebuilds the output) and a README.md model card. See docs/merging.md.
        """)

    @Argument(help: "Recipe YAML.")
    var recipe: String

    @Argument(help: "Output folder or .safetensors file (as mergekit-yaml's OUT_PATH; or use --out).")
    var output: String?

    @Option(help: "Output .safetensors file or folder.")
    var out: String?

    @Option(help: "Data set (safetensors with x and y): print metrics of the inputs, their ensemble and the merge. Required by fisher and regmean.")
    var data: String?

    @OptionGroup var architecture: ArchitectureOptions

    @OptionGroup var correction: CorrectionOptions

    @Option(help: "Largest shard size (e.g. 5GB, 500MB).")
    var shardSize: String = "5GB"

    @Option(name: [.customLong("seed"), .customLong("random-seed")], help: "Seed for random methods (DARE, DELLA, arcee_fusion); overrides the recipe's seed.")
    var seed: UInt64?

    @Flag(help: "Print the plan (tensors, methods, output dtype and files), the peak memory and disk space needed, check the output location, and write nothing.")
    var dryRun = false

    @OptionGroup var evaluator: EvaluatorOptions

    @Flag(help: "Merge inputs holding NaN or infinite values instead of refusing them.")
    var allowNonfinite = false

    @Flag(help: "Folder outputs: do not copy the donor model's tokenizer files (tokenizer_source still copies).")
    var noCopyTokenizer = false

    @Flag(help: "Folder outputs: do not write mergekit's README.md model card and mergekit_config.yml (mergekit-yaml's --no-write-model-card).")
    var noWriteModelCard = false

    @Flag(help: "Do not record the inputs' SHA-256 in the output's metadata.")
    var noDigests = false

    @Flag(help: "Flush the output to disk (fsync) before renaming it into place, so it survives a crash of the machine right after.")
    var sync = false

    @Flag(help: "Print metrics as JSON.")
    var json = false

    mutating func validate() throws {
        if output != nil && out != nil { throw ValidationError("give the output once: as the second argument or with --out") }
        if output == nil && out == nil { throw ValidationError("missing the output: basin merge RECIPE OUT (a folder or a .safetensors file)") }
        _ = try parseByteSize(shardSize, option: "--shard-size")
        try correction.validateOne()
        // Checked before anything is merged, not once the output is written.
        if evaluator.evaluate != nil, let o = output ?? out, !CheckpointWriter.isFolder(URL(fileURLWithPath: o)) {
            throw ValidationError("--evaluate hands the evaluator a model folder: give a folder as the output, not a .safetensors file")
        }
    }

    func run() throws {
        // Writers refuse NaN/Inf unless asked (the streamed merge also refuses such inputs, naming them).
        WritePolicy.allowNonFinite = allowNonfinite
        var io = IOPlan()
        try io.file(self.recipe)
        var recipe = try MergeRecipe.load(URL(fileURLWithPath: self.recipe))
        if let seed { recipe.seed = seed }
        // Filter entries that can never apply run as mergekit runs them, but are said (the dry run's JSON lists them too).
        for w in recipe.shadowedFilterWarnings { printError("warning: \(w)") }
        let outPath = output ?? out!
        // Every model the recipe names (models:, base_model, and each slice's sources and base) is an input.
        var modelURLs = recipe.modelURLs + (recipe.baseURL.map { [$0] } ?? [])
        for s in recipe.slices {
            modelURLs += s.sources.map { recipe.resolve($0.model) } + (s.baseModel.map { [recipe.resolve($0)] } ?? [])
        }
        try io.models(modelURLs.map(\.path))
        // So are the tokenizer files a folder output may get copies of (a model folder's, or tokenizer_source's).
        var tokenizerFolders = modelURLs
        if case let .model(path)? = recipe.tokenizerSource { tokenizerFolders.append(recipe.resolve(path)) }
        for folder in tokenizerFolders {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            try io.files(HuggingFaceModel.tokenizerFiles.map { folder.appendingPathComponent($0).path }
                .filter { FileManager.default.fileExists(atPath: $0) })
        }
        try io.file(data)
        try io.file(architecture.archFile)
        try io.file(correction.bnReset)
        try io.file(correction.repair)
        io.checkpoint(outPath)
        try io.check()
        let outURL = URL(fileURLWithPath: outPath)
        let shardBytes = try parseByteSize(shardSize, option: "--shard-size")
        var options = MergeRunOptions()
        options.shardSize = shardBytes
        options.allowNonFinite = allowNonfinite
        options.copyTokenizer = !noCopyTokenizer
        options.writeModelCard = !noWriteModelCard
        options.hashInputs = !noDigests
        options.sync = sync
        let dataset = try data.map { try Dataset(path: $0) }
        // --bn-reset / --repair: checked before merging (the network has BatchNorm or REPAIR sites, the data fits it,
        // a REPAIR recipe is a weighted mean of models); applied to the merge once it is written, which is then
        // rewritten with the corrected tensors.
        var corrector: (CombinationCorrection, weights: [Double])?
        if let flag = correction.bnReset != nil ? "--bn-reset" : correction.repair != nil ? "--repair" : nil {
            guard !dryRun else { throw ValidationError("\(flag) corrects the written merge; it does not go with --dry-run") }
            if correction.repair != nil {
                // The models (and a fitted path's bends, which REPAIR measures as models) and their weights.
                let combination = try recipe.combinationWeights()
                var models: [LoadedModel] = []
                let params = try combination.load { url in
                    let m = try architecture.load(url.path)
                    if let first = models.first { try first.params.checkCompatible(with: m.params, "merge inputs \(first.path) and \(m.path)") }
                    models.append(m)
                    return m.params
                }
                corrector = (CombinationCorrection(try correction.make(for: models[0])!, models: params), combination.weights)
            } else {
                guard let first = recipe.modelURLs.first ?? recipe.baseURL else { throw ValidationError("--bn-reset needs a recipe with models") }
                corrector = (CombinationCorrection(try correction.make(for: try architecture.load(first.path))!, models: []), [])
            }
        }
        var outputs: [String]
        if recipe.method.needsData {
            guard let dataset else { throw ValidationError("\(recipe.method.rawValue) needs --data to estimate its statistics") }
            guard !dryRun else { throw ValidationError("--dry-run plans streamed merges; \(recipe.method.rawValue) runs in memory on the loaded networks") }
            let models = try recipe.modelURLs.map { try architecture.load($0.path) }
            var anyNonFinite = false
            for m in models where warnNonFinite(m) { anyNonFinite = true }
            try refuseNonFinite(anyNonFinite, "the recipe's models")
            for m in models { try LoadedModel.check(dataset, fits: m) }
            let merged = try MergeExport.dataAwareMerge(recipe, models: models, data: dataset)
            let dtypes = models[0].dtypes
            outputs = try MergeExport.write(merged, to: outURL, dtype: { recipe.outputDType ?? dtypes[$0] ?? .f32 }, recipe: recipe,
                                            inputs: zip(recipe.models, models).map { ($0.model, $1.source) }, shardSize: shardBytes,
                                            modelCard: !noWriteModelCard).map(\.path)
            printError("merged \(merged.count) tensors with \(recipe.method.rawValue) into \(outputs.last!)")
        } else {
            let plan = try MergePlan(recipe: recipe)
            if allowNonfinite && !dryRun {
                // Allowed, but still reported: one warning per input tensor holding NaN or infinite values.
                for url in recipe.modelURLs + (recipe.baseURL.map { [$0] } ?? []) {
                    let source = try ModelFile.open(url)
                    for f in try NonFinite.scan(source) { printError(NonFinite.warning(file: source.displayPath, f)) }
                }
            }
            if dryRun {
                let report = MergeDryRun(plan: plan, out: outURL, options: options)
                if json { try printJSON(report) } else { print(report.text()) }
                if !report.problems.isEmpty { throw ExitCode(1) }
                return
            }
            let report = try MergeExecutor.run(plan, out: outURL, options: options) { done, total in
                if standardErrorIsTerminal && (done % 16 == 0 || done == total) {
                    FileHandle.standardError.write(Data("\rmerging: \(done)/\(total) tensors".utf8))
                    if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
                }
            }
            outputs = report.outputFiles
            let rate = Double(report.outputBytes) / max(report.seconds, 1e-9)
            printError(String(format: "merged %d tensors (%@ in, %@ out) with %@ in %.2f s (%@/s written) into %@", report.tensors, formatBytes(report.inputBytes),
                              formatBytes(report.outputBytes), recipe.method.rawValue, report.seconds, formatBytes(Int(rate)),
                              outputs.count == 1 ? outputs[0] : (CheckpointWriter.isFolder(outURL) ? outURL.path : "\(outputs.count - 1) shards + \(outputs.last!)")))
        }
        if let (corrector, weights) = corrector {
            let sources = try zip(recipe.inputModels, recipe.modelURLs).map { ($0.model, try ModelFile.open($1) as any TensorSource) }
            outputs = try rewriteCorrected(outURL, model: CheckpointWriter.isFolder(outURL) ? outURL.path : outputs.last!, written: outputs, architecture: architecture, recipe: recipe, inputs: sources,
                                           shardSize: shardBytes, extraMetadata: correction.metadata) {
                try corrector.parameters($0, weights: weights)
            }
            printError("\(correction.bnReset != nil ? "recomputed the BatchNorm statistics of" : "REPAIRed") \(outputs.last!) on \(correction.dataPath!) (batch \(correction.bnBatch))")
        }
        if let evaluator = evaluator.evaluator {
            let metrics = try evaluator.evaluate(outURL)
            if json { try printJSON(metrics) } else {
                print("# \(evaluator.command) on \(outURL.path)")
                for (k, v) in metrics.sorted(by: { $0.key < $1.key }) { print("\(k)  \(v)") }
            }
        }
        guard let dataset else { return }
        var rows: [MetricsRow] = []
        var members: [LoadedModel] = []
        if let base = recipe.baseURL {
            let m = try architecture.load(base.path)
            let r = try m.evaluate(on: dataset)
            rows.append(MetricsRow(name: recipe.baseModel!, kind: "base", loss: r.loss, accuracy: r.accuracy, samples: r.samples))
        }
        for (entry, url) in zip(recipe.inputModels, recipe.modelURLs) {
            let m = try architecture.load(url.path)
            members.append(m)
            let r = try m.evaluate(on: dataset)
            rows.append(MetricsRow(name: entry.model, kind: "ingredient", loss: r.loss, accuracy: r.accuracy, samples: r.samples))
        }
        if members.count > 1 {
            let e = Soup.ensembleMetrics(members: members.map { ($0.network, $0.params) }, on: dataset)
            rows.append(MetricsRow(name: "ensemble of \(members.count)", kind: "ensemble", loss: e.loss, accuracy: e.accuracy, samples: e.samples))
        }
        let merged = try architecture.load(CheckpointWriter.isFolder(outURL) ? outURL.path : outputs.last!)
        let r = try merged.evaluate(on: dataset)
        rows.append(MetricsRow(name: outPath, kind: recipe.method.rawValue, loss: r.loss, accuracy: r.accuracy, samples: r.samples))
        try printMetricsTable(rows, json: json, dataName: dataset.name)
    }
}
