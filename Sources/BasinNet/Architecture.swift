import BasinIO
import BasinTensor
import Foundation

/// A node of the graph: an op applied to earlier nodes' outputs (index -1 is the network input).
public struct Node: Sendable, Equatable {
    public var name: String
    public var op: any Op
    public var inputs: [Int]

    public init<O: Op>(name: String, op: O, inputs: [Int]) {
        self.name = name
        self.op = op
        self.inputs = inputs
    }

    public init(name: String, anyOp: any Op, inputs: [Int]) {
        self.name = name
        self.op = anyOp
        self.inputs = inputs
    }

    public static func == (a: Node, b: Node) -> Bool {
        a.name == b.name && a.inputs == b.inputs && a.op.isEqual(to: b.op)
    }
}

/// An architecture: nodes in topological order over named parameters; the last node (or `output`) gives
/// the logits.
public struct Architecture: Sendable, Equatable {
    public static let inputIndex = -1

    public var nodes: [Node]
    public var output: Int
    /// The shape of one input sample, when declared (architecture file `input_shape`, an ONNX graph) or
    /// resolved when a model is loaded. Data whose rows hold the same number of values is reshaped to it
    /// ([N, 64] -> [N, 1, 8, 8]).
    public var inputShape: SampleShape?
    /// Declared permutation groups (from an architecture file), used by alignment.
    public var permutations: [PermutationDeclaration]

    public init(nodes: [Node], output: Int? = nil, inputShape: SampleShape? = nil, permutations: [PermutationDeclaration] = []) {
        self.nodes = nodes
        self.output = output ?? (nodes.count - 1)
        self.inputShape = inputShape
        self.permutations = permutations
    }

    /// Every tensor name the graph binds, node by node (trained parameters and buffers).
    public var parameterNames: [String] { nodes.flatMap(\.op.parameterNames) }

    /// Each bound tensor once, in node order.
    public var parameterSlots: [ParameterSlot] {
        var seen = Set<String>()
        return nodes.flatMap(\.op.parameters).filter { seen.insert($0.name).inserted }
    }

    /// Names of the trained parameters (what optimisers update), each once, in node order.
    public var trainedParameterNames: [String] { parameterSlots.filter { $0.kind == .trained }.map(\.name) }

    /// Names of the buffers (state a train-mode forward updates), each once, in node order.
    public var bufferNames: [String] { parameterSlots.filter { $0.kind == .buffer }.map(\.name) }

    /// Indices of the linear nodes, in order.
    public var linearNodes: [Int] { nodes.indices.filter { nodes[$0].op is Linear } }

    /// For each node, the nodes reading its output.
    public var readers: [[Int]] {
        var r = [[Int]](repeating: [], count: nodes.count)
        for (i, node) in nodes.enumerated() {
            for j in Set(node.inputs) where j >= 0 { r[j].append(i) }
        }
        return r
    }

    /// A chain of linear layers with `activation` between them (none after the last).
    public static func mlp(layers: [(weight: String, bias: String?)], activation: Activation) -> Architecture {
        var nodes: [Node] = []
        for (i, layer) in layers.enumerated() {
            nodes.append(Node(name: "linear\(i)", op: .linear(weight: layer.weight, bias: layer.bias), inputs: [nodes.count - 1]))
            if i + 1 < layers.count {
                nodes.append(Node(name: "\(activation.rawValue)\(i)", op: .activation(activation), inputs: [nodes.count - 1]))
            }
        }
        return Architecture(nodes: nodes)
    }

    // MARK: Shapes

    /// Checks the graph's wiring: every input an earlier node (or the network input), input counts as
    /// each op takes.
    public func checkGraph(source: String = "architecture") throws {
        guard !nodes.isEmpty else { throw NetworkError(.badGraph, file: source, "the architecture has no nodes") }
        for (i, node) in nodes.enumerated() {
            for j in node.inputs where j >= i || j < Architecture.inputIndex {
                throw NetworkError(.badGraph, file: source, node: node.name, "takes input \(j), which is not an earlier node")
            }
            guard node.inputs.count == node.op.inputCount else {
                throw NetworkError(.badGraph, file: source, node: node.name,
                                   "\(node.op.typeName) takes \(node.op.inputCount) input(s), got \(node.inputs.count)")
            }
        }
        guard output >= 0 && output < nodes.count else {
            throw NetworkError(.badGraph, file: source, "the output node \(output) is not a node")
        }
    }

    /// The input shape: declared, else implied by the first op that reads the input (through element-wise
    /// ops), e.g. [in] for a linear layer; nil when nothing says.
    public func resolvedInputShape(shapeOf: (String) -> [Int]?) -> SampleShape? {
        if let inputShape { return inputShape }
        let readers = self.readers
        var frontier = nodes.indices.filter { nodes[$0].inputs.contains(Architecture.inputIndex) }
        var seen = Set<Int>()
        while let i = frontier.first {
            frontier.removeFirst()
            guard seen.insert(i).inserted else { continue }
            if let hint = nodes[i].op.inputShapeHint(shapeOf: shapeOf) { return hint }
            if nodes[i].op is any ElementwiseOp, nodes[i].inputs.count == 1 { frontier += readers[i] }
        }
        return nil
    }

    /// Every node's per-sample output shape for per-sample input `input` (default: `resolvedInputShape`),
    /// checking every bound tensor's shape. Errors name the node, the tensor and `source`.
    public func inferShapes(shapeOf: (String) -> [Int]?, input: SampleShape? = nil, source: String = "model") throws -> [SampleShape?] {
        try checkGraph(source: source)
        let inputShape = input ?? resolvedInputShape(shapeOf: shapeOf)
        var shapes = [SampleShape?](repeating: nil, count: nodes.count)
        for (i, node) in nodes.enumerated() {
            let ins = node.inputs.map { $0 < 0 ? inputShape : shapes[$0] }
            do {
                shapes[i] = try node.op.outputShape(ins, shapeOf: shapeOf)
            } catch let e as NetworkError {
                throw e.with(file: source, node: node.name)
            }
        }
        return shapes
    }

    /// Checks the parameters exist with shapes that fit together, and returns the logits width (classes).
    @discardableResult
    public func validate(_ params: ParameterSet, inputShape: SampleShape? = nil, source: String = "model") throws -> Int {
        let shapes = try inferShapes(shapeOf: { params[$0]?.shape }, input: inputShape, source: source)
        guard let last = shapes[output]?.last, let width = last else {
            throw NetworkError(.badShape, file: source, node: nodes[output].name, "the output width (number of classes) cannot be determined")
        }
        return width
    }

    /// `validate` for an input of `inputFeatures` values per sample.
    @discardableResult
    public func validate(_ params: ParameterSet, inputFeatures: Int?, source: String = "model") throws -> Int {
        try validate(params, inputShape: inputFeatures.map { [$0] }, source: source)
    }

    /// Initial parameters and buffers for every node (PyTorch's default initialisation), drawn node by node
    /// in graph order, for inputs of `inputShape` (default: the declared one). The memory plan comes first:
    /// parameters that overflow a count or exceed the machine's memory are `insufficientMemory` naming
    /// `source` and the node, before anything is allocated.
    public func initialParameters(inputShape: SampleShape? = nil, generator: inout SeededGenerator,
                                  source: String = "architecture") throws -> ParameterSet {
        let input = inputShape ?? self.inputShape
        try plan(inputShape: input, source: source).requireMemory(for: "hold its parameters")
        var params = ParameterSet()
        var shapes = [SampleShape?](repeating: nil, count: nodes.count)
        for (i, node) in nodes.enumerated() {
            let ins = node.inputs.map { $0 < 0 ? input : shapes[$0] }
            do {
                for (name, t) in try node.op.initialParameters(ins, generator: &generator) where params[name] == nil { params[name] = t }
                shapes[i] = try node.op.outputShape(ins, shapeOf: { params[$0]?.shape })
            } catch let e as NetworkError {
                throw e.with(file: source, node: node.name)
            }
        }
        return params
    }

    // MARK: Inference from names

    /// Infers an MLP from a file holding a chain of `*.weight` [out, in] and `*.bias` [out] tensors,
    /// ordered by the numeric parts of their names (`layers.2` before `layers.10`). A file that is clearly
    /// not a plain chain (convolution weights, BatchNorm statistics, layers grouped in residual blocks) is
    /// an error asking for `--arch`, never a silently wrong network.
    public static func inferMLP(from source: any TensorSource, activation: Activation = .relu) throws -> Architecture {
        let file = source.displayPath
        func notChain(_ tensor: String, _ problem: String) -> NetworkError {
            NetworkError(.notAChain, file: file, tensor: tensor, problem + "; describe the network with --arch FILE")
        }
        var weights: [(prefix: String, name: String)] = []
        for name in source.names {
            let leaf = name.split(separator: ".").last.map(String.init) ?? name
            if ["running_mean", "running_var", "num_batches_tracked"].contains(leaf) {
                throw notChain(name, "is a BatchNorm statistic, so the file is not a plain chain of linear layers")
            }
            if name == "weight" || name.hasSuffix(".weight") {
                let rank = source.info(name)?.shape.count ?? 2
                if rank == 4 || rank == 3 {
                    throw notChain(name, "has shape \(source.info(name)!.shape), a convolution weight, so the file is not a plain chain of linear layers")
                }
                if rank == 1 {
                    throw notChain(name, "has shape \(source.info(name)!.shape), a normalisation layer's scale, so the file is not a plain chain of linear layers")
                }
                weights.append((String(name.dropLast("weight".count)), name))
            } else if !(name == "bias" || name.hasSuffix(".bias")) {
                throw notChain(name, "is neither a *.weight nor a *.bias, so the file is not a plain chain of linear layers")
            }
        }
        guard !weights.isEmpty else {
            throw NetworkError(.notAChain, file: file, "no *.weight tensors, so no linear layers to build a network from")
        }
        try checkNoBlocks(weights.map(\.name), file: file)
        weights.sort { NaturalOrder.less($0.prefix, $1.prefix) }
        var layers: [(weight: String, bias: String?)] = []
        var previousOut: Int?
        var used = Set<String>()
        for (prefix, name) in weights {
            let info = source.info(name)!
            guard info.shape.count == 2 else {
                throw notChain(name, "has shape \(info.shape); a linear weight must be [out, in]")
            }
            if let previousOut, info.shape[1] != previousOut {
                throw NetworkError(.notAChain, file: file, tensor: name,
                                   "has shape \(info.shape): it takes \(info.shape[1]) inputs but the layer before gives \(previousOut), so the layers do not chain")
            }
            let biasName = prefix + "bias"
            var bias: String?
            if let b = source.info(biasName) {
                guard b.shape == [info.shape[0]] else {
                    throw NetworkError(.badShape, file: file, tensor: biasName, "has shape \(b.shape); expected [\(info.shape[0])] for weight '\(name)'")
                }
                bias = biasName
                used.insert(biasName)
            }
            used.insert(name)
            layers.append((name, bias))
            previousOut = info.shape[0]
        }
        if let orphan = source.names.first(where: { !used.contains($0) }) {
            throw NetworkError(.notAChain, file: file, tensor: orphan, "is a bias with no matching weight")
        }
        return .mlp(layers: layers, activation: activation)
    }

    /// Names that say "residual network": module names of skip paths, convolutions and norms, or several
    /// layers inside one numbered block (`blocks.0.fc1` and `blocks.0.fc2`, `layer1.0.conv1`).
    static func checkNoBlocks(_ weightNames: [String], file: String) throws {
        let residualWords = ["downsample", "shortcut", "skip", "residual", "attn", "attention"]
        let prefixWords = ["conv", "bn", "norm", "ln"]
        var blockMembers: [String: [String]] = [:]
        for name in weightNames {
            let parts = name.split(separator: ".").map(String.init).dropLast()
            for p in parts {
                let word = p.lowercased()
                let stem = String(word.prefix { !$0.isNumber && $0 != "_" })
                if residualWords.contains(word) || (prefixWords.contains(stem) && word.dropFirst(stem.count).allSatisfy { $0.isNumber || $0 == "_" }) {
                    throw NetworkError(.notAChain, file: file, tensor: name,
                                       "belongs to a '\(p)' module, which a plain chain of linear layers does not have; describe the network with --arch FILE")
                }
            }
            // The deepest numbered component that is not the layer itself: the block the layer sits in.
            let components = Array(parts)
            if let k = components.indices.dropLast().last(where: { Int(components[$0]) != nil }) {
                blockMembers[components[...k].joined(separator: "."), default: []].append(name)
            }
        }
        if let (block, members) = blockMembers.sorted(by: { $0.key < $1.key }).first(where: { $0.value.count > 1 }) {
            throw NetworkError(.notAChain, file: file, tensor: members[0],
                               "and '\(members[1])' are two layers inside block '\(block)', as in a residual network, so the layer order and skips cannot be inferred from names; describe the network with --arch FILE")
        }
    }
}

/// Orders strings by their numeric parts as numbers: "layers.2" < "layers.10", "fc1" < "fc2".
public enum NaturalOrder {
    public static func less(_ a: String, _ b: String) -> Bool {
        let ka = key(a), kb = key(b)
        for (x, y) in zip(ka, kb) where x != y {
            switch (x, y) {
            case let (.number(p), .number(q)): return p < q
            case let (.text(p), .text(q)): return p < q
            case (.number, .text): return true
            case (.text, .number): return false
            }
        }
        return ka.count < kb.count
    }

    enum Part: Equatable { case number(Int), text(String) }

    static func key(_ s: String) -> [Part] {
        var parts: [Part] = []
        var current = ""
        var inDigits = false
        func flush() {
            guard !current.isEmpty else { return }
            parts.append(inDigits ? .number(Int(current) ?? Int.max) : .text(current))
            current = ""
        }
        for ch in s {
            let digit = ch.isASCII && ch.isNumber
            if digit != inDigits { flush(); inDigits = digit }
            current.append(ch)
        }
        flush()
        return parts
    }
}
