import BasinTensor
import Foundation

/// The merge methods Basin implements. Raw values are mergekit's `merge_method` names where mergekit has
/// the method; `fisher` and `regmean` are Basin-only (they need data and a network).
public enum MergeMethod: String, Sendable, CaseIterable, Codable {
    case linear
    case taskArithmetic = "task_arithmetic"
    case ties
    case dareLinear = "dare_linear"
    case dareTies = "dare_ties"
    case slerp
    case fisher
    case regmean

    /// Methods that need a base model (task vectors are taken against it; slerp's t = 0 end).
    public var needsBase: Bool {
        switch self {
        case .taskArithmetic, .ties, .dareLinear, .dareTies: true
        default: false
        }
    }

    /// Methods that need data and a network, so they run in memory rather than streamed.
    public var needsData: Bool { self == .fisher || self == .regmean }

    /// Understood by mergekit under the same name and with the same parameters.
    public var isMergekitMethod: Bool { !needsData }

    /// mergekit's default for `normalize` for this method.
    public var defaultNormalize: Bool {
        switch self {
        case .linear, .ties, .dareTies: true
        default: false
        }
    }
}

/// A parameter value as mergekit writes it: a scalar, or a list of `{filter, value}` entries where the
/// first entry whose filter is a substring of the tensor name wins and an entry without a filter is the
/// fallback.
public enum ParameterValue: Sendable, Equatable {
    case scalar(Double)
    case filtered([FilteredValue])

    public struct FilteredValue: Sendable, Equatable {
        public var filter: String?
        public var value: Double
        public init(filter: String?, value: Double) {
            self.filter = filter
            self.value = value
        }
    }

    /// The value for a tensor, or nil when no entry matches and there is no fallback.
    public func value(for tensorName: String) -> Double? {
        switch self {
        case let .scalar(v): return v
        case let .filtered(entries):
            if let hit = entries.first(where: { $0.filter.map { !$0.isEmpty && tensorName.contains($0) } ?? false }) {
                return hit.value
            }
            return entries.first(where: { $0.filter == nil || $0.filter!.isEmpty })?.value
        }
    }
}

/// Everything a per-tensor merge needs, already resolved for one tensor name.
public struct TensorMergeParameters: Sendable, Equatable {
    /// One weight per (non-base) model.
    public var weights: [Float]
    /// One density per (non-base) model, in (0, 1]: the fraction of task-vector entries kept (TIES, DARE).
    public var densities: [Float]
    /// Divide by the sum of weights (linear) or by the agreeing weights (TIES).
    public var normalize: Bool
    /// Interpolation position for slerp (0 = base / first model, 1 = the other).
    public var t: Float
    /// Scale on the merged task vector (task arithmetic, TIES, DARE).
    public var lambda: Float
    /// DARE rescales kept entries by 1 / density.
    public var rescale: Bool
    /// Seed for DARE's drop masks (combined with the tensor name and the model index).
    public var seed: UInt64

    public init(weights: [Float], densities: [Float]? = nil, normalize: Bool = true, t: Float = 0.5,
                lambda: Float = 1, rescale: Bool = true, seed: UInt64 = 0) {
        self.weights = weights
        self.densities = densities ?? Array(repeating: 1, count: weights.count)
        self.normalize = normalize
        self.t = t
        self.lambda = lambda
        self.rescale = rescale
        self.seed = seed
    }
}

/// A merge problem: a readable message naming what went wrong.
public struct MergeError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}
