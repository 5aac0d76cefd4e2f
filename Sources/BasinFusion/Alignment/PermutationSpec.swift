import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Which axes of which parameters each permutation acts on.
///
/// A permutation group is a set of hidden units (a layer's outputs, later a convolution's channels or a
/// residual stream) and every parameter axis indexed by those units: for a linear layer followed by another,
/// the rows of the first layer's weight and bias and the columns of the next layer's weight. Permuting all of
/// them by the same permutation gives a functionally identical model.
///
/// Convention: a permutation `perm` of size n is applied by gathering, `out[..., k, ...] = in[..., perm[k], ...]`
/// along each axis of its group. After alignment, unit `k` of the aligned model B corresponds to unit `k` of A,
/// and was unit `perm[k]` of the original B.
public struct PermutationSpec: Sendable, Equatable, Codable {
    public typealias Axis = PermutationDeclaration.Axis

    public struct Group: Sendable, Equatable, Codable {
        public var name: String
        /// Number of units permuted.
        public var size: Int
        public var axes: [Axis]
        /// The architecture node whose output units this group permutes (post-activation where there is
        /// one), used by activation matching; nil when no single node carries them.
        public var node: String?
        /// The axis of one sample of `node`'s output that indexes the units (0 for [C, H, W] images, the last
        /// axis for features); nil: the last.
        public var nodeAxis: Int?

        public init(name: String, size: Int, axes: [Axis], node: String? = nil, nodeAxis: Int? = nil) {
            self.name = name
            self.size = size
            self.axes = axes
            self.node = node
            self.nodeAxis = nodeAxis
        }
    }

    public var groups: [Group]
    /// Transformers: groups that are attention heads (their `axes` are empty; the head blocks are here).
    public var attentionHeads: [AttentionHeadGroup]?
    /// Transformers: the nodes whose outputs are the residual stream (for activation matching of its group).
    public var residualNodes: [String]?

    public init(groups: [Group]) {
        self.groups = groups
    }

    /// True when some groups are attention heads (matched by `TransformerPermutations`).
    public var hasAttentionHeads: Bool { !(attentionHeads ?? []).isEmpty }

    /// The spec for a model: the architecture's declared permutations if it has any, a transformer's groups
    /// (MLPs, attention heads, residual stream) if it has attention, otherwise derived from the graph
    /// (`derived`: one group per channel set; a chain of linear layers gets one per hidden layer).
    public static func make(for architecture: Architecture, params: ParameterSet) throws -> PermutationSpec {
        if !architecture.permutations.isEmpty {
            return try declared(architecture, params: params)
        }
        if TransformerPermutations.applies(to: architecture) {
            return try TransformerPermutations.spec(architecture, params: params)
        }
        return try derived(architecture, params: params)
    }

    /// One group per hidden layer of a chain of linear layers: rows of weight and bias of layer l and the
    /// columns of the weight of layer l + 1.
    public static func inferMLP(_ architecture: Architecture, params: ParameterSet) throws -> PermutationSpec {
        let nodes = architecture.nodes
        for node in nodes {
            if node.op is Add {
                throw NetworkError("permutation spec: the network has a residual 'add' node ('\(node.name)'), so its permutations cannot be inferred; declare them under \"permutations\" in the architecture file (--arch)")
            }
        }
        for (i, node) in nodes.enumerated() where node.inputs != [i - 1] {
            throw NetworkError("permutation spec: node '\(node.name)' does not take the node before it as input, so the network is not a plain chain; declare its permutations in the architecture file (--arch)")
        }
        let linears = architecture.linearNodes
        var groups: [Group] = []
        for (k, li) in linears.enumerated().dropLast() {
            guard let linear = nodes[li].op as? Linear, let next = nodes[linears[k + 1]].op as? Linear else { continue }
            let (w, b, wNext) = (linear.weight, linear.bias, next.weight)
            guard let weight = params[w], weight.rank == 2 else {
                throw NetworkError("permutation spec: tensor '\(w)' is missing or not [out, in]")
            }
            var axes = [Axis(param: w, axis: 0)]
            if let b { axes.append(Axis(param: b, axis: 0)) }
            axes.append(Axis(param: wNext, axis: 1))
            // The unit outputs are read after the activations between this layer and the next.
            var carrier = li
            while carrier + 1 < linears[k + 1], nodes[carrier + 1].op is ActivationOp { carrier += 1 }
            let prefix = w.hasSuffix(".weight") ? String(w.dropLast(".weight".count)) : nodes[li].name
            groups.append(Group(name: "P_\(prefix)", size: weight.shape[0], axes: axes, node: nodes[carrier].name))
        }
        let spec = PermutationSpec(groups: groups)
        try spec.validate(params)
        return spec
    }

    /// The permutations declared in the architecture file, with sizes read from the parameters.
    public static func declared(_ architecture: Architecture, params: ParameterSet) throws -> PermutationSpec {
        var groups: [Group] = []
        for declaration in architecture.permutations {
            guard let first = declaration.axes.first else {
                throw NetworkError("permutation spec: permutation '\(declaration.name)' lists no axes")
            }
            guard let t = params[first.param] else {
                throw NetworkError("permutation spec: permutation '\(declaration.name)' names tensor '\(first.param)', which the model does not have")
            }
            guard first.axis >= 0 && first.axis < t.rank else {
                throw NetworkError("permutation spec: permutation '\(declaration.name)' names axis \(first.axis) of '\(first.param)', which has shape \(t.shape)")
            }
            // The node carrying the units: a linear node whose weight rows are in the group, then any
            // activations right after it.
            var node: String?
            let nodes = architecture.nodes
            for (i, n) in nodes.enumerated() {
                guard let w = (n.op as? Linear)?.weight, declaration.axes.contains(Axis(param: w, axis: 0)) else { continue }
                var carrier = i
                while carrier + 1 < nodes.count, nodes[carrier + 1].op is ActivationOp,
                      nodes[carrier + 1].inputs == [carrier] { carrier += 1 }
                node = nodes[carrier].name
                break
            }
            guard first.block >= 1, t.shape[first.axis] % first.block == 0 else {
                throw NetworkError("permutation spec: permutation '\(declaration.name)' has block \(first.block) on axis \(first.axis) of '\(first.param)' (shape \(t.shape)), which does not divide it")
            }
            groups.append(Group(name: declaration.name, size: t.shape[first.axis] / first.block, axes: declaration.axes, node: node))
        }
        let spec = PermutationSpec(groups: groups)
        try spec.validate(params)
        return spec
    }

    /// Checks every named tensor exists, every axis has its group's size, and no axis is in two groups.
    public func validate(_ params: ParameterSet) throws {
        var seen: [String: String] = [:]
        var names = Set<String>()
        for g in groups {
            guard names.insert(g.name).inserted else { throw NetworkError("permutation spec: the name '\(g.name)' is used twice") }
            for a in g.axes {
                guard let t = params[a.param] else {
                    throw NetworkError("permutation spec: permutation '\(g.name)' names tensor '\(a.param)', which the model does not have")
                }
                guard a.axis >= 0 && a.axis < t.rank else {
                    throw NetworkError("permutation spec: permutation '\(g.name)' names axis \(a.axis) of '\(a.param)', which has shape \(t.shape)")
                }
                guard a.block >= 1, t.shape[a.axis] == g.size * a.block else {
                    let what = a.block == 1 ? "" : " (\(a.block) entries per unit)"
                    throw NetworkError("permutation spec: permutation '\(g.name)' has \(g.size) units but axis \(a.axis) of '\(a.param)' (shape \(t.shape)) has \(t.shape[a.axis])\(what)")
                }
                if let other = seen["\(a.axis):\(a.param)"] {
                    throw NetworkError("permutation spec: axis \(a.axis) of '\(a.param)' is in both '\(other)' and '\(g.name)'")
                }
                seen["\(a.axis):\(a.param)"] = g.name
            }
        }
    }

    /// For each parameter, the groups acting on it: (axis, group index, entries per unit).
    public var axesByParameter: [String: [(axis: Int, group: Int, block: Int)]] {
        var out: [String: [(axis: Int, group: Int, block: Int)]] = [:]
        for (gi, g) in groups.enumerated() {
            for a in g.axes { out[a.param, default: []].append((a.axis, gi, a.block)) }
        }
        return out
    }

    /// Identity permutations for every group.
    public var identity: [[Int]] { groups.map { Array(0..<$0.size) } }

    /// Applies one permutation per group (in `groups` order) to a parameter set; untouched tensors are kept.
    public func apply(_ permutations: [[Int]], to params: ParameterSet) -> ParameterSet {
        precondition(permutations.count == groups.count, "\(permutations.count) permutations for \(groups.count) groups")
        for (g, p) in zip(groups, permutations) {
            precondition(p.count == g.size && Set(p).count == g.size && p.allSatisfy { $0 >= 0 && $0 < g.size },
                         "permutation for '\(g.name)' is not a permutation of 0..<\(g.size)")
        }
        let byParam = axesByParameter
        let out = params.mapTensors { name, tensor in
            var t = tensor
            for (axis, gi, block) in byParam[name] ?? [] {
                t = PermutationSpec.gather(t, axis: axis, permutation: permutations[gi], block: block)
            }
            return t
        }
        return hasAttentionHeads ? TransformerPermutations.applyHeads(self, permutations, to: out) : out
    }

    /// Applies the permutations to one tensor on every axis except `skipAxis`.
    func applied(_ permutations: [[Int]], to tensor: Tensor, name: String, skipAxis: Int? = nil,
                 byParam: [String: [(axis: Int, group: Int, block: Int)]]) -> Tensor {
        var t = tensor
        for (axis, gi, block) in byParam[name] ?? [] where axis != skipAxis {
            t = PermutationSpec.gather(t, axis: axis, permutation: permutations[gi], block: block)
        }
        return t
    }

    /// `out[..., k, ...] = t[..., perm[k], ...]` along `axis`; with `block` b, entries k*b ..< (k+1)*b move
    /// together as unit k.
    public static func gather(_ t: Tensor, axis: Int, permutation perm: [Int], block: Int = 1) -> Tensor {
        let shape = t.shape
        let outer = shape[..<axis].reduce(1, *), n = shape[axis] / block, inner = shape[(axis + 1)...].reduce(1, *) * block
        precondition(perm.count == n && n * block == shape[axis])
        return Tensor(shape: shape) { out in
            t.withUnsafeBufferPointer { src in
                for o in 0..<outer {
                    for k in 0..<n {
                        (out.baseAddress! + (o * n + k) * inner)
                            .update(from: src.baseAddress! + (o * n + perm[k]) * inner, count: inner)
                    }
                }
            }
        }
    }

    /// The tensor with `axis` moved first, as a matrix [shape[axis], everything else].
    static func unfold(_ t: Tensor, axis: Int) -> Tensor {
        let shape = t.shape
        let outer = shape[..<axis].reduce(1, *), n = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
        if outer == 1 { return t.reshaped([n, inner]) }
        if inner == 1 { return t.reshaped([outer, n]).transposed() }
        return Tensor(shape: [n, outer * inner]) { out in
            t.withUnsafeBufferPointer { src in
                for o in 0..<outer {
                    for k in 0..<n {
                        (out.baseAddress! + k * outer * inner + o * inner)
                            .update(from: src.baseAddress! + (o * n + k) * inner, count: inner)
                    }
                }
            }
        }
    }

    /// The inverse of a permutation.
    public static func inverse(_ p: [Int]) -> [Int] {
        var q = [Int](repeating: 0, count: p.count)
        for (k, j) in p.enumerated() { q[j] = k }
        return q
    }
}
