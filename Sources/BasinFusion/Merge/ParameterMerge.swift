import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// A parameter set served as a tensor source (Float32, in memory), so in-memory merges run through the same plan
/// (filters, gradients, defaults) as file merges.
public final class ParameterSetSource: TensorSource {
    public let parameters: ParameterSet
    public let displayPath: String
    public let names: [String]
    private let infos: [String: TensorInfo]

    public init(_ parameters: ParameterSet, label: String) {
        self.parameters = parameters
        displayPath = label
        names = parameters.names
        var offset = 0
        var infos: [String: TensorInfo] = [:]
        for (name, t) in parameters.pairs {
            infos[name] = TensorInfo(name: name, dtype: .f32, shape: t.shape, dataOffsets: offset..<(offset + t.count * 4))
            offset += t.count * 4
        }
        self.infos = infos
    }

    public var metadata: [String: String] { [:] }
    public var files: [URL] { [] }
    public func info(_ name: String) -> TensorInfo? { infos[name] }
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = parameters[name] else { throw BasinIOError(.missingTensor, file: displayPath, tensor: name, "no tensor of that name") }
        return t
    }
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let t = try tensor(name)
        return try t.storage.withUnsafeBytes { try body($0) }
    }
    public func release(_ name: String) {}
}

extension MergeRecipe {
    /// The parameters of one tensor for a `models:` recipe at depth 0, in the order of `inputModels` (per-model
    /// value, else the recipe's, else the method default; a missing weight counts as 1). For quick in-memory use;
    /// `MergePlan` resolves every tensor with its layer depth and checks required values.
    public func tensorParameters(for name: String, t: Double = 0) -> TensorMergeParameters {
        let inputs = inputModels
        func perModel(_ key: String, _ fallback: Double) -> [Float] {
            inputs.map { Float($0.parameters[key]?.value(for: name, t: t) ?? parameters[key]?.value(for: name, t: t)
                    ?? method.parameter(key)?.defaultValue ?? fallback) }
        }
        var globals: [String: Double] = [:]
        for def in method.parameters where !def.perModel {
            if let v = parameters[def.name]?.value(for: name, t: t) ?? def.defaultValue { globals[def.name] = v }
        }
        return TensorMergeParameters(weights: perModel("weight", 1), densities: perModel("density", 1),
                                     normalize: (globals["normalize"] ?? 0) != 0, t: Float(globals["t"] ?? 0.5),
                                     lambda: Float(globals["lambda"] ?? 1), rescale: (globals["rescale"] ?? 0) != 0, seed: seed,
                                     gammas: perModel("gamma", 0.01), epsilons: perModel("epsilon", 0.15),
                                     scales: inputs.map { m in (m.parameters["scale"]?.value(for: name, t: t) ?? parameters["scale"]?.value(for: name, t: t)).map { Float($0) } },
                                     options: globals)
    }
}

/// In-memory merges of parameter sets: the explorer's soup view and `basin soup` call these.
public enum ParameterMerge {
    /// Merges parameter sets with the same per-tensor function the streaming export uses.
    /// `parameters(name)` gives each tensor's coefficients (e.g. `recipe.tensorParameters(for:)`).
    public static func merge(_ method: MergeMethod, models: [ParameterSet], base: ParameterSet? = nil,
                             parameters: (String) -> TensorMergeParameters) throws -> ParameterSet {
        guard let reference = base ?? models.first else { throw MergeError(.invalidRequest, "no models to merge") }
        for m in models { try reference.checkCompatible(with: m) }
        var out = ParameterSet()
        for name in reference.names {
            out[name] = try TensorMerge.merge(method, name: name, inputs: models.map { $0[name]! }, base: base?[name],
                                              parameters: parameters(name))
        }
        return out
    }

    /// Same coefficients for every tensor.
    public static func merge(_ method: MergeMethod, models: [ParameterSet], base: ParameterSet? = nil,
                             parameters: TensorMergeParameters) throws -> ParameterSet {
        try merge(method, models: models, base: base, parameters: { _ in parameters })
    }

    /// A recipe run in memory on already loaded parameter sets (`models` in the order of `recipe.inputModels`), planned
    /// exactly like a file merge: filters, gradients over layers and every check apply.
    public static func merge(_ recipe: MergeRecipe, models: [ParameterSet], base: ParameterSet? = nil) throws -> ParameterSet {
        let inputs = recipe.inputModels
        guard inputs.count == models.count else {
            throw MergeError(.invalidRequest, "the recipe merges \(inputs.count) models but \(models.count) were given")
        }
        let plan = try MergePlan(recipe: recipe, models: zip(inputs, models).map { ParameterSetSource($1, label: $0.model) },
                                 base: base.flatMap { b in recipe.baseModel.map { ParameterSetSource(b, label: $0) } })
        return try run(plan)
    }

    /// Executes a plan in memory (Float32 results, not rounded to the output dtype).
    public static func run(_ plan: MergePlan) throws -> ParameterSet {
        var out = ParameterSet()
        for e in plan.entries {
            let inputs = try e.inputs.map { try plan.sources[$0.model].tensor($0.tensor) }
            let base = try e.base.map { try plan.sources[$0.model].tensor($0.tensor) }
            out[e.name] = e.isFloatingPoint
                ? try TensorMerge.merge(plan.recipe.method, name: e.name, inputs: inputs, base: base, parameters: e.parameters)
                : (base ?? inputs[0])
        }
        return out
    }

    /// sum_i lambda_i theta_i, optionally normalised so the lambdas sum to 1.
    public static func weightedAverage(_ models: [ParameterSet], lambdas: [Float], normalize: Bool = true) throws -> ParameterSet {
        guard models.count == lambdas.count else { throw MergeError(.invalidRequest, "\(models.count) models but \(lambdas.count) coefficients") }
        return try merge(.linear, models: models, parameters: TensorMergeParameters(weights: lambdas, normalize: normalize))
    }

    /// The uniform soup: the plain mean of the models.
    public static func uniformSoup(_ models: [ParameterSet]) throws -> ParameterSet {
        try weightedAverage(models, lambdas: Array(repeating: 1, count: models.count), normalize: true)
    }

    /// Task arithmetic: base + sum_i lambda_i (theta_i - base).
    public static func taskArithmetic(base: ParameterSet, models: [ParameterSet], lambdas: [Float]) throws -> ParameterSet {
        try merge(.taskArithmetic, models: models, base: base, parameters: TensorMergeParameters(weights: lambdas, normalize: false))
    }

    /// TIES-merging: top-`density` magnitudes of each task vector, sign election by mass, mean of the agreeing, scaled by lambda.
    public static func ties(base: ParameterSet, models: [ParameterSet], weights: [Float]? = nil, density: Float, lambda: Float = 1,
                            dare: Bool = false, seed: UInt64 = 0) throws -> ParameterSet {
        let w = weights ?? Array(repeating: 1, count: models.count)
        return try merge(dare ? .dareTies : .ties, models: models, base: base,
                         parameters: TensorMergeParameters(weights: w, densities: Array(repeating: density, count: models.count),
                                                           normalize: true, lambda: lambda, rescale: dare, seed: seed))
    }

    /// DARE then task arithmetic (kept entries rescaled to the task vector's L1 norm, as mergekit does).
    public static func dare(base: ParameterSet, models: [ParameterSet], lambdas: [Float], density: Float, seed: UInt64 = 0) throws -> ParameterSet {
        try merge(.dareLinear, models: models, base: base,
                  parameters: TensorMergeParameters(weights: lambdas, densities: Array(repeating: density, count: models.count),
                                                    normalize: false, rescale: true, seed: seed))
    }

    /// SLERP from `a` (t = 0) to `b` (t = 1), per tensor.
    public static func slerp(_ a: ParameterSet, _ b: ParameterSet, t: Float) throws -> ParameterSet {
        try merge(.slerp, models: [b], base: a, parameters: TensorMergeParameters(weights: [1], t: t))
    }
}
