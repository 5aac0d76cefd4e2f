import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Activation matching (Git Re-Basin, section 3.1; Li et al. 2016): run both models on data, correlate
/// every hidden unit of A with every unit of B in the same layer (Pearson, over the samples), and assign
/// each layer's units to maximise the total correlation. Each permutation group is matched on the output of
/// its `node` (post-activation for inferred MLPs). Setting `cancel` stops it between batches and layers with a
/// `CancellationError`.
public enum ActivationMatching {
    public static func match(reference a: ParameterSet, model b: ParameterSet, network: Network, spec: PermutationSpec,
                             data: Dataset, batchSize: Int = 1024, cancel: CancellationFlag? = nil) throws -> AlignmentResult {
        if spec.hasAttentionHeads {
            // Head groups move blocks of units under the GQA constraint: the transformer matcher solves them.
            return try TransformerPermutations.activationMatch(reference: a, model: b, network: network, spec: spec, data: data,
                                                               cancel: cancel)
        }
        let start = Benchmarks.now()
        try a.checkCompatible(with: b, "activation matching")
        try spec.validate(a)
        guard data.count > 1 else { throw NetworkError("activation matching: the data set '\(data.name)' needs at least two samples") }
        let nodes = network.architecture.nodes
        let nodeIndex: [Int] = try spec.groups.map { g in
            guard let name = g.node, let i = nodes.firstIndex(where: { $0.name == name }) else {
                throw NetworkError("activation matching: no node carries the units of permutation '\(g.name)', so its activations cannot be read")
            }
            return i
        }

        var correlations = try correlate(a, b, network: network, nodes: nodeIndex, spec: spec, data: data, batchSize: batchSize,
                                         cancel: cancel)
        var perms: [[Int]] = []
        for (gi, g) in spec.groups.enumerated() {
            if cancel?.isCancelled == true { throw CancellationError() }
            let n = g.size
            let corr = correlations[gi].values
            let solution = try LinearAssignment.solve(cost: corr, rows: n, columns: n, maximize: true)
            // Keep the identity unless the assignment is strictly better (ties, e.g. dead units, stay put).
            let identityTotal = (0..<n).reduce(0.0) { $0 + corr[$1 * n + $1] }
            perms.append(solution.total > identityTotal + 1e-12 * max(1, abs(identityTotal)) ? solution.columnForRow : Array(0..<n))
        }
        try breakDeadUnitTies(&perms, correlations: &correlations, reference: a, model: b, network: network, nodes: nodeIndex,
                              spec: spec, data: data, batchSize: batchSize, cancel: cancel)

        var layers: [MatchReport.Layer] = []
        var steps: [MatchReport.Step] = []
        var before = 0.0
        for (gi, g) in spec.groups.enumerated() {
            let layer = MatchReport.Layer(name: g.name, similarity: correlations[gi].values, size: g.size, permutation: perms[gi])
            layers.append(layer)
            before += layer.meanSimilarityBefore * Double(g.size)
            steps.append(.init(step: gi + 1, sweep: 1, permutation: g.name, objective: 0, improved: layer.moved > 0))
        }
        // Objective after step k: matched correlation of the groups done so far plus identity for the rest.
        var identityRest = layers.map { $0.meanSimilarityBefore * Double($0.size) }
        var running = identityRest.reduce(0, +)
        for (k, layer) in layers.enumerated() {
            running += layer.meanSimilarityAfter * Double(layer.size) - identityRest[k]
            identityRest[k] = 0
            steps[k].objective = running
        }
        let report = MatchReport(method: .activation, data: data.name, layers: layers, groups: spec.groups, objectiveBefore: before,
                                 steps: steps, sweeps: 1, seconds: Benchmarks.now() - start)
        return AlignmentResult(permutations: perms, aligned: spec.apply(perms, to: b), report: report, spec: spec)
    }

    /// Pearson correlations of every unit of A with every unit of B at one node per group, over the data.
    struct Correlation {
        /// Row-major n x n, A's units in rows; 0 where either unit is dead.
        var values: [Double]
        /// Units with no variance on the data.
        var deadA: [Bool], deadB: [Bool]
    }

    static func correlate(_ a: ParameterSet, _ b: ParameterSet, network: Network, nodes nodeIndex: [Int],
                          spec: PermutationSpec, data: Dataset, batchSize: Int, cancel: CancellationFlag?) throws -> [Correlation] {
        let nodes = network.architecture.nodes
        // Running sums per group: sum and sum of squares per unit, and the cross products A^T B.
        struct Accumulator {
            var sumA: [Double], sumB: [Double], sqA: [Double], sqB: [Double], cross: [Double]
            init(_ n: Int) {
                sumA = .init(repeating: 0, count: n); sumB = sumA; sqA = sumA; sqB = sumA
                cross = .init(repeating: 0, count: n * n)
            }
        }
        var acc = spec.groups.map { Accumulator($0.size) }
        var observations = [Int](repeating: 0, count: spec.groups.count)
        let x = data.x
        var begin = 0
        while begin < data.count {
            if cancel?.isCancelled == true { throw CancellationError() }
            let end = min(data.count, begin + batchSize)
            let batch = x.rows(begin..<end)
            let traceA = network.forwardTrace(batch, a, keepAll: true)
            let traceB = network.forwardTrace(batch, b, keepAll: true)
            for (gi, g) in spec.groups.enumerated() {
                let n = g.size
                let za = traceA[nodeIndex[gi]]!, zb = traceB[nodeIndex[gi]]!
                // Units on axis `nodeAxis` of each sample (the last by default); every other position of a sample
                // (an image's H x W, a sequence's tokens) is one more observation of each unit.
                let axis = g.nodeAxis.map { $0 + 1 } ?? (za.rank - 1)
                guard za.rows == end - begin, axis >= 1, axis < za.rank, za.shape[axis] == n else {
                    throw NetworkError("activation matching: node '\(nodes[nodeIndex[gi]].name)' gives \(za.shape) activations per batch, which do not hold the \(n) units of permutation '\(g.name)' on axis \(axis)")
                }
                let za2 = unitsLast(za, axis: axis), zb2 = unitsLast(zb, axis: axis)
                observations[gi] += za2.rows
                let cross = za2.matmul(zb2, transposeSelf: true)
                za2.withUnsafeBufferPointer { pa in
                    zb2.withUnsafeBufferPointer { pb in
                        for r in 0..<za2.rows {
                            for k in 0..<n {
                                let va = Double(pa[r * n + k]), vb = Double(pb[r * n + k])
                                acc[gi].sumA[k] += va; acc[gi].sqA[k] += va * va
                                acc[gi].sumB[k] += vb; acc[gi].sqB[k] += vb * vb
                            }
                        }
                    }
                }
                cross.withUnsafeBufferPointer { c in
                    for k in 0..<(n * n) { acc[gi].cross[k] += Double(c[k]) }
                }
            }
            begin = end
        }

        return spec.groups.indices.map { gi in
            let count = Double(max(1, observations[gi]))
            let n = spec.groups[gi].size
            let s = acc[gi]
            let meanA = s.sumA.map { $0 / count }, meanB = s.sumB.map { $0 / count }
            let stdA = (0..<n).map { max(0, s.sqA[$0] / count - meanA[$0] * meanA[$0]).squareRoot() }
            let stdB = (0..<n).map { max(0, s.sqB[$0] / count - meanB[$0] * meanB[$0]).squareRoot() }
            var corr = [Double](repeating: 0, count: n * n)
            for i in 0..<n {
                for j in 0..<n {
                    let cov = s.cross[i * n + j] / count - meanA[i] * meanB[j]
                    // Dead units (no variance) correlate with nothing.
                    corr[i * n + j] = stdA[i] > 0 && stdB[j] > 0 ? cov / (stdA[i] * stdB[j]) : 0
                }
            }
            return Correlation(values: corr, deadA: stdA.map { $0 == 0 }, deadB: stdB.map { $0 == 0 })
        }
    }

    /// The activations [N, ..., n, ...] with the units' axis last and every other position a row: [N * positions, n].
    static func unitsLast(_ z: Tensor, axis: Int) -> Tensor {
        let n = z.shape[axis]
        if axis == z.rank - 1 { return z.reshaped([z.count / max(1, n), n]) }
        let outer = z.shape[..<axis].reduce(1, *), inner = z.shape[(axis + 1)...].reduce(1, *)
        return Tensor(shape: [outer * inner, n]) { out in
            z.withUnsafeBufferPointer { src in
                for o in 0..<outer {
                    for k in 0..<n {
                        let from = src.baseAddress! + (o * n + k) * inner
                        let to = out.baseAddress! + o * inner * n + k
                        for j in 0..<inner { to[j * n] = from[j] }
                    }
                }
            }
        }
    }

    /// A dead unit (no variance on the data, e.g. a ReLU that never fires) correlates 0 with every unit, so the
    /// assignment says nothing about the pairs it is in: any reshuffle among the pairs with a dead unit on
    /// either side has the same total correlation, and which one a solver returns is an accident of its
    /// tie-breaking. Those pairs are re-matched by the correlation of the units' inputs to the activation
    /// (pre-activations, which still vary), allowing no pair of two live units, so the total correlation
    /// stays the optimum.
    static func breakDeadUnitTies(_ perms: inout [[Int]], correlations: inout [Correlation], reference a: ParameterSet,
                                  model b: ParameterSet, network: Network, nodes nodeIndex: [Int], spec: PermutationSpec,
                                  data: Dataset, batchSize: Int, cancel: CancellationFlag?) throws {
        let nodes = network.architecture.nodes
        // The node before the activations that end at each group's node.
        let preIndex = nodeIndex.map { i -> Int in
            var k = i
            while nodes[k].op is ActivationOp, nodes[k].inputs.count == 1, nodes[k].inputs[0] >= 0 { k = nodes[k].inputs[0] }
            return k
        }
        let tied = spec.groups.indices.map { gi -> [Int] in
            let c = correlations[gi]
            return perms[gi].indices.filter { c.deadA[$0] || c.deadB[perms[gi][$0]] }
        }
        let groups = spec.groups.indices.filter { tied[$0].count > 1 && preIndex[$0] != nodeIndex[$0] }
        guard !groups.isEmpty else { return }
        let pre = try correlate(a, b, network: network, nodes: preIndex, spec: spec, data: data, batchSize: batchSize, cancel: cancel)
        for gi in groups {
            let rows = tied[gi], columns = rows.map { perms[gi][$0] }
            let n = spec.groups[gi].size, m = rows.count
            let c = correlations[gi]
            var cost = [Double](repeating: -.infinity, count: m * m)
            for (r, i) in rows.enumerated() {
                for (k, j) in columns.enumerated() where c.deadA[i] || c.deadB[j] {
                    cost[r * m + k] = pre[gi].values[i * n + j]
                }
            }
            // Feasible: the current pairs are allowed.
            let solution = try LinearAssignment.solve(cost: cost, rows: m, columns: m, maximize: true)
            var current = 0.0
            for i in rows { current += pre[gi].values[i * n + perms[gi][i]] }
            guard solution.total > current + 1e-12 * max(1, abs(current)) else { continue }
            for (r, i) in rows.enumerated() { perms[gi][i] = columns[solution.columnForRow[r]] }
        }
    }
}

/// Aligning several models to one reference (for soups of independently trained models).
public enum Alignment {
    /// Aligns each model to `reference` with the given method; activation matching needs `network` and `data`.
    public static func alignAll(reference: ParameterSet, models: [ParameterSet], spec: PermutationSpec,
                                method: MatchMethod, seed: UInt64 = 0, maxSweeps: Int = 100,
                                network: Network? = nil, data: Dataset? = nil) throws -> [AlignmentResult] {
        try models.map { model in
            try align(reference: reference, model: model, spec: spec, method: method, seed: seed, maxSweeps: maxSweeps,
                      network: network, data: data)
        }
    }

    /// Aligns one model to `reference`; setting `cancel` stops it with a `CancellationError`.
    public static func align(reference: ParameterSet, model: ParameterSet, spec: PermutationSpec, method: MatchMethod,
                             seed: UInt64 = 0, maxSweeps: Int = 100, network: Network? = nil,
                             data: Dataset? = nil, cancel: CancellationFlag? = nil) throws -> AlignmentResult {
        switch method {
        case .weight:
            return try WeightMatching.match(reference: reference, model: model, spec: spec, seed: seed, maxSweeps: maxSweeps,
                                            cancel: cancel)
        case .activation:
            guard let network, let data else {
                throw NetworkError("activation matching needs a data set (--data) to run both models on")
            }
            return try ActivationMatching.match(reference: reference, model: model, network: network, spec: spec, data: data,
                                                cancel: cancel)
        }
    }
}
