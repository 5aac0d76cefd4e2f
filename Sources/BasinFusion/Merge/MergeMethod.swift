import BasinTensor
import Foundation

/// The merge methods Basin implements. Raw values are mergekit 0.1.5's `merge_method` names (every method it
/// registers); `fisher` and `regmean` are Basin-only (they need data and a network) and `basin_path` is Basin's
/// extension for a point on a fitted path (see docs/merging.md).
public enum MergeMethod: String, Sendable, CaseIterable, Codable {
    case linear
    case taskArithmetic = "task_arithmetic"
    case ties
    case dareTies = "dare_ties"
    case dareLinear = "dare_linear"
    case breadcrumbs
    case breadcrumbsTies = "breadcrumbs_ties"
    case della
    case dellaLinear = "della_linear"
    case modelStock = "model_stock"
    case slerp
    case nuslerp
    case multislerp
    case karcher
    case sce
    case nearswap
    case arceeFusion = "arcee_fusion"
    case ram
    case ramplusTL = "ramplus_tl"
    case passthrough
    case fisher
    case regmean
    case basinPath = "basin_path"

    /// The methods mergekit 0.1.5 registers (`mergekit.merge_methods.REGISTERED_MERGE_METHODS`).
    public static let mergekitMethods: [MergeMethod] = allCases.filter(\.isMergekitMethod)

    /// How a generalized-task-arithmetic method drops task-vector entries.
    public enum Sparsification: String, Sendable {
        case magnitude, random, magnitudeOutliers, dellaMagprune
    }

    /// mergekit's `GeneralizedTaskArithmeticMerge` family: task vectors against the base, optionally sparsified
    /// and sign-elected.
    public var isTaskArithmeticFamily: Bool {
        switch self {
        case .taskArithmetic, .ties, .dareTies, .dareLinear, .breadcrumbs, .breadcrumbsTies, .della, .dellaLinear: true
        default: false
        }
    }

    public var sparsification: Sparsification? {
        switch self {
        case .ties: .magnitude
        case .dareTies, .dareLinear: .random
        case .breadcrumbs, .breadcrumbsTies: .magnitudeOutliers
        case .della, .dellaLinear: .dellaMagprune
        default: nil
        }
    }

    /// TIES's sign election by total mass.
    public var signConsensus: Bool {
        switch self {
        case .ties, .dareTies, .breadcrumbsTies, .della: true
        default: false
        }
    }

    /// Methods that cannot run without a base model.
    public var needsBase: Bool {
        isTaskArithmeticFamily || [.modelStock, .slerp, .nearswap, .sce, .arceeFusion, .ram, .ramplusTL].contains(self)
    }

    /// Methods that take the base model apart from the others (task vectors, the t = 0 end). The rest (linear,
    /// karcher, passthrough) treat a base model as one more input, as mergekit does.
    public var separatesBase: Bool {
        switch self {
        case .linear, .karcher, .passthrough, .fisher, .regmean: false
        default: true
        }
    }

    /// Methods whose result depends on random draws (DARE's and DELLA's masks, arcee_fusion's quantile sample).
    public var isRandom: Bool {
        switch self {
        case .dareTies, .dareLinear, .della, .dellaLinear, .arceeFusion: true
        default: false
        }
    }

    /// Methods that need data and a network, so they run in memory rather than streamed.
    public var needsData: Bool { self == .fisher || self == .regmean }

    /// Understood by mergekit under the same name and with the same parameters.
    public var isMergekitMethod: Bool { !needsData && self != .basinPath }

    /// mergekit's default for `normalize` for this method.
    public var defaultNormalize: Bool {
        switch self {
        case .linear, .ties, .della: true
        default: false
        }
    }

    /// mergekit's default for `rescale` (DARE and DELLA rescale what they keep to the task vector's L1 norm).
    public var defaultRescale: Bool {
        switch self {
        case .dareTies, .dareLinear, .della, .dellaLinear: true
        default: false
        }
    }

    /// One parameter a method reads: its name, whether it belongs to each model (`weight`) or to the merge
    /// (`lambda`), its default and whether it is required.
    public struct Parameter: Sendable, Equatable {
        public enum Kind: Sendable, Equatable { case number, boolean, count }
        public var name: String
        public var perModel: Bool
        public var kind: Kind
        public var defaultValue: Double?
        public var required: Bool
        /// Allowed range of numeric values.
        public var range: ClosedRange<Double>

        static func model(_ name: String, default value: Double? = nil, required: Bool = false,
                          range: ClosedRange<Double> = -1e6...1e6) -> Parameter {
            Parameter(name: name, perModel: true, kind: .number, defaultValue: value, required: required, range: range)
        }

        static func global(_ name: String, _ kind: Kind = .number, default value: Double? = nil, required: Bool = false,
                           range: ClosedRange<Double> = -1e6...1e6) -> Parameter {
            Parameter(name: name, perModel: false, kind: kind, defaultValue: value, required: required, range: range)
        }
    }

    /// The parameters this method reads, with mergekit's defaults (from each method's `parameters()` and
    /// `tensor_parameters()` in mergekit 0.1.5).
    public var parameters: [Parameter] {
        let unit: ClosedRange<Double> = 0...1
        switch self {
        case .linear:
            return [.global("normalize", .boolean, default: 1), .model("weight", required: true)]
        case .taskArithmetic, .ties, .dareTies, .dareLinear, .breadcrumbs, .breadcrumbsTies, .della, .dellaLinear:
            var p: [Parameter] = [
                .global("int8_mask", .boolean, default: 0),
                .global("normalize", .boolean, default: defaultNormalize ? 1 : 0),
                .global("rescale", .boolean, default: defaultRescale ? 1 : 0),
                .global("lambda", default: 1),
                .model("weight", required: true),
                .model("density", default: 1, range: unit),
            ]
            if sparsification == .magnitudeOutliers { p.append(.model("gamma", default: 0.01, range: unit)) }
            if sparsification == .dellaMagprune { p.append(.model("epsilon", default: 0.15, range: unit)) }
            return p
        case .modelStock:
            return [.global("filter_wise", .boolean, default: 0)]
        case .slerp:
            return [.global("t", required: true, range: unit)]
        case .nuslerp:
            return [.global("nuslerp_row_wise", .boolean, default: 0), .global("nuslerp_flatten", .boolean, default: 1),
                    .model("weight", required: true)]
        case .multislerp:
            return [.model("weight", required: true), .global("normalize_weights", .boolean, default: 1),
                    .global("eps", default: 1e-8, range: 0...1)]
        case .karcher:
            return [.global("max_iter", .count, default: 10, range: 1...10_000), .global("tol", default: 1e-5, range: 0...1)]
        case .sce:
            return [.global("int8_mask", .boolean, default: 0), .global("select_topk", default: 1, range: unit)]
        case .nearswap:
            return [.global("t", required: true, range: 0...1e6)]
        case .arceeFusion:
            return []
        case .ram:
            return [.global("epsilon", default: 1e-5, range: 0...1e6)]
        case .ramplusTL:
            return [.global("r", default: 0.1, range: 0...1e6), .global("alpha", default: 0.2, range: 0...1e6),
                    .global("epsilon", default: 1e-5, range: 0...1e6)]
        case .passthrough:
            return [.model("scale")]
        case .fisher:
            return [.model("weight", default: 1), .global("fisher_samples", .count, default: 256, range: 1...1e9)]
        case .regmean:
            return [.model("weight", default: 1), .global("regmean_samples", .count, default: 1024, range: 1...1e9),
                    .global("alpha", default: 0.9, range: 0...1)]
        case .basinPath:
            return [.global("t", required: true, range: unit)]
        }
    }

    public func parameter(_ name: String) -> Parameter? { parameters.first { $0.name == name } }
}

/// A parameter value as mergekit reads it: a number or boolean, a gradient (a list of numbers spread over the
/// layers), or a list of `{filter, value}` entries where the first entry whose filter is a substring of the tensor
/// name (or that has no filter, or filter "*") wins.
public indirect enum ParameterValue: Sendable, Equatable {
    case scalar(Double)
    case boolean(Bool)
    case gradient([Double])
    case filtered([FilteredValue])

    public struct FilteredValue: Sendable, Equatable {
        public var filter: String?
        public var value: ParameterValue
        public init(filter: String?, value: ParameterValue) {
            self.filter = filter
            self.value = value
        }
        public init(filter: String?, value: Double) {
            self.init(filter: filter, value: .scalar(value))
        }

        func matches(_ tensorName: String) -> Bool {
            guard let filter, filter != "*" else { return true }
            return !tensorName.isEmpty && tensorName.contains(filter)
        }
    }

    /// The value for a tensor at depth `t` (0 at the first layer of a slice, 1 at its last; 0 for tensors outside
    /// the layers), or nil when no filtered entry matches (mergekit then looks at the next level up).
    /// A gradient [v0, ..., vn] is read piecewise-linearly at t * n, exactly as mergekit's `evaluate_setting`.
    public func value(for tensorName: String, t: Double = 0) -> Double? {
        switch self {
        case let .scalar(v): return v
        case let .boolean(b): return b ? 1 : 0
        case let .gradient(values):
            guard !values.isEmpty else { return nil }
            let scaled = t * Double(values.count - 1)
            let i0 = Int(scaled)
            let i1 = min(values.count - 1, i0 + 1)
            let frac = scaled - Double(i0)
            return (1 - frac) * values[min(i0, values.count - 1)] + frac * values[i1]
        case let .filtered(entries):
            for e in entries where e.matches(tensorName) { return e.value.value(for: tensorName, t: t) }
            return nil
        }
    }

    /// Every filter string in the value (to check each matches some tensor).
    var filters: [String] {
        if case let .filtered(entries) = self { return entries.compactMap { $0.filter == "*" ? nil : $0.filter } }
        return []
    }

    /// Every number the value can produce (for range checks).
    var allNumbers: [Double] {
        switch self {
        case let .scalar(v): [v]
        case let .boolean(b): [b ? 1 : 0]
        case let .gradient(v): v
        case let .filtered(entries): entries.flatMap(\.value.allNumbers)
        }
    }
}

/// Everything a per-tensor merge needs, already resolved for one tensor name. Per-model arrays follow the order
/// of the `inputs` given to `TensorMerge.merge` (the base model excluded when the method separates it).
public struct TensorMergeParameters: Sendable, Equatable {
    /// One weight per input model.
    public var weights: [Float]
    /// One density per input model, in [0, 1]: the fraction of task-vector entries kept.
    public var densities: [Float]
    /// Breadcrumbs: the fraction of largest-magnitude entries dropped, per model.
    public var gammas: [Float]
    /// DELLA: the spread of keep probabilities around the density, per model.
    public var epsilons: [Float]
    /// Passthrough: a factor per model (nil = none).
    public var scales: [Float?]
    /// Divide by the sum of weights (linear) or by the agreeing weights (TIES).
    public var normalize: Bool
    /// Interpolation position (slerp: 0 = base; nearswap: the distance scale).
    public var t: Float
    /// Scale on the merged task vector.
    public var lambda: Float
    /// DARE/DELLA: rescale what is kept to the task vector's L1 norm.
    public var rescale: Bool
    /// Seed for random masks (combined with the tensor name and the model index).
    public var seed: UInt64
    /// Other method parameters by mergekit name (max_iter, tol, filter_wise, nuslerp_row_wise, nuslerp_flatten,
    /// normalize_weights, eps, select_topk, epsilon, r, alpha, int8_mask).
    public var options: [String: Double]

    public init(weights: [Float], densities: [Float]? = nil, normalize: Bool = true, t: Float = 0.5,
                lambda: Float = 1, rescale: Bool = false, seed: UInt64 = 0, gammas: [Float]? = nil, epsilons: [Float]? = nil,
                scales: [Float?]? = nil, options: [String: Double] = [:]) {
        self.weights = weights
        self.densities = densities ?? Array(repeating: 1, count: weights.count)
        self.gammas = gammas ?? Array(repeating: 0.01, count: weights.count)
        self.epsilons = epsilons ?? Array(repeating: 0.15, count: weights.count)
        self.scales = scales ?? Array(repeating: nil, count: weights.count)
        self.normalize = normalize
        self.t = t
        self.lambda = lambda
        self.rescale = rescale
        self.seed = seed
        self.options = options
    }

    public func option(_ name: String, _ fallback: Double) -> Double { options[name] ?? fallback }
}
