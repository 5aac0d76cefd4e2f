import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

struct SoupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soup",
        abstract: "Model soups of fine-tuned models: each ingredient, the output ensemble, the uniform soup, and the greedy or learned soup, measured on held-out data.",
        discussion: """
        Prints one row per model (ingredients, ensemble, uniform soup, greedy/learned soup) with held-out loss and accuracy,
        and test columns when --test is given. --out writes the greedy soup with --greedy, else the learned soup with
        --learned, else the uniform soup; its metadata records the equivalent linear recipe. With --align, every
        ingredient is first permuted to line up with the first one (Git Re-Basin), and the metadata also records
        each ingredient's permutations (the recipe then applies to the aligned copies).
        """)

    @Argument(help: "Ingredient models (same architecture).")
    var models: [String]

    @Option(help: "Held-out data set used to rank ingredients and choose the soup (or choose with --evaluate).")
    var data: String?

    @Option(help: "Optional test data set: adds test columns.")
    var test: String?

    @Flag(help: "Greedy soup (Wortsman et al. 2022).")
    var greedy = false

    @Flag(help: "Learned soup: optimise the mixing coefficients on the held-out data.")
    var learned = false

    @Flag(help: "With --learned: one set of coefficients per layer.")
    var perLayer = false

    @Option(help: "With --learned: Adam steps.")
    var steps: Int = 100

    @Option(help: "Align every ingredient to the first one before souping (weight or activation matching; activation matching runs on the held-out data). For independently trained models.")
    var align: MatchMethod?

    @Option(help: "With --align weight: seed of the coordinate-descent order.")
    var seed: UInt64 = 0

    @Option(help: "Write the soup here (.safetensors file or folder).")
    var out: String?

    @OptionGroup var architecture: ArchitectureOptions

    @OptionGroup var correction: CorrectionOptions

    @OptionGroup var evaluator: EvaluatorOptions

    @OptionGroup var choice: EvaluatorMetricOptions

    @Option(help: "With --evaluate: folder for candidate merges (each removed once evaluated; default: $TMPDIR).")
    var evaluateDir: String?

    @Flag(help: "Print metrics as JSON.")
    var json = false

    @OptionGroup var nonFinite: NonFiniteOptions

    func validate() throws {
        guard models.count >= 1 else { throw ValidationError("give at least one model") }
        try Check.range(steps, 1...Check.maxIterations, "--steps")
        if perLayer && !learned { throw ValidationError("--per-layer goes with --learned") }
        if evaluator.evaluate == nil && data == nil { throw ValidationError("give --data (held-out set) or --evaluate CMD to choose the soup by") }
        if evaluator.evaluate != nil {
            if data != nil || test != nil { throw ValidationError("--evaluate scores candidates itself: drop --data and --test (or drop --evaluate)") }
            if learned || align != nil { throw ValidationError("--learned and --align need Basin's own networks; with --evaluate, soups are uniform or greedy") }
        }
        try choice.validate(with: evaluator)
        if evaluateDir != nil && evaluator.evaluate == nil { throw ValidationError("--evaluate-dir goes with --evaluate") }
        try correction.validateOne()
        if evaluator.evaluate != nil && correction.dataPath != nil {
            throw ValidationError("--bn-reset and --repair correct Basin's own networks; with --evaluate the candidates are scored as merged")
        }
        if correction.repair != nil && perLayer {
            // Per-layer coefficients mix every layer with its own weights, so no one weighted mean of the
            // ingredients' statistics is the soup's (a site's statistics depend on all the layers before it).
            throw ValidationError("--repair does not go with --per-layer: REPAIR's goal is one weighted mean of the ingredients' statistics, and a per-layer soup has a different mean in every layer")
        }
    }

    /// The soup chosen by an external evaluator (streamed candidates; any model size).
    func runExternal(_ evaluator: ExternalEvaluator) throws {
        let work = (evaluateDir.map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory)
            .appendingPathComponent("basin-soup-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: work) }
        let soup = ExternalSoup(models: models, evaluator: evaluator, jobs: self.evaluator.evaluateJobs, metric: choice.metric,
                                higherIsBetter: choice.higherIsBetter, workDirectory: work)
        let quiet = json
        let r = try soup.run(greedy: greedy) { if !quiet { printError($0) } }
        if json {
            try printJSON(r.rows)
        } else {
            let keys = Array(Set(r.rows.flatMap { $0.metrics.map { Array($0.keys) } ?? [] })).sorted()
            let width = max(24, r.rows.map(\.name.count).max() ?? 0)
            func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
            print("# metrics from \(evaluator.command)")
            print(pad("model", width) + "  " + pad("kind", 14) + keys.map { "  " + pad($0, 12) }.joined())
            for row in r.rows {
                let cells = keys.map { k in "  " + pad(row.metrics?[k].map { String(format: "%.4f", $0) } ?? (row.failure == nil ? "-" : "failed"), 12) }
                print(pad(row.name, width) + "  " + pad(row.kind, 14) + cells.joined())
                if let f = row.failure { printError("\(row.name): \(f)") }
            }
        }
        if greedy && !json { printError("greedy soup ingredients, in order added: " + r.chosen.map { models[$0] }.joined(separator: ", ")) }
        if let out {
            let written = try RecipeExport.export(r.recipe, to: URL(fileURLWithPath: out))
            printError("wrote \(written.model.path) and \(written.recipe.lastPathComponent)")
        }
    }

    func run() throws {
        nonFinite.apply()
        var io = IOPlan()
        try io.models(models)
        try io.file(data)
        try io.file(test)
        try io.file(architecture.archFile)
        try io.file(correction.bnReset)
        try io.file(correction.repair)
        if let out { io.checkpoint(out) }
        try io.check()
        if let evaluator = evaluator.evaluator { return try runExternal(evaluator) }
        let heldOut = try Dataset(path: data!)
        let testSet = try test.map { try Dataset(path: $0) }
        let loaded = try models.map { try architecture.load($0) }
        var anyNonFinite = false
        for m in loaded where warnNonFinite(m) { anyNonFinite = true }
        if out != nil { try refuseNonFinite(anyNonFinite, "the ingredients") }
        for m in loaded {
            try LoadedModel.check(heldOut, fits: m)
            if let testSet { try LoadedModel.check(testSet, fits: m) }
            try loaded[0].params.checkCompatible(with: m.params, "soup ingredients \(loaded[0].path) and \(m.path)")
        }
        let network = loaded[0].network
        var params = loaded.map(\.params)
        var alignmentMetadata: [String: String] = [:]
        if let align {
            // Permuting hidden units keeps each ingredient's function, so its rows below do not change; only the
            // soups do. The exported recipe names the permuted copies written beside the output; the permutations
            // also go into the metadata.
            let spec = try PermutationSpec.make(for: loaded[0].architecture, params: params[0])
            let results = try Alignment.alignAll(reference: params[0], models: Array(params.dropFirst()), spec: spec, method: align,
                                                 seed: seed, network: network, data: heldOut)
            params = [params[0]] + results.map(\.aligned)
            var permutations: [String: [String: [Int]]] = [:]
            for (i, r) in results.enumerated() {
                permutations[models[i + 1]] = Dictionary(uniqueKeysWithValues: zip(spec.groups.map(\.name), r.permutations))
            }
            let data = try JSONSerialization.data(withJSONObject: permutations, options: [.sortedKeys, .withoutEscapingSlashes])
            alignmentMetadata = ["basin.soup.aligned_to": models[0], "basin.soup.alignment_method": align.rawValue,
                                 "basin.soup.permutations": String(decoding: data, as: UTF8.self)]
            if !json { printError("aligned \(results.count) ingredient(s) to \(models[0]) by \(align.rawValue) matching") }
        }
        // --bn-reset / --repair: every soup (not the ingredients, not the ensemble) is corrected before it is
        // measured, the greedy soup's candidates included; REPAIR's goal is the soup's weighted mean of the
        // ingredients' statistics (of the aligned copies with --align).
        let corrector = try correction.make(for: loaded[0]).map { CombinationCorrection($0, models: params) }
        let suffix = correction.bnReset != nil ? " (BN reset)" : correction.repair != nil ? " (REPAIR)" : ""
        if corrector != nil && !json { printError("every soup: \(correction.describe), before it is measured") }
        func row(_ name: String, _ kind: String, _ p: ParameterSet) -> MetricsRow {
            let m = network.evaluate(p, on: heldOut)
            return MetricsRow(name: name, kind: kind, loss: m.loss, accuracy: m.accuracy, samples: m.samples,
                              test: testSet.map { network.evaluate(p, on: $0) })
        }
        func soupRow(_ name: String, _ kind: String, _ p: ParameterSet, weights: [Double]) throws -> MetricsRow {
            guard let corrector else { return row(name, kind, p) }
            let m = try corrector.evaluate(p, weights: weights, network: network, on: [heldOut] + (testSet.map { [$0] } ?? []))
            return MetricsRow(name: name + suffix, kind: kind, loss: m[0].loss, accuracy: m[0].accuracy, samples: m[0].samples,
                              test: m.count > 1 ? m[1] : nil)
        }
        let uniformWeights = [Double](repeating: 1 / Double(params.count), count: params.count)
        var rows = zip(models, params).map { row($0, "ingredient", $1) }
        let e = Soup.ensembleMetrics(network: network, models: params, on: heldOut)
        rows.append(MetricsRow(name: "ensemble of \(params.count)", kind: "ensemble", loss: e.loss, accuracy: e.accuracy, samples: e.samples,
                               test: testSet.map { Soup.ensembleMetrics(network: network, models: params, on: $0) }))
        let uniform = try ParameterMerge.uniformSoup(params)
        rows.append(try soupRow("uniform soup of \(params.count)", "uniform soup", uniform, weights: uniformWeights))
        var chosenWeights = uniformWeights
        var recipe = MergeRecipe(method: .linear, models: models.map { .init(model: $0, parameters: ["weight": .scalar(1)]) })
        if learned {
            let r = try Soup.learned(network: network, ingredients: params, heldOut: heldOut, perLayer: perLayer, steps: steps)
            // One set of coefficients (REPAIR is refused with --per-layer): they are the soup's weights.
            chosenWeights = r.coefficients[0].map { Double($0) }
            let total = chosenWeights.reduce(0, +)
            chosenWeights = chosenWeights.map { $0 / total }
            rows.append(try soupRow("learned soup" + (perLayer ? " (per layer)" : ""), "learned soup", r.soup, weights: chosenWeights))
            recipe.models = models.indices.map { i in
                let value: ParameterValue = r.groups.count == 1 ? .scalar(Double(r.coefficients[0][i]))
                    : .filtered(r.groups.indices.map { .init(filter: r.groups[$0] + ".", value: Double(r.coefficients[$0][i])) })
                return .init(model: models[i], parameters: ["weight": value])
            }
            if !json { printError("learned coefficients: " + r.groups.indices.map { g in "\(r.groups[g]): " + r.coefficients[g].map { String(format: "%.3f", $0) }.joined(separator: " ") }.joined(separator: "; ")) }
        }
        if greedy {
            let g = try Soup.greedy(network: network, ingredients: params, heldOut: heldOut, correction: corrector)
            chosenWeights = params.indices.map { g.chosen.contains($0) ? 1 / Double(g.chosen.count) : 0 }
            rows.append(try soupRow("greedy soup (\(g.chosen.count) of \(params.count))", "greedy soup", g.soup, weights: chosenWeights))
            recipe.models = g.chosen.map { .init(model: models[$0], parameters: ["weight": .scalar(1)]) }
            if !json { printError("greedy soup ingredients, in order added: " + g.chosen.map { models[$0] }.joined(separator: ", ")) }
        }
        try printMetricsTable(rows, json: json, dataName: heldOut.name, testName: testSet?.name)
        if let out {
            // The soup is built from its recipe by the streaming merge, so `basin merge` of the recipe rebuilds it bit
            // for bit. Aligned ingredients are written beside it (in their input dtypes) and the recipe names them.
            let outURL = URL(fileURLWithPath: out)
            if align != nil {
                for i in 1..<models.count {
                    let copy = RecipeExport.companion(of: outURL, "aligned-\(i)")
                    let dtypes = loaded[i].dtypes
                    try params[i].write(to: copy, dtype: { dtypes[$0] ?? .f32 },
                                        metadata: ["basin.aligned_from": models[i], "basin.aligned_to": models[0]],
                                        protecting: loaded.flatMap(\.source.files))
                    for j in recipe.models.indices where recipe.models[j].model == models[i] { recipe.models[j].model = copy.path }
                }
            }
            var options = MergeRunOptions()
            options.extraMetadata = alignmentMetadata
            let written = try RecipeExport.export(recipe, to: outURL, options: options)
            if let corrector {
                // The recipe rebuilds the uncorrected soup (`basin merge RECIPE --bn-reset/--repair DATA` the corrected
                // one); the soup itself is rewritten with its corrected tensors. If that fails, nothing stays behind.
                var files = ((try? ModelFile.open(outURL))?.files.map(\.path)) ?? [outURL.path]
                let index = CheckpointWriter.isFolder(outURL) ? outURL.appendingPathComponent("model.safetensors.index.json").path
                    : outURL.deletingPathExtension().path + ".safetensors.index.json"
                let model = FileManager.default.fileExists(atPath: index) && !CheckpointWriter.isFolder(outURL) ? index : outURL.path
                if FileManager.default.fileExists(atPath: index) { files.append(index) }
                files.append(written.recipe.path)
                if align != nil { files += (1..<models.count).map { RecipeExport.companion(of: outURL, "aligned-\($0)").path } }
                let sources = try recipe.models.map { ($0.model, try ModelFile.open(recipe.resolve($0.model)) as any TensorSource) }
                let weights = chosenWeights
                _ = try rewriteCorrected(outURL, model: model, written: files, architecture: architecture, recipe: recipe, inputs: sources,
                                         shardSize: options.shardSize, extraMetadata: alignmentMetadata.merging(correction.metadata) { $1 }) {
                    try corrector.parameters($0, weights: weights)
                }
            }
            printError("wrote \(written.model.path) and \(written.recipe.lastPathComponent)" + (corrector == nil ? "" : " (\(correction.describe))"))
        }
    }
}
