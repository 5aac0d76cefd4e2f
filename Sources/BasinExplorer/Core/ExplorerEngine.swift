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
    /// Every file the session read (models with their shards, data sets, the architecture file): an export may
    /// replace none of them (docs/reliability.md).
    package let inputFiles: [URL]

    package init(models: [LoadedModel], datasets: [Dataset], base: LoadedModel? = nil, heldOut: Dataset? = nil,
                 otherInputs: [URL] = []) throws {
        guard models.count >= 2 else { throw ExplorerError(.missingInput, "the explorer needs at least two models (got \(models.count))") }
        guard !datasets.isEmpty else { throw ExplorerError(.missingInput, "the explorer needs a data set (--data)") }
        for m in models.dropFirst() + (base.map { [$0] } ?? []) {
            try models[0].params.checkCompatible(with: m.params, "\(models[0].path) and \(m.path)")
        }
        for d in datasets + (heldOut.map { [$0] } ?? []) { try LoadedModel.check(d, fits: models[0]) }
        self.heldOut = heldOut
        self.inputFiles = (models + (base.map { [$0] } ?? [])).flatMap(\.source.files) + otherInputs
        self.models = models
        self.datasets = datasets
        self.base = base
        self.network = models[0].network
        self.names = ExplorerEngine.shortNames(models.map(\.path))
        self.dataNames = datasets.count == 2 ? ["train", "test"] : datasets.map(\.name)
    }

    package static func load(models paths: [String], data: [String], base: String? = nil, heldOut: String? = nil,
                             architecture: ArchitectureChoice = ArchitectureChoice()) throws -> ExplorerEngine {
        let models = try paths.map { try LoadedModel(path: $0, architecture: architecture) }
        let sets = try data.map { try Dataset(path: $0) }
        let b = try base.map { try LoadedModel(path: $0, architecture: architecture) }
        return try ExplorerEngine(models: models, datasets: sets, base: b, heldOut: try heldOut.map { try Dataset(path: $0) },
                                  otherInputs: (data + (heldOut.map { [$0] } ?? [])).map { URL(fileURLWithPath: $0) } + (architecture.file.map { [$0] } ?? []))
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

    /// Evaluates a path at `ts` on every data set, calling `onPoint` after each; stops early when cancelled.
    package func evaluatePath(_ path: ModelPath, ts: [Double], cancel: CancellationFlag, onPoint: (Double, [Metrics]) -> Void) {
        let evaluator = PathEvaluator(path: path, network: network, datasets: datasets)
        _ = evaluator.evaluatePoints(ts: ts, cancel: cancel) { i, m in onPoint(ts[i], m) }
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
        package var report: MatchReport { result.report }
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

    /// The data sets the soup view reports on: every data set, then the held-out set (when given apart).
    package var soupData: [Dataset] { datasets + (heldOut.map { [$0] } ?? []) }

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
