import BasinIO
import Foundation

/// What an architecture asks of memory, worked out before any tensor is allocated (docs/reliability.md): each
/// node's parameter shapes (from the model's tensors where they exist, else from `Op.initialParameterShapes`)
/// and its output values per sample (one batch row), every count with overflow-checked arithmetic. An
/// architecture file whose attributes are each in range but whose product is enormous (a conv2d with 10^8
/// output channels, a linear layer 10^6 x 10^6, an input_shape of 10^8 x 10^8 x 10^8) is then refused by name
/// (`insufficientMemory`) instead of trapping in an allocation.
public struct ArchitecturePlan: Sendable {
    public struct ParameterShape: Sendable, Equatable {
        public var name: String
        public var shape: [Int]
        public var count: Int
    }

    public struct NodePlan: Sendable {
        public var name: String
        public var op: String
        /// Tensors this node binds first (a tensor shared by two nodes counts at the first).
        public var parameters: [ParameterShape]
        public var parameterCount: Int
        public var outputShape: SampleShape?
        /// Output values per sample (nil: not known until data arrives).
        public var outputCount: Int?
    }

    /// The architecture file or model the plan is for (named in errors).
    public var source: String
    public var nodes: [NodePlan]
    /// Values of every bound tensor, each once.
    public var parameterCount: Int
    /// Values of every node's output for one sample (those known).
    public var activationsPerRow: Int

    /// Bytes to hold the parameters once (Float32).
    public var parameterBytes: Int { MemoryBudget.product(parameterCount, 4) }

    /// Bytes a run needs for a batch of `batch` rows, in Float32: evaluation holds the parameters and the
    /// batch's activations; training also gradients and two optimiser moments per parameter (AdamW; SGD with
    /// momentum needs one) and each activation's gradient and saved state.
    public func bytes(batch: Int, training: Bool) -> Int {
        let parameters = MemoryBudget.product(parameterCount, training ? 4 : 1)
        let activations = MemoryBudget.product(activationsPerRow, max(0, batch), training ? 3 : 1)
        return MemoryBudget.product(MemoryBudget.sum([parameters, activations]), 4)
    }

    /// The node with the most parameters and the node with the largest output per sample.
    var largestParameters: NodePlan? { nodes.max { $0.parameterCount < $1.parameterCount } }
    var largestOutput: NodePlan? { nodes.max { ($0.outputCount ?? 0) < ($1.outputCount ?? 0) } }

    /// Throws `insufficientMemory` naming the file, the node that asks most and the sizes when a batch of
    /// `batch` rows (0: the parameters alone) needs more than `available` bytes (default: the machine's
    /// physical memory; nothing is checked where that is unknown).
    public func requireMemory(batch: Int = 0, training: Bool = false, for what: String? = nil,
                              available: Int? = MemoryBudget.totalBytes) throws {
        guard let available else { return }
        let needed = bytes(batch: batch, training: training)
        guard needed > available else { return }
        let parameterShare = MemoryBudget.product(parameterCount, training ? 4 : 1)
        let activationShare = MemoryBudget.product(activationsPerRow, max(0, batch), training ? 3 : 1)
        var details: [String] = []
        var culprit: NodePlan?
        if let p = largestParameters, p.parameterCount > 0 {
            let t = p.parameters.max { $0.count < $1.count }!
            details.append("\(Self.values(parameterCount)) parameter values; the largest tensor is '\(t.name)' of node '\(p.name)' (\(p.op)), shape \(Shapes.describe(t.shape.map { $0 }))")
            culprit = p
        }
        if batch > 0, let o = largestOutput, let count = o.outputCount, count > 0 {
            details.append("\(Self.values(activationsPerRow)) activation values per sample × a batch of \(batch); the largest output is node '\(o.name)' (\(o.op)), \(Shapes.describe(o.outputShape)) per sample")
            if activationShare > parameterShare { culprit = o }
        }
        let task = what.map { " to \($0)" } ?? ""
        throw NetworkError(.insufficientMemory, file: source, node: culprit?.name,
                           "needs about \(MemoryBudget.describe(needed)) of memory\(task) (\(details.joined(separator: "; "))) but this machine has \(MemoryBudget.describe(available)); make the network or the batch smaller")
    }

    static func values(_ n: Int) -> String {
        n < 1_000_000 ? "\(n)" : String(format: "%.3g", Double(n)).replacingOccurrences(of: "e+", with: "e")
    }
}

extension Architecture {
    /// The memory plan for per-sample input `inputShape` (default: the declared one), taking the shapes of
    /// tensors that exist from `shapeOf` and those that do not from each op's initialisation. Checks every
    /// shape as `inferShapes` does (errors name the node and `source`); a count beyond Int is
    /// `insufficientMemory`. Allocates nothing.
    public func plan(inputShape: SampleShape? = nil, shapeOf existing: (String) -> [Int]? = { _ in nil },
                     source: String = "architecture") throws -> ArchitecturePlan {
        try checkGraph(source: source)
        let input = inputShape ?? self.inputShape ?? resolvedInputShape(shapeOf: existing)
        var planned: [String: [Int]] = [:]
        func shape(_ name: String) -> [Int]? { existing(name) ?? planned[name] }
        var shapes = [SampleShape?](repeating: nil, count: nodes.count)
        var counted = Set<String>()
        var result = ArchitecturePlan(source: source, nodes: [], parameterCount: 0, activationsPerRow: 0)
        for (i, node) in nodes.enumerated() {
            let ins = node.inputs.map { $0 < 0 ? input : shapes[$0] }
            var nodePlan = ArchitecturePlan.NodePlan(name: node.name, op: node.op.typeName, parameters: [], parameterCount: 0,
                                                     outputShape: nil, outputCount: nil)
            do {
                if node.op.parameterNames.contains(where: { shape($0) == nil }) {
                    for (name, s) in try node.op.initialParameterShapes(ins) where shape(name) == nil { planned[name] = s }
                }
                for name in node.op.parameterNames where !counted.contains(name) {
                    guard let s = shape(name) else { continue }
                    counted.insert(name)
                    let count = try Shapes.checkedCount(s, what: "tensor '\(name)'")
                    nodePlan.parameters.append(.init(name: name, shape: s, count: count))
                    nodePlan.parameterCount = try Self.add(nodePlan.parameterCount, count, "the parameters of node '\(node.name)'")
                }
                shapes[i] = try node.op.outputShape(ins, shapeOf: shape)
                if let out = shapes[i] {
                    nodePlan.outputShape = out
                    nodePlan.outputCount = try Shapes.checkedCount(out, what: "the output")
                }
                result.parameterCount = try Self.add(result.parameterCount, nodePlan.parameterCount, "the parameters")
                result.activationsPerRow = try Self.add(result.activationsPerRow, nodePlan.outputCount ?? 0, "the activations per sample")
            } catch let e as NetworkError {
                throw e.with(file: source, node: node.name)
            }
            result.nodes.append(nodePlan)
        }
        return result
    }

    static func add(_ a: Int, _ b: Int, _ what: String) throws -> Int {
        let (s, overflow) = a.addingReportingOverflow(b)
        if overflow { throw NetworkError(.insufficientMemory, "\(what) hold more values than a 64-bit count (far beyond any machine's memory)") }
        return s
    }
}
