import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Weight matching (Ainsworth, Hayase & Srinivasa, "Git Re-Basin", ICLR 2023, Algorithm 1).
///
/// Maximises the sum over permuted parameters of <W_A, P_l W_B P_{l-1}^T> (biases included) by coordinate
/// descent: in a seeded random order, each permutation is re-solved exactly (a linear assignment on the
/// similarity matrix of its units, the others held fixed), until a full sweep improves nothing or
/// `maxSweeps` is reached. The objective after every step is recorded in the report.
/// Setting `cancel` stops it between steps with a `CancellationError`.
///
/// The similarity matrices come from a `SimilarityCache`: B is never permuted; each step only adds the
/// lines whose permutation changed since the group's matrix was last brought up to date.
public enum WeightMatching {
    /// Where the time of one weight matching went (`basin bench match`): wall-clock seconds, and CPU seconds
    /// of the whole process (every BLAS thread) in the same phases.
    public struct Timing: Sendable, Codable, Equatable {
        /// Building and updating similarity matrices (sgemm, gathers) and objectives.
        public var similaritySeconds = 0.0
        /// Converting similarities for the solver and solving the assignments.
        public var solverSeconds = 0.0
        /// Validation, the report and the permuted copy of B returned as `aligned`.
        public var otherSeconds = 0.0
        public var similarityCPUSeconds = 0.0
        public var solverCPUSeconds = 0.0
        public var otherCPUSeconds = 0.0
        /// Solves skipped because the group's similarity had not changed since its last solve.
        public var skippedSolves = 0
        /// The coordinate descent alone: similarity + solver.
        public var computeSeconds: Double { similaritySeconds + solverSeconds }
        public var computeCPUSeconds: Double { similarityCPUSeconds + solverCPUSeconds }
    }

    /// `order`: the group order of the first sweeps by name (replaying a reference run); later sweeps draw
    /// theirs from `seed`. `excluding`: parameters left out of the similarity (still permuted with their
    /// groups), e.g. BatchNorm running statistics.
    public static func match(reference a: ParameterSet, model b: ParameterSet, spec: PermutationSpec,
                             seed: UInt64 = 0, maxSweeps: Int = 100, order: [[String]] = [], excluding: Set<String> = [],
                             cancel: CancellationFlag? = nil,
                             progress: (MatchReport.Step) -> Void = { _ in }) throws -> AlignmentResult {
        try matchTimed(reference: a, model: b, spec: spec, seed: seed, maxSweeps: maxSweeps, order: order, excluding: excluding,
                       cancel: cancel, progress: progress).result
    }

    /// `match`, with the time split between similarities and the solver.
    public static func matchTimed(reference a: ParameterSet, model b: ParameterSet, spec: PermutationSpec,
                                  seed: UInt64 = 0, maxSweeps: Int = 100, order: [[String]] = [], excluding: Set<String> = [],
                                  cancel: CancellationFlag? = nil,
                                  progress: (MatchReport.Step) -> Void = { _ in }) throws -> (result: AlignmentResult, timing: Timing) {
        if spec.hasAttentionHeads {
            // Head groups move blocks of units under the GQA constraint: the transformer matcher solves them.
            let t0 = Benchmarks.now(), c0 = processCPUTime()
            let r = try TransformerPermutations.weightMatch(reference: a, model: b, spec: spec, seed: seed, maxSweeps: maxSweeps,
                                                            cancel: cancel, progress: progress)
            return (r, Timing(otherSeconds: Benchmarks.now() - t0, otherCPUSeconds: processCPUTime() - c0))
        }
        let start = Benchmarks.now()
        var timing = Timing()
        var clock = (wall: start, cpu: processCPUTime())
        func lap(_ wall: WritableKeyPath<Timing, Double>, _ cpu: WritableKeyPath<Timing, Double>) {
            let now = (wall: Benchmarks.now(), cpu: processCPUTime())
            timing[keyPath: wall] += now.wall - clock.wall
            timing[keyPath: cpu] += now.cpu - clock.cpu
            clock = now
        }
        try a.checkCompatible(with: b, "weight matching")
        try spec.validate(a)
        lap(\.otherSeconds, \.otherCPUSeconds)
        let orders: [[Int]] = try order.map { sweep in
            let indices = try sweep.map { name in
                guard let i = spec.groups.firstIndex(where: { $0.name == name }) else {
                    throw NetworkError("weight matching: the visit order names permutation '\(name)', which is not one of \(spec.groups.map(\.name).joined(separator: ", "))")
                }
                return i
            }
            guard indices.sorted() == Array(spec.groups.indices) else {
                throw NetworkError("weight matching: a sweep of the visit order must name every permutation once (\(sweep.joined(separator: ", ")))")
            }
            return indices
        }
        let cache = try SimilarityCache(reference: a, model: b, spec: spec, excluded: excluding)
        var perms = spec.identity
        let before = cache.objective(perms)
        lap(\.similaritySeconds, \.similarityCPUSeconds)
        // A step changes only the terms of its own group, by (new - old) assignment totals, unless a parameter
        // has two axes in the group (a residual stream's square weight); then the objective is recomputed.
        let quadratic = spec.groups.map { g in Set(g.axes.map(\.param)).count < g.axes.count }
        var current = before
        var steps: [MatchReport.Step] = []
        var generator = SeededGenerator(seed: seed)
        var sweeps = 0
        var cost: [Float] = []
        while sweeps < maxSweeps {
            sweeps += 1
            var improvedAny = false
            let visit = sweeps <= orders.count ? orders[sweeps - 1] : generator.permutation(spec.groups.count)
            for gi in visit {
                if cancel?.isCancelled == true { throw CancellationError() }
                let n = spec.groups[gi].size
                let (s, changed) = cache.similarityForSolve(gi, perms)
                lap(\.similaritySeconds, \.similarityCPUSeconds)
                var improved = false
                if changed {
                    // The solver minimises the float32 costs -S (exactly, with float64 reduced costs and totals).
                    if cost.count != n * n { cost = [Float](repeating: 0, count: n * n) }
                    var old = 0.0
                    s.withUnsafeBufferPointer { sp in
                        cost.withUnsafeMutableBufferPointer { cp in
                            for k in 0..<(n * n) { cp[k] = -sp[k] }
                        }
                        for i in 0..<n { old += Double(sp[i * n + perms[gi][i]]) }
                    }
                    let solution = try cost.withUnsafeBufferPointer { try LinearAssignment.solve(cost: $0, rows: n, columns: n) }
                    let total = -solution.total
                    lap(\.solverSeconds, \.solverCPUSeconds)
                    improved = total > old + 1e-12 * max(1, abs(old)) && solution.columnForRow != perms[gi]
                    if improved {
                        perms[gi] = solution.columnForRow
                        improvedAny = true
                        current = quadratic[gi] ? cache.objective(perms) : current + (total - old)
                        lap(\.similaritySeconds, \.similarityCPUSeconds)
                    }
                } else {
                    // The same matrix as at this group's last solve: the (deterministic) solver would return the
                    // same assignment, which is either the current permutation or was not an improvement on it.
                    timing.skippedSolves += 1
                }
                let step = MatchReport.Step(step: steps.count + 1, sweep: sweeps, permutation: spec.groups[gi].name,
                                            objective: current, improved: improved)
                steps.append(step)
                progress(step)
                lap(\.otherSeconds, \.otherCPUSeconds)
            }
            if !improvedAny { break }
        }

        // The report's similarities: each group's matrix with the others at their final permutations (already
        // up to date unless a later step in the last sweep changed a permutation it depends on).
        var similarities: [[Float]] = []
        for gi in spec.groups.indices { similarities.append(cache.similarity(gi, perms)) }
        lap(\.similaritySeconds, \.similarityCPUSeconds)
        let layers = spec.groups.indices.map { gi in
            MatchReport.Layer(name: spec.groups[gi].name, similarity: similarities[gi].map(Double.init),
                              size: spec.groups[gi].size, permutation: perms[gi])
        }
        let aligned = spec.apply(perms, to: b)
        lap(\.otherSeconds, \.otherCPUSeconds)
        let report = MatchReport(method: .weight, seed: seed, layers: layers, groups: spec.groups, objectiveBefore: before, steps: steps,
                                 sweeps: sweeps, seconds: Benchmarks.now() - start)
        return (AlignmentResult(permutations: perms, aligned: aligned, report: report, spec: spec), timing)
    }
}

/// The similarity matrices of weight matching, kept up to date as the permutations change.
///
/// For a permutation group g, `S_g[i, j]` is the sum over the group's axes (parameter p, axis ax) of the
/// inner product of unit i of A and unit j of B in p, with B's other permuted axes of p gathered by their
/// current permutations. Each (p, ax) is a *term*: p viewed as lines across its other indices (A's line r
/// holds unit i's entry at `[i]`), and `S_g += sum_r a_r b_{map[r]}^T`, where `map[r]` is the line of B that
/// line r of A meets under the permutations of the other axes. Any rank and any axis work; a view costs no
/// copy when the axis is the first or the last one, and one unpermuted copy made once otherwise.
///
/// B is never permuted: lines are gathered panel by panel into a scratch buffer as sgemm consumes them (a
/// contiguous run of lines is passed to sgemm as it is). When a permutation changes, only the lines whose
/// map changed are added again, as `S += A_K (B_new,K - B_old,K)^T`; after four times as many re-added lines
/// as a term has, its group is recomputed from scratch, which bounds the float32 rounding the updates
/// accumulate.
/// Similarities are float32 (sgemm) and the solver reads them as they are (its reduced costs are float64).
final class SimilarityCache {
    struct Term {
        var group: Int
        var param: String
        /// True: the view is [lines, n] (the axis last); false: [n, lines].
        var rowsForm: Bool
        var lines: Int
        var a: Tensor
        var b: Tensor
        /// Sizes of the other axes of the parameter, in order, and the group permuting each (nil: none).
        var otherSizes: [Int]
        var otherGroups: [Int?]
        /// The map the group's matrix currently includes, and the lines re-added since it was recomputed.
        var map: [Int] = []
        var readded = 0

        var isConstant: Bool { otherGroups.allSatisfy { $0 == nil } }

        func map(for perms: [[Int]]) -> [Int] {
            var out = [0]
            out.reserveCapacity(lines)
            for (size, group) in zip(otherSizes, otherGroups) {
                var next = [Int]()
                next.reserveCapacity(out.count * size)
                for prefix in out {
                    if let group {
                        let p = perms[group]
                        for k in 0..<size { next.append(prefix * size + p[k]) }
                    } else {
                        for k in 0..<size { next.append(prefix * size + k) }
                    }
                }
                out = next
            }
            return out
        }
    }

    let spec: PermutationSpec
    private(set) var terms: [Term] = []
    /// Per group: the terms that depend on no permutation, computed once; and the current matrix.
    private var constant: [[Float]]
    private var current: [[Float]]
    private var ready: [Bool]
    /// Per group: whether the matrix changed since `similarityForSolve` last returned it.
    private var changedSinceSolve: [Bool]
    private var panelA: [Float] = []
    private var panelB: [Float] = []

    /// `excluded`: parameters left out of the similarities (and the objective); they are still permuted.
    init(reference a: ParameterSet, model b: ParameterSet, spec: PermutationSpec, excluded: Set<String> = []) throws {
        self.spec = spec
        let byParam = spec.axesByParameter
        for (gi, g) in spec.groups.enumerated() {
            for axis in g.axes where !excluded.contains(axis.param) {
                guard let ta = a[axis.param], let tb = b[axis.param] else {
                    throw NetworkError("weight matching: tensor '\(axis.param)' of permutation '\(g.name)' is missing")
                }
                // An axis whose units span `block` entries is split in two: the units (permuted) and the entries
                // within a unit (not permuted). A reshape: no copy.
                let entries = byParam[axis.param] ?? []
                var shape: [Int] = [], groupOf: [Int?] = [], ax = 0
                for d in ta.shape.indices {
                    let e = entries.first { $0.axis == d }
                    if d == axis.axis { ax = shape.count }
                    if let e, e.block > 1 {
                        shape += [ta.shape[d] / e.block, e.block]
                        groupOf += [e.group, nil]
                    } else {
                        shape.append(ta.shape[d])
                        groupOf.append(e?.group)
                    }
                }
                let outer = shape[..<ax].reduce(1, *), inner = shape[(ax + 1)...].reduce(1, *)
                let rowsForm = outer > 1 && inner == 1
                let view: (Tensor) -> Tensor = { t in
                    if rowsForm { return t.reshaped([outer, g.size]) }
                    return outer == 1 ? t.reshaped([g.size, inner]) : PermutationSpec.unfold(t.reshaped(shape), axis: ax)
                }
                var otherSizes: [Int] = [], otherGroups: [Int?] = []
                for d in shape.indices where d != ax {
                    otherSizes.append(shape[d])
                    otherGroups.append(groupOf[d])
                }
                terms.append(Term(group: gi, param: axis.param, rowsForm: rowsForm, lines: outer * inner,
                                  a: view(ta), b: view(tb), otherSizes: otherSizes, otherGroups: otherGroups))
            }
        }
        constant = spec.groups.map { [Float](repeating: 0, count: $0.size * $0.size) }
        current = spec.groups.map { _ in [] }
        ready = spec.groups.map { _ in false }
        changedSinceSolve = spec.groups.map { _ in true }
        let identity = spec.identity
        for t in terms.indices where terms[t].isConstant {
            let map = terms[t].map(for: identity)
            let gi = terms[t].group
            add(term: t, lines: Array(0..<terms[t].lines), map: map, subtracting: nil, into: &constant[gi])
        }
    }

    /// S_g for the given permutations, and whether it differs from the matrix this returned last time for
    /// the group (always true the first time).
    func similarityForSolve(_ gi: Int, _ perms: [[Int]]) -> (similarity: [Float], changed: Bool) {
        let s = similarity(gi, perms)
        defer { changedSinceSolve[gi] = false }
        return (s, changedSinceSolve[gi])
    }

    /// S_g for the given permutations (float32, row-major n x n).
    func similarity(_ gi: Int, _ perms: [[Int]]) -> [Float] {
        let variable = terms.indices.filter { terms[$0].group == gi && !terms[$0].isConstant }
        if ready[gi] {
            var updates: [(term: Int, changed: [Int], map: [Int])] = []
            var fresh = false
            for t in variable {
                let map = terms[t].map(for: perms)
                let changed = (0..<terms[t].lines).filter { map[$0] != terms[t].map[$0] }
                if changed.isEmpty { continue }
                if terms[t].readded + changed.count > 4 * terms[t].lines { fresh = true }
                updates.append((t, changed, map))
            }
            if !updates.isEmpty { changedSinceSolve[gi] = true }
            if !fresh {
                for u in updates {
                    add(term: u.term, lines: u.changed, map: u.map, subtracting: terms[u.term].map, into: &current[gi])
                    terms[u.term].map = u.map
                    terms[u.term].readded += u.changed.count
                }
                return current[gi]
            }
        }
        current[gi] = constant[gi]
        for t in variable {
            let map = terms[t].map(for: perms)
            add(term: t, lines: Array(0..<terms[t].lines), map: map, subtracting: nil, into: &current[gi])
            terms[t].map = map
            terms[t].readded = 0
        }
        ready[gi] = true
        return current[gi]
    }

    /// The weight-matching objective: sum over permuted parameters of <A_p, P(B_p)>, in float64, without
    /// permuting B.
    func objective(_ perms: [[Int]]) -> Double {
        var seen = Set<String>()
        var total = 0.0
        for term in terms where seen.insert(term.param).inserted {
            let n = spec.groups[term.group].size
            let p = perms[term.group]
            let map = term.map(for: perms)
            let lines = term.lines
            term.a.withUnsafeBufferPointer { a in
                term.b.withUnsafeBufferPointer { b in
                    if term.rowsForm {
                        for r in 0..<lines {
                            let ar = a.baseAddress! + r * n, br = b.baseAddress! + map[r] * n
                            var s = 0.0
                            for i in 0..<n { s += Double(ar[i]) * Double(br[p[i]]) }
                            total += s
                        }
                    } else {
                        for i in 0..<n {
                            let ai = a.baseAddress! + i * lines, bi = b.baseAddress! + p[i] * lines
                            var s = 0.0
                            for r in 0..<lines { s += Double(ai[r]) * Double(bi[map[r]]) }
                            total += s
                        }
                    }
                }
            }
        }
        return total
    }

    /// S += sum over `lines` r of a_r (b_{map[r]} - b_{old[r]})^T, in panels.
    private func add(term t: Int, lines: [Int], map: [Int], subtracting old: [Int]?, into s: inout [Float]) {
        let term = terms[t]
        let n = spec.groups[term.group].size
        let total = term.lines
        let chunk = max(32, min(lines.count, (1 << 21) / max(1, n)))
        if panelA.count < n * chunk { panelA = [Float](repeating: 0, count: n * chunk) }
        if panelB.count < n * chunk { panelB = [Float](repeating: 0, count: n * chunk) }
        term.a.withUnsafeBufferPointer { ab in
            term.b.withUnsafeBufferPointer { bb in
                panelA.withUnsafeMutableBufferPointer { pa in
                    panelB.withUnsafeMutableBufferPointer { pb in
                        s.withUnsafeMutableBufferPointer { sb in
                            let a = ab.baseAddress!, b = bb.baseAddress!, pA = pa.baseAddress!, pB = pb.baseAddress!
                            var begin = 0
                            while begin < lines.count {
                                let end = min(lines.count, begin + chunk)
                                let c = end - begin
                                let first = lines[begin]
                                let contiguousA = lines[end - 1] - first == c - 1
                                let firstB = map[first]
                                var contiguousB = old == nil && contiguousA
                                if contiguousB {
                                    for k in begin..<end where map[lines[k]] != firstB + (k - begin) { contiguousB = false; break }
                                }
                                // A's lines: used in place when they are a contiguous run, else gathered.
                                let aPointer: UnsafePointer<Float>
                                let lda: Int
                                if term.rowsForm {
                                    if contiguousA {
                                        aPointer = a + first * n; lda = n
                                    } else {
                                        for k in 0..<c { (pA + k * n).update(from: a + lines[begin + k] * n, count: n) }
                                        aPointer = UnsafePointer(pA); lda = n
                                    }
                                } else if contiguousA {
                                    aPointer = a + first; lda = total
                                } else {
                                    for i in 0..<n {
                                        let src = a + i * total, dst = pA + i * c
                                        for k in 0..<c { dst[k] = src[lines[begin + k]] }
                                    }
                                    aPointer = UnsafePointer(pA); lda = c
                                }
                                // B's lines at the map (minus those at the old map).
                                let bPointer: UnsafePointer<Float>
                                let ldb: Int
                                if term.rowsForm {
                                    if contiguousB {
                                        bPointer = b + firstB * n; ldb = n
                                    } else {
                                        for k in 0..<c {
                                            let r = lines[begin + k]
                                            let dst = pB + k * n, src = b + map[r] * n
                                            if let old {
                                                let src0 = b + old[r] * n
                                                for i in 0..<n { dst[i] = src[i] - src0[i] }
                                            } else {
                                                dst.update(from: src, count: n)
                                            }
                                        }
                                        bPointer = UnsafePointer(pB); ldb = n
                                    }
                                    BLAS.sgemm(transA: true, transB: false, m: n, n: n, k: c, alpha: 1, a: aPointer, lda: lda,
                                               b: bPointer, ldb: ldb, beta: 1, c: sb.baseAddress!, ldc: n)
                                } else {
                                    if contiguousB {
                                        bPointer = b + firstB; ldb = total
                                    } else {
                                        for i in 0..<n {
                                            let src = b + i * total, dst = pB + i * c
                                            if let old {
                                                for k in 0..<c { let r = lines[begin + k]; dst[k] = src[map[r]] - src[old[r]] }
                                            } else {
                                                for k in 0..<c { dst[k] = src[map[lines[begin + k]]] }
                                            }
                                        }
                                        bPointer = UnsafePointer(pB); ldb = c
                                    }
                                    BLAS.sgemm(transA: false, transB: true, m: n, n: n, k: c, alpha: 1, a: aPointer, lda: lda,
                                               b: bPointer, ldb: ldb, beta: 1, c: sb.baseAddress!, ldc: n)
                                }
                                begin = end
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The time of weight matching two randomly initialised MLPs, for `basin bench match`.
public struct WeightMatchingBenchResult: Sendable, Codable, Equatable {
    public var sizes: [Int]
    public var seed: UInt64
    /// The whole `WeightMatching.match` call.
    public var seconds: Double
    public var timing: WeightMatching.Timing
    public var sweeps: Int
    public var steps: Int
    /// The permutation re-solved at each step, in order (for a reference implementation to follow).
    public var order: [String]
    public var objectiveBefore: Double
    public var objectiveAfter: Double
    /// For a transformer pair: its shape ("gpt2 12 layers x 768, 12 heads, vocabulary 50257") and parameters.
    public var model: String? = nil
    public var parameters: Int? = nil
    public var groups: Int? = nil
}

/// CPU seconds used by the whole process so far (all threads).
func processCPUTime() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

extension WeightMatching {
    /// Weight-matches two independently initialised MLPs of the given sizes (seeds `seed + 1` and `seed + 2`).
    public static func benchmark(sizes: [Int] = [784, 512, 512, 10], seed: UInt64 = 0,
                                 maxSweeps: Int = 100) throws -> WeightMatchingBenchResult {
        let (network, a, _) = Benchmarks.syntheticMLP(sizes: sizes, samples: 1, seed: seed &+ 1)
        let (_, b, _) = Benchmarks.syntheticMLP(sizes: sizes, samples: 1, seed: seed &+ 2)
        let spec = try PermutationSpec.make(for: network.architecture, params: a)
        let (result, timing) = try matchTimed(reference: a, model: b, spec: spec, seed: seed, maxSweeps: maxSweeps)
        let r = result.report
        return WeightMatchingBenchResult(sizes: sizes, seed: seed, seconds: r.seconds, timing: timing, sweeps: r.sweeps,
                                         steps: r.steps.count, order: r.steps.map(\.permutation),
                                         objectiveBefore: r.objectiveBefore, objectiveAfter: r.objectiveAfter)
    }

    /// Weight matching of two randomly initialised transformers of `config` (seeds seed + 1 and seed + 2, the
    /// family's initialisation): every permutation group `TransformerPermutations.spec` derives (attention heads
    /// as blocks, MLP units, and the residual stream unless `residualStream` is false), for `basin bench match
    /// --transformer`. `sizes` holds [layers, width, heads, vocabulary].
    public static func transformerBenchmark(config: TransformerConfig, seed: UInt64 = 0, maxSweeps: Int = 100,
                                            residualStream: Bool = true) throws -> WeightMatchingBenchResult {
        let built = TransformerArchitecture(config: config)
        let a = built.initialParameters(seed: seed &+ 1), b = built.initialParameters(seed: seed &+ 2)
        let spec = try TransformerPermutations.spec(built.architecture, params: a, residualStream: residualStream)
        let (result, timing) = try matchTimed(reference: a, model: b, spec: spec, seed: seed, maxSweeps: maxSweeps)
        let r = result.report
        return WeightMatchingBenchResult(sizes: [config.layers, config.hiddenSize, config.heads, config.vocabularySize], seed: seed,
                                         seconds: r.seconds, timing: timing, sweeps: r.sweeps, steps: r.steps.count,
                                         order: r.steps.map(\.permutation), objectiveBefore: r.objectiveBefore,
                                         objectiveAfter: r.objectiveAfter,
                                         model: "\(config.modelType) \(config.layers) layers x \(config.hiddenSize), \(config.heads) heads, vocabulary \(config.vocabularySize)"
                                            + (residualStream ? ", residual stream included" : ", no residual stream"),
                                         parameters: a.scalarCount, groups: spec.groups.count)
    }
}
