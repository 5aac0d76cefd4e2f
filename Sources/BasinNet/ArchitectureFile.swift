import BasinIO
import Foundation

/// One permutation group declared in an architecture file: the parameter axes it permutes together.
public struct PermutationDeclaration: Sendable, Equatable, Codable {
    public struct Axis: Sendable, Equatable, Codable {
        public var param: String
        public var axis: Int
        public init(param: String, axis: Int) {
            self.param = param
            self.axis = axis
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
/// `op` is one of linear, relu, tanh, gelu, flatten, add. A node's input defaults to the node before it
/// (the network input for the first node); `"input"` names one node, `"inputs"` several, and the name
/// `"input"` stands for the network input. `output` defaults to the last node; `permutations` is optional.
public struct ArchitectureFile: Codable, Sendable {
    public struct NodeEntry: Codable, Sendable {
        public var name: String?
        public var op: String
        public var weight: String?
        public var bias: String?
        public var input: String?
        public var inputs: [String]?

        public init(name: String? = nil, op: String, weight: String? = nil, bias: String? = nil, input: String? = nil, inputs: [String]? = nil) {
            self.name = name
            self.op = op
            self.weight = weight
            self.bias = bias
            self.input = input
            self.inputs = inputs
        }
    }

    public init(nodes: [NodeEntry], output: String? = nil, permutations: [PermutationDeclaration]? = nil) {
        self.nodes = nodes
        self.output = output
        self.permutations = permutations
    }

    public var nodes: [NodeEntry]
    public var output: String?
    public var permutations: [PermutationDeclaration]?

    public static func load(_ url: URL) throws -> Architecture {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw NetworkError("\(url.path): cannot be read (\(error.localizedDescription))")
        }
        let file: ArchitectureFile
        do { file = try JSONDecoder().decode(ArchitectureFile.self, from: data) } catch let DecodingError.keyNotFound(key, ctx) {
            throw NetworkError("\(url.path): missing \"\(key.stringValue)\" at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw NetworkError("\(url.path): wrong type at \(ctx.codingPath.map(\.stringValue).joined(separator: ".")): \(ctx.debugDescription)")
        } catch {
            throw NetworkError("\(url.path): not a valid architecture file (\(error.localizedDescription))")
        }
        return try file.architecture(path: url.path)
    }

    public func architecture(path: String = "architecture") throws -> Architecture {
        var indexOf: [String: Int] = ["input": Architecture.inputIndex]
        var nodes: [Node] = []
        for (i, entry) in self.nodes.enumerated() {
            let name = entry.name ?? "node\(i)"
            guard indexOf[name] == nil else { throw NetworkError("\(path): node name '\(name)' is used twice") }
            let inputNames = entry.inputs ?? entry.input.map { [$0] }
            var inputs: [Int] = []
            if let inputNames {
                for n in inputNames {
                    guard let j = indexOf[n] else {
                        throw NetworkError("\(path): node '\(name)' takes input '\(n)', which is not an earlier node")
                    }
                    inputs.append(j)
                }
            } else {
                inputs = [i - 1]
            }
            let op: Op
            switch entry.op.lowercased() {
            case "linear":
                guard let w = entry.weight else { throw NetworkError("\(path): linear node '\(name)' has no \"weight\"") }
                op = .linear(weight: w, bias: entry.bias)
            case "relu": op = .activation(.relu)
            case "tanh": op = .activation(.tanh)
            case "gelu": op = .activation(.gelu)
            case "flatten": op = .flatten
            case "add": op = .add
            default:
                throw NetworkError("\(path): node '\(name)' has unknown op \"\(entry.op)\" (known: linear, relu, tanh, gelu, flatten, add)")
            }
            let expectedInputs = op == .add ? 2 : 1
            guard inputs.count == expectedInputs else {
                throw NetworkError("\(path): node '\(name)' (\(entry.op)) takes \(expectedInputs) input(s), got \(inputs.count)")
            }
            indexOf[name] = nodes.count
            nodes.append(Node(name: name, op: op, inputs: inputs))
        }
        guard !nodes.isEmpty else { throw NetworkError("\(path): no nodes") }
        var output = nodes.count - 1
        if let o = self.output {
            guard let j = indexOf[o], j >= 0 else { throw NetworkError("\(path): output '\(o)' is not a node") }
            output = j
        }
        return Architecture(nodes: nodes, output: output, permutations: permutations ?? [])
    }
}

extension Architecture {
    /// The architecture as an architecture file (for `--arch` round trips and recipes).
    public var file: ArchitectureFile {
        func name(_ j: Int) -> String { j == Architecture.inputIndex ? "input" : nodes[j].name }
        let entries = nodes.map { node -> ArchitectureFile.NodeEntry in
            var e = ArchitectureFile.NodeEntry(name: node.name, op: node.op.kindName)
            if case let .linear(w, b) = node.op {
                e.weight = w
                e.bias = b
            }
            if node.inputs.count == 1 { e.input = name(node.inputs[0]) } else { e.inputs = node.inputs.map(name) }
            return e
        }
        return ArchitectureFile(nodes: entries, output: nodes[output].name, permutations: permutations.isEmpty ? nil : permutations)
    }
}
