import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// A run of `PermutationSpec` units along one axis of a tensor that starts at `offset` (GPT-2's packed c_attn
/// holds q, k and v side by side on one axis).
public struct PermutationSegment: Sendable, Equatable, Codable, Hashable {
    public var param: String
    public var axis: Int
    public var offset: Int

    public init(param: String, axis: Int, offset: Int = 0) {
        self.param = param
        self.axis = axis
        self.offset = offset
    }
}

/// The attention heads of one layer as a permutation group of the spec (group `group`, of size `heads`): a
/// head's query rows and its output-projection inputs (`query`, `headDim` units per head) move together, and
/// with grouped-query attention a query head stays in its key-value group: whole key-value groups move with
/// their key and value rows (`keyValue`), and query heads move within them. Dimensions inside a head are
/// never permuted (RoPE pairs them).
///
/// A permutation `p` of the heads is valid when each run of `heads / keyValueHeads` entries starting at a
/// multiple of it is a whole key-value group: key-value head `g` of the aligned model is `p[g * r] / r` of
/// the original.
public struct AttentionHeadGroup: Sendable, Equatable, Codable {
    public var group: Int
    public var heads: Int
    public var keyValueHeads: Int
    public var headDim: Int
    /// Indexed by query-head units (heads * headDim): q rows (and bias), the output projection's inputs.
    public var query: [PermutationSegment]
    /// Indexed by key-value-head units (keyValueHeads * headDim): k and v rows (and biases).
    public var keyValue: [PermutationSegment]
    /// Nodes for activation matching: the attention output (query units) and the node holding v, with the
    /// offset of v's first unit in it.
    public var attentionNode: String
    public var valueNode: String
    public var valueOffset: Int

    public var headsPerKeyValue: Int { heads / keyValueHeads }

    /// Unit permutations (query units, key-value units) of a head permutation.
    public func unitPermutations(_ p: [Int]) -> (query: [Int], keyValue: [Int]) {
        let d = headDim, r = headsPerKeyValue
        let q = (0..<(heads * d)).map { p[$0 / d] * d + $0 % d }
        let kv = (0..<(keyValueHeads * d)).map { (p[($0 / d) * r] / r) * d + $0 % d }
        return (q, kv)
    }

    /// Whether `p` keeps every key-value group whole.
    public func isValid(_ p: [Int]) -> Bool {
        let r = headsPerKeyValue
        guard p.count == heads, Set(p).count == heads, p.allSatisfy({ $0 >= 0 && $0 < heads }) else { return false }
        for g in 0..<keyValueHeads {
            let target = p[g * r] / r
            for u in 0..<r where p[g * r + u] / r != target { return false }
        }
        return true
    }
}

/// Permutation groups of GPT-2 and LLaMA-family transformers (`PermutationSpec.transformer`): each MLP's
/// hidden units, each layer's attention heads as blocks, and optionally the residual stream (embeddings,
/// every norm's weight and bias, every projection's input or output axis on the stream, the LM head's input).
/// Read from the graph, so any architecture built of these ops (Hugging Face folders, architecture files)
/// gets them.
public enum TransformerPermutations {
    /// True when the architecture has attention nodes (the spec is then built here).
    public static func applies(to architecture: Architecture) -> Bool {
        architecture.nodes.contains { $0.op is CausalAttention }
    }

    /// A projection node: weight, bias and which weight axes are its outputs and inputs.
    struct Projection {
        var weight: String
        var bias: String?
        var outAxis: Int
        var inAxis: Int
    }

    static func projection(_ op: any Op) -> Projection? {
        if let l = op as? Linear { return Projection(weight: l.weight, bias: l.bias, outAxis: 0, inAxis: 1) }
        if let c = op as? HFConv1D { return Projection(weight: c.weight, bias: c.bias, outAxis: 1, inAxis: 0) }
        return nil
    }

    /// The spec for a transformer: MLP groups, head groups and (if `residualStream`) the residual stream.
    public static func spec(_ architecture: Architecture, params: ParameterSet, residualStream: Bool = true) throws -> PermutationSpec {
        let nodes = architecture.nodes
        var readers = [[Int]](repeating: [], count: nodes.count)
        for (i, n) in nodes.enumerated() { for j in n.inputs where j >= 0 { readers[j].append(i) } }
        func shape(_ name: String) throws -> [Int] {
            guard let t = params[name] else { throw NetworkError("permutation spec: tensor '\(name)' is missing") }
            return t.shape
        }
        var groups: [PermutationSpec.Group] = []
        var heads: [AttentionHeadGroup] = []
        /// Follows RoPE back to the projection that feeds it.
        func source(_ i: Int) -> Int {
            var k = i
            while k >= 0, nodes[k].op is RotaryEmbedding { k = nodes[k].inputs[0] }
            return k
        }
        // Residual stream: the nodes that write it (embeddings, adds) and read it (norms, adds).
        var streamAxes: [PermutationSpec.Axis] = []
        var streamNodes: [String] = []
        func stream(_ param: String?, _ axis: Int) {
            guard let param else { return }
            let a = PermutationSpec.Axis(param: param, axis: axis)
            if !streamAxes.contains(a) { streamAxes.append(a) }
        }

        for (i, node) in nodes.enumerated() {
            let op = node.op
            if let att = op as? CausalAttention {
                guard let oIndex = readers[i].first, readers[i].count == 1, let o = projection(nodes[oIndex].op) else {
                    throw NetworkError("permutation spec: the output of attention node '\(node.name)' does not go into one projection")
                }
                let d = att.headDim, qw = att.heads * d, kvw = att.keyValueHeads * d
                var query = [PermutationSegment(param: o.weight, axis: o.inAxis)]
                var keyValue: [PermutationSegment] = []
                let valueNode: String, valueOffset: Int
                if att.packed {
                    guard let p = projection(nodes[node.inputs[0]].op) else {
                        throw NetworkError("permutation spec: attention node '\(node.name)' does not read a projection")
                    }
                    query.append(PermutationSegment(param: p.weight, axis: p.outAxis))
                    keyValue += [PermutationSegment(param: p.weight, axis: p.outAxis, offset: qw),
                                 PermutationSegment(param: p.weight, axis: p.outAxis, offset: qw + kvw)]
                    if let b = p.bias {
                        query.append(PermutationSegment(param: b, axis: 0))
                        keyValue += [PermutationSegment(param: b, axis: 0, offset: qw), PermutationSegment(param: b, axis: 0, offset: qw + kvw)]
                    }
                    valueNode = nodes[node.inputs[0]].name
                    valueOffset = qw + kvw
                } else {
                    let (qi, ki, vi) = (source(node.inputs[0]), source(node.inputs[1]), source(node.inputs[2]))
                    guard qi >= 0, ki >= 0, vi >= 0, let q = projection(nodes[qi].op), let k = projection(nodes[ki].op),
                          let v = projection(nodes[vi].op) else {
                        throw NetworkError("permutation spec: attention node '\(node.name)' does not read q, k and v projections")
                    }
                    query.append(PermutationSegment(param: q.weight, axis: q.outAxis))
                    if let b = q.bias { query.append(PermutationSegment(param: b, axis: 0)) }
                    for p in [k, v] {
                        keyValue.append(PermutationSegment(param: p.weight, axis: p.outAxis))
                        if let b = p.bias { keyValue.append(PermutationSegment(param: b, axis: 0)) }
                    }
                    valueNode = nodes[vi].name
                    valueOffset = 0
                }
                let name = node.name.isEmpty ? "attention\(i)" : node.name
                heads.append(AttentionHeadGroup(group: groups.count, heads: att.heads, keyValueHeads: att.keyValueHeads, headDim: d,
                                                query: query, keyValue: keyValue, attentionNode: node.name,
                                                valueNode: valueNode, valueOffset: valueOffset))
                groups.append(PermutationSpec.Group(name: "P_\(name).heads", size: att.heads, axes: [], node: node.name))
            } else if let down = projection(op), let hidden = node.inputs.first, hidden >= 0,
                      nodes[hidden].op is ActivationOp || nodes[hidden].op is Multiply {
                // An MLP: the projections feeding the activation (and the gate product) share their hidden units.
                var feeders: [Projection] = []
                var stack = [hidden], seen = Set<Int>()
                while let k = stack.popLast() {
                    guard k >= 0, seen.insert(k).inserted else { continue }
                    if let p = projection(nodes[k].op) { feeders.append(p) } else { stack += nodes[k].inputs }
                }
                guard !feeders.isEmpty else { continue }
                var axes: [PermutationSpec.Axis] = []
                for p in feeders.sorted(by: { $0.weight < $1.weight }) {
                    axes.append(.init(param: p.weight, axis: p.outAxis))
                    if let b = p.bias { axes.append(.init(param: b, axis: 0)) }
                }
                axes.append(.init(param: down.weight, axis: down.inAxis))
                let size = try shape(down.weight)[down.inAxis]
                let prefix = node.name.split(separator: ".").dropLast().joined(separator: ".")
                groups.append(PermutationSpec.Group(name: "P_\(prefix.isEmpty ? node.name : prefix)", size: size, axes: axes,
                                                    node: nodes[hidden].name))
            }
            // The residual stream.
            if let e = op as? Embedding {
                stream(e.weight, 1)
                if !(readers[i].count == 1 && nodes[readers[i][0]].op is PositionEmbedding) { streamNodes.append(node.name) }
            } else if let e = op as? PositionEmbedding {
                stream(e.weight, 1)
                streamNodes.append(node.name)
            } else if let n = op as? LayerNorm {
                stream(n.weight, 0)
                stream(n.bias, 0)
            } else if let n = op as? RMSNorm {
                stream(n.weight, 0)
            } else if let h = op as? LMHead {
                stream(h.weight, 1)
            } else if op is Add {
                streamNodes.append(node.name)
            }
            if let p = projection(op) {
                // Reads the stream through a norm; writes it through an add.
                if let input = node.inputs.first, input >= 0, nodes[input].op is LayerNorm || nodes[input].op is RMSNorm {
                    stream(p.weight, p.inAxis)
                }
                if readers[i].contains(where: { nodes[$0].op is Add }) {
                    stream(p.weight, p.outAxis)
                    stream(p.bias, 0)
                }
            }
        }
        if residualStream, let first = streamAxes.first {
            let width = try shape(first.param)[first.axis]
            groups.append(PermutationSpec.Group(name: "P_residual", size: width, axes: streamAxes, node: nil))
        }
        var spec = PermutationSpec(groups: groups)
        spec.attentionHeads = heads
        spec.residualNodes = residualStream ? streamNodes : nil
        try spec.validate(params)
        try validateHeads(spec, params)
        return spec
    }

    static func validateHeads(_ spec: PermutationSpec, _ params: ParameterSet) throws {
        for h in spec.attentionHeads ?? [] {
            let name = spec.groups[h.group].name
            guard h.heads % h.keyValueHeads == 0 else {
                throw NetworkError("permutation spec: '\(name)' has \(h.keyValueHeads) key-value heads, which do not divide \(h.heads) query heads")
            }
            for (segments, units) in [(h.query, h.heads * h.headDim), (h.keyValue, h.keyValueHeads * h.headDim)] {
                for s in segments {
                    guard let t = params[s.param] else {
                        throw NetworkError("permutation spec: '\(name)' names tensor '\(s.param)', which the model does not have")
                    }
                    guard s.axis < t.rank, s.offset + units <= t.shape[s.axis] else {
                        throw NetworkError("permutation spec: '\(name)' needs units \(s.offset)..<\(s.offset + units) on axis \(s.axis) of '\(s.param)', which has shape \(t.shape)")
                    }
                }
            }
        }
    }

    // MARK: Applying

    /// `out[..., offset + k, ...] = t[..., offset + perm[k], ...]` along `axis`; the rest of the axis is kept.
    static func gather(_ t: Tensor, axis: Int, offset: Int, permutation perm: [Int]) -> Tensor {
        if offset == 0 && perm.count == t.shape[axis] { return PermutationSpec.gather(t, axis: axis, permutation: perm) }
        let shape = t.shape
        let outer = shape[..<axis].reduce(1, *), n = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
        return Tensor(shape: shape) { out in
            t.withUnsafeBufferPointer { src in
                for o in 0..<outer {
                    for k in 0..<n {
                        let from = k >= offset && k < offset + perm.count ? offset + perm[k - offset] : k
                        (out.baseAddress! + (o * n + k) * inner).update(from: src.baseAddress! + (o * n + from) * inner, count: inner)
                    }
                }
            }
        }
    }

    /// Every (segment, unit permutation) acting on each parameter: the plain groups' axes and the heads'
    /// segments, tagged with their group.
    static func actions(_ spec: PermutationSpec, _ perms: [[Int]]) -> [String: [(group: Int, segment: PermutationSegment, perm: [Int])]] {
        var out: [String: [(group: Int, segment: PermutationSegment, perm: [Int])]] = [:]
        for (gi, g) in spec.groups.enumerated() {
            for a in g.axes { out[a.param, default: []].append((gi, PermutationSegment(param: a.param, axis: a.axis), perms[gi])) }
        }
        for h in spec.attentionHeads ?? [] {
            let (q, kv) = h.unitPermutations(perms[h.group])
            for s in h.query { out[s.param, default: []].append((h.group, s, q)) }
            for s in h.keyValue { out[s.param, default: []].append((h.group, s, kv)) }
        }
        return out
    }

    /// The head permutations' part of `PermutationSpec.apply`.
    static func applyHeads(_ spec: PermutationSpec, _ perms: [[Int]], to params: ParameterSet) -> ParameterSet {
        var bySegment: [String: [(PermutationSegment, [Int])]] = [:]
        for h in spec.attentionHeads ?? [] {
            precondition(h.isValid(perms[h.group]), "permutation for '\(spec.groups[h.group].name)' moves a query head out of its key-value group")
            let (q, kv) = h.unitPermutations(perms[h.group])
            for s in h.query { bySegment[s.param, default: []].append((s, q)) }
            for s in h.keyValue { bySegment[s.param, default: []].append((s, kv)) }
        }
        return params.mapTensors { name, tensor in
            var t = tensor
            for (s, p) in bySegment[name] ?? [] { t = gather(t, axis: s.axis, offset: s.offset, permutation: p) }
            return t
        }
    }

    // MARK: Weight matching

    /// Git Re-Basin weight matching over MLP, head and residual groups: coordinate descent in a seeded random
    /// order of groups, each solved exactly given the others, until a sweep changes nothing. A head group's
    /// similarity sums its heads' unit similarities (all of a head's dimensions together); with GQA the
    /// solve is exact under the constraint: for each pair of key-value groups, the best assignment of their
    /// query heads (a small LAP) plus their key and value similarity, then the best assignment of groups.
    public static func weightMatch(reference a: ParameterSet, model b: ParameterSet, spec: PermutationSpec,
                                   seed: UInt64 = 0, maxSweeps: Int = 100, cancel: CancellationFlag? = nil,
                                   progress: (MatchReport.Step) -> Void = { _ in }) throws -> AlignmentResult {
        let start = Benchmarks.now()
        try a.checkCompatible(with: b, "weight matching")
        try spec.validate(a)
        try validateHeads(spec, a)
        var perms = spec.identity
        let headOf = Dictionary(uniqueKeysWithValues: (spec.attentionHeads ?? []).map { ($0.group, $0) })

        /// B's tensor `name` with every group's permutation applied except `skip`'s.
        func permutedB(_ name: String, skipping skip: Int, _ acts: [String: [(group: Int, segment: PermutationSegment, perm: [Int])]]) -> Tensor {
            var t = b[name]!
            for act in acts[name] ?? [] where act.group != skip {
                t = gather(t, axis: act.segment.axis, offset: act.segment.offset, permutation: act.perm)
            }
            return t
        }
        /// S[i, j] = sum over segments of <unit i of A, unit j of B'> (n units per segment), float64.
        func similarity(_ segments: [PermutationSegment], units n: Int, skipping gi: Int,
                        _ acts: [String: [(group: Int, segment: PermutationSegment, perm: [Int])]]) -> [Double] {
            var s = [Double](repeating: 0, count: n * n)
            var cacheB: [String: Tensor] = [:]
            for seg in segments {
                let tb = cacheB[seg.param] ?? permutedB(seg.param, skipping: gi, acts)
                cacheB[seg.param] = tb
                let ua = PermutationSpec.unfold(a[seg.param]!, axis: seg.axis).rows(seg.offset..<(seg.offset + n))
                let ub = PermutationSpec.unfold(tb, axis: seg.axis).rows(seg.offset..<(seg.offset + n))
                let m = ua.matmul(ub, transposeOther: true)
                m.withUnsafeBufferPointer { mp in for k in 0..<(n * n) { s[k] += Double(mp[k]) } }
            }
            return s
        }
        /// The group's similarity (heads: head-level) and its best permutation with its total and the
        /// current permutation's total.
        func solve(_ gi: Int) throws -> (similarity: [Double], best: [Int], total: Double, old: Double) {
            let acts = actions(spec, perms)
            let g = spec.groups[gi]
            if let h = headOf[gi] {
                let sq = similarity(h.query, units: h.heads * h.headDim, skipping: gi, acts)
                let skv = similarity(h.keyValue, units: h.keyValueHeads * h.headDim, skipping: gi, acts)
                return try solveHeads(h, queryUnits: sq, keyValueUnits: skv, current: perms[gi])
            }
            let s = similarity(g.axes.map { PermutationSegment(param: $0.param, axis: $0.axis) }, units: g.size, skipping: gi, acts)
            let solution = try LinearAssignment.solve(cost: s, rows: g.size, columns: g.size, maximize: true)
            let old = (0..<g.size).reduce(0.0) { $0 + s[$1 * g.size + perms[gi][$1]] }
            return (s, solution.columnForRow, solution.total, old)
        }

        let before = objective(a, b, spec, perms)
        var current = before
        var steps: [MatchReport.Step] = []
        var generator = SeededGenerator(seed: seed)
        var sweeps = 0
        while sweeps < maxSweeps {
            sweeps += 1
            var improvedAny = false
            for gi in generator.permutation(spec.groups.count) {
                if cancel?.isCancelled == true { throw CancellationError() }
                let r = try solve(gi)
                let improved = r.total > r.old + 1e-9 * max(1, abs(r.old)) && r.best != perms[gi]
                if improved {
                    perms[gi] = r.best
                    improvedAny = true
                    // A parameter with two axes in one group would make the objective quadratic in it; the
                    // transformer groups never do, but recompute rather than assume.
                    current = objective(a, b, spec, perms)
                }
                let step = MatchReport.Step(step: steps.count + 1, sweep: sweeps, permutation: spec.groups[gi].name,
                                            objective: current, improved: improved)
                steps.append(step)
                progress(step)
            }
            if !improvedAny { break }
        }
        var layers: [MatchReport.Layer] = []
        for gi in spec.groups.indices {
            let r = try solve(gi)
            layers.append(MatchReport.Layer(name: spec.groups[gi].name, similarity: r.similarity, size: spec.groups[gi].size,
                                            permutation: perms[gi]))
        }
        let report = MatchReport(method: .weight, seed: seed, layers: layers, objectiveBefore: before, steps: steps,
                                 sweeps: sweeps, seconds: Benchmarks.now() - start)
        return AlignmentResult(permutations: perms, aligned: spec.apply(perms, to: b), report: report, spec: spec)
    }

    /// Sum over the permuted parameters of <A, P(B)>.
    static func objective(_ a: ParameterSet, _ b: ParameterSet, _ spec: PermutationSpec, _ perms: [[Int]]) -> Double {
        let acts = actions(spec, perms)
        var total = 0.0
        for name in acts.keys.sorted() {
            var t = b[name]!
            for act in acts[name]! { t = gather(t, axis: act.segment.axis, offset: act.segment.offset, permutation: act.perm) }
            let ta = a[name]!
            total += dot(ta, t)
        }
        return total
    }

    static func dot(_ x: Tensor, _ y: Tensor) -> Double {
        x.withUnsafeBufferPointer { xs in y.withUnsafeBufferPointer { ys in
            var s = 0.0
            for k in 0..<xs.count { s += Double(xs[k]) * Double(ys[k]) }
            return s
        } }
    }

    /// The best valid head permutation for unit similarities of query units (heads*d square) and key-value
    /// units (kvHeads*d square): returns the head-level similarity, the permutation, its total and the total
    /// of `current`.
    static func solveHeads(_ h: AttentionHeadGroup, queryUnits sq: [Double], keyValueUnits skv: [Double],
                           current: [Int]) throws -> (similarity: [Double], best: [Int], total: Double, old: Double) {
        let d = h.headDim, H = h.heads, G = h.keyValueHeads, r = h.headsPerKeyValue
        func blocks(_ s: [Double], _ n: Int) -> [Double] {
            var out = [Double](repeating: 0, count: n * n)
            let w = n * d
            for i in 0..<n { for j in 0..<n { for u in 0..<d { out[i * n + j] += s[(i * d + u) * w + j * d + u] } } }
            return out
        }
        let sh = blocks(sq, H), sg = blocks(skv, G)
        var pair = [Double](repeating: 0, count: G * G)
        var inner = [[Int]](repeating: [], count: G * G)
        for ga in 0..<G {
            for gb in 0..<G {
                var sub = [Double](repeating: 0, count: r * r)
                for x in 0..<r { for y in 0..<r { sub[x * r + y] = sh[(ga * r + x) * H + gb * r + y] } }
                let s = try LinearAssignment.solve(cost: sub, rows: r, columns: r, maximize: true)
                pair[ga * G + gb] = sg[ga * G + gb] + s.total
                inner[ga * G + gb] = s.columnForRow
            }
        }
        let outer = try LinearAssignment.solve(cost: pair, rows: G, columns: G, maximize: true)
        var best = [Int](repeating: 0, count: H)
        for ga in 0..<G {
            let gb = outer.columnForRow[ga]
            for x in 0..<r { best[ga * r + x] = gb * r + inner[ga * G + gb][x] }
        }
        var old = 0.0
        for i in 0..<H { old += sh[i * H + current[i]] }
        for g in 0..<G { old += sg[g * G + current[g * r] / r] }
        return (sh, best, outer.total, old)
    }

    // MARK: Activation matching

    /// Activation matching: Pearson correlations of A's and B's units over every token position of `data`
    /// (MLP: the hidden activations; heads: each head's attention output and its key-value group's values;
    /// residual stream: the stream after the embeddings and after every block's adds, pooled), each group
    /// solved once (heads under the GQA constraint, as in weight matching).
    public static func activationMatch(reference a: ParameterSet, model b: ParameterSet, network: Network, spec: PermutationSpec,
                                       data: Dataset, batchSize: Int = 256, cancel: CancellationFlag? = nil) throws -> AlignmentResult {
        let start = Benchmarks.now()
        try a.checkCompatible(with: b, "activation matching")
        try spec.validate(a)
        try validateHeads(spec, a)
        guard data.count > 1 else { throw NetworkError("activation matching: the data set '\(data.name)' needs at least two samples") }
        let nodes = network.architecture.nodes
        func index(_ name: String) throws -> Int {
            guard let i = nodes.firstIndex(where: { $0.name == name }) else {
                throw NetworkError("activation matching: the network has no node '\(name)'")
            }
            return i
        }
        /// For each group: the (node, offset, width) blocks whose columns are its units (several blocks pool rows).
        struct Source { var node: Int; var offset: Int; var width: Int }
        var sources: [[Source]] = []
        var valueSources: [Int: Source] = [:]
        let headOf = Dictionary(uniqueKeysWithValues: (spec.attentionHeads ?? []).map { ($0.group, $0) })
        for (gi, g) in spec.groups.enumerated() {
            if let h = headOf[gi] {
                sources.append([Source(node: try index(h.attentionNode), offset: 0, width: h.heads * h.headDim)])
                valueSources[gi] = Source(node: try index(h.valueNode), offset: h.valueOffset, width: h.keyValueHeads * h.headDim)
            } else if let node = g.node {
                sources.append([Source(node: try index(node), offset: 0, width: g.size)])
            } else if let stream = spec.residualNodes, !stream.isEmpty {
                sources.append(try stream.map { Source(node: try index($0), offset: 0, width: g.size) })
            } else {
                throw NetworkError("activation matching: no node carries the units of permutation '\(g.name)'")
            }
        }
        /// Running sums for a Pearson correlation of n units of A against n of B.
        struct Sums {
            var n: Int, count = 0.0
            var sa: [Double], sb: [Double], saa: [Double], sbb: [Double], sab: [Double]
            init(_ n: Int) {
                self.n = n
                sa = .init(repeating: 0, count: n); sb = sa; saa = sa; sbb = sa
                sab = .init(repeating: 0, count: n * n)
            }
            mutating func add(_ xa: Tensor, _ xb: Tensor) {
                let rows = xa.shape[0]
                count += Double(rows)
                let m = xa.matmul(xb, transposeSelf: true)
                m.withUnsafeBufferPointer { mp in for k in 0..<(n * n) { sab[k] += Double(mp[k]) } }
                xa.withUnsafeBufferPointer { pa in xb.withUnsafeBufferPointer { pb in
                    for r in 0..<rows {
                        for j in 0..<n {
                            let x = Double(pa[r * n + j]), y = Double(pb[r * n + j])
                            sa[j] += x; sb[j] += y; saa[j] += x * x; sbb[j] += y * y
                        }
                    }
                } }
            }
            var correlation: [Double] {
                var c = [Double](repeating: 0, count: n * n)
                let sdA = (0..<n).map { max(0, saa[$0] / count - (sa[$0] / count) * (sa[$0] / count)).squareRoot() }
                let sdB = (0..<n).map { max(0, sbb[$0] / count - (sb[$0] / count) * (sb[$0] / count)).squareRoot() }
                for i in 0..<n where sdA[i] > 1e-12 {
                    for j in 0..<n where sdB[j] > 1e-12 {
                        let cov = sab[i * n + j] / count - (sa[i] / count) * (sb[j] / count)
                        c[i * n + j] = cov / (sdA[i] * sdB[j])
                    }
                }
                return c
            }
        }
        var sums = sources.map { Sums($0[0].width) }
        var valueSums: [Int: Sums] = valueSources.mapValues { Sums($0.width) }
        /// Columns offset..<offset+width of a node output, as [positions, width].
        func columns(_ t: Tensor, _ s: Source) -> Tensor {
            let full = t.shape.last ?? 1
            let rows = t.count / max(1, full)
            if s.offset == 0 && s.width == full { return t.reshaped([rows, full]) }
            return Tensor(shape: [rows, s.width]) { out in
                t.withUnsafeBufferPointer { src in
                    for r in 0..<rows { (out.baseAddress! + r * s.width).update(from: src.baseAddress! + r * full + s.offset, count: s.width) }
                }
            }
        }
        var startRow = 0
        while startRow < data.count {
            if cancel?.isCancelled == true { throw CancellationError() }
            let end = min(data.count, startRow + batchSize)
            let x = data.x.rows(startRow..<end)
            let ta = network.forwardTrace(x, a, keepAll: true), tb = network.forwardTrace(x, b, keepAll: true)
            for (gi, list) in sources.enumerated() {
                for s in list { sums[gi].add(columns(ta[s.node]!, s), columns(tb[s.node]!, s)) }
            }
            for (gi, s) in valueSources { valueSums[gi]!.add(columns(ta[s.node]!, s), columns(tb[s.node]!, s)) }
            startRow = end
        }
        var perms: [[Int]] = []
        var layers: [MatchReport.Layer] = []
        var steps: [MatchReport.Step] = []
        var before = 0.0
        for (gi, g) in spec.groups.enumerated() {
            if cancel?.isCancelled == true { throw CancellationError() }
            let corr = sums[gi].correlation
            let p: [Int], similarity: [Double]
            if let h = headOf[gi] {
                let r = try solveHeads(h, queryUnits: corr, keyValueUnits: valueSums[gi]!.correlation, current: Array(0..<h.heads))
                p = r.total > r.old + 1e-12 * max(1, abs(r.old)) ? r.best : Array(0..<h.heads)
                similarity = r.similarity
            } else {
                let s = try LinearAssignment.solve(cost: corr, rows: g.size, columns: g.size, maximize: true)
                let identity = (0..<g.size).reduce(0.0) { $0 + corr[$1 * g.size + $1] }
                p = s.total > identity + 1e-12 * max(1, abs(identity)) ? s.columnForRow : Array(0..<g.size)
                similarity = corr
            }
            perms.append(p)
            let layer = MatchReport.Layer(name: g.name, similarity: similarity, size: g.size, permutation: p)
            layers.append(layer)
            before += layer.meanSimilarityBefore * Double(g.size)
            steps.append(.init(step: gi + 1, sweep: 1, permutation: g.name, objective: 0, improved: layer.moved > 0))
        }
        var total = before
        for (k, layer) in layers.enumerated() {
            total += (layer.meanSimilarityAfter - layer.meanSimilarityBefore) * Double(layer.size)
            steps[k].objective = total
        }
        let report = MatchReport(method: .activation, data: data.name, layers: layers, objectiveBefore: before,
                                 steps: steps, sweeps: 1, seconds: Benchmarks.now() - start)
        return AlignmentResult(permutations: perms, aligned: spec.apply(perms, to: b), report: report, spec: spec)
    }
}
