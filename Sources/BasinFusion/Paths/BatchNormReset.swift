import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// A problem with a BatchNorm reset or a REPAIR request. Like `BasinIOError`: a matchable `kind` plus the
/// file (model or data set), node and tensor concerned.
public struct PointCorrectionError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// `--bn-reset` on a network without BatchNorm: there are no statistics to recompute.
        case noBatchNorm
        /// `--repair` on a network with no layer whose pre-activations can be renormalised.
        case noRepairSites
        /// The data set to recompute statistics on has no rows.
        case emptyData
        /// A repaired point cannot be written with the model's own tensors (a site without a bias or BatchNorm
        /// to absorb the correction).
        case cannotFold
        /// Batch size or another argument out of range.
        case invalidArgument
    }

    public let kind: Kind
    public var file: String?
    public var node: String?
    public var tensor: String?
    public let problem: String

    public init(_ kind: Kind, file: String? = nil, node: String? = nil, tensor: String? = nil, _ problem: String) {
        self.kind = kind
        self.file = file
        self.node = node
        self.tensor = tensor
        self.problem = problem
    }

    public var description: String {
        var where_: [String] = []
        if let file { where_.append(file) }
        if let node { where_.append("node '\(node)'") }
        if let tensor { where_.append("tensor '\(tensor)'") }
        return (where_.isEmpty ? "" : where_.joined(separator: ", ") + ": ") + problem
    }

    public var errorDescription: String? { description }
}

/// Recomputes every BatchNorm's running statistics of a point exactly as `torch.optim.swa_utils.update_bn`
/// does: statistics reset (mean 0, variance 1, num_batches_tracked 0, momentum None), the whole network in
/// train mode, `data` once in dataset order in batches of `batchSize` (the last one kept however small); each
/// BatchNorm ends with the plain average over the batches of the per-channel batch mean and unbiased batch
/// variance, and num_batches_tracked = the number of batches. Trained parameters are unchanged.
///
/// Usage (the explorer's BN toggle, `basin path --bn-reset`, soups, merges, exports):
///
///     let reset = try BatchNormReset(network: model.network, data: train)      // batch 64
///     let fixed = reset.apply(pointParameters)                                // evaluate or write `fixed`
public struct BatchNormReset: Sendable {
    public let network: Network
    public let data: Dataset
    public let batchSize: Int

    /// Throws `noBatchNorm` when the graph has no BatchNorm node, `emptyData` when `data` has no rows.
    public init(network: Network, data: Dataset, batchSize: Int = 64, model: String? = nil) throws {
        guard batchSize >= 1 else {
            throw PointCorrectionError(.invalidArgument, "the BatchNorm reset batch size must be positive (got \(batchSize))")
        }
        guard BatchNormReset.hasBatchNorm(network.architecture) else {
            throw PointCorrectionError(.noBatchNorm, file: model,
                                       "the network has no BatchNorm layer, so there are no running statistics to reset")
        }
        guard data.count > 0 else {
            throw PointCorrectionError(.emptyData, file: data.name, "has no rows to recompute BatchNorm statistics on")
        }
        self.network = network
        self.data = data
        self.batchSize = batchSize
    }

    public static func hasBatchNorm(_ architecture: Architecture) -> Bool {
        architecture.nodes.contains { $0.op is BatchNorm }
    }

    /// The number of batches a reset runs (`num_batches_tracked` afterwards).
    public var batches: Int { (data.count + batchSize - 1) / batchSize }

    /// `params` with every BatchNorm's running statistics recomputed.
    public func apply(_ params: ParameterSet) -> ParameterSet {
        Trainer.resetBatchNormStatistics(network: network, params: params, data: data, batchSize: batchSize)
    }
}

/// What is done to each point of a path (or a soup, merge or export) before it is evaluated or written.
public enum PointCorrection: Sendable {
    /// The point as interpolated (running statistics interpolated like every other tensor).
    case none
    /// BatchNorm statistics recomputed (`BatchNormReset`).
    case bnReset(BatchNormReset)
    /// Pre-activation statistics renormalised to the interpolation of the endpoints' (`Repair`).
    case repair(Repair)

    /// The name used in JSON and text output: naive, bn_reset, repair.
    public var name: String {
        switch self {
        case .none: return "naive"
        case .bnReset: return "bn_reset"
        case .repair: return "repair"
        }
    }
}
