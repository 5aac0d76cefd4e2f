import BasinIO
import BasinTensor
import Foundation

/// Element-wise activation functions.
public enum Activation: String, Sendable, Codable, CaseIterable {
    case relu, tanh, gelu
}

/// One operation of an architecture graph. Parameters are referred to by name.
///
/// Conv2d, BatchNorm and residual `add` slot in as further cases: every op declares its parameters, its
/// forward and its backward in `Network`, and permutation specs name parameter axes, not layer kinds.
public enum Op: Sendable, Equatable {
    /// y = x W^T + b, PyTorch layout: weight [out, in], bias [out].
    case linear(weight: String, bias: String?)
    case activation(Activation)
    /// [N, d1, d2, ...] -> [N, d1*d2*...].
    case flatten
    /// Element-wise sum of two inputs (residual connections).
    case add

    public var parameterNames: [String] {
        switch self {
        case let .linear(w, b): [w] + (b.map { [$0] } ?? [])
        default: []
        }
    }

    public var kindName: String {
        switch self {
        case .linear: "linear"
        case let .activation(a): a.rawValue
        case .flatten: "flatten"
        case .add: "add"
        }
    }
}

/// A node of the graph: an op applied to earlier nodes' outputs (index -1 is the network input).
public struct Node: Sendable, Equatable {
    public var name: String
    public var op: Op
    public var inputs: [Int]

    public init(name: String, op: Op, inputs: [Int]) {
        self.name = name
        self.op = op
        self.inputs = inputs
    }
}

/// An architecture: nodes in topological order over named parameters; the last node (or `output`) gives
/// the logits.
public struct Architecture: Sendable, Equatable {
    public static let inputIndex = -1

    public var nodes: [Node]
    public var output: Int
    /// Declared permutation groups (from an architecture file), used by alignment.
    public var permutations: [PermutationDeclaration]

    public init(nodes: [Node], output: Int? = nil, permutations: [PermutationDeclaration] = []) {
        self.nodes = nodes
        self.output = output ?? (nodes.count - 1)
        self.permutations = permutations
    }

    public var parameterNames: [String] { nodes.flatMap(\.op.parameterNames) }

    /// Indices of the linear nodes, in order.
    public var linearNodes: [Int] {
        nodes.indices.filter { if case .linear = nodes[$0].op { return true } else { return false } }
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

    /// Infers an MLP from a file holding a chain of `*.weight` [out, in] and `*.bias` [out] tensors,
    /// ordered by the numeric parts of their names (`layers.2` before `layers.10`).
    public static func inferMLP(from source: any TensorSource, activation: Activation = .relu) throws -> Architecture {
        let file = source.displayPath
        var weights: [(prefix: String, name: String)] = []
        var others: [String] = []
        for name in source.names {
            if name == "weight" || name.hasSuffix(".weight") {
                weights.append((String(name.dropLast("weight".count)), name))
            } else if !(name == "bias" || name.hasSuffix(".bias")) {
                others.append(name)
            }
        }
        if let stray = others.first {
            throw NetworkError("\(file): tensor '\(stray)' is neither a *.weight nor a *.bias, so the file is not a plain chain of linear layers; describe the network with --arch FILE")
        }
        guard !weights.isEmpty else {
            throw NetworkError("\(file): no *.weight tensors, so no linear layers to build a network from")
        }
        weights.sort { NaturalOrder.less($0.prefix, $1.prefix) }
        var layers: [(weight: String, bias: String?)] = []
        var previousOut: Int?
        var used = Set<String>()
        for (prefix, name) in weights {
            let info = source.info(name)!
            guard info.shape.count == 2 else {
                throw NetworkError("\(file): tensor '\(name)' has shape \(info.shape); a linear weight must be [out, in] (other layer kinds need --arch FILE)")
            }
            if let previousOut, info.shape[1] != previousOut {
                throw NetworkError("\(file): tensor '\(name)' has shape \(info.shape): it takes \(info.shape[1]) inputs but the layer before gives \(previousOut), so the layers do not chain")
            }
            let biasName = prefix + "bias"
            var bias: String?
            if let b = source.info(biasName) {
                guard b.shape == [info.shape[0]] else {
                    throw NetworkError("\(file): tensor '\(biasName)' has shape \(b.shape); expected [\(info.shape[0])] for weight '\(name)'")
                }
                bias = biasName
                used.insert(biasName)
            }
            used.insert(name)
            layers.append((name, bias))
            previousOut = info.shape[0]
        }
        if let orphan = source.names.first(where: { !used.contains($0) }) {
            throw NetworkError("\(file): tensor '\(orphan)' is a bias with no matching weight")
        }
        return .mlp(layers: layers, activation: activation)
    }

    /// Checks the parameters exist with shapes that fit together, and returns the logits width.
    @discardableResult
    public func validate(_ params: ParameterSet, inputFeatures: Int? = nil, source: String = "model") throws -> Int {
        var width: [Int: Int] = [:]
        if let inputFeatures { width[Architecture.inputIndex] = inputFeatures }
        for (i, node) in nodes.enumerated() {
            for j in node.inputs where j >= i || j < Architecture.inputIndex {
                throw NetworkError("architecture: node '\(node.name)' takes input \(j), which is not an earlier node")
            }
            let inWidth = node.inputs.first.flatMap { width[$0] }
            switch node.op {
            case let .linear(w, b):
                guard let wt = params[w] else { throw NetworkError("\(source): tensor '\(w)' needed by node '\(node.name)' is missing") }
                guard wt.rank == 2 else { throw NetworkError("\(source): tensor '\(w)' has shape \(wt.shape); a linear weight must be [out, in]") }
                if let inWidth, inWidth != wt.shape[1] {
                    throw NetworkError("\(source): tensor '\(w)' has shape \(wt.shape) but node '\(node.name)' receives \(inWidth) features")
                }
                if let b {
                    guard let bt = params[b] else { throw NetworkError("\(source): tensor '\(b)' needed by node '\(node.name)' is missing") }
                    guard bt.shape == [wt.shape[0]] else {
                        throw NetworkError("\(source): tensor '\(b)' has shape \(bt.shape); expected [\(wt.shape[0])]")
                    }
                }
                width[i] = wt.shape[0]
            case .add:
                guard node.inputs.count == 2 else { throw NetworkError("architecture: add node '\(node.name)' needs two inputs") }
                let a = width[node.inputs[0]], c = width[node.inputs[1]]
                if let a, let c, a != c { throw NetworkError("architecture: add node '\(node.name)' sums widths \(a) and \(c)") }
                width[i] = a ?? c
            case .activation, .flatten:
                width[i] = inWidth
            }
        }
        guard let out = width[output] else { throw NetworkError("architecture: the output width cannot be determined") }
        return out
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
