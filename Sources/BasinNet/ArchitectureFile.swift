import BasinIO
import Foundation

/// One permutation group declared in an architecture file: the parameter axes it permutes together.
public struct PermutationDeclaration: Sendable, Equatable, Codable {
    public struct Axis: Sendable, Equatable, Codable {
        public var param: String
        public var axis: Int
        /// Entries of the axis per unit: unit k spans entries k*block ..< (k+1)*block (a linear layer reading
        /// flattened [C, H, W] channels has block H*W on its input axis). 1 unless stated; written only when not 1.
        public var block: Int

        public init(param: String, axis: Int, block: Int = 1) {
            self.param = param
            self.axis = axis
            self.block = block
        }

        enum CodingKeys: String, CodingKey { case param, axis, block }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            param = try c.decode(String.self, forKey: .param)
            axis = try c.decode(Int.self, forKey: .axis)
            block = try c.decodeIfPresent(Int.self, forKey: .block) ?? 1
            guard block >= 1 else {
                throw DecodingError.dataCorruptedError(forKey: .block, in: c, debugDescription: "block must be at least 1")
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(param, forKey: .param)
            try c.encode(axis, forKey: .axis)
            if block != 1 { try c.encode(block, forKey: .block) }
        }
    }

    public var name: String
    public var axes: [Axis]

    public init(name: String, axes: [Axis]) {
        self.name = name
        self.axes = axes
    }
}

/// The architecture JSON format (`--arch FILE`):
///
/// ```json
/// {
///   "input_shape": [64],
///   "nodes": [
///     {"name": "fc1", "op": "linear", "weight": "layers.0.weight", "bias": "layers.0.bias"},
///     {"name": "act1", "op": "relu"},
///     {"name": "fc2", "op": "linear", "weight": "layers.1.weight", "bias": "layers.1.bias", "input": "act1"},
///     {"name": "skip", "op": "add", "inputs": ["fc2", "act1"]}
///   ],
///   "output": "fc2",
///   "permutations": [
///     {"name": "P_fc1", "axes": [{"param": "layers.0.weight", "axis": 0}, {"param": "layers.0.bias", "axis": 0},
///                                {"param": "layers.1.weight", "axis": 1}]}
///   ]
/// }
/// ```
/// `op` is any name in `OpRegistry` (each op's file documents its keys). A node's input defaults to the
/// node before it (the network input for the first node); `"input"` names one node, `"inputs"` several,
/// and the name `"input"` stands for the network input. `output` defaults to the last node;
/// `input_shape` (one sample's shape, e.g. [1, 8, 8]) and `permutations` are optional.
public struct ArchitectureFile: Codable, Sendable {
    public struct NodeEntry: Codable, Sendable {
        public var name: String?
        public var op: String
        public var input: String?
        public var inputs: [String]?
        /// The op's own keys (weight, bias, stride, eps, ...).
        public var attributes: [String: JSONValue]

        public init(name: String? = nil, op: String, input: String? = nil, inputs: [String]? = nil, attributes: [String: JSONValue]) {
            self.name = name
            self.op = op
            self.input = input
            self.inputs = inputs
            self.attributes = attributes
        }

        /// A node with a weight and a bias (linear).
        public init(name: String? = nil, op: String, weight: String? = nil, bias: String? = nil, input: String? = nil, inputs: [String]? = nil) {
            var attributes: [String: JSONValue] = [:]
            if let weight { attributes["weight"] = .string(weight) }
            if let bias { attributes["bias"] = .string(bias) }
            self.init(name: name, op: op, input: input, inputs: inputs, attributes: attributes)
        }

        public var weight: String? { if case let .string(s)? = attributes["weight"] { s } else { nil } }
        public var bias: String? { if case let .string(s)? = attributes["bias"] { s } else { nil } }

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ s: String) { stringValue = s }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        static let fixedKeys: Set<String> = ["name", "op", "input", "inputs"]

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Key.self)
            name = try c.decodeIfPresent(String.self, forKey: Key("name"))
            op = try c.decode(String.self, forKey: Key("op"))
            input = try c.decodeIfPresent(String.self, forKey: Key("input"))
            inputs = try c.decodeIfPresent([String].self, forKey: Key("inputs"))
            var attributes: [String: JSONValue] = [:]
            for key in c.allKeys where !NodeEntry.fixedKeys.contains(key.stringValue) {
                attributes[key.stringValue] = try c.decode(JSONValue.self, forKey: key)
            }
            self.attributes = attributes
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encodeIfPresent(name, forKey: Key("name"))
            try c.encode(op, forKey: Key("op"))
            try c.encodeIfPresent(input, forKey: Key("input"))
            try c.encodeIfPresent(inputs, forKey: Key("inputs"))
            for (k, v) in attributes { try c.encode(v, forKey: Key(k)) }
        }
    }

    public var nodes: [NodeEntry]
    public var output: String?
    public var inputShape: [Int?]?
    public var permutations: [PermutationDeclaration]?

    enum CodingKeys: String, CodingKey {
        case nodes, output, permutations
        case inputShape = "input_shape"
    }

    public init(nodes: [NodeEntry], output: String? = nil, inputShape: SampleShape? = nil, permutations: [PermutationDeclaration]? = nil) {
        self.nodes = nodes
        self.output = output
        self.inputShape = inputShape
        self.permutations = permutations
    }

    public static func load(_ url: URL) throws -> Architecture {
        let path = url.path
        let data: Data
        // FileCheck.read refuses FIFOs, devices and oversized files (a BasinIOError naming the file, kept as
        // it is); a file that cannot be read at all is this reader's badFile.
        do { data = try FileCheck.read(url) } catch let e as BasinIOError where e.kind == .unreadable {
            throw NetworkError(.badFile, file: path, e.problem)
        }
        let file: ArchitectureFile
        do { file = try JSONDecoder().decode(ArchitectureFile.self, from: data) } catch let DecodingError.keyNotFound(key, ctx) {
            throw NetworkError(.badFile, file: path, key: key.stringValue,
                               "missing at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw NetworkError(.badFile, file: path, key: ctx.codingPath.last?.stringValue,
                               "wrong type at \(ctx.codingPath.map(\.stringValue).joined(separator: ".")): \(ctx.debugDescription)")
        } catch {
            throw NetworkError(.badFile, file: path, "not a valid architecture file (\(error.localizedDescription))")
        }
        return try file.architecture(path: path)
    }

    public func architecture(path: String = "architecture") throws -> Architecture {
        var indexOf: [String: Int] = ["input": Architecture.inputIndex]
        var nodes: [Node] = []
        for (i, entry) in self.nodes.enumerated() {
            let name = entry.name ?? "node\(i)"
            guard indexOf[name] == nil else { throw NetworkError(.badGraph, file: path, node: name, "the node name is used twice") }
            guard let type = OpRegistry.type(named: entry.op) else {
                throw NetworkError(.unknownOp, file: path, node: name, key: "op",
                                   "unknown op \"\(entry.op)\" (known: \(OpRegistry.names.joined(separator: ", ")))")
            }
            var attributes = NodeAttributes(node: name, op: entry.op.lowercased(), file: path, values: entry.attributes)
            let op = try type.read(&attributes, typeName: entry.op.lowercased())
            if let unknown = attributes.unusedKeys.first {
                throw attributes.error(unknown, "is not a key of a \(entry.op) node")
            }
            let inputNames = entry.inputs ?? entry.input.map { [$0] }
            var inputs: [Int] = []
            if let inputNames {
                for n in inputNames {
                    guard let j = indexOf[n] else {
                        throw NetworkError(.badGraph, file: path, node: name, "takes input '\(n)', which is not an earlier node")
                    }
                    inputs.append(j)
                }
            } else {
                inputs = [i - 1]
            }
            guard inputs.count == op.inputCount else {
                throw NetworkError(.badGraph, file: path, node: name, "\(entry.op) takes \(op.inputCount) input(s), got \(inputs.count)")
            }
            indexOf[name] = nodes.count
            nodes.append(Node(name: name, anyOp: op, inputs: inputs))
        }
        guard !nodes.isEmpty else { throw NetworkError(.badGraph, file: path, "no nodes") }
        var output = nodes.count - 1
        if let o = self.output {
            guard let j = indexOf[o], j >= 0 else { throw NetworkError(.badGraph, file: path, key: "output", "'\(o)' is not a node") }
            output = j
        }
        let shape = try inputShape.map { dims in
            try dims.map { d -> Int? in
                guard let d, d != -1 else { return nil }
                guard d > 0 else {
                    throw NetworkError(.badAttribute, file: path, key: "input_shape", "dimensions must be positive (or -1 / null for unknown), not \(d)")
                }
                return d
            }
        }
        return Architecture(nodes: nodes, output: output, inputShape: shape, permutations: permutations ?? [])
    }
}

extension Architecture {
    /// The architecture as an architecture file (for `--arch` round trips and recipes).
    public var file: ArchitectureFile {
        func name(_ j: Int) -> String { j == Architecture.inputIndex ? "input" : nodes[j].name }
        let entries = nodes.map { node -> ArchitectureFile.NodeEntry in
            var attributes: [String: JSONValue] = [:]
            node.op.write(to: &attributes)
            var e = ArchitectureFile.NodeEntry(name: node.name, op: node.op.typeName, attributes: attributes)
            if node.inputs.count == 1 { e.input = name(node.inputs[0]) } else { e.inputs = node.inputs.map(name) }
            return e
        }
        return ArchitectureFile(nodes: entries, output: nodes[output].name, inputShape: inputShape,
                                permutations: permutations.isEmpty ? nil : permutations)
    }
}
