import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// An explorer error shown in a popup, with a kind tests match on (as BasinIOError).
package struct ExplorerError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    package enum Kind: String, Sendable {
        /// The session lacks what it needs (two models, a data set).
        case missingInput
        /// The method needs a base model the session was not started with.
        case needsBase
        /// The request does not fit the session (SLERP with other than two models, a linear path to fit).
        case unsupportedRequest
        /// Values that would do nothing (all coefficients zero).
        case invalidValue
    }

    package let kind: Kind
    package let description: String
    package init(_ kind: Kind, _ d: String) {
        self.kind = kind
        description = d
    }
    /// A request the session cannot carry out.
    package init(_ d: String) { self.init(.unsupportedRequest, d) }
    package var errorDescription: String? { description }
}

/// The models and data sets of a session, and the few session-level operations built on BasinFusion's APIs
/// (paths, curve fitting, alignment, merges, soups). Immutable and Sendable, so background jobs share it freely.
package final class ExplorerEngine: Sendable {
    package let models: [LoadedModel]
    package let names: [String]
    /// Data sets in the order given: the first is "train" (fitting, matching), the last "test" (what the
    /// landscape, the soup triangle and the barrier matrix show).
    package let datasets: [Dataset]
    package let dataNames: [String]
    package let base: LoadedModel?
    package let network: Network
    /// Where greedy soup chooses its ingredients: a held-out set, else the last data set.
    package let heldOut: Dataset?
    /// Named evaluation sets (`--eval NAME=FILE`): the soup view reports the merged model on each beside the
    /// data sets (e.g. one test set per task, to see a merge trade one task for another).
    package let evalSets: [(name: String, data: Dataset)]
    /// Every file the session read (models with their shards, data sets, the architecture file): an export may
    /// replace none of them (docs/reliability.md).
    package let inputFiles: [URL]
    /// The data set files in `datasets` order (empty when the engine was made from loaded data sets).
    package let dataFiles: [URL]
    /// The architecture file given with --arch (exports name it in the command that rebuilds them).
    package let architectureFile: URL?
    /// On a network with BatchNorm: every BatchNorm's running statistics recomputed over the first (train) data
    /// set, as `basin path --bn-reset TRAIN` does (nil without BatchNorm).
    package let bnReset: BatchNormReset?
    /// On a network with BatchNorm: REPAIR on the first (train) data set, as `basin path --repair TRAIN` (nil
    /// without BatchNorm, or when the network has no site to repair: `repairUnavailable` says why).
    package let repair: Repair?
    package let repairUnavailable: String?
    /// Batch size of the BatchNorm reset and REPAIR passes (update_bn's loader batch; `--bn-batch`'s default).
    package static let bnBatch = 64

    package init(models: [LoadedModel], datasets: [Dataset], base: LoadedModel? = nil, heldOut: Dataset? = nil,
                 otherInputs: [URL] = [], dataFiles: [URL] = [], architectureFile: URL? = nil,
                 evalSets: [(name: String, data: Dataset)] = []) throws {
        guard models.count >= 2 else { throw ExplorerError(.missingInput, "the explorer needs at least two models (got \(models.count))") }
        guard !datasets.isEmpty else { throw ExplorerError(.missingInput, "the explorer needs a data set (--data)") }
        for m in models.dropFirst() + (base.map { [$0] } ?? []) {
            try models[0].params.checkCompatible(with: m.params, "\(models[0].path) and \(m.path)")
        }
        for d in datasets + (heldOut.map { [$0] } ?? []) + evalSets.map(\.data) { try LoadedModel.check(d, fits: models[0]) }
        self.heldOut = heldOut
        self.evalSets = evalSets
        self.inputFiles = (models + (base.map { [$0] } ?? [])).flatMap(\.source.files) + otherInputs
        self.models = models
        self.datasets = datasets
        self.base = base
        self.network = models[0].network
        self.names = ExplorerEngine.shortNames(models.map(\.path))
        self.dataNames = datasets.count == 2 ? ["train", "test"] : datasets.map(\.name)
        self.dataFiles = dataFiles
        self.architectureFile = architectureFile
        if BatchNormReset.hasBatchNorm(models[0].architecture) {
            bnReset = try BatchNormReset(network: network, data: datasets[0], batchSize: Self.bnBatch, model: models[0].path)
            do {
                repair = try Repair(network: network, like: models[0].params, data: datasets[0], batchSize: Self.bnBatch, model: models[0].path)
                repairUnavailable = nil
            } catch {
                repair = nil
                repairUnavailable = "\(error)"
            }
        } else {
            bnReset = nil
            repair = nil
            repairUnavailable = "the network has no BatchNorm"
        }
    }

    package static func load(models paths: [String], data: [String], base: String? = nil, heldOut: String? = nil,
                             architecture: ArchitectureChoice = ArchitectureChoice(),
                             evals: [(name: String, path: String)] = []) throws -> ExplorerEngine {
        let models = try paths.map { try LoadedModel(path: $0, architecture: architecture) }
        let sets = try data.map { try Dataset(path: $0) }
        let b = try base.map { try LoadedModel(path: $0, architecture: architecture) }
        let named = try evals.map { (name: $0.name, data: try Dataset(path: $0.path)) }
        return try ExplorerEngine(models: models, datasets: sets, base: b, heldOut: try heldOut.map { try Dataset(path: $0) },
                                  otherInputs: (data + (heldOut.map { [$0] } ?? []) + evals.map(\.path)).map { URL(fileURLWithPath: $0) }
                                      + (architecture.file.map { [$0] } ?? []),
                                  dataFiles: data.map { URL(fileURLWithPath: $0) }, architectureFile: architecture.file, evalSets: named)
    }

    /// File names without directories and extensions, kept unique.
    static func shortNames(_ paths: [String]) -> [String] {
        let base = paths.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent }
        return base.enumerated().map { i, n in base.filter { $0 == n }.count > 1 ? "\(n)#\(i)" : n }
    }

    package var params: [ParameterSet] { models.map(\.params) }

    /// Model i's file or folder as an absolute path (what recipes name).
    package func modelPath(_ i: Int) -> String { URL(fileURLWithPath: models[i].path).standardizedFileURL.path }

    /// The data set the landscape, the soup triangle and the barrier matrix are computed on (the last one).
    package var shownData: Dataset { datasets[datasets.count - 1] }

    /// Metrics of a parameter set on every data set.
    package func evaluate(_ p: ParameterSet) -> [Metrics] {
        datasets.map { network.evaluate(p, on: $0) }
    }

    /// Evaluates a path at `ts` on every data set, each point corrected as asked, calling `onPoint` after each;
    /// stops early when cancelled.
    package func evaluatePath(_ path: ModelPath, ts: [Double], correction: Correction = .naive, cancel: CancellationFlag,
                              onPoint: (Double, [Metrics]) -> Void) {
        let evaluator = PathEvaluator(path: path, network: network, datasets: datasets, correction: pointCorrection(correction))
        _ = evaluator.evaluatePoints(ts: ts, cancel: cancel) { i, m in onPoint(ts[i], m) }
    }

    // MARK: BatchNorm corrections

    /// What is done to a point before it is evaluated or exported: nothing (the running statistics interpolated
    /// like every other tensor), a BatchNorm reset, or REPAIR, both over the first (train) data set.
    package enum Correction: String, Sendable, CaseIterable, Comparable {
        case naive, bnReset, repair
        package var label: String {
            switch self {
            case .naive: "naive"
            case .bnReset: "BN reset"
            case .repair: "REPAIR"
            }
        }
        package static func < (l: Correction, r: Correction) -> Bool { allCases.firstIndex(of: l)! < allCases.firstIndex(of: r)! }
        /// The BN mode line of the path and soup views (b switches it), with the data set the statistics come from.
        package func modeLine(train: String) -> String {
            switch self {
            case .naive: "BN: naive (b: reset)"
            case .bnReset: "BN: reset on \(train) (b)"
            case .repair: "BN: REPAIR on \(train) (b)"
            }
        }
    }

    /// The network has BatchNorm layers (their statistics can be reset along a path).
    package var hasBatchNorm: Bool { bnReset != nil }

    /// The corrections this session offers: naive, then (with BatchNorm) BN reset and, when it has sites, REPAIR.
    package var corrections: [Correction] {
        [.naive] + (bnReset != nil ? [.bnReset] : []) + (repair != nil ? [.repair] : [])
    }

    package func pointCorrection(_ c: Correction) -> PointCorrection {
        switch c {
        case .naive: return .none
        case .bnReset: return bnReset.map { .bnReset($0) } ?? .none
        case .repair: return repair.map { .repair($0) } ?? .none
        }
    }

    /// The train data set's file name (what the corrections recompute statistics on), for labels and metadata.
    package var correctionDataName: String {
        dataFiles.first?.lastPathComponent ?? URL(fileURLWithPath: datasets[0].name).lastPathComponent
    }

    /// Metrics of the point at t of a path on every data set, corrected as asked.
    package func evaluatePoint(_ path: ModelPath, t: Double, correction: Correction) -> [Metrics] {
        if correction == .naive { return evaluate(path.parameters(at: t)) }
        return PathEvaluator(path: path, network: network, datasets: datasets, fast: false, correction: pointCorrection(correction))
            .evaluate(at: t)
    }

    /// The point at t as evaluated with the correction: what an export of it writes.
    package func correctedParameters(_ path: ModelPath, t: Double, correction: Correction) throws -> ParameterSet {
        try PathEvaluator(path: path, network: network, datasets: [], fast: false, correction: pointCorrection(correction))
            .correctedParameters(at: t)
    }

    // MARK: Fusion operations (the engine library does the work)

    package struct FitProgress: Sendable {
        package var epoch: Int
        package var epochs: Int
        package var fraction: Double
        package var loss: Double
    }

    /// Fits the bend of a polychain / Bezier path between a and b on the first data set (Garipov et al.).
    /// `epochEnd` gets the bend after every epoch (to redraw the curve as it bends). Cancelling stops the fit
    /// early and returns the bend so far.
    package func fitBend(_ type: PathType, from a: ParameterSet, to b: ParameterSet, epochs: Int, cancel: CancellationFlag,
                         progress: (FitProgress) -> Void, epochEnd: (Int, ParameterSet) -> Void = { _, _ in }) throws -> ParameterSet {
        guard type != .linear else { throw ExplorerError(.unsupportedRequest, "a linear path has no bend to fit") }
        let config = CurveFitConfig(type: type, bends: 1, epochs: epochs)
        let fitter = try CurveFitter(network: network, start: a, end: b, data: datasets[0], config: config)
        var lastReport = Date.distantPast
        let result = fitter.fit(cancel: cancel, progress: { p in
            let now = Date()
            if p.endOfEpoch || now.timeIntervalSince(lastReport) > 0.1 {
                lastReport = now
                progress(FitProgress(epoch: p.epoch, epochs: p.epochs, fraction: p.fraction, loss: p.meanLoss))
            }
        }, epochEnd: { epoch, path in epochEnd(epoch, path.bends[0]) })
        return result.path.bends[0]
    }

    /// An alignment of model b to model a.
    package struct MatchOutcome: Sendable {
        package var a: Int
        package var b: Int
        package var result: AlignmentResult
        /// `.reference`: b matched to a on its own; `.mergeMany`: every model aligned jointly (MergeMany), b's
        /// permutation expressed in a's frame.
        package var strategy: AlignmentStrategy = .reference
        package var report: MatchReport { result.report }
        /// What the permuted copy of b records (as `basin match` / `basin soup --align` write it).
        package var metadata: [String: String] {
            var m = result.metadata
            m["basin.alignment.strategy"] = strategy.rawValue
            return m
        }
    }

    /// MergeMany (Ainsworth et al. 2023): every model weight-matched in turn to the mean of the others until no
    /// unit moves, in the frame of model `reference` (which stays as loaded). One outcome per other model.
    /// Throws `CancellationError` when cancelled.
    package func mergeMany(reference r: Int, cancel: CancellationFlag, progress: (_ round: Int) -> Void = { _ in }) throws -> (outcomes: [MatchOutcome], rounds: Int) {
        let order = [r] + models.indices.filter { $0 != r }
        let spec = try PermutationSpec.make(for: models[r].architecture, params: params[r])
        let result = try Alignment.alignMany(order.map { params[$0] }, spec: spec, method: .weight, strategy: .mergeMany,
                                             cancel: cancel) { round, _ in progress(round) }
        let outcomes = (1..<order.count).map { k in
            MatchOutcome(a: r, b: order[k], result: AlignmentResult(permutations: result.permutations[k], aligned: result.aligned[k],
                                                                    report: result.reports[k - 1], spec: spec),
                         strategy: .mergeMany)
        }
        return (outcomes, result.rounds)
    }

    /// Aligns model b to model a (Git Re-Basin weight matching, or activation matching on the first data set).
    /// Throws `CancellationError` when cancelled.
    package func match(_ method: MatchMethod, a: Int, b: Int, cancel: CancellationFlag) throws -> MatchOutcome {
        let pa = params[a], pb = params[b]
        let spec = try PermutationSpec.make(for: models[a].architecture, params: pa)
        let r = try Alignment.align(reference: pa, model: pb, spec: spec, method: method, network: network, data: datasets[0],
                                    cancel: cancel)
        return MatchOutcome(a: a, b: b, result: r)
    }

    /// Merge methods of the soup view.
    package enum SoupMethod: String, Sendable, CaseIterable {
        case weighted, taskArithmetic, ties, dare, slerp
        package var label: String {
            switch self {
            case .weighted: "weighted"
            case .taskArithmetic: "task arithmetic"
            case .ties: "TIES"
            case .dare: "DARE"
            case .slerp: "SLERP"
            }
        }
        package var needsBase: Bool { self == .taskArithmetic || self == .ties || self == .dare }
        /// TIES and DARE keep a fraction (the density) of each task vector.
        package var usesDensity: Bool { self == .ties || self == .dare }

        var mergeMethod: MergeMethod {
            switch self {
            case .weighted: .linear
            case .taskArithmetic: .taskArithmetic
            case .ties: .ties
            case .dare: .dareLinear
            case .slerp: .slerp
            }
        }
    }

    /// The density (fraction of task-vector entries kept) TIES and DARE start from in the soup view.
    package static let soupDensity = 0.5

    /// The soup as a mergekit-style recipe (what `basin merge` reads), with absolute model paths (or `paths`,
    /// one per model, e.g. permuted copies).
    package func soupRecipe(_ method: SoupMethod, coefficients: [Double], lambda: Double,
                            density: Double = ExplorerEngine.soupDensity, paths: [String]? = nil) throws -> MergeRecipe {
        let paths = paths ?? models.indices.map(modelPath)
        if method.needsBase && base == nil {
            throw ExplorerError(.needsBase, "\(method.label) merges task vectors: start the explorer with --base BASE_MODEL")
        }
        var global: [String: ParameterValue] = [:]
        var entries: [MergeRecipe.ModelEntry]
        switch method {
        case .slerp:
            guard models.count == 2 else { throw ExplorerError(.unsupportedRequest, "SLERP interpolates two models; \(models.count) are loaded") }
            let total = coefficients[0] + coefficients[1]
            guard total > 0 else { throw ExplorerError(.invalidValue, "all coefficients are zero") }
            global["t"] = .scalar(coefficients[1] / total)
            // mergekit's form: the first model is base_model (the t = 0 end), the second the one model merged in.
            return MergeRecipe(method: .slerp, models: [MergeRecipe.ModelEntry(model: paths[1])], baseModel: paths[0], parameters: global)
        default:
            guard coefficients.contains(where: { $0 > 0 }) else { throw ExplorerError(.invalidValue, "all coefficients are zero") }
            entries = zip(paths, coefficients).map { m, c in
                var p: [String: ParameterValue] = ["weight": .scalar(c)]
                if method.usesDensity { p["density"] = .scalar(density) }
                return MergeRecipe.ModelEntry(model: m, parameters: p)
            }
            if method.needsBase { global["lambda"] = .scalar(lambda) }
        }
        return MergeRecipe(method: method.mergeMethod, models: entries,
                           baseModel: method.needsBase ? base.map { URL(fileURLWithPath: $0.path).standardizedFileURL.path } : nil, parameters: global)
    }

    /// The merged model for coefficients (one per model; `lambda` scales task vectors), through BasinFusion's
    /// in-memory merge of the recipe. `replacing` swaps in other parameters for some models (e.g. B after
    /// alignment to A).
    package func merge(_ method: SoupMethod, coefficients: [Double], lambda: Double, density: Double = ExplorerEngine.soupDensity,
                       replacing: [Int: ParameterSet] = [:]) throws -> ParameterSet {
        let recipe = try soupRecipe(method, coefficients: coefficients, lambda: lambda, density: density)
        var p = params
        for (i, q) in replacing { p[i] = q }
        if method == .slerp { return try ParameterMerge.merge(recipe, models: [p[1]], base: p[0]) }
        return try ParameterMerge.merge(recipe, models: p, base: method.needsBase ? base?.params : nil)
    }

    /// REPAIR of a soup (the soup view's b): the goal is the weighted mean of the models' statistics with the
    /// soup's weights, as `basin soup/merge --repair` gives it (`MergeRecipe.combinationWeights` of the soup's
    /// recipe: the weighted soup's normalised coefficients, SLERP's (1 - t, t)), one weight per model. Task
    /// arithmetic, TIES and DARE add task vectors to a base: no weighted mean of the models, so no goal.
    package func soupRepairWeights(_ method: SoupMethod, coefficients: [Double], lambda: Double, density: Double = ExplorerEngine.soupDensity) throws -> [Double] {
        guard method == .weighted || method == .slerp else {
            throw ExplorerError(.unsupportedRequest, "REPAIR renormalises the merged model to the weighted mean of the models' statistics; \(method.label) adds task vectors to a base, which is no weighted mean of the models (b: naive, BN reset)")
        }
        let weights = try soupRecipe(method, coefficients: coefficients, lambda: lambda, density: density).combinationWeights().weights
        precondition(weights.count == models.count, "a weighted soup or SLERP weighs every model")
        return weights
    }

    /// The merged soup as corrected: BatchNorm statistics reset, or REPAIRed to `soupRepairWeights`' goal and folded
    /// into the model's own tensors (`statistics`: each model's REPAIR statistics, the aligned copy's when it is
    /// merged instead), or `merged` itself.
    package func correctedSoup(_ merged: ParameterSet, correction: Correction, method: SoupMethod, coefficients: [Double], lambda: Double,
                               density: Double, statistics: [Repair.Statistics]) throws -> ParameterSet {
        switch correction {
        case .naive: return merged
        case .bnReset: return bnReset.map { $0.apply(merged) } ?? merged
        case .repair:
            guard let repair else { return merged }
            let weights = try soupRepairWeights(method, coefficients: coefficients, lambda: lambda, density: density)
            return try CombinationCorrection(.repair(repair), statistics: statistics).parameters(merged, weights: weights)
        }
    }

    /// The data sets the soup view reports on: every data set, the held-out set (when given apart), then the
    /// named evaluation sets.
    package var soupData: [Dataset] { datasets + (heldOut.map { [$0] } ?? []) + evalSets.map(\.data) }

    /// Token data (language models): metrics read loss / perplexity / token accuracy.
    package var tokenData: Bool { datasets[0].isTokens }

    /// Metrics of a merged model on `soupData`.
    package func evaluateSoup(_ p: ParameterSet) -> [Metrics] {
        soupData.map { network.evaluate(p, on: $0) }
    }

    /// Metrics of the ensemble of all models (averaged probabilities) on `soupData`.
    package func ensembleMetrics() -> [Metrics]? {
        soupData.map { Soup.ensembleMetrics(network: network, models: params, on: $0) }
    }

    /// Greedy soup (Wortsman et al.) on the held-out set (else the last data set): uniform weights over the
    /// chosen models.
    package func greedySoup(replacing: [Int: ParameterSet] = [:]) throws -> [Double] {
        var p = params
        for (i, q) in replacing { p[i] = q }
        let r = try Soup.greedy(network: network, ingredients: p, heldOut: heldOut ?? shownData)
        return models.indices.map { r.chosen.contains($0) ? 1 / Double(r.chosen.count) : 0 }
    }
}
