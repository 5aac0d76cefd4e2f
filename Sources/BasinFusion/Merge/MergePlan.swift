import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// A recipe resolved against its inputs: the tensors to produce (names, shapes, dtypes in, dtype out),
/// checked to agree across every input before anything is written.
public struct MergePlan: Sendable {
    public struct Entry: Sendable {
        public var name: String
        public var shape: [Int]
        public var outputDType: DType
        /// Non-float tensors (integer buffers) are copied from the first input rather than merged.
        public var isFloatingPoint: Bool
    }

    public let recipe: MergeRecipe
    /// The (non-base) models, in recipe order.
    public let models: [any TensorSource]
    public let base: (any TensorSource)?
    public let entries: [Entry]

    /// Every input's files (to protect them from being overwritten).
    public var inputFiles: [URL] { (models + (base.map { [$0] } ?? [])).flatMap(\.files) }
    public var outputBytes: Int { entries.reduce(0) { $0 + Tensor.elementCount($1.shape) * $1.outputDType.byteSize } }
    public var tensorPlans: [TensorPlan] { entries.map { TensorPlan(name: $0.name, dtype: $0.outputDType, shape: $0.shape) } }

    /// Opens the recipe's inputs (files, indexes or folders) and plans the merge.
    public init(recipe: MergeRecipe) throws {
        let models = try recipe.modelURLs.map { try ModelFile.open($0) }
        let base = try recipe.baseURL.map { try ModelFile.open($0) }
        try self.init(recipe: recipe, models: models, base: base)
    }

    public init(recipe: MergeRecipe, models: [any TensorSource], base: (any TensorSource)?) throws {
        self.recipe = recipe
        self.models = models
        self.base = base
        let all = (base.map { [$0] } ?? []) + models
        guard let reference = all.first else { throw MergeError("the recipe names no models") }
        if recipe.method == .slerp && all.count != 2 {
            throw MergeError("slerp takes exactly two models (base_model and one other, or two models); the recipe gives \(all.count)")
        }
        var entries: [Entry] = []
        for name in reference.names {
            guard let info = reference.info(name) else { continue }
            for other in all.dropFirst() {
                guard let o = other.info(name) else {
                    throw MergeError("\(other.displayPath): has no tensor '\(name)', which \(reference.displayPath) has")
                }
                guard o.shape == info.shape else {
                    throw MergeError("\(other.displayPath): tensor '\(name)' has shape \(o.shape) but \(reference.displayPath) has \(info.shape)")
                }
                guard o.dtype.isFloatingPoint == info.dtype.isFloatingPoint else {
                    throw MergeError("\(other.displayPath): tensor '\(name)' is \(o.dtype.rawValue) but \(reference.displayPath) has \(info.dtype.rawValue)")
                }
            }
            let float = info.dtype.isFloatingPoint
            entries.append(Entry(name: name, shape: info.shape,
                                 outputDType: float ? (recipe.outputDType ?? info.dtype) : info.dtype,
                                 isFloatingPoint: float))
        }
        let names = Set(reference.names)
        for other in all.dropFirst() {
            if let extra = other.names.first(where: { !names.contains($0) }) {
                throw MergeError("\(other.displayPath): has tensor '\(extra)', which \(reference.displayPath) lacks")
            }
        }
        self.entries = entries
    }

    /// Metadata recorded in the output: the recipe and each input's SHA-256.
    public func metadata(hashInputs: Bool = true) throws -> [String: String] {
        var meta: [String: String] = ["format": "pt", "basin.merge_method": recipe.method.rawValue, "basin.recipe": recipe.yaml()]
        if hashInputs {
            var digests: [String: String] = [:]
            if let base, let path = recipe.baseModel { digests[path] = try FileDigest.sha256(of: base) }
            for (entry, source) in zip(recipe.models, models) { digests[entry.model] = try FileDigest.sha256(of: source) }
            let data = try JSONSerialization.data(withJSONObject: digests, options: [.sortedKeys, .withoutEscapingSlashes])
            meta["basin.inputs_sha256"] = String(decoding: data, as: UTF8.self)
        }
        return meta
    }
}

/// What a streaming merge did.
public struct MergeReport: Sendable, Codable {
    public var tensors: Int
    public var inputBytes: Int
    public var outputBytes: Int
    public var seconds: Double
    public var hashSeconds: Double
    public var outputFiles: [String]
}

/// Runs a plan tensor by tensor: decode each input's tensor from its memory map, merge, encode, write,
/// then release the inputs' pages, so peak memory stays at about one tensor per input plus the output.
public enum MergeExecutor {
    public static func run(_ plan: MergePlan, out: URL, shardSize: Int = CheckpointWriter.defaultShardSize,
                           hashInputs: Bool = true, extraMetadata: [String: String] = [:],
                           progress: ((Int, Int) -> Void)? = nil) throws -> MergeReport {
        guard !plan.recipe.method.needsData else {
            throw MergeError("\(plan.recipe.method.rawValue) needs data and a network: it runs in memory (MergeExport.dataAwareMerge), not streamed")
        }
        let hashStart = Date()
        var meta = try plan.metadata(hashInputs: hashInputs)
        meta.merge(extraMetadata) { _, new in new }
        let hashSeconds = Date().timeIntervalSince(hashStart)
        let start = Date()
        let writer = try CheckpointWriter(out: out, plan: plan.tensorPlans, metadata: meta, shardSize: shardSize, protecting: plan.inputFiles)
        var inputBytes = 0
        let sources: [any TensorSource] = plan.models + (plan.base.map { [$0] } ?? [])
        for (i, entry) in plan.entries.enumerated() {
            for s in sources { inputBytes += s.info(entry.name)?.byteCount ?? 0 }
            if !entry.isFloatingPoint {
                let first = plan.base ?? plan.models[0]
                try first.withRawBytes(entry.name) { try writer.write(entry.name, rawBytes: $0) }
            } else {
                let inputs = try plan.models.map { try FastConvert.tensor($0, entry.name) }
                let base = try plan.base.map { try FastConvert.tensor($0, entry.name) }
                let merged = try TensorMerge.merge(plan.recipe.method, name: entry.name, inputs: inputs, base: base,
                                                   parameters: plan.recipe.tensorParameters(for: entry.name))
                try writer.write(entry.name, merged)
            }
            for s in sources { s.release(entry.name) }
            progress?(i + 1, plan.entries.count)
        }
        try writer.finish()
        return MergeReport(tensors: plan.entries.count, inputBytes: inputBytes, outputBytes: plan.outputBytes,
                           seconds: Date().timeIntervalSince(start), hashSeconds: hashSeconds,
                           outputFiles: writer.outputFiles.map(\.path))
    }
}

/// In-memory merges of parameter sets: the explorer's soup view calls these on every key press.
public enum ParameterMerge {
    /// Merges parameter sets with the same per-tensor function the streaming export uses.
    /// `parameters(name)` gives each tensor's coefficients (e.g. `recipe.tensorParameters(for:)`).
    public static func merge(_ method: MergeMethod, models: [ParameterSet], base: ParameterSet? = nil,
                             parameters: (String) -> TensorMergeParameters) throws -> ParameterSet {
        guard let reference = base ?? models.first else { throw MergeError("no models to merge") }
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

    /// A recipe run in memory on already loaded parameter sets (models in recipe order).
    public static func merge(_ recipe: MergeRecipe, models: [ParameterSet], base: ParameterSet? = nil) throws -> ParameterSet {
        try merge(recipe.method, models: models, base: base, parameters: recipe.tensorParameters(for:))
    }

    /// sum_i lambda_i theta_i, optionally normalised so the lambdas sum to 1.
    public static func weightedAverage(_ models: [ParameterSet], lambdas: [Float], normalize: Bool = true) throws -> ParameterSet {
        guard models.count == lambdas.count else { throw MergeError("\(models.count) models but \(lambdas.count) coefficients") }
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
                                                           normalize: true, lambda: lambda, seed: seed))
    }

    /// DARE then task arithmetic.
    public static func dare(base: ParameterSet, models: [ParameterSet], lambdas: [Float], density: Float, seed: UInt64 = 0) throws -> ParameterSet {
        try merge(.dareLinear, models: models, base: base,
                  parameters: TensorMergeParameters(weights: lambdas, densities: Array(repeating: density, count: models.count),
                                                    normalize: false, seed: seed))
    }

    /// SLERP from `a` (t = 0) to `b` (t = 1), per tensor.
    public static func slerp(_ a: ParameterSet, _ b: ParameterSet, t: Float) throws -> ParameterSet {
        try merge(.slerp, models: [b], base: a, parameters: TensorMergeParameters(weights: [1], t: t))
    }
}
