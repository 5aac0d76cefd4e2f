import BasinTensor

/// The one dense layer behind `Linear` and `HFConv1D`: y = x W^T + b with W stored [out, in] (PyTorch's
/// nn.Linear) or y = x W + b with W stored [in, out] (GPT-2's Conv1D). Both ops name their weight, bias and
/// declared width and hand the rest here — shape checks, parameter shapes and channels, the product, the
/// gradients — so the two layouts cannot drift apart. `what` names the op in messages ("a linear node").
struct Dense {
    enum Layout: Sendable { case outIn, inOut }

    let layout: Layout
    let weight: String
    let bias: String?
    let outFeatures: Int?
    let what: String

    /// [out, in] or [in, out], as messages print it.
    var layoutName: String { layout == .outIn ? "[out, in]" : "[in, out]" }
    func inFeatures(_ w: [Int]) -> Int { layout == .outIn ? w[1] : w[0] }
    func outFeatures(_ w: [Int]) -> Int { layout == .outIn ? w[0] : w[1] }
    func weightShape(in fanIn: Int, out fanOut: Int) -> [Int] { layout == .outIn ? [fanOut, fanIn] : [fanIn, fanOut] }

    var parameters: [ParameterSlot] {
        let axes = layout == .outIn ? [ChannelRef("out"), ChannelRef("in")] : [ChannelRef("in"), ChannelRef("out")]
        return [ParameterSlot("weight", weight, channels: axes)]
            + (bias.map { [ParameterSlot("bias", $0, channels: [ChannelRef("out")])] } ?? [])
    }

    func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let w = shapeOf(weight) else { throw NetworkError(.missingTensor, tensor: weight, "needed by \(what) is missing") }
        guard w.count == 2 else { throw NetworkError(.badShape, tensor: weight, "has shape \(w); \(what)'s weight must be \(layoutName)") }
        let out = outFeatures(w)
        if let outFeatures, outFeatures != out {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the node declares \"out\": \(outFeatures)")
        }
        if let bias {
            guard let b = shapeOf(bias) else { throw NetworkError(.missingTensor, tensor: bias, "needed by \(what) is missing") }
            guard b == [out] else { throw NetworkError(.badShape, tensor: bias, "has shape \(b); expected [\(out)] (the weight is \(layoutName) = \(w))") }
        }
        guard let x = inputs[0] else { return [out] }
        guard let last = x.last else { throw NetworkError(.badShape, tensor: weight, "\(what) cannot take a scalar per sample") }
        if let last, last != inFeatures(w) {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) (\(layoutName)) but the node receives \(last) features")
        }
        return x.dropLast() + [out]
    }

    func inputShapeHint(shapeOf: (String) -> [Int]?) -> SampleShape? {
        shapeOf(weight).flatMap { $0.count == 2 ? [inFeatures($0)] : nil }
    }

    func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        let axis = max(0, (inputs[0]?.count ?? 1) - 1)
        return .axes(inputs: [AxisChannel(axis: axis, ChannelRef("in"))], output: AxisChannel(axis: axis, ChannelRef("out")))
    }

    /// The widths a fresh layer gets: its input's last axis and the declared `out`.
    func fans(_ inputs: [SampleShape?]) throws -> (fanIn: Int, fanOut: Int) {
        guard let fanIn = inputs[0]?.last ?? nil else {
            throw NetworkError(.badShape, tensor: weight, "cannot be initialised: the node's input width is unknown")
        }
        guard let fanOut = outFeatures else {
            throw NetworkError(.badAttribute, tensor: weight, key: "out", "cannot be initialised without the node's \"out\" width")
        }
        return (fanIn, fanOut)
    }

    func initialParameterShapes(_ inputs: [SampleShape?]) throws -> [(String, [Int])] {
        let (fanIn, fanOut) = try fans(inputs)
        return [(weight, weightShape(in: fanIn, out: fanOut))] + (bias.map { [($0, [fanOut])] } ?? [])
    }

    /// x [rows, in] times W (either layout) + b as [rows, out]: the bias is broadcast into the output first and
    /// sgemm adds the product (beta 1). Training's arithmetic: the sample models are reproduced bit for bit with it.
    static func apply(_ x: Tensor, weight: Tensor, bias: Tensor?, layout: Layout) -> Tensor {
        let inF = layout == .outIn ? weight.shape[1] : weight.shape[0]
        let outF = layout == .outIn ? weight.shape[0] : weight.shape[1]
        let n = inF == 0 ? x.rows : x.count / inF
        precondition(n * inF == x.count, "dense: input \(x.shape) does not end in \(inF) features (weight \(weight.shape))")
        var y = Tensor(shape: [n, outF]) { out in
            if let bias {
                bias.withUnsafeBufferPointer { b in
                    for r in 0..<n { (out.baseAddress! + r * outF).update(from: b.baseAddress!, count: outF) }
                }
            } else {
                out.initialize(repeating: 0)
            }
        }
        if n == 0 || inF == 0 { return y }
        x.withUnsafeBufferPointer { xs in
            weight.withUnsafeBufferPointer { ws in
                y.withUnsafeMutableBufferPointer { ys in
                    BLAS.sgemm(transA: false, transB: layout == .outIn, m: n, n: outF, k: inF, alpha: 1,
                               a: xs.baseAddress!, lda: inF, b: ws.baseAddress!, ldb: layout == .outIn ? inF : outF, beta: 1,
                               c: ys.baseAddress!, ldc: outF)
                }
            }
        }
        return y
    }

    /// dW (in the weight's layout), db = column sums of dY, dX = dY times W back to the input's shape.
    func backward(_ c: inout BackwardContext) {
        let x = c.inputs[0]
        let w = c.parameter(weight)
        let inF = inFeatures(w.shape), outF = outFeatures(w.shape)
        let rows = x.count / max(1, inF)
        let x2 = x.reshaped([rows, inF])
        let dy = c.outputGradient.reshaped([rows, outF])
        // [out, in]: dW = dY^T X, dX = dY W. [in, out]: dW = X^T dY, dX = dY W^T.
        c.parameterGradients.append((weight, layout == .outIn ? dy.matmul(x2, transposeSelf: true) : x2.matmul(dy, transposeSelf: true)))
        if let bias { c.parameterGradients.append((bias, dy.sumRows())) }
        if c.wantsInputGradient[0] {
            c.inputGradients[0] = (layout == .outIn ? dy.matmul(w) : dy.matmul(w, transposeOther: true)).reshaped(x.shape)
        }
    }
}

/// An op that is a dense layer (`Linear`, `HFConv1D`): it names its tensors and declared width and says its
/// weight's layout; this extension gives it the architecture-file keys, the shape checks, parameter slots, channel
/// flow, initial shapes and gradients, all through `Dense`. Each op keeps its own initialisation and forward pass.
public protocol DenseOp: Op {
    var weight: String { get }
    var bias: String? { get }
    /// Output features, for initialisation (nil: read from the weight).
    var outFeatures: Int? { get }
    init(weight: String, bias: String?, outFeatures: Int?)
    /// True for GPT-2's Conv1D layout [in, out]; false for nn.Linear's [out, in].
    static var storesInputsFirst: Bool { get }
    /// The op in messages ("a linear node").
    static var nodeDescription: String { get }
}

extension DenseOp {
    var dense: Dense {
        Dense(layout: Self.storesInputsFirst ? .inOut : .outIn, weight: weight, bias: bias, outFeatures: outFeatures, what: Self.nodeDescription)
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> Self {
        Self(weight: try a.string("weight"), bias: try a.optionalString("bias"), outFeatures: try a.optionalInt("out", minimum: 1))
    }

    public func write(to a: inout [String: JSONValue]) {
        a["weight"] = .string(weight)
        if let bias { a["bias"] = .string(bias) }
        if let outFeatures { a["out"] = .int(outFeatures) }
    }

    public var parameters: [ParameterSlot] { dense.parameters }
    public var isLinearInParameters: Bool { true }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        try dense.outputShape(inputs, shapeOf: shapeOf)
    }

    public func inputShapeHint(shapeOf: (String) -> [Int]?) -> SampleShape? { dense.inputShapeHint(shapeOf: shapeOf) }
    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow { dense.channelFlow(inputs) }
    public func initialParameterShapes(_ inputs: [SampleShape?]) throws -> [(String, [Int])] { try dense.initialParameterShapes(inputs) }
    public func backward(_ c: inout BackwardContext) { dense.backward(&c) }
}
