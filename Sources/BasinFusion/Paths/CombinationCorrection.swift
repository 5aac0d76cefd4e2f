import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// A `PointCorrection` applied to a weighted combination sum_i c_i theta_i of models (a soup, a linear or SLERP
/// merge) instead of a point on a path. The BatchNorm reset needs nothing more than the combined parameters;
/// REPAIR needs every model's statistics, measured here once, and its goal is their combination with the same
/// weights: sum_i c_i stat_i (the weighted mean; (1 - t) stat_A + t stat_B for two models at weight t), the
/// definition `PathEvaluator` uses for a point on a chain.
///
/// Usage (`basin soup`, `basin merge`):
///
///     let c = CombinationCorrection(.repair(repair), models: [a, b, c])
///     let m = try c.evaluate(uniformSoup, weights: [1/3, 1/3, 1/3], network: network, on: [test])[0]
///     let written = try c.parameters(uniformSoup, weights: [1/3, 1/3, 1/3])    // the model's own tensors
public struct CombinationCorrection: Sendable {
    public let correction: PointCorrection
    /// REPAIR: every model's site statistics (empty for the other corrections).
    public let statistics: [Repair.Statistics]
    public let modelCount: Int

    public init(_ correction: PointCorrection, models: [ParameterSet]) {
        self.correction = correction
        modelCount = models.count
        if case let .repair(repair) = correction {
            statistics = models.map { repair.statistics($0) }
        } else {
            statistics = []
        }
    }

    /// A correction whose models' REPAIR statistics were measured before (`repair.statistics(model)` for each, in
    /// order), e.g. cached by a UI that corrects many combinations of the same models.
    public init(_ correction: PointCorrection, statistics: [Repair.Statistics]) {
        self.correction = correction
        modelCount = statistics.count
        if case .repair = correction { self.statistics = statistics } else { self.statistics = [] }
    }

    /// REPAIR's goal for a combination with `weights` (one per model, summing to 1); nil for other corrections.
    public func repairGoal(weights: [Double]) throws -> Repair.Statistics? {
        guard !statistics.isEmpty else { return nil }
        guard weights.count == modelCount else {
            throw PointCorrectionError(.invalidArgument, "REPAIR of a combination needs one weight per model (\(modelCount)), got \(weights.count)")
        }
        let sum = weights.reduce(0, +)
        guard weights.allSatisfy({ $0.isFinite }), abs(sum - 1) < 1e-6 else {
            throw PointCorrectionError(.invalidArgument, "REPAIR's goal is the weighted mean of the models' statistics; the weights must sum to 1 (they sum to \(sum))")
        }
        return .combination(zip(statistics, weights).filter { $0.1 != 0 }.map { ($0.0, $0.1) })
    }

    /// The combination as written: BatchNorm statistics reset, REPAIR folded into the model's own tensors (throws
    /// `cannotFold` when it cannot be), or `params` itself.
    public func parameters(_ params: ParameterSet, weights: [Double]) throws -> ParameterSet {
        switch correction {
        case .none: return params
        case let .bnReset(reset): return reset.apply(params)
        case let .repair(repair): return try repair.fold(repair.apply(params, goal: repairGoal(weights: weights)!))
        }
    }

    /// Loss and accuracy of the corrected combination (REPAIR evaluated on its repaired graph, so a site that
    /// cannot be folded still evaluates).
    public func evaluate(_ params: ParameterSet, weights: [Double], network: Network, on data: [Dataset]) throws -> [Metrics] {
        switch correction {
        case .none: return data.map { network.evaluate(params, on: $0) }
        case let .bnReset(reset):
            let p = reset.apply(params)
            return data.map { network.evaluate(p, on: $0) }
        case let .repair(repair):
            let p = repair.apply(params, goal: try repairGoal(weights: weights)!)
            return data.map { repair.repairedNetwork.evaluate(p, on: $0) }
        }
    }
}

/// One model of a combination, as REPAIR measures it: a model file, or bend `index` (1-based) of a fitted path's
/// bends file. A bend is a full set of the network's tensors (BatchNorm buffers included), so its statistics are
/// measured as a model's are -- the definition `basin path --bends BENDS --repair` uses for a fitted curve's control
/// points.
public enum CombinationMember: Sendable, Equatable, CustomStringConvertible {
    case model(URL)
    case bend(URL, index: Int)

    public var description: String {
        switch self {
        case let .model(url): url.path
        case let .bend(url, j): "\(url.path)#bend.\(j)"
        }
    }
}

/// The combination a recipe makes, for REPAIR's goal: its members, their weights (summing to 1) and the bends its
/// bend members come from, read once from the bends file when the recipe was resolved.
public struct Combination: Sendable {
    public let members: [CombinationMember]
    public let weights: [Double]
    /// The bends file's contents (nil when no member is a bend).
    let bends: (url: URL, loaded: BendsFile.Loaded)?

    /// The members' parameter sets, in order: models through `load` (the first member is always a model: the first
    /// model of the recipe), bends from the file read before, checked against the first model's tensor names and
    /// shapes.
    public func load(model load: (URL) throws -> ParameterSet) throws -> [ParameterSet] {
        var template: ParameterSet?
        var conformed: BendsFile.Loaded?
        return try members.map { member in
            switch member {
            case let .model(url):
                let p = try load(url)
                if template == nil { template = p }
                return p
            case let .bend(url, j):
                guard let template else { throw PointCorrectionError(.invalidArgument, file: url.path, "a bend comes before any model") }
                guard let (file, loaded) = bends, file == url else { throw PointCorrectionError(.invalidArgument, file: url.path, "was not read with the recipe") }
                if conformed == nil { conformed = try loaded.conforming(to: template, file: url) }
                guard j >= 1, j <= conformed!.bends.count else { throw PointCorrectionError(.invalidArgument, file: url.path, "has no bend \(j)") }
                return conformed!.bends[j - 1]
            }
        }
    }
}

extension MergeRecipe {
    /// The members and weights (summing to 1) of the combination this recipe makes, for REPAIR's goal:
    /// - `linear` with one scalar `weight` per model (divided by their sum unless `normalize: false`, where they must
    ///   already sum to 1);
    /// - `slerp` of two models at a scalar `t` ((1 - t) base + t other: the interpolation of the endpoints'
    ///   statistics, as on a path, although slerp's weights are not on the straight line);
    /// - `basin_path` at a scalar `t`: the path's own weights over its control points (`ModelPath.weights`): on a
    ///   straight line (1 - t, t); on a polygonal chain (through the models, or with fitted bends) the two
    ///   neighbouring control points with their local weights; on a Bezier curve the Bernstein weights over
    ///   [A, bends..., B]. The bends are members like the models (`CombinationMember.bend`): this is the goal
    ///   `basin path --repair` gives the same point, so a REPAIRed point exported from a curve rebuilds.
    /// Any other recipe is not a weighted mean of models -- a task vector added to a base, TIES' or DARE's
    /// sparsified sums, per-layer gradients or filters, slices -- so REPAIR has no goal for it: `invalidArgument`,
    /// saying why. A fitted path's bends file is read here, once: its bend count sets the weights, and
    /// `Combination.load` takes the bends from what was read.
    public func combinationWeights() throws -> Combination {
        func refuse(_ why: String) -> PointCorrectionError {
            PointCorrectionError(.invalidArgument, file: file, "--repair needs a recipe that is a weighted mean of models (linear with scalar weights, slerp of two models at a scalar t, or a basin_path point at a scalar t), because REPAIR's goal is the same weighted mean of the models' statistics; " + why)
        }
        guard slices.isEmpty else { throw refuse("this recipe uses slices") }
        switch method {
        case .linear:
            guard !models.isEmpty else { throw refuse("the recipe lists no models") }
            var weights: [Double] = []
            for entry in models {
                guard case let .scalar(w)? = entry.parameters["weight"] else {
                    throw refuse("model \(entry.model) has no single scalar weight (per-tensor filters and gradients give each layer its own mean)")
                }
                weights.append(w)
            }
            let sum = weights.reduce(0, +)
            var normalize = true
            if case let .boolean(b)? = parameters["normalize"] { normalize = b }
            if normalize {
                guard sum > 0, sum.isFinite else { throw refuse("the weights sum to \(sum)") }
                weights = weights.map { $0 / sum }
            } else if abs(sum - 1) > 1e-6 {
                throw refuse("with normalize: false the weights must sum to 1 (they sum to \(sum))")
            }
            return Combination(members: models.map { .model(resolve($0.model)) }, weights: weights, bends: nil)
        case .slerp:
            guard let base = baseURL, inputModels.count == 1 else {
                throw refuse("slerp needs a base_model and one other model")
            }
            guard case let .scalar(t)? = parameters["t"] ?? inputModels[0].parameters["t"] else {
                throw refuse("slerp's t is not one scalar (a filtered or gradient t gives each layer its own weight)")
            }
            return Combination(members: [.model(base), .model(resolve(inputModels[0].model))], weights: [1 - t, t], bends: nil)
        case .basinPath:
            guard let point = pathPoint, models.count >= 2 else { throw refuse("a basin_path recipe needs basin_path: {type, bends} and at least two models") }
            guard case let .scalar(t)? = parameters["t"] else {
                throw refuse("basin_path's t is not one scalar (a filtered or gradient t gives each layer its own point)")
            }
            var members: [CombinationMember] = models.map { .model(resolve($0.model)) }
            var bends: (url: URL, loaded: BendsFile.Loaded)?
            if let bendsPath = point.bends {
                guard members.count == 2 else { throw refuse("a \(point.type.rawValue) path with bends runs between exactly two models") }
                let url = try locate(bendsPath, key: "basin_path.bends")
                let loaded: BendsFile.Loaded
                do { loaded = try BendsFile.read(url) } catch let e as BasinIOError where e.kind == .badMetadata {
                    throw refuse("\(bendsPath) is not a bends file of a \(point.type.rawValue) path (\(e.problem))")
                }
                guard loaded.type == point.type else { throw refuse("\(bendsPath) is not a bends file of a \(point.type.rawValue) path (it holds a \(loaded.type.rawValue) path's bends)") }
                members = [members[0]] + (1...loaded.bends.count).map { .bend(url, index: $0) } + [members[1]]
                bends = (url, loaded)
            }
            return Combination(members: members, weights: ModelPath.weights(type: point.type, count: members.count, at: t), bends: bends)
        default:
            throw refuse("\(method.rawValue) is not one")
        }
    }
}
