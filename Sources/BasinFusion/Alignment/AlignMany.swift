import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// How several models are brought into one basin (for soups of independently trained models).
public enum AlignmentStrategy: String, Sendable, Codable, CaseIterable {
    /// Each model is matched to the first one, on its own.
    case reference
    /// MergeMany (Ainsworth et al., "Git Re-Basin", ICLR 2023, appendix): in a seeded random order each model
    /// is weight-matched to the mean of all the others, until a round moves no unit; no model is privileged.
    case mergeMany = "merge-many"
}

/// Several models aligned into the frame of the first one.
public struct ManyAlignmentResult: Sendable {
    public var strategy: AlignmentStrategy
    public var method: MatchMethod
    /// The models permuted into one frame, in input order; the first is returned unchanged (MergeMany's common
    /// frame is expressed in the first model's units, which any frame is equivalent to).
    public var aligned: [ParameterSet]
    /// `permutations[k][g]`: the permutation of group g applied to model k (the identity for the first).
    public var permutations: [[[Int]]]
    /// For each model after the first, the report of its last match: against the first model (reference), or
    /// against the mean of the others in the last round (MergeMany; similarities in that mean's units).
    public var reports: [MatchReport]
    /// MergeMany rounds run (1 for `reference`).
    public var rounds: Int
    /// MergeMany: after each round, the mean over models of the weight-matching objective against the mean
    /// of the others, sum over permuted parameters of <W_mean-of-others, W_model>.
    public var roundObjectives: [Double]
    public var spec: PermutationSpec
    public var seconds: Double

    /// Safetensors metadata for aligned model `k` (k >= 1), recording how it was made.
    public func metadata(model k: Int, reference: String? = nil) -> [String: String] {
        var perms: [String: [Int]] = [:]
        for (g, p) in zip(spec.groups, permutations[k]) { perms[g.name] = p }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var out = [
            "basin.alignment.method": method.rawValue,
            "basin.alignment.strategy": strategy.rawValue,
            "basin.alignment.permutations": String(decoding: (try? encoder.encode(perms)) ?? Data("{}".utf8), as: UTF8.self),
            "basin.alignment.spec": String(decoding: (try? encoder.encode(spec)) ?? Data("{}".utf8), as: UTF8.self),
        ]
        if let seed = reports[k - 1].seed { out["basin.alignment.seed"] = String(seed) }
        if let reference { out["basin.alignment.reference"] = reference }
        return out
    }
}

extension Alignment {
    /// Aligns `models` into the frame of the first: each matched to the first (`.reference`, weight or
    /// activation matching), or MergeMany (`.mergeMany`, weight matching). Every model keeps its function.
    /// `progress` is called after each match with (round, model index); setting `cancel` stops it with a
    /// `CancellationError`.
    public static func alignMany(_ models: [ParameterSet], spec: PermutationSpec, method: MatchMethod = .weight,
                                 strategy: AlignmentStrategy = .reference, seed: UInt64 = 0, maxSweeps: Int = 100,
                                 maxRounds: Int = 50, network: Network? = nil, data: Dataset? = nil,
                                 cancel: CancellationFlag? = nil,
                                 progress: (_ round: Int, _ model: Int) -> Void = { _, _ in }) throws -> ManyAlignmentResult {
        let start = Benchmarks.now()
        guard models.count >= 2 else {
            throw NetworkError("aligning models needs at least two, got \(models.count)")
        }
        for (k, m) in models.enumerated().dropFirst() { try models[0].checkCompatible(with: m, "models 1 and \(k + 1)") }
        try spec.validate(models[0])
        switch strategy {
        case .reference:
            var aligned = [models[0]], permutations = [spec.identity], reports: [MatchReport] = []
            for k in 1..<models.count {
                let r = try align(reference: models[0], model: models[k], spec: spec, method: method, seed: seed,
                                  maxSweeps: maxSweeps, network: network, data: data, cancel: cancel)
                aligned.append(r.aligned)
                permutations.append(r.permutations)
                reports.append(r.report)
                progress(1, k)
            }
            return ManyAlignmentResult(strategy: strategy, method: method, aligned: aligned, permutations: permutations,
                                       reports: reports, rounds: 1, roundObjectives: [], spec: spec,
                                       seconds: Benchmarks.now() - start)
        case .mergeMany:
            guard method == .weight else {
                throw NetworkError("MergeMany matches each model to the mean of the others by weight matching; activation matching has no mean model to run")
            }
            return try mergeMany(models, spec: spec, seed: seed, maxSweeps: maxSweeps, maxRounds: maxRounds, cancel: cancel,
                                 progress: progress, start: start)
        }
    }

    private static func mergeMany(_ models: [ParameterSet], spec: PermutationSpec, seed: UInt64, maxSweeps: Int, maxRounds: Int,
                                  cancel: CancellationFlag?, progress: (Int, Int) -> Void,
                                  start: Double) throws -> ManyAlignmentResult {
        let n = models.count
        var current = models
        // total[k]: the permutation taking the original model k to current[k] (gather convention).
        var total = models.map { _ in spec.identity }
        var reports = [MatchReport?](repeating: nil, count: n)
        var objectives: [Double] = []
        var generator = SeededGenerator(seed: seed)
        var rounds = 0
        // The sum of all current models, so the mean of the others is (sum - model) / (n - 1).
        var sum = ParameterSet.combination(current.map { ($0, 1) })
        while rounds < max(1, maxRounds) {
            rounds += 1
            var moved = false
            var objective = 0.0
            for k in generator.permutation(n) {
                if cancel?.isCancelled == true { throw CancellationError() }
                let others = ParameterSet.combination([(sum, 1 / Float(n - 1)), (current[k], -1 / Float(n - 1))])
                let r = try WeightMatching.match(reference: others, model: current[k], spec: spec,
                                                 seed: seed &+ UInt64(rounds) &* 0x9E37_79B9 &+ UInt64(k),
                                                 maxSweeps: maxSweeps, cancel: cancel)
                reports[k] = r.report
                objective += r.report.objectiveAfter
                if r.permutations != spec.identity {
                    moved = true
                    sum = ParameterSet.combination([(sum, 1), (current[k], -1), (r.aligned, 1)])
                    current[k] = r.aligned
                    // Applying p after t: out[u] = in[t[p[u]]].
                    total[k] = zip(total[k], r.permutations).map { t, p in p.map { t[$0] } }
                }
                progress(rounds, k)
            }
            objectives.append(objective / Double(n))
            if !moved { break }
            // Recompute the running sum now and then, so float32 updates do not drift.
            sum = ParameterSet.combination(current.map { ($0, 1) })
        }
        // Express everything in the first model's frame: undo its permutation on every model.
        let back = total[0].map(PermutationSpec.inverse)
        var aligned: [ParameterSet] = [models[0]]
        var permutations: [[[Int]]] = [spec.identity]
        for k in 1..<n {
            let perms = zip(total[k], back).map { t, b in b.map { t[$0] } }
            permutations.append(perms)
            aligned.append(spec.apply(perms, to: models[k]))
        }
        var finalReports = reports[1...].map { $0! }
        for k in finalReports.indices { finalReports[k].modelA = "mean of the other \(n - 1) models" }
        return ManyAlignmentResult(strategy: .mergeMany, method: .weight, aligned: aligned, permutations: permutations,
                                   reports: finalReports, rounds: rounds, roundObjectives: objectives, spec: spec,
                                   seconds: Benchmarks.now() - start)
    }
}
