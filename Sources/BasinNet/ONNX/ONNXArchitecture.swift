import BasinIO
import BasinTensor
import Foundation

/// Converts an ONNX graph (as `torch.onnx.export` writes it: opset 17, eval mode, `do_constant_folding=False`)
/// into a Basin architecture whose parameters are the graph's initializers, by name.
///
/// Supported (`supportedOps`): Conv (2-D, groups 1, dilation 1, symmetric padding), BatchNormalization (inference
/// form), Relu, Tanh, Gelu and the exporter's Erf decomposition of exact GELU, MaxPool, AveragePool,
/// GlobalAveragePool, ReduceMean over H and W, Gemm, MatMul (with a following bias Add), Add of two computed
/// values, Flatten, Reshape to a constant shape, Identity and Dropout (identities at inference), Transpose of a
/// weight feeding MatMul or Gemm, and Constant nodes these read. Anything else is an error naming the node and
/// its op.
public enum ONNXArchitecture {
    /// The architecture of `model`'s graph.
    /// `weights` is where the parameters will come from (default: the graph itself): a BatchNorm whose
    /// `<module>.num_batches_tracked` is there binds it, so training and a BatchNorm reset keep it up to date
    /// (ONNX graphs do not carry it).
    public static func architecture(from model: ONNXModel, weights: (any TensorSource)? = nil) throws -> Architecture {
        var converter = Converter(model: model, weights: weights ?? model)
        return try converter.run()
    }

    /// The ONNX op types the converter reads (some only in the forms docs/onnx.md lists).
    public static let supportedOps = ["Conv", "BatchNormalization", "Relu", "Tanh", "Gelu", "MaxPool", "AveragePool",
                                      "GlobalAveragePool", "ReduceMean", "Gemm", "MatMul", "Add", "Flatten", "Reshape",
                                      "Identity", "Dropout", "Transpose", "Constant"]

    /// Reads an `.onnx` file and converts its graph (for `--arch G.onnx`).
    public static func load(_ url: URL, weights: (any TensorSource)? = nil) throws -> Architecture {
        try architecture(from: ONNXModel(url: url), weights: weights)
    }
}

private struct Converter {
    /// What a value name of the graph stands for.
    enum Value {
        case input
        case node(Int)
        /// A weight, by the name the model's tensors carry.
        case parameter(String)
        /// A weight read transposed (Transpose of a 2-D initializer).
        case transposedParameter(String)
        case constant(ONNXTensor)
    }

    let model: ONNXModel
    /// Where the weights will come from (for optional tensors such as num_batches_tracked).
    let weights: any TensorSource
    var values: [String: Value] = [:]
    var nodes: [Node] = []
    /// Nodes absorbed into a pattern (the Erf form of GELU) and so skipped.
    var absorbed = Set<Int>()
    /// For each value, the indices of the ONNX nodes reading it.
    var readers: [String: [Int]] = [:]
    /// Basin linear nodes made from a MatMul (no bias yet), with the MatMul's output name.
    var matMulOutputs: [Int: String] = [:]

    init(model: ONNXModel, weights: any TensorSource) {
        self.model = model
        self.weights = weights
    }

    var file: String { model.displayPath }

    /// An error naming the file, the node (its ONNX name) and its op.
    func error(_ kind: NetworkError.Kind, _ node: ONNXNode?, tensor: String? = nil, key: String? = nil, _ problem: String) -> NetworkError {
        NetworkError(kind, file: file, node: node?.displayName, tensor: tensor, key: key, node.map { "\($0.opType): \(problem)" } ?? problem)
    }

    mutating func run() throws -> Architecture {
        guard model.inputs.count == 1 else {
            throw NetworkError(.badGraph, file: file, "the graph has \(model.inputs.count) inputs (\(model.inputs.map(\.name).joined(separator: ", "))); Basin networks take one input")
        }
        guard model.outputs.count == 1 else {
            throw NetworkError(.badGraph, file: file, "the graph has \(model.outputs.count) outputs (\(model.outputs.map(\.name).joined(separator: ", "))); Basin networks give one output, the logits")
        }
        let input = model.inputs[0]
        if let type = input.elementType, ONNXModel.dtype(forDataType: type)?.isFloatingPoint != true {
            throw NetworkError(.badGraph, file: file, tensor: input.name, "the graph input is \(input.elementTypeName); Basin feeds float inputs")
        }
        values[input.name] = .input
        for name in model.names { values[name] = .parameter(name) }
        for node in model.nodes {
            for name in node.inputs where !name.isEmpty { readers[name, default: []].append(node.index) }
        }
        // Constants first: patterns look ahead at constants the exporter places after the node that starts them.
        for node in model.nodes where node.opType == "Constant" && node.domain.isEmpty && node.outputs.count == 1 {
            values[node.outputs[0]] = .constant(try constantValue(node))
        }
        for node in model.nodes where !absorbed.contains(node.index) {
            try convert(node)
        }
        let outputName = model.outputs[0].name
        guard case let .node(output)? = values[outputName] else {
            throw NetworkError(.badGraph, file: file, tensor: outputName, "the graph output '\(outputName)' is not computed from the input")
        }
        return Architecture(nodes: nodes, output: output, inputShape: try sampleShape(input))
    }

    /// Sizes an ONNX graph may give (dimensions, kernels, strides, pads, reshape targets): below 10^9 like an
    /// architecture file's, so that no shape arithmetic can overflow (ONNX stores them as int64).
    static let sizeLimit = 1_000_000_000

    /// The graph input's shape without the batch axis, when every other dimension is a number.
    func sampleShape(_ input: ONNXValueInfo) throws -> SampleShape? {
        guard let shape = input.shape, shape.count >= 2 else { return nil }
        for d in shape.dropFirst() {
            if let v = d.value, !(1..<Self.sizeLimit).contains(v) {
                throw NetworkError(.badShape, file: file, tensor: input.name,
                                   "the graph input's shape \(shape.map(\.description)) has dimension \(v); Basin takes dimensions from 1 to \(Self.sizeLimit - 1)")
            }
        }
        return shape.dropFirst().map(\.value)
    }

    // MARK: Values

    func value(_ name: String, of node: ONNXNode) throws -> Value {
        guard let v = values[name] else {
            throw error(.badGraph, node, tensor: name, "reads '\(name)', which nothing produces")
        }
        return v
    }

    /// The Basin node (or network input) a computed value comes from.
    func computed(_ name: String, of node: ONNXNode, role: String) throws -> Int {
        switch try value(name, of: node) {
        case .input: return Architecture.inputIndex
        case let .node(i): return i
        case .parameter, .transposedParameter, .constant:
            throw error(.unknownOp, node, tensor: name,
                        "its \(role) '\(name)' is a stored tensor, not a computed value; Basin supports \(node.opType) only on values computed from the input")
        }
    }

    /// A weight input by name.
    func parameter(_ node: ONNXNode, _ position: Int, role: String, optional: Bool = false) throws -> String? {
        guard position < node.inputs.count, !node.inputs[position].isEmpty else {
            if optional { return nil }
            throw error(.badGraph, node, "has no \(role) input (input \(position))")
        }
        let name = node.inputs[position]
        guard case let .parameter(p) = try value(name, of: node) else {
            throw error(.unknownOp, node, tensor: name, "its \(role) '\(name)' is computed in the graph; Basin supports it only as a stored tensor (an initializer)")
        }
        return p
    }

    func constant(_ name: String, of node: ONNXNode) -> ONNXTensor? {
        if case let .constant(t)? = values[name] { return t }
        return nil
    }

    /// A scalar constant's value (a Constant node or a one-element initializer).
    func scalar(_ name: String) -> Float? {
        switch values[name] {
        case let .constant(t)?: let v = t.tensor; return v.count == 1 ? v.storage[0] : nil
        case let .parameter(p)?:
            guard let info = model.info(p), info.elementCount == 1, let t = try? model.tensor(p) else { return nil }
            return t.storage[0]
        default: return nil
        }
    }

    /// Integer values of a constant or an integer initializer (Reshape's shape, ReduceMean's axes in opset 18).
    func integers(_ name: String) -> [Int]? {
        switch values[name] {
        case let .constant(t)?: return t.integers
        case let .parameter(p)?:
            guard let info = model.info(p), !info.dtype.isFloatingPoint else { return nil }
            return try? model.integers(p)
        default: return nil
        }
    }

    mutating func emit(_ node: ONNXNode, _ op: any Op, inputs: [Int]) {
        nodes.append(Node(name: node.name.isEmpty ? (node.outputs.first ?? node.displayName) : node.name, anyOp: op, inputs: inputs))
        values[node.outputs[0]] = .node(nodes.count - 1)
    }

    /// The node's outputs beyond the first must be unused (BatchNormalization's training outputs, MaxPool's
    /// indices, Dropout's mask).
    func requireOnlyFirstOutputUsed(_ node: ONNXNode) throws {
        for extra in node.outputs.dropFirst() where !extra.isEmpty {
            if readers[extra]?.isEmpty == false || model.outputs.contains(where: { $0.name == extra }) {
                throw error(.unknownOp, node, tensor: extra, "its output '\(extra)' is used; Basin supports only the first output of \(node.opType)")
            }
        }
    }

    // MARK: Attributes

    func int(_ node: ONNXNode, _ key: String, default value: Int) throws -> Int {
        guard let a = node[attribute: key] else { return value }
        guard let v = a.intValue else { throw error(.badAttribute, node, key: key, "attribute '\(key)' is not an integer") }
        return v
    }

    func float(_ node: ONNXNode, _ key: String, default value: Float) throws -> Float {
        guard let a = node[attribute: key] else { return value }
        guard let v = a.floatValue else { throw error(.badAttribute, node, key: key, "attribute '\(key)' is not a float") }
        return v
    }

    func ints(_ node: ONNXNode, _ key: String) throws -> [Int]? {
        guard let a = node[attribute: key] else { return nil }
        guard let v = a.intsValue else { throw error(.badAttribute, node, key: key, "attribute '\(key)' is not a list of integers") }
        return v
    }

    /// A window size, stride or pad: refused beyond `sizeLimit` (in either sign) before any arithmetic.
    func requireSizes(_ node: ONNXNode, _ key: String, _ values: [Int]) throws {
        try require(node, key, values.allSatisfy { $0 > -Self.sizeLimit && $0 < Self.sizeLimit }, "\(key) \(values) holds a size beyond \(Self.sizeLimit - 1)")
    }

    func require(_ node: ONNXNode, _ key: String, _ ok: Bool, _ problem: @autoclosure () -> String) throws {
        if !ok { throw error(.badAttribute, node, key: key, problem()) }
    }

    /// Attributes a node must not carry with values other than the given defaults.
    func requireDefaults(_ node: ONNXNode, ints: [String: Int] = [:], strings: [String: Set<String>] = [:]) throws {
        for (key, expected) in ints {
            let v = try int(node, key, default: expected)
            try require(node, key, v == expected, "\(key) = \(v) is not supported (only \(expected))")
        }
        for (key, allowed) in strings {
            if let a = node[attribute: key] {
                guard let s = a.stringValue, allowed.contains(s) else {
                    throw error(.badAttribute, node, key: key, "\(key) = \(a) is not supported (only \(allowed.sorted().joined(separator: " or ")))")
                }
            }
        }
    }

    /// 2-D window attributes: kernel, strides, symmetric pads, dilation 1.
    func window(_ node: ONNXNode, kernel fromWeight: [Int]? = nil) throws -> (kernel: [Int], stride: [Int], padding: [Int]) {
        try requireDefaults(node, strings: ["auto_pad": ["NOTSET", "VALID"]])
        let kernel = try ints(node, "kernel_shape") ?? fromWeight
        for key in ["kernel_shape", "strides", "pads"] { try requireSizes(node, key, try ints(node, key) ?? []) }
        guard let kernel, kernel.count == 2, kernel.allSatisfy({ $0 >= 1 }) else {
            throw error(.badAttribute, node, key: "kernel_shape", "Basin supports 2-D windows only (kernel_shape \(try ints(node, "kernel_shape").map { "\($0)" } ?? "absent"))")
        }
        if let fromWeight { try require(node, "kernel_shape", kernel == fromWeight, "kernel_shape \(kernel) does not match the weight's \(fromWeight)") }
        let stride = try ints(node, "strides") ?? [1, 1]
        try require(node, "strides", stride.count == 2 && stride.allSatisfy { $0 >= 1 }, "strides \(stride) are not two positive integers")
        let dilations = try ints(node, "dilations") ?? [1, 1]
        try require(node, "dilations", dilations.allSatisfy { $0 == 1 }, "dilations \(dilations) are not supported (only 1)")
        let pads = try ints(node, "pads") ?? [0, 0, 0, 0]
        try require(node, "pads", pads.count == 4 && pads.allSatisfy { $0 >= 0 }, "pads \(pads) are not four non-negative integers")
        try require(node, "pads", pads[0] == pads[2] && pads[1] == pads[3],
                    "pads \(pads) are asymmetric (begin and end differ); Basin pads both sides alike, as PyTorch's padding does")
        return (kernel, stride, [pads[0], pads[1]])
    }

    // MARK: Ops

    mutating func convert(_ node: ONNXNode) throws {
        guard node.domain.isEmpty else {
            throw error(.unknownOp, node, "op \(node.domain).\(node.opType) is outside the ONNX default domain; Basin does not support it")
        }
        guard !node.outputs.isEmpty, !node.outputs[0].isEmpty else {
            throw error(.badGraph, node, "has no output")
        }
        // The ops below read their first (binary ops: first two) inputs by position (a fuzzed Gemm with one
        // input trapped on the missing operand).
        let needed = ["Gemm": 2, "MatMul": 2, "Add": 2, "Div": 2, "Constant": 0, "Identity": 0, "Dropout": 0][node.opType] ?? 1
        guard node.inputs.count >= needed else {
            throw error(.badGraph, node, "has \(node.inputs.count) input(s); \(node.opType) takes at least \(needed)")
        }
        switch node.opType {
        case "Constant":
            break // read before the walk
        case "Identity", "Dropout":
            if node.opType == "Dropout" {
                try requireOnlyFirstOutputUsed(node)
                if node.inputs.count > 2, !node.inputs[2].isEmpty {
                    let training = integers(node.inputs[2]) ?? scalar(node.inputs[2]).map { [$0 == 0 ? 0 : 1] }
                    try require(node, "training_mode", training == [0], "Dropout in training mode is not supported (export in eval mode)")
                }
            }
            switch try value(node.inputs.first ?? "", of: node) {
            case .parameter:
                // The exporter stores a bit-identical tensor once and recreates the other name with Identity: the
                // output is a weight of its own name (the state_dict key), which the model's tensors carry.
                values[node.outputs[0]] = .parameter(node.outputs[0])
            case let other:
                values[node.outputs[0]] = other
            }
        case "Relu": try activation(node, .relu)
        case "Tanh": try activation(node, .tanh)
        case "Gelu":
            try requireDefaults(node, strings: ["approximate": ["none"]])
            try activation(node, .gelu)
        case "Div":
            guard try matchErfGELU(node) else { throw unsupported(node) }
        case "Flatten":
            let axis = try int(node, "axis", default: 1)
            try require(node, "axis", axis == 1, "axis = \(axis) is not supported (only 1: keep the batch axis, flatten the rest)")
            emit(node, Flatten(), inputs: [try computed(node.inputs[0], of: node, role: "input")])
        case "Reshape": try reshape(node)
        case "Conv": try conv(node)
        case "BatchNormalization": try batchNorm(node)
        case "MaxPool", "AveragePool": try pool(node)
        case "GlobalAveragePool":
            emit(node, GlobalAvgPool(keepDims: true), inputs: [try computed(node.inputs[0], of: node, role: "input")])
        case "ReduceMean": try reduceMean(node)
        case "Transpose": try transpose(node)
        case "Gemm": try gemm(node)
        case "MatMul": try matMul(node)
        case "Add": try add(node)
        default:
            throw unsupported(node)
        }
    }

    func unsupported(_ node: ONNXNode) -> NetworkError {
        let pattern = ["Div", "Erf", "Mul"].contains(node.opType) ? " (Div, Erf, Add and Mul only as the exporter's exact GELU, 0.5 x (1 + erf(x / sqrt 2)))" : ""
        return error(.unknownOp, node, "op not supported\(pattern); Basin reads \(ONNXArchitecture.supportedOps.joined(separator: ", ")) (docs/onnx.md)")
    }

    func constantValue(_ node: ONNXNode) throws -> ONNXTensor {
        switch node[attribute: "value"] ?? node[attribute: "value_float"] ?? node[attribute: "value_floats"]
            ?? node[attribute: "value_int"] ?? node[attribute: "value_ints"] {
        case let .tensor(t)?: return t
        case let .float(f)?: return ONNXTensor(name: "", dtype: .f32, shape: [], bytes: withUnsafeBytes(of: f.bitPattern.littleEndian, Array.init))
        case let .floats(fs)?: return ONNXTensor(name: "", dtype: .f32, shape: [fs.count], bytes: fs.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
        case let .int(i)?: return ONNXTensor(name: "", dtype: .i64, shape: [], bytes: withUnsafeBytes(of: Int64(i).littleEndian, Array.init))
        case let .ints(xs)?: return ONNXTensor(name: "", dtype: .i64, shape: [xs.count], bytes: xs.flatMap { withUnsafeBytes(of: Int64($0).littleEndian, Array.init) })
        default:
            throw error(.badAttribute, node, key: "value", "a Constant Basin can read holds a numeric tensor in 'value' (or value_float(s), value_int(s))")
        }
    }

    mutating func activation(_ node: ONNXNode, _ function: Activation) throws {
        emit(node, ActivationOp(function), inputs: [try computed(node.inputs[0], of: node, role: "input")])
    }

    /// The exporter's exact GELU (`torch.onnx` opset 9-17): y = Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5),
    /// each intermediate read once, operands of Add and Mul in either order. Emits one gelu node at the Div.
    mutating func matchErfGELU(_ div: ONNXNode) throws -> Bool {
        let nodes = model.nodes
        func onlyReader(_ value: String, _ op: String) -> ONNXNode? {
            guard let r = readers[value], r.count == 1, nodes[r[0]].opType == op, nodes[r[0]].domain.isEmpty,
                  nodes[r[0]].outputs.count == 1, !model.outputs.contains(where: { $0.name == value }) else { return nil }
            return nodes[r[0]]
        }
        func other(_ node: ONNXNode, than value: String) -> String? {
            guard node.inputs.count == 2 else { return nil }
            if node.inputs[0] == value { return node.inputs[1] }
            if node.inputs[1] == value { return node.inputs[0] }
            return nil
        }
        func near(_ name: String?, _ target: Float) -> Bool {
            guard let name, let v = scalar(name) else { return false }
            return abs(v - target) <= 1e-6 * max(1, abs(target))
        }
        guard div.inputs.count == 2, div.outputs.count == 1, near(div.inputs[1], Float(2).squareRoot()) else { return false }
        let x = div.inputs[0]
        guard let erf = onlyReader(div.outputs[0], "Erf"),
              let addOne = onlyReader(erf.outputs[0], "Add"), near(other(addOne, than: erf.outputs[0]), 1),
              let mulX = onlyReader(addOne.outputs[0], "Mul"), other(mulX, than: addOne.outputs[0]) == x,
              let half = onlyReader(mulX.outputs[0], "Mul"), near(other(half, than: mulX.outputs[0]), 0.5) else { return false }
        let input = try computed(x, of: div, role: "input")
        emit(half, ActivationOp(.gelu), inputs: [input])
        absorbed.formUnion([erf.index, addOne.index, mulX.index, half.index])
        return true
    }

    // MARK: Convolutional ops

    mutating func conv(_ node: ONNXNode) throws {
        let x = try computed(node.inputs[0], of: node, role: "input X")
        guard let weight = try parameter(node, 1, role: "weight W") else { return }
        let bias = try parameter(node, 2, role: "bias B", optional: true)
        guard let shape = model.info(weight)?.shape ?? weights.info(weight)?.shape, shape.count == 4 else {
            throw error(.unknownOp, node, tensor: weight, "Basin supports 2-D convolutions only (a weight [out, in, kh, kw])")
        }
        let group = try int(node, "group", default: 1)
        try require(node, "group", group == 1, "group = \(group) is not supported (only 1: no grouped or depthwise convolution)")
        let w = try window(node, kernel: [shape[2], shape[3]])
        emit(node, Conv2d(weight: weight, bias: bias, outChannels: shape[0], kernel: w.kernel, stride: w.stride, padding: w.padding),
             inputs: [x])
    }

    mutating func batchNorm(_ node: ONNXNode) throws {
        let x = try computed(node.inputs[0], of: node, role: "input X")
        guard node.inputs.count == 5 else { throw error(.badGraph, node, "BatchNormalization takes five inputs (X, scale, B, mean, var)") }
        let training = try int(node, "training_mode", default: 0)
        try require(node, "training_mode", training == 0,
                    "training_mode = \(training) is not supported (export in eval mode: the running statistics are used)")
        try requireOnlyFirstOutputUsed(node)
        let scale = try parameter(node, 1, role: "scale")!, bias = try parameter(node, 2, role: "bias B")!
        let mean = try parameter(node, 3, role: "mean")!, variance = try parameter(node, 4, role: "var")!
        let epsilon = try float(node, "epsilon", default: 1e-5)
        try require(node, "epsilon", epsilon > 0, "epsilon = \(epsilon) must be positive")
        // ONNX's momentum m weighs the old running value (running = m running + (1 - m) batch); PyTorch's weighs
        // the batch. Stored as float32, so 1 - 0.9 reads as 0.10000002: rounded to 7 decimals.
        let onnxMomentum = Double(try float(node, "momentum", default: 0.9))
        try require(node, "momentum", onnxMomentum >= 0 && onnxMomentum <= 1, "momentum = \(onnxMomentum) is not in [0, 1]")
        let momentum = ((1 - onnxMomentum) * 1e7).rounded() / 1e7
        // PyTorch's counter beside the statistics, when the weights carry it (the graph never does).
        var tracked: String?
        if mean.hasSuffix(".running_mean") {
            let name = String(mean.dropLast("running_mean".count)) + "num_batches_tracked"
            if weights.info(name) != nil { tracked = name }
        }
        let channels = model.info(mean)?.shape.first ?? weights.info(mean)?.shape.first
        emit(node, BatchNorm(weight: scale, bias: bias, runningMean: mean, runningVar: variance, numBatchesTracked: tracked,
                             eps: Double(epsilon), momentum: momentum, numFeatures: channels), inputs: [x])
    }

    mutating func pool(_ node: ONNXNode) throws {
        let x = try computed(node.inputs[0], of: node, role: "input X")
        try requireOnlyFirstOutputUsed(node)
        let ceil = try int(node, "ceil_mode", default: 0)
        try require(node, "ceil_mode", ceil == 0, "ceil_mode = \(ceil) is not supported (only 0, PyTorch's default floor mode)")
        if node.opType == "MaxPool" {
            let order = try int(node, "storage_order", default: 0)
            try require(node, "storage_order", order == 0, "storage_order = \(order) is not supported (only 0)")
        }
        let w = try window(node)
        for axis in 0..<2 where w.padding[axis] * 2 > w.kernel[axis] {
            throw error(.badAttribute, node, key: "pads", "pads \(w.padding) are more than half the kernel \(w.kernel) (PyTorch refuses them too)")
        }
        if node.opType == "MaxPool" {
            emit(node, MaxPool2d(kernel: w.kernel, stride: w.stride, padding: w.padding), inputs: [x])
        } else {
            // ONNX's default is 0; PyTorch's exporter writes the attribute (nn.AvgPool2d's default is True).
            let include = try int(node, "count_include_pad", default: 0)
            emit(node, AvgPool2d(kernel: w.kernel, stride: w.stride, padding: w.padding, countIncludePad: include != 0), inputs: [x])
        }
    }

    /// ReduceMean over every axis after the channel axis (PyTorch's `x.mean((2, 3))` of [N, C, H, W]): a global average pool.
    mutating func reduceMean(_ node: ONNXNode) throws {
        let x = try computed(node.inputs[0], of: node, role: "input")
        // Opset 13-17: `axes` attribute; opset 18: second input.
        var axes = try ints(node, "axes")
        if axes == nil, node.inputs.count > 1, !node.inputs[1].isEmpty {
            guard let given = integers(node.inputs[1]) else {
                throw error(.unknownOp, node, tensor: node.inputs[1], "its axes are computed in the graph; Basin supports ReduceMean over constant axes only")
            }
            axes = given
        }
        // Negative axes need the input's rank, known once shapes are inferred: GlobalAvgPool checks them there
        // (every axis after the channel axis, [2, 3] of [N, C, H, W]; anything else is an error naming the node).
        guard let axes, !axes.isEmpty else {
            throw error(.badAttribute, node, key: "axes", "ReduceMean over all axes is not supported (only over every axis after the channel axis, e.g. [2, 3] of [N, C, H, W])")
        }
        try require(node, "axes", axes.allSatisfy { $0 >= 2 || $0 < 0 },
                    "ReduceMean over axes \(axes) is not supported (the batch and channel axes are kept; only the mean over every axis after the channel axis, e.g. [2, 3] of [N, C, H, W])")
        let keep = try int(node, "keepdims", default: 1)
        emit(node, GlobalAvgPool(keepDims: keep != 0, reduceAxes: axes), inputs: [x])
    }

    mutating func reshape(_ node: ONNXNode) throws {
        let x = try computed(node.inputs[0], of: node, role: "input")
        guard node.inputs.count > 1, let target = integers(node.inputs[1]) else {
            throw error(.unknownOp, node, tensor: node.inputs.count > 1 ? node.inputs[1] : nil,
                        "its target shape is computed in the graph; Basin supports Reshape only to a constant shape (use torch.flatten(x, 1) or x.reshape(-1, k))")
        }
        let allowZero = try int(node, "allowzero", default: 0)
        try require(node, "allowzero", allowZero == 0 || !target.contains(0), "allowzero with a 0 in the shape is not supported")
        try requireSizes(node, "shape", target)
        // The batch axis kept (0) or inferred (-1 with the rest fixed); the rest is one sample's shape.
        let rest = Array(target.dropFirst())
        guard target.count >= 2, target[0] == 0 || (target[0] == -1 && !rest.contains(-1)),
              rest.allSatisfy({ $0 == -1 || $0 >= 1 }), rest.filter({ $0 == -1 }).count <= 1 else {
            throw error(.unknownOp, node, "Reshape to \(target) is not supported (only shapes that keep the batch axis: [0, ...] or [-1, d1, ...] with the rest fixed; no 0 after the first entry)")
        }
        if rest == [-1] {
            emit(node, Flatten(), inputs: [x])
        } else {
            // The per-sample shape is checked against the input when the graph's shapes are inferred.
            emit(node, Reshape(shape: rest.map { $0 == -1 ? nil : $0 }), inputs: [x])
        }
    }

    mutating func transpose(_ node: ONNXNode) throws {
        guard case let .parameter(p) = try value(node.inputs[0], of: node), let shape = model.info(p)?.shape, shape.count == 2 else {
            throw error(.unknownOp, node, "Transpose is supported only of a 2-D weight feeding MatMul or Gemm")
        }
        let perm = try ints(node, "perm") ?? [1, 0]
        try require(node, "perm", perm == [1, 0], "perm \(perm) of a 2-D weight must be [1, 0]")
        values[node.outputs[0]] = .transposedParameter(p)
    }

    /// A weight operand of Gemm/MatMul as PyTorch's [out, in] tensor; `transposed` says the op reads it as
    /// [out, in] (Gemm's transB = 1) rather than [in, out].
    func linearWeight(_ node: ONNXNode, _ name: String, readsOutIn: Bool) throws -> String {
        switch try value(name, of: node) {
        case let .parameter(p) where readsOutIn: return p
        case let .transposedParameter(p) where !readsOutIn: return p
        case .parameter, .transposedParameter:
            throw error(.unknownOp, node, tensor: name,
                        "multiplies by weight '\(name)' stored [in, out]; Basin's linear layers hold PyTorch's [out, in] (nn.Linear exports as Gemm with transB = 1, or Transpose + MatMul)")
        default:
            throw error(.unknownOp, node, tensor: name, "its weight '\(name)' is computed in the graph; Basin supports \(node.opType) by a stored weight only")
        }
    }

    mutating func gemm(_ node: ONNXNode) throws {
        let x = try computed(node.inputs[0], of: node, role: "input A")
        try requireDefaults(node, ints: ["transA": 0])
        let alpha = try float(node, "alpha", default: 1), beta = try float(node, "beta", default: 1)
        try require(node, "alpha", alpha == 1, "alpha = \(alpha) is not supported (only 1)")
        try require(node, "beta", beta == 1 || node.inputs.count < 3, "beta = \(beta) is not supported (only 1)")
        let transB = try int(node, "transB", default: 0)
        let weight = try linearWeight(node, node.inputs[1], readsOutIn: transB != 0)
        let bias = try parameter(node, 2, role: "bias C", optional: true)
        emit(node, Linear(weight: weight, bias: bias, outFeatures: model.info(weight)?.shape.first), inputs: [x])
    }

    mutating func matMul(_ node: ONNXNode) throws {
        let x = try computed(node.inputs[0], of: node, role: "input A")
        let weight = try linearWeight(node, node.inputs[1], readsOutIn: false)
        emit(node, Linear(weight: weight, bias: nil, outFeatures: model.info(weight)?.shape.first), inputs: [x])
        matMulOutputs[nodes.count - 1] = node.outputs[0]
    }

    mutating func add(_ node: ONNXNode) throws {
        guard node.inputs.count == 2 else { throw error(.badGraph, node, "Add takes two inputs") }
        let a = try value(node.inputs[0], of: node), b = try value(node.inputs[1], of: node)
        switch (a, b) {
        case let (.parameter(bias), .node(i)), let (.node(i), .parameter(bias)):
            // nn.Linear on an input that is not 2-D: MatMul then Add(bias): the bias joins the linear node when
            // the MatMul's product is read by this Add alone.
            guard var linear = nodes[i].op as? Linear, linear.bias == nil, let product = matMulOutputs[i],
                  node.inputs.contains(product), readers[product]?.count == 1 else {
                throw error(.unknownOp, node, tensor: bias, "adds the stored tensor '\(bias)' to a computed value; Basin supports that only as the bias of a MatMul")
            }
            linear.bias = bias
            nodes[i].op = linear
            values[node.outputs[0]] = .node(i)
        case (.node, .node), (.input, .node), (.node, .input), (.input, .input):
            emit(node, Add(), inputs: [try computed(node.inputs[0], of: node, role: "first input"),
                                       try computed(node.inputs[1], of: node, role: "second input")])
        default:
            throw error(.unknownOp, node, "adds \(node.inputs[0]) and \(node.inputs[1]); Basin supports Add of two computed values, or a MatMul's bias")
        }
    }
}
