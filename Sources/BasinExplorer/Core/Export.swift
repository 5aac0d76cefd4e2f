import BasinFusion
import BasinIO
import BasinNet
import BasinUI
import Foundation

/// An explorer export: a recipe `basin merge` reads, and the files it needs that do not exist yet (models
/// permuted to A, the bends of a fitted curve). The model itself is made by running the recipe through
/// BasinFusion's merge, as `basin merge RECIPE OUT` does, so running that command on the recipe rebuilds the
/// exported file byte for byte (same tensors, same metadata: format, merge method, recipe, input digests).
package struct ExportRequest: Sendable {
    /// A model permuted to the reference, written beside the export before the merge reads it.
    package struct Permuted: Sendable {
        package var url: URL
        package var params: ParameterSet
        package var metadata: [String: String]
    }

    /// A fitted curve's bends, written beside the export (`basin_path.bends` names the file).
    package struct Bends: Sendable {
        package var url: URL
        package var path: ModelPath
        /// The curve's end models' files (for the bends file's endpoint digests).
        package var start: URL
        package var end: URL
    }

    /// A BatchNorm correction applied to the merged model before it is written (the recipe's comment says
    /// how to rebuild or evaluate it).
    package enum Corrected: Sendable {
        /// Every BatchNorm's statistics recomputed, as `basin merge ... --bn-reset DATA --bn-batch N` does.
        case bnReset(BatchNormReset)
        /// REPAIRed to the goal the recipe gives (`MergeRecipe.combinationWeights`: the weighted mean of its models'
        /// and bends' statistics), as `basin merge ... --repair DATA --bn-batch N` does.
        case repair(Repair)
    }

    /// The recipe, with absolute paths (it is written beside the export and runs from any folder).
    package var recipe: MergeRecipe
    package var permuted: [Permuted] = []
    package var bends: Bends?
    package var corrected: Corrected?
    /// Comment lines written above the recipe (without "# "), given the recipe file.
    package var comments: @Sendable (URL) -> [String] = { _ in [] }
    /// What `basin merge RECIPE OUT` needs besides the recipe to rebuild the export (the correction's options).
    package var rebuildOptions = ""

    package init(recipe: MergeRecipe, permuted: [Permuted] = [], bends: Bends? = nil, corrected: Corrected? = nil) {
        self.recipe = recipe
        self.permuted = permuted
        self.bends = bends
        self.corrected = corrected
    }
}

/// What an export wrote.
package struct ExportOutcome: Sendable {
    package var model: URL
    package var recipe: URL
    /// Permuted models and bends written for the recipe.
    package var support: [URL]
}

extension ExplorerEngine {
    /// Where the export's files go: `NAME.safetensors`, `NAME.recipe.yaml`, and `NAME.<suffix>.safetensors` for
    /// support files.
    package static func exportURLs(_ name: String) -> (model: URL, recipe: URL, support: (String) -> URL) {
        var url = URL(fileURLWithPath: name)
        if url.pathExtension.isEmpty { url.appendPathExtension("safetensors") }
        let stem = url.deletingPathExtension()
        return (url, stem.appendingPathExtension("recipe.yaml"), { stem.appendingPathExtension($0).appendingPathExtension("safetensors") })
    }

    /// Writes the support files, the recipe, then the model by running the recipe through `MergePlan` and
    /// `MergeExecutor`. Never replaces an input (models, base, data sets); on any error removes what it wrote.
    package func export(_ request: ExportRequest, to model: URL, recipe recipeURL: URL) throws -> ExportOutcome {
        let inputs = inputFiles
        let support = request.permuted.map(\.url) + (request.bends.map { [$0.url] } ?? [])
        let outputs = [model, recipeURL] + support
        // Every file checked against every input the session read (and against each other) before any is written.
        try OutputGuard.check(outputs: outputs.map { .file($0) }, inputs: inputs)
        for out in outputs {
            let folder = out.deletingLastPathComponent()
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ExplorerError("\(out.path): cannot be written: the folder \(folder.path) does not exist")
            }
        }
        var written: [URL] = []
        do {
            let dtypes = models[0].dtypes
            for p in request.permuted {
                try p.params.write(to: p.url, dtype: { dtypes[$0] ?? .f32 }, metadata: p.metadata, protecting: inputs)
                written.append(p.url)
            }
            if let b = request.bends {
                try BendsFile.write(b.path, to: b.url, startSHA256: try FileDigest.sha256(b.start), endSHA256: try FileDigest.sha256(b.end),
                                    extraMetadata: [BendsFile.fitKey: "fitted in basin explore"], modelDTypes: dtypes, protecting: inputs)
                written.append(b.url)
            }
            let comments = request.comments(recipeURL).map { "# " + $0 + "\n" }.joined()
            try AtomicFile.write(Data((comments + request.recipe.yaml()).utf8), to: recipeURL, protecting: inputs)
            written.append(recipeURL)
            // The recipe as `basin merge` will read it, from the file just written.
            let recipe = try MergeRecipe.load(recipeURL)
            let plan = try MergePlan(recipe: recipe)
            _ = try MergeExecutor.run(plan, out: model, options: MergeRunOptions())
            written.append(model)
            if let corrected = request.corrected {
                // As `basin merge --bn-reset` does: the merge as written is read back, corrected, and written again
                // with the same metadata plus what was done to it.
                let merged = try LoadedModel(source: try ModelFile.open(model), architecture: network.architecture)
                let fixed: ParameterSet
                let extra: [String: String]
                switch corrected {
                case let .bnReset(reset):
                    fixed = reset.apply(merged.params)
                    extra = ["basin.bn_reset": "data=\(correctionDataName) batch=\(reset.batchSize)"]
                case let .repair(repair):
                    // The goal from the recipe just written, its members read from the files it names: what
                    // `basin merge --repair` computes, so the rebuild gives these bytes.
                    let combination = try recipe.combinationWeights()
                    let params = try combination.load {
                        try LoadedModel(source: try ModelFile.open($0), architecture: network.architecture).params
                    }
                    fixed = try CombinationCorrection(.repair(repair), models: params).parameters(merged.params, weights: combination.weights)
                    extra = ["basin.repair": "data=\(correctionDataName) batch=\(repair.batchSize)"]
                }
                let dtypes = merged.dtypes
                let sources = try zip(recipe.inputModels, recipe.modelURLs).map { ($0.model, try ModelFile.open($1) as any TensorSource) }
                _ = try MergeExport.write(fixed, to: model, dtype: { dtypes[$0] ?? .f32 }, recipe: recipe, inputs: sources, extraMetadata: extra)
            }
        } catch {
            for f in written { try? FileManager.default.removeItem(at: f) }
            throw error
        }
        return ExportOutcome(model: model, recipe: recipeURL, support: support)
    }
}

extension ExplorerApp {
    /// Writes what the current view shows (the soup in the soup view, else the model at the cursor on the
    /// selected curve) with the recipe that rebuilds it, and reports the outcome in a popup.
    mutating func export(to name: String) -> [Effect<ExplorerMessage>] {
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else {
            state.popup = PopupState(title: "Export", message: "No file name given.", isError: true)
            return []
        }
        let urls = ExplorerEngine.exportURLs(trimmed)
        do {
            let request = try state.view == .soup ? soupExport(urls.support) : pathExport(urls.support)
            let out = try engine.export(request, to: urls.model, recipe: urls.recipe)
            state.lastJobNote = "exported \(out.model.lastPathComponent)"
            let extra = out.support.isEmpty ? "" : "\n(with " + out.support.map(\.lastPathComponent).joined(separator: ", ") + ")"
            state.popup = PopupState(title: "Exported", message: "Wrote \(out.model.path)\nand \(out.recipe.lastPathComponent): basin merge \(out.recipe.lastPathComponent) OUT\(request.rebuildOptions) rebuilds it\(extra)")
        } catch {
            state.popup = PopupState(title: "Export failed", message: "\(error)", isError: true)
        }
        return []
    }

    /// The permuted copy of model i written beside the export.
    func permutedFile(_ i: Int, _ support: (String) -> URL) -> ExportRequest.Permuted? {
        guard let o = state.alignment(of: i) else { return nil }
        var metadata = engine.models[i].source.metadata
        for (k, v) in o.metadata { metadata[k] = v }
        metadata["basin.alignment.reference"] = engine.models[state.reference].url.lastPathComponent
        return ExportRequest.Permuted(url: support("\(engine.names[i])-aligned-to-\(engine.names[state.reference])"),
                                      params: o.result.aligned, metadata: metadata)
    }

    /// The selected curve at t as a `basin_path` recipe: the models (aligned ones by their permuted copies),
    /// the curve type, its bends file, and t.
    func pathExport(_ support: (String) -> URL) throws -> ExportRequest {
        let id = state.path.selected
        var request = ExportRequest(recipe: MergeRecipe(method: .basinPath, models: []))
        var paths: [URL] = []
        for i in state.selectedModels {
            if id.aligned, i != state.reference {
                guard let p = permutedFile(i, support) else { throw ExplorerError("\(engine.names[i]) is not aligned: press m") }
                request.permuted.append(p)
                paths.append(p.url)
            } else {
                paths.append(engine.models[i].url)
            }
        }
        var point = MergeRecipe.PathPoint(type: id.type, bends: nil)
        if id.type != .linear {
            let bendsURL = support("bends")
            request.bends = ExportRequest.Bends(url: bendsURL, path: try path(id), start: paths[0], end: paths[1])
            point.bends = bendsURL.path
        }
        request.recipe = MergeRecipe(method: .basinPath, models: paths.map { MergeRecipe.ModelEntry(model: $0.path) },
                                     parameters: ["t": .scalar(state.path.t)], pathPoint: point)
        correct(&request, id.correction)
        return request
    }

    /// Adds the BatchNorm correction (and the comment saying how the file was made) to an export.
    func correct(_ request: inout ExportRequest, _ correction: ExplorerEngine.Correction) {
        let data = engine.dataFiles.first?.path ?? engine.correctionDataName
        let arch = engine.architectureFile.map { " --arch \($0.path)" } ?? ""
        switch correction {
        case .naive: return
        case .bnReset:
            guard let reset = engine.bnReset else { return }
            request.corrected = .bnReset(reset)
            let options = "\(arch) --bn-reset \(data) --bn-batch \(reset.batchSize)"
            request.rebuildOptions = options
            request.comments = { recipe in [
                "Exported by basin explore, then every BatchNorm's running statistics recomputed on \(data) (batch \(reset.batchSize)).",
                "Rebuild: basin merge \(recipe.path) OUT\(options)",
            ] }
        case .repair:
            guard let repair = engine.repair else { return }
            request.corrected = .repair(repair)
            let options = "\(arch) --repair \(data) --bn-batch \(repair.batchSize)"
            request.rebuildOptions = options
            request.comments = { recipe in [
                "Exported by basin explore, then REPAIRed (Jordan et al. 2022) on \(data) (batch \(repair.batchSize)): each conv/linear",
                "channel's statistics renormalised to the weighted mean of the merged models' (and bends') and folded into the model's tensors.",
                "Rebuild: basin merge \(recipe.path) OUT\(options)",
            ] }
        }
    }

    /// The soup as a recipe of its merge method, aligned models by their permuted copies.
    func soupExport(_ support: (String) -> URL) throws -> ExportRequest {
        var paths = engine.models.map(\.url.path)
        var permuted: [ExportRequest.Permuted] = []
        for i in soupReplacements.keys.sorted() {
            guard let p = permutedFile(i, support) else { continue }
            permuted.append(p)
            paths[i] = p.url.path
        }
        let recipe = try engine.soupRecipe(state.soup.method, coefficients: state.soup.coefficients, lambda: state.soup.lambda,
                                           density: state.soup.density, paths: paths)
        var request = ExportRequest(recipe: recipe, permuted: permuted)
        if state.soup.correction == .repair {
            // Said the explorer's way before the recipe is refused the CLI's way.
            _ = try engine.soupRepairWeights(state.soup.method, coefficients: state.soup.coefficients, lambda: state.soup.lambda, density: state.soup.density)
        }
        correct(&request, state.soup.correction)
        return request
    }
}
