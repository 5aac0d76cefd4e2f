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

extension MergeRecipe {
    /// The models and weights (summing to 1) of the combination this recipe makes, for REPAIR's goal: `linear`
    /// with one scalar `weight` per model (divided by their sum unless `normalize: false`, where they must already
    /// sum to 1) and `slerp` of two models at a scalar `t` ((1 - t) base + t other: the interpolation of the
    /// endpoints' statistics, as on a path, although slerp's weights are not on the straight line). Any other
    /// recipe is not a weighted mean of models -- a task vector added to a base, TIES' or DARE's sparsified
    /// sums, per-layer gradients or filters, slices -- so REPAIR has no goal for it: `invalidArgument`, saying why.
    public func combinationWeights() throws -> (models: [URL], weights: [Double]) {
        func refuse(_ why: String) -> PointCorrectionError {
            PointCorrectionError(.invalidArgument, file: file, "--repair needs a recipe that is a weighted mean of models (linear with scalar weights, or slerp of two models at a scalar t), because REPAIR's goal is the same weighted mean of the models' statistics; " + why)
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
            return (models.map { resolve($0.model) }, weights)
        case .slerp:
            guard let base = baseURL, inputModels.count == 1 else {
                throw refuse("slerp needs a base_model and one other model")
            }
            guard case let .scalar(t)? = parameters["t"] ?? inputModels[0].parameters["t"] else {
                throw refuse("slerp's t is not one scalar (a filtered or gradient t gives each layer its own weight)")
            }
            return ([base, resolve(inputModels[0].model)], [1 - t, t])
        default:
            throw refuse("\(method.rawValue) is not one")
        }
    }
}
