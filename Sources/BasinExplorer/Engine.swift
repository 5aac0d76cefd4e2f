import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// A flag the UI sets and a background job polls.
public final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    public init() {}
    public func cancel() { lock.lock(); flag = true; lock.unlock() }
    public var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return flag }
}

/// The path types the explorer offers (number keys 1-3).
public enum PathKind: String, Sendable, CaseIterable, Hashable {
    case linear, polychain, bezier
    public var label: String {
        switch self {
        case .linear: "linear"
        case .polychain: "polychain"
        case .bezier: "Bezier"
        }
    }
}

/// A path through weight space as a value: its kind and control points (endpoints first and last).
public struct PathSpec: Sendable {
    public var kind: PathKind
    public var points: [ParameterSet]
    public init(kind: PathKind, points: [ParameterSet]) { self.kind = kind; self.points = points }

    var pathType: PathType {
        switch kind {
        case .linear: .linear
        case .polychain: points.count > 2 ? .polychain : .linear
        case .bezier: points.count > 2 ? .bezier : .linear
        }
    }

    /// Coefficients of the control points at t (BasinFusion's path definitions).
    public func weights(at t: Double) -> [Double] {
        ModelPath.weights(type: pathType, count: points.count, at: t)
    }

    /// The engine's path value.
    public func modelPath() throws -> ModelPath { try ModelPath(type: pathType, controlPoints: points) }

    public func parameters(at t: Double) -> ParameterSet {
        let w = weights(at: t)
        let terms = zip(points, w).filter { $0.1 != 0 }.map { ($0.0, Float($0.1)) }
        if terms.count == 1, terms[0].1 == 1 { return terms[0].0 }
        return ParameterSet.combination(terms)
    }
}

/// An explorer error shown in a popup.
public struct ExplorerError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
    public var errorDescription: String? { description }
}

/// The explorer's only door into the engine: everything it computes goes through here.
/// Immutable and Sendable, so background jobs share it freely.
public final class ExplorerEngine: Sendable {
    public let models: [LoadedModel]
    public let names: [String]
    /// Data sets in the order given: the first is "train" (fitting, matching), the last "test".
    public let datasets: [Dataset]
    public let dataNames: [String]
    public let base: LoadedModel?
    public let network: Network
    /// Where greedy soup chooses its ingredients: a held-out set, else the last data set.
    public let heldOut: Dataset?

    public init(models: [LoadedModel], datasets: [Dataset], base: LoadedModel? = nil, heldOut: Dataset? = nil) throws {
        guard models.count >= 2 else { throw ExplorerError("the explorer needs at least two models (got \(models.count))") }
        guard !datasets.isEmpty else { throw ExplorerError("the explorer needs a data set (--data)") }
        for m in models.dropFirst() + (base.map { [$0] } ?? []) {
            try models[0].params.checkCompatible(with: m.params, "\(models[0].path) and \(m.path)")
        }
        for d in datasets + (heldOut.map { [$0] } ?? []) { try LoadedModel.check(d, fits: models[0]) }
        self.heldOut = heldOut
        self.models = models
        self.datasets = datasets
        self.base = base
        self.network = models[0].network
        self.names = ExplorerEngine.shortNames(models.map(\.path))
        self.dataNames = datasets.count == 2 ? ["train", "test"] : datasets.map(\.name)
    }

    public static func load(models paths: [String], data: [String], base: String? = nil, heldOut: String? = nil,
                            architecture: ArchitectureChoice = ArchitectureChoice()) throws -> ExplorerEngine {
        let models = try paths.map { try LoadedModel(path: $0, architecture: architecture) }
        let sets = try data.map { try Dataset(path: $0) }
        let b = try base.map { try LoadedModel(path: $0, architecture: architecture) }
        return try ExplorerEngine(models: models, datasets: sets, base: b, heldOut: try heldOut.map { try Dataset(path: $0) })
    }

    /// File names without directories and extensions, kept unique.
    static func shortNames(_ paths: [String]) -> [String] {
        let base = paths.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent }
        return base.enumerated().map { i, n in base.filter { $0 == n }.count > 1 ? "\(n)#\(i)" : n }
    }

    public var params: [ParameterSet] { models.map(\.params) }

    /// Metrics of a parameter set on every data set.
    public func evaluate(_ p: ParameterSet) -> [Metrics] {
        datasets.map { network.evaluate(p, on: $0) }
    }

    /// Evaluates a path at `ts`, calling `onPoint` after each; stops early when cancelled.
    public func evaluatePath(_ spec: PathSpec, ts: [Double], cancel: CancelFlag,
                             onPoint: (Double, [Metrics]) -> Void) {
        guard let path = try? spec.modelPath() else {
            for t in ts {
                if cancel.isCancelled { return }
                onPoint(t, evaluate(spec.parameters(at: t)))
            }
            return
        }
        let evaluator = PathEvaluator(path: path, network: network, datasets: datasets)
        _ = evaluator.evaluatePoints(ts: ts, isCancelled: { cancel.isCancelled }) { i, m in onPoint(ts[i], m) }
    }

    // MARK: Fusion operations (the engine library does the work)

    public struct FitProgress: Sendable {
        public var epoch: Int
        public var epochs: Int
        public var fraction: Double
        public var loss: Double
    }

    /// Fits the bend of a polychain / Bezier path between a and b on the first data set (Garipov et al.).
    public func fitBend(kind: PathKind, from a: ParameterSet, to b: ParameterSet, epochs: Int, cancel: CancelFlag,
                        progress: @escaping @Sendable (FitProgress) -> Void) throws -> ParameterSet {
        guard kind != .linear else { throw ExplorerError("a linear path has no bend to fit") }
        let config = CurveFitConfig(type: kind == .bezier ? .bezier : .polychain, bends: 1, epochs: epochs)
        let fitter = try CurveFitter(network: network, start: a, end: b, data: datasets[0], config: config)
        let flag = CancellationFlag()
        var lastReport = Date.distantPast
        let result = fitter.fit(cancel: flag) { p in
            if cancel.isCancelled { flag.cancel() }
            let now = Date()
            if p.endOfEpoch || now.timeIntervalSince(lastReport) > 0.1 {
                lastReport = now
                progress(FitProgress(epoch: p.epoch, epochs: p.epochs, fraction: p.fraction, loss: p.meanLoss))
            }
        }
        return result.path.bends[0]
    }

    public enum MatchKind: String, Sendable { case weight, activation }

    /// One layer of an alignment, as the permutation view shows it.
    public struct LayerMatch: Sendable {
        public var name: String
        public var size: Int
        /// Row-major size x size: unit i of A vs unit j of original B.
        public var similarity: [Double]
        /// Unit k of aligned B is unit permutation[k] of B.
        public var permutation: [Int]
        public var pairScores: [Double]
        public var moved: Int
        public var meanBefore: Double
        public var meanAfter: Double
    }

    public struct MatchOutcome: Sendable {
        public var kind: MatchKind
        public var a: Int
        public var b: Int
        public var aligned: ParameterSet
        public var layers: [LayerMatch]
        public var objectiveBefore: Double
        public var objectives: [Double]
        public var seconds: Double
    }

    /// Aligns model b to model a (Git Re-Basin weight matching or activation matching on the first data set).
    public func match(_ kind: MatchKind, a: Int, b: Int, cancel: CancelFlag) throws -> MatchOutcome {
        let pa = params[a], pb = params[b]
        let spec = try PermutationSpec.make(for: models[a].architecture, params: pa)
        let r = try Alignment.align(reference: pa, model: pb, spec: spec, method: kind == .weight ? .weight : .activation,
                                    network: network, data: datasets[0])
        let layers = r.report.layers.map {
            LayerMatch(name: $0.name, size: $0.size, similarity: $0.similarity, permutation: $0.permutation,
                       pairScores: $0.pairScores, moved: $0.moved, meanBefore: $0.meanSimilarityBefore, meanAfter: $0.meanSimilarityAfter)
        }
        return MatchOutcome(kind: kind, a: a, b: b, aligned: r.aligned, layers: layers, objectiveBefore: r.report.objectiveBefore,
                            objectives: r.report.steps.map(\.objective), seconds: r.report.seconds)
    }

    /// Merge methods of the soup view.
    public enum SoupMethod: String, Sendable, CaseIterable {
        case weighted, taskArithmetic, ties, dare, slerp
        public var label: String {
            switch self {
            case .weighted: "weighted"
            case .taskArithmetic: "task arithmetic"
            case .ties: "TIES"
            case .dare: "DARE"
            case .slerp: "SLERP"
            }
        }
        public var needsBase: Bool { self == .taskArithmetic || self == .ties || self == .dare }
        /// TIES and DARE keep a fraction (the density) of each task vector.
        public var usesDensity: Bool { self == .ties || self == .dare }

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

    /// Density (fraction of task-vector entries kept) used by TIES and DARE in the soup view.
    /// The density TIES and DARE start from in the soup view.
    public static let soupDensity = 0.5

    /// The soup as a mergekit-style recipe (what `basin merge` reads), with absolute model paths.
    public func soupRecipe(_ method: SoupMethod, coefficients: [Double], lambda: Double,
                           density: Double = ExplorerEngine.soupDensity) throws -> MergeRecipe {
        if method.needsBase && base == nil {
            throw ExplorerError("\(method.label) merges task vectors: start the explorer with --base BASE_MODEL")
        }
        var global: [String: ParameterValue] = [:]
        var entries: [MergeRecipe.ModelEntry]
        switch method {
        case .slerp:
            guard models.count == 2 else { throw ExplorerError("SLERP interpolates two models; \(models.count) are loaded") }
            let total = coefficients[0] + coefficients[1]
            guard total > 0 else { throw ExplorerError("all coefficients are zero") }
            global["t"] = .scalar(coefficients[1] / total)
            entries = models.map { MergeRecipe.ModelEntry(model: $0.url.path) }
        default:
            guard coefficients.contains(where: { $0 > 0 }) else { throw ExplorerError("all coefficients are zero") }
            entries = zip(models, coefficients).map { m, c in
                var p: [String: ParameterValue] = ["weight": .scalar(c)]
                if method.usesDensity { p["density"] = .scalar(density) }
                return MergeRecipe.ModelEntry(model: m.url.path, parameters: p)
            }
            if method.needsBase { global["lambda"] = .scalar(lambda) }
        }
        return MergeRecipe(method: method.mergeMethod, models: entries,
                           baseModel: method.needsBase ? base?.url.path : nil, parameters: global)
    }

    /// The merged model for coefficients (one per model; `lambda` scales task vectors), tensor by tensor
    /// through BasinFusion's merge methods.
    /// `replacing` swaps in other parameters for some models (e.g. B after alignment to A).
    public func merge(_ method: SoupMethod, coefficients: [Double], lambda: Double, density: Double = ExplorerEngine.soupDensity,
                      replacing: [Int: ParameterSet] = [:]) throws -> ParameterSet {
        let recipe = try soupRecipe(method, coefficients: coefficients, lambda: lambda, density: density)
        var p = params
        for (i, q) in replacing { p[i] = q }
        var out = ParameterSet()
        for name in p[0].names {
            let basis = method.needsBase ? base?.params[name] : nil
            out[name] = try TensorMerge.merge(recipe.method, name: name, inputs: p.map { $0[name]! }, base: basis,
                                              parameters: recipe.tensorParameters(for: name))
        }
        return out
    }

    /// Metrics of the ensemble of all models (averaged probabilities) on every data set.
    public func ensembleMetrics() -> [Metrics]? {
        datasets.map { Soup.ensembleMetrics(network: network, models: params, on: $0) }
    }

    /// Greedy soup (Wortsman et al.) on the held-out set (else the last data set): uniform weights over the
    /// chosen models.
    public func greedySoup(replacing: [Int: ParameterSet] = [:]) throws -> [Double] {
        var p = params
        for (i, q) in replacing { p[i] = q }
        let r = try Soup.greedy(network: network, ingredients: p, heldOut: heldOut ?? datasets[datasets.count - 1])
        return models.indices.map { r.chosen.contains($0) ? 1 / Double(r.chosen.count) : 0 }
    }

    /// A recipe (YAML) describing how an exported model was made.
    public func recipe(_ lines: [String: String]) -> String {
        lines.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "\n") + "\n"
    }

    /// Writes a model and its recipe next to it (`NAME.recipe.yaml`). Never overwrites an input.
    public func export(_ p: ParameterSet, to path: String, recipe: String) throws -> (model: URL, recipe: URL) {
        var url = URL(fileURLWithPath: path)
        if url.pathExtension.isEmpty { url.appendPathExtension("safetensors") }
        let inputs = models.map(\.url) + (base.map { [$0.url] } ?? [])
        let dtypes = models[0].dtypes
        try p.write(to: url, dtype: { dtypes[$0] ?? .f32 }, metadata: ["basin.recipe": recipe], protecting: inputs)
        let r = url.deletingPathExtension().appendingPathExtension("recipe.yaml")
        try recipe.write(to: r, atomically: true, encoding: .utf8)
        return (url, r)
    }

    // MARK: Landscape plane (Garipov et al. 2018, plane through three points)

    public struct Plane: Sendable {
        public var origin: ParameterSet
        public var u: ParameterSet
        public var v: ParameterSet
        /// Plane coordinates of the three points.
        public var coords: [(x: Double, y: Double)]
        public var xRange: ClosedRange<Double>
        public var yRange: ClosedRange<Double>

        public func point(_ x: Double, _ y: Double) -> ParameterSet {
            ParameterSet.combination([(origin, 1), (u, Float(x)), (v, Float(y))])
        }
        public func project(_ p: ParameterSet) -> (x: Double, y: Double) {
            let d = p - origin
            return (d.dot(u), d.dot(v))
        }
    }

    /// An orthonormal basis of the plane through three points, with margins around them.
    public func plane(_ p0: ParameterSet, _ p1: ParameterSet, _ p2: ParameterSet, margin: Double = 0.2) throws -> Plane {
        let e1 = p2 - p0
        let n1 = e1.norm
        guard n1 > 0 else { throw ExplorerError("the plane's points coincide") }
        let u = e1.mapTensors { _, t in t.scaled(by: Float(1 / n1)) }
        var e2 = p1 - p0
        let proj = e2.dot(u)
        e2 = ParameterSet.combination([(e2, 1), (u, Float(-proj))])
        let n2 = e2.norm
        guard n2 > 1e-9 * n1 else { throw ExplorerError("the three points are collinear: no plane through them") }
        let v = e2.mapTensors { _, t in t.scaled(by: Float(1 / n2)) }
        let coords = [(0.0, 0.0), (proj, n2), (n1, 0.0)].map { (x: $0.0, y: $0.1) }
        let xs = coords.map(\.x), ys = coords.map(\.y)
        let w = (xs.max()! - xs.min()!), h = (ys.max()! - ys.min()!)
        let xr = (xs.min()! - margin * w)...(xs.max()! + margin * w)
        let yr = (ys.min()! - margin * h)...(ys.max()! + margin * h)
        return Plane(origin: p0, u: u, v: v, coords: coords, xRange: xr, yRange: yr)
    }
}
