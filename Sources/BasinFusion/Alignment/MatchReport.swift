import BasinNet
import BasinTensor
import Foundation

/// How two models' hidden units are matched.
public enum MatchMethod: String, Sendable, Codable, CaseIterable {
    /// Git Re-Basin weight matching: maximise the parameter inner products.
    case weight
    /// Activation matching: maximise the correlation of unit activations on data.
    case activation
}

/// What an alignment did, layer by layer: written as JSON by `basin match --report` and drawn by the explorer.
public struct MatchReport: Sendable, Codable, Equatable {
    public struct Layer: Sendable, Codable, Equatable {
        /// The permutation group's name.
        public var name: String
        public var size: Int
        /// Similarity of unit i of A (row) with unit j of the original B (column), row-major `size x size`:
        /// weight inner products (with the other permutations at their final values) or activation correlations.
        public var similarity: [Double]
        /// Unit k of aligned B is unit `permutation[k]` of the original B.
        public var permutation: [Int]
        /// `similarity[k, permutation[k]]` for each unit k of A.
        public var pairScores: [Double]
        /// How many units moved (`permutation[k] != k`).
        public var moved: Int
        /// Mean of `similarity[k, k]` (identity matching).
        public var meanSimilarityBefore: Double
        /// Mean of `pairScores`.
        public var meanSimilarityAfter: Double

        public init(name: String, similarity: [Double], size: Int, permutation: [Int]) {
            self.name = name
            self.size = size
            self.similarity = similarity
            self.permutation = permutation
            pairScores = permutation.enumerated().map { similarity[$0.offset * size + $0.element] }
            moved = permutation.enumerated().filter { $0.offset != $0.element }.count
            let n = Double(max(1, size))
            meanSimilarityBefore = (0..<size).reduce(0) { $0 + similarity[$1 * size + $1] } / n
            meanSimilarityAfter = pairScores.reduce(0, +) / n
        }
    }

    /// One coordinate-descent step of weight matching (or one layer of activation matching).
    public struct Step: Sendable, Codable, Equatable {
        public var step: Int
        public var sweep: Int
        /// The permutation group re-solved in this step.
        public var permutation: String
        /// The objective after the step: the sum of <W_A, P W_B P^T> over the permuted parameters (weight
        /// matching) or the total matched correlation so far (activation matching).
        public var objective: Double
        /// Whether the step changed the permutation.
        public var improved: Bool

        public init(step: Int, sweep: Int, permutation: String, objective: Double, improved: Bool) {
            self.step = step
            self.sweep = sweep
            self.permutation = permutation
            self.objective = objective
            self.improved = improved
        }
    }

    public var method: MatchMethod
    public var seed: UInt64?
    public var modelA: String?
    public var modelB: String?
    public var data: String?
    public var layers: [Layer]
    /// The permutation groups: which axes of which tensors each permutes (`--report`; nil in older reports).
    public var groups: [PermutationSpec.Group]?
    /// The objective before any step (identity permutations).
    public var objectiveBefore: Double
    public var steps: [Step]
    public var sweeps: Int
    public var seconds: Double

    public init(method: MatchMethod, seed: UInt64? = nil, modelA: String? = nil, modelB: String? = nil, data: String? = nil,
                layers: [Layer], groups: [PermutationSpec.Group]? = nil, objectiveBefore: Double, steps: [Step], sweeps: Int,
                seconds: Double) {
        self.method = method
        self.groups = groups
        self.seed = seed
        self.modelA = modelA
        self.modelB = modelB
        self.data = data
        self.layers = layers
        self.objectiveBefore = objectiveBefore
        self.steps = steps
        self.sweeps = sweeps
        self.seconds = seconds
    }

    public var objectiveAfter: Double { steps.last?.objective ?? objectiveBefore }

    public func layer(_ name: String) -> Layer? { layers.first { $0.name == name } }

    public func jsonData(pretty: Bool = true) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try encoder.encode(self)
    }

    public static func load(_ url: URL) throws -> MatchReport {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try decoder.decode(MatchReport.self, from: Data(contentsOf: url))
    }
}

/// The outcome of aligning model B to a reference A.
public struct AlignmentResult: Sendable {
    /// One permutation per group of the spec.
    public var permutations: [[Int]]
    /// B with the permutations applied (same names, same function).
    public var aligned: ParameterSet
    public var report: MatchReport
    public var spec: PermutationSpec

    public init(permutations: [[Int]], aligned: ParameterSet, report: MatchReport, spec: PermutationSpec) {
        self.permutations = permutations
        self.aligned = aligned
        self.report = report
        self.spec = spec
    }

    /// Safetensors metadata recording how the aligned model was made.
    public var metadata: [String: String] {
        var perms: [String: [Int]] = [:]
        for (g, p) in zip(spec.groups, permutations) { perms[g.name] = p }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var out = [
            "basin.alignment.method": report.method.rawValue,
            "basin.alignment.permutations": String(decoding: (try? encoder.encode(perms)) ?? Data("{}".utf8), as: UTF8.self),
            "basin.alignment.spec": String(decoding: (try? encoder.encode(spec)) ?? Data("{}".utf8), as: UTF8.self),
        ]
        if let seed = report.seed { out["basin.alignment.seed"] = String(seed) }
        if let a = report.modelA { out["basin.alignment.reference"] = a }
        if let d = report.data { out["basin.alignment.data"] = d }
        return out
    }
}
