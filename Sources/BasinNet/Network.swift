import BasinIO
import BasinTensor
import Foundation

/// An output given to the interpreter instead of computed by the node's op.
public enum SuppliedOutput: Sendable {
    case tensor(Tensor)
    /// sum_k c_k parts[i_k] for `terms` (i_k, c_k): the node's output for a combination of parameter sets,
    /// from its outputs for each set (valid for ops linear in their parameters). Combined in one pass with
    /// any fused element-wise op after the node.
    case combination(parts: [Tensor], terms: [(Int, Float)])

    func materialize(epilogue: (any ElementwiseOp)?) -> Tensor {
        switch self {
        case let .tensor(t):
            guard let epilogue else { return t }
            var y = t
            y.withUnsafeMutableBufferPointer { epilogue.apply($0) }
            return y
        case let .combination(parts, terms):
            let shape = parts[terms[0].0].shape
            let count = parts[terms[0].0].count
            // Chunks small enough to stay in cache between the terms and the epilogue.
            let chunk = 2048
            return Tensor(shape: shape) { out in
                let o = out.baseAddress!
                var start = 0
                while start < count {
                    let len = min(chunk, count - start)
                    let oc = o + start
                    let (i0, c0) = terms[0]
                    parts[i0].withUnsafeBufferPointer { z in
                        let z0 = z.baseAddress! + start
                        for j in 0..<len { oc[j] = c0 * z0[j] }
                    }
                    for (i, c) in terms.dropFirst() {
                        parts[i].withUnsafeBufferPointer { z in
                            let zi = z.baseAddress! + start
                            for j in 0..<len { oc[j] += c * zi[j] }
                        }
                    }
                    epilogue?.apply(UnsafeMutableBufferPointer(start: oc, count: len))
                    start += len
                }
            }
        }
    }
}

/// The graph interpreter: runs any architecture of registered ops for evaluation (intermediates freed
/// after their last reader, element-wise ops applied in place or fused into the op before them), for
/// training (every output kept, then backward), or exposing chosen nodes' outputs (activation matching).
/// Path evaluation's speed-up lives here too: nodes linear in their parameters that read only the input
/// are computed once per control point (`outputsPerParameterSet`) and supplied as combinations.
public struct Network: Sendable {
    public let architecture: Architecture
    private let readers: [[Int]]

    public init(_ architecture: Architecture) {
        self.architecture = architecture
        readers = architecture.readers
    }

    /// What a forward run computes and keeps.
    public struct RunOptions: Sendable {
        public var mode: ForwardMode
        /// Keep every node's output and what backward needs (training).
        public var keepAll: Bool
        /// Nodes whose outputs must survive the run besides the output (e.g. for activation statistics).
        public var expose: Set<Int>
        /// Nodes to compute (with their ancestors); default: the output.
        public var targets: Set<Int>?
        /// Outputs given instead of computed; their ancestors are not computed unless another node needs them.
        public var supplied: [Int: SuppliedOutput]
        /// Path evaluation's arithmetic: products first, then bias and a fused activation in one pass.
        public var fused: Bool
        /// Train mode: running statistics as the plain average over batches (BatchNorm reset).
        public var cumulativeStatistics: Bool
        /// Seed for random ops in train mode (dropout); each node gets its own stream from it.
        public var seed: UInt64
        /// Train mode for these nodes only (the rest run in eval mode); nil: `mode` for every node. REPAIR
        /// recomputes its inserted BatchNorms' statistics while the network's own keep their running statistics.
        public var trainNodes: Set<Int>?

        public init(mode: ForwardMode = .eval, keepAll: Bool = false, expose: Set<Int> = [], targets: Set<Int>? = nil,
                    supplied: [Int: SuppliedOutput] = [:], fused: Bool = false, cumulativeStatistics: Bool = false, seed: UInt64 = 0,
                    trainNodes: Set<Int>? = nil) {
            self.mode = mode
            self.keepAll = keepAll
            self.expose = expose
            self.targets = targets
            self.supplied = supplied
            self.fused = fused
            self.cumulativeStatistics = cumulativeStatistics
            self.seed = seed
            self.trainNodes = trainNodes
        }
    }

    /// The result of a forward run.
    public struct Trace: Sendable {
        /// The network input as the nodes saw it (reshaped to the declared input shape).
        public let input: Tensor
        /// Each node's output (nil: not computed, or freed).
        public var outputs: [Tensor?]
        /// What each op saved for backward.
        var saved: [(any Sendable)?]
        /// Buffers the run updated (train mode), in the order of the updates.
        public var bufferUpdates: [(String, Tensor)]
        public let mode: ForwardMode
    }

    // MARK: Forward

    /// Data whose samples hold as many values as the declared input shape is reshaped to it.
    public func shapedInput(_ x: Tensor) -> Tensor {
        guard let s = Shapes.known(architecture.inputShape), x.rank >= 1 else { return x }
        guard Array(x.shape.dropFirst()) != s, x.count == x.rows * s.reduce(1, *) else { return x }
        return x.reshaped([x.rows] + s)
    }

    public func run(_ x: Tensor, _ params: ParameterSet, _ options: RunOptions = RunOptions()) -> Trace {
        let nodes = architecture.nodes
        let n = nodes.count
        let input = shapedInput(x)
        let keepers = (options.targets ?? [architecture.output]).union(options.expose)
        // The nodes to compute: ancestors of what is wanted, stopping at supplied outputs.
        var needed = [Bool](repeating: options.keepAll, count: n)
        if !options.keepAll {
            var stack = Array(keepers)
            while let i = stack.popLast() {
                guard !needed[i] else { continue }
                needed[i] = true
                if options.supplied[i] == nil { stack += nodes[i].inputs.filter { $0 >= 0 } }
            }
        }
        // Each output's last reader, and how many nodes read it.
        var last = [Int](repeating: -1, count: n)
        var readerCount = [Int](repeating: 0, count: n)
        for i in 0..<n where needed[i] && options.supplied[i] == nil {
            for j in Set(nodes[i].inputs) where j >= 0 {
                last[j] = max(last[j], i)
                readerCount[j] += 1
            }
        }
        for k in keepers { last[k] = Int.max }
        let freeing = !options.keepAll
        // An element-wise node that is the only reader of its input runs as that node's epilogue.
        var epilogueOf = [Int?](repeating: nil, count: n)
        var isEpilogue = [Bool](repeating: false, count: n)
        if freeing {
            for j in 0..<n where needed[j] && options.supplied[j] == nil && nodes[j].op is any ElementwiseOp {
                let i = nodes[j].inputs[0]
                guard i >= 0, readerCount[i] == 1, last[i] == j, !isEpilogue[i], epilogueOf[i] == nil else { continue }
                epilogueOf[i] = j
                isEpilogue[j] = true
            }
        }
        var outputs = [Tensor?](repeating: nil, count: n)
        var saved = [(any Sendable)?](repeating: nil, count: n)
        var updates: [(String, Tensor)] = []
        for i in 0..<n where needed[i] {
            let node = nodes[i]
            if isEpilogue[i] {
                // Already applied by the node before it.
                let j = node.inputs[0]
                outputs[i] = outputs[j]
                outputs[j] = nil
                continue
            }
            let epilogue = epilogueOf[i].map { nodes[$0].op as! any ElementwiseOp }
            if let supplied = options.supplied[i] {
                outputs[i] = supplied.materialize(epilogue: epilogue)
                continue
            }
            var args: [Tensor] = []
            args.reserveCapacity(node.inputs.count)
            for j in node.inputs {
                if j < 0 {
                    args.append(input)
                } else if freeing && last[j] == i && readerCount[j] == 1 && node.inputs.count(where: { $0 == j }) == 1 {
                    // Its last reader: hand the op the only reference, so it can work in place.
                    args.append(outputs[j]!)
                    outputs[j] = nil
                } else {
                    args.append(outputs[j]!)
                }
            }
            var inputs = OpInputs(args)
            let mode = options.trainNodes.map { $0.contains(i) ? ForwardMode.train : .eval } ?? options.mode
            var context = ForwardContext(mode: mode, params: params, cumulativeStatistics: options.cumulativeStatistics,
                                         fused: options.fused, epilogue: epilogue, recordForBackward: options.keepAll,
                                         seed: options.seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
            var y = node.op.forward(&inputs, &context)
            if let e = context.epilogue { y.withUnsafeMutableBufferPointer { e.apply($0) } }
            outputs[i] = y
            saved[i] = context.saved
            updates += context.bufferUpdates
            if freeing {
                for j in node.inputs where j >= 0 && last[j] == i { outputs[j] = nil }
            }
        }
        return Trace(input: input, outputs: outputs, saved: saved, bufferUpdates: updates, mode: options.mode)
    }

    /// Every node's output for one batch (eval mode). `keepAll: false` frees intermediate outputs once
    /// consumed; `overrides` supplies the outputs of some nodes (they are not computed).
    public func forwardTrace(_ x: Tensor, _ params: ParameterSet, overrides: [Int: Tensor] = [:], keepAll: Bool = true) -> [Tensor?] {
        run(x, params, RunOptions(keepAll: keepAll, supplied: overrides.mapValues { .tensor($0) })).outputs
    }

    /// The logits for a batch (eval mode).
    public func logits(_ x: Tensor, _ params: ParameterSet, overrides: [Int: Tensor] = [:]) -> Tensor {
        run(x, params, RunOptions(supplied: overrides.mapValues { .tensor($0) })).outputs[architecture.output]!
    }

    /// x [N, in] W^T + b with the bias broadcast into the output first (see `Linear.apply`).
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        Linear.apply(x, weight: weight, bias: bias)
    }

    /// Applies an activation in place.
    public static func activate(_ a: Activation, _ y: inout Tensor) {
        y.withUnsafeMutableBufferPointer { ActivationOp(a).apply($0) }
    }

    // MARK: Combinations of parameter sets (path evaluation)

    /// Nodes linear in their parameters that read the network input directly or through layout-only ops
    /// (a flatten): for a combination of parameter sets their output is the same combination of their
    /// outputs for each set, which can be computed once per set.
    public var combinableNodes: [Int] {
        let nodes = architecture.nodes
        func layoutOfInput(_ j: Int) -> Bool {
            if j == Architecture.inputIndex { return true }
            guard j >= 0, nodes[j].op.isLayoutOnly, nodes[j].op.parameters.isEmpty, nodes[j].inputs.count == 1 else { return false }
            return layoutOfInput(nodes[j].inputs[0])
        }
        return nodes.indices.filter { i in
            nodes[i].op.isLinearInParameters && nodes[i].inputs.count == 1 && layoutOfInput(nodes[i].inputs[0])
        }
    }

    /// The outputs of `nodes` for each parameter set, on one batch: [node: [output per set]].
    public func outputsPerParameterSet(nodes: [Int], sets: [ParameterSet], input x: Tensor) -> [Int: [Tensor]] {
        var out: [Int: [Tensor]] = [:]
        for set in sets {
            let trace = run(x, set, RunOptions(targets: Set(nodes)))
            for i in nodes { out[i, default: []].append(trace.outputs[i]!) }
        }
        return out
    }

    /// Tensors that no node reads except those in `nodes` (not needed once their outputs are supplied).
    public func parameters(readOnlyBy nodes: [Int]) -> Set<String> {
        let chosen = Set(nodes)
        let elsewhere = Set(architecture.nodes.indices.filter { !chosen.contains($0) }.flatMap { architecture.nodes[$0].op.parameterNames })
        return Set(nodes.flatMap { architecture.nodes[$0].op.parameterNames }).subtracting(elsewhere)
    }

    /// Whether a run with `supplied` outputs reads the network input at all.
    public func readsInput(supplied: Set<Int>) -> Bool {
        let nodes = architecture.nodes
        var needed = Set<Int>()
        var stack = [architecture.output]
        while let i = stack.popLast() {
            guard needed.insert(i).inserted, !supplied.contains(i) else { continue }
            if nodes[i].inputs.contains(Architecture.inputIndex) { return true }
            stack += nodes[i].inputs.filter { $0 >= 0 }
        }
        return false
    }

    // MARK: Backward

    /// One training step's numbers: the loss, the gradients and the buffers the train-mode forward updated.
    public struct Step: Sendable {
        public var metrics: Metrics
        public var gradients: ParameterSet
        public var bufferUpdates: [(String, Tensor)]
    }

    /// Mean cross-entropy over the batch's scored positions, accuracy, the gradient with respect to every
    /// parameter, and (train mode) the updated buffers.
    public func step(_ params: ParameterSet, x: Tensor, y: ArraySlice<Int32>, mode: ForwardMode = .train,
                     cumulativeStatistics: Bool = false, seed: UInt64 = 0) -> Step {
        let trace = run(x, params, RunOptions(mode: mode, keepAll: true, cumulativeStatistics: cumulativeStatistics, seed: seed))
        let ce = Network.crossEntropy(trace.outputs[architecture.output]!, labels: y, wantGradient: true)
        let grads = backward(trace, params: params, outputGradient: ce.gradient!)
        let n = max(1, ce.count)
        return Step(metrics: Metrics(loss: ce.lossSum / Double(n), accuracy: Double(ce.correct) / Double(n), samples: x.rows),
                    gradients: grads, bufferUpdates: trace.bufferUpdates)
    }

    /// Mean cross-entropy over the batch, its accuracy, and the gradient with respect to every parameter
    /// (train mode: BatchNorm normalises with the batch's statistics).
    public func lossAndGradients(_ params: ParameterSet, x: Tensor, y: ArraySlice<Int32>,
                                 mode: ForwardMode = .train) -> (metrics: Metrics, gradients: ParameterSet) {
        let s = step(params, x: x, y: y, mode: mode)
        return (s.metrics, s.gradients)
    }

    /// Back-propagates `outputGradient` (d loss / d logits) through a trace kept whole (`keepAll`); returns
    /// d loss / d parameter for every parameter the graph uses (parameters shared by several nodes accumulate).
    public func backward(_ trace: Trace, params: ParameterSet, outputGradient: Tensor) -> ParameterSet {
        let nodes = architecture.nodes
        var grad = [Tensor?](repeating: nil, count: nodes.count)
        grad[architecture.output] = outputGradient
        var pgrads: [String: Tensor] = [:]
        for i in stride(from: nodes.count - 1, through: 0, by: -1) {
            guard let dy = grad[i] else { continue }
            grad[i] = nil
            let node = nodes[i]
            var context = BackwardContext(inputs: node.inputs.map { $0 < 0 ? trace.input : trace.outputs[$0]! },
                                          output: trace.outputs[i]!, outputGradient: dy, saved: trace.saved[i], params: params,
                                          mode: trace.mode, wantsInputGradient: node.inputs.map { $0 >= 0 })
            node.op.backward(&context)
            for (name, g) in context.parameterGradients {
                if pgrads[name] == nil { pgrads[name] = g } else { pgrads[name]!.addScaled(g, 1) }
            }
            for (k, j) in node.inputs.enumerated() where j >= 0 {
                guard let g = context.inputGradients[k] else { continue }
                if grad[j] == nil { grad[j] = g } else { grad[j]!.addScaled(g, 1) }
            }
        }
        var out = ParameterSet()
        for n in params.names { if let g = pgrads[n] { out[n] = g } }
        return out
    }
}
