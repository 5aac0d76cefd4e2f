import BasinNet
import BasinTensor

extension PermutationSpec {
    /// The permutation groups of any graph of supported ops, derived from each op's channel flow
    /// (`Op.channelFlow` and the channel sets its parameter axes carry):
    ///
    /// - a conv or linear output axis opens a channel set; the op's weight rows and bias are in it;
    /// - ops that carry channels (BatchNorm and its running statistics, pooling, activations, dropout) pass it on;
    /// - the next conv or linear input axis closes it (its weight columns are in it);
    /// - a residual `add` merges the sets of its inputs (union-find), so a ResNet stage shares one permutation;
    /// - flatten spreads each channel over the positions after it (a following linear layer's columns move in
    ///   blocks of H*W); global pooling keeps the channels;
    /// - a set that reaches the network input (image channels) or output (classes), an op that mixes positions
    ///   (a general reshape), an op reading the set on another axis or with another granularity is never
    ///   permuted.
    ///
    /// Groups are ordered by their first parameter axis in node order and named after it
    /// (`P_features.0` for `features.0.weight`). Each group's `node` is the last activation (else the last node)
    /// whose output carries the set unit by unit, for activation matching.
    public static func derived(_ architecture: Architecture, params: ParameterSet) throws -> PermutationSpec {
        var sets = ChannelSets()
        let nodes = architecture.nodes
        let shapes = try architecture.inferShapes(shapeOf: { params[$0]?.shape })
        let input = architecture.inputShape ?? architecture.resolvedInputShape(shapeOf: { params[$0]?.shape })
        /// Where each node's output carries a set: the per-sample axis, the set, entries per unit.
        var carried = [ChannelSets.Carried?](repeating: nil, count: nodes.count)
        /// Each parameter axis in a set: (set, entries per unit), in the order first met.
        var axisSet: [String: (set: Int, block: Int)] = [:]
        var axisOrder: [(param: String, axis: Int)] = []

        func bindAxis(_ param: String, _ axis: Int, _ set: Int, _ block: Int) {
            let key = "\(axis):\(param)"
            if let existing = axisSet[key] {
                // A tensor bound by two nodes (tied weights): both uses must move it alike.
                if existing.block == block { sets.union(existing.set, set) } else { sets.fix(existing.set); sets.fix(set) }
            } else {
                axisSet[key] = (set, block)
                axisOrder.append((param, axis))
            }
        }

        for (i, node) in nodes.enumerated() {
            let inShapes = node.inputs.map { $0 < 0 ? input : shapes[$0] }
            let incoming = node.inputs.map { $0 < 0 ? nil : carried[$0] }
            switch node.op.channelFlow(inShapes) {
            case .opaque:
                for c in incoming { if let c { sets.fix(c.set) } }
            case .elementwise:
                let present = incoming.compactMap { $0 }
                guard let first = present.first else { break }
                let agree = present.count == incoming.count && present.allSatisfy { $0.axis == first.axis && $0.block == first.block }
                for c in present.dropFirst() { sets.union(first.set, c.set) }
                if agree {
                    carried[i] = first
                } else {
                    // An input of unknown channels (the network input) or another layout: nothing can move.
                    sets.fix(first.set)
                }
            case let .axes(inputRefs, outputRef):
                /// Per local label: the set and the entries per unit of the op's own ref (to scale blocks).
                var labels: [String: (set: Int, block: Int, refBlock: Int)] = [:]
                for (k, ref) in inputRefs.enumerated() where k < incoming.count {
                    guard let ref else {
                        if let c = incoming[k] { sets.fix(c.set) }
                        continue
                    }
                    let label = ref.channel.label
                    if let c = incoming[k], c.axis == ref.axis, ref.channel.block == 1 || ref.channel.block == c.block {
                        if let existing = labels[label] {
                            if existing.block == c.block { sets.union(existing.set, c.set) } else { sets.fix(existing.set); sets.fix(c.set) }
                        } else {
                            labels[label] = (c.set, c.block, ref.channel.block)
                        }
                    } else {
                        // Unknown channels (image channels of the input) or read another way: fixed.
                        if let c = incoming[k] { sets.fix(c.set) }
                        if let existing = labels[label] { sets.fix(existing.set) } else { labels[label] = (sets.make(fixed: true), 1, 1) }
                    }
                }
                if let outputRef {
                    let label = outputRef.channel.label
                    if labels[label] == nil { labels[label] = (sets.make(fixed: false), 1, 1) }
                    let l = labels[label]!
                    carried[i] = ChannelSets.Carried(axis: outputRef.axis, set: l.set, block: l.block / max(1, l.refBlock) * outputRef.channel.block)
                }
                for slot in node.op.parameters {
                    guard let shape = params[slot.name]?.shape else { continue }
                    for (d, ref) in slot.channels.enumerated() where d < shape.count {
                        guard let ref else { continue }
                        if labels[ref.label] == nil { labels[ref.label] = (sets.make(fixed: false), 1, 1) }
                        let l = labels[ref.label]!
                        bindAxis(slot.name, d, l.set, l.block / max(1, l.refBlock) * ref.block)
                    }
                }
            }
        }
        // Classes are never permuted.
        if let out = carried[architecture.output] { sets.fix(out.set) }

        // Gather the movable sets, in the order of their first parameter axis.
        var groupOfSet: [Int: Int] = [:]
        var groups: [Group] = []
        var used = Set<String>()
        for (param, axis) in axisOrder {
            let (set, block) = axisSet["\(axis):\(param)"]!
            let root = sets.find(set)
            guard !sets.isFixed(root), let shape = params[param]?.shape else { continue }
            if let gi = groupOfSet[root] {
                groups[gi].axes.append(Axis(param: param, axis: axis, block: block))
            } else {
                var name = "P_" + (param.hasSuffix(".weight") ? String(param.dropLast(".weight".count)) : param)
                if used.contains(name) {
                    var k = 2
                    while used.contains("\(name)_\(k)") { k += 1 }
                    name = "\(name)_\(k)"
                }
                used.insert(name)
                groupOfSet[root] = groups.count
                groups.append(Group(name: name, size: shape[axis] / max(1, block), axes: [Axis(param: param, axis: axis, block: block)]))
            }
        }
        // The node whose output activations stand for each group's units (activation matching).
        var last = [Int?](repeating: nil, count: groups.count), lastActivation = last
        for (i, c) in carried.enumerated() {
            guard let c, c.block == 1, let gi = groupOfSet[sets.find(c.set)] else { continue }
            last[gi] = i
            if nodes[i].op is ActivationOp { lastActivation[gi] = i }
        }
        for gi in groups.indices {
            if let i = lastActivation[gi] ?? last[gi] {
                groups[gi].node = nodes[i].name
                groups[gi].nodeAxis = carried[i]!.axis
            }
        }
        let spec = PermutationSpec(groups: groups)
        try spec.validate(params)
        return spec
    }
}

/// Union-find over channel sets, each possibly fixed (never permuted).
struct ChannelSets {
    struct Carried {
        var axis: Int
        var set: Int
        var block: Int
    }

    private var parent: [Int] = []
    private var fixed: [Bool] = []

    mutating func make(fixed isFixed: Bool) -> Int {
        parent.append(parent.count)
        fixed.append(isFixed)
        return parent.count - 1
    }

    mutating func find(_ x: Int) -> Int {
        var root = x
        while parent[root] != root { root = parent[root] }
        var y = x
        while parent[y] != root { (y, parent[y]) = (parent[y], root) }
        return root
    }

    mutating func union(_ a: Int, _ b: Int) {
        let (ra, rb) = (find(a), find(b))
        guard ra != rb else { return }
        parent[rb] = ra
        fixed[ra] = fixed[ra] || fixed[rb]
    }

    mutating func fix(_ x: Int) { fixed[find(x)] = true }

    mutating func isFixed(_ x: Int) -> Bool { fixed[find(x)] }
}
