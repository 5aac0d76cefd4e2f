import BasinTensor

/// Hugging Face's GPT-2 `Conv1D`: a linear layer that stores its weight as [in, out], y = x W + b (the
/// transpose of nn.Linear's layout). Architecture file: `{"op": "hf_conv1d", "weight": NAME, "bias": NAME?,
/// "out": N?}` (`out` only to initialise from scratch; N(0, 0.02) weights and zero bias as Hugging Face does).
public struct HFConv1D: Op {
    public static let typeNames = ["hf_conv1d"]

    public var weight: String
    public var bias: String?
    public var outFeatures: Int?

    public init(weight: String, bias: String?, outFeatures: Int? = nil) {
        self.weight = weight
        self.bias = bias
        self.outFeatures = outFeatures
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> HFConv1D {
        HFConv1D(weight: try a.string("weight"), bias: try a.optionalString("bias"), outFeatures: try a.optionalInt("out", minimum: 1))
    }

    public func write(to a: inout [String: JSONValue]) {
        a["weight"] = .string(weight)
        if let bias { a["bias"] = .string(bias) }
        if let outFeatures { a["out"] = .int(outFeatures) }
    }

    public var parameters: [ParameterSlot] {
        [ParameterSlot("weight", weight, channels: [ChannelRef("in"), ChannelRef("out")])]
            + (bias.map { [ParameterSlot("bias", $0, channels: [ChannelRef("out")])] } ?? [])
    }

    public var isLinearInParameters: Bool { true }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let w = shapeOf(weight) else { throw NetworkError(.missingTensor, tensor: weight, "needed by a Conv1D (GPT-2) node is missing") }
        guard w.count == 2 else { throw NetworkError(.badShape, tensor: weight, "has shape \(w); a GPT-2 Conv1D weight must be [in, out]") }
        if let outFeatures, outFeatures != w[1] {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the node declares \"out\": \(outFeatures)")
        }
        if let bias {
            guard let b = shapeOf(bias) else { throw NetworkError(.missingTensor, tensor: bias, "needed by a Conv1D (GPT-2) node is missing") }
            guard b == [w[1]] else { throw NetworkError(.badShape, tensor: bias, "has shape \(b); expected [\(w[1])] (the weight is [in, out] = \(w))") }
        }
        guard let x = inputs[0] else { return [w[1]] }
        guard let last = x.last else { throw NetworkError(.badShape, tensor: weight, "a Conv1D node cannot take a scalar per sample") }
        if let last, last != w[0] {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) ([in, out], GPT-2's layout) but the node receives \(last) features")
        }
        return x.dropLast() + [w[1]]
    }

    public func inputShapeHint(shapeOf: (String) -> [Int]?) -> SampleShape? {
        shapeOf(weight).flatMap { $0.count == 2 ? [$0[0]] : nil }
    }

    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        let axis = max(0, (inputs[0]?.count ?? 1) - 1)
        return .axes(inputs: [AxisChannel(axis: axis, ChannelRef("in"))], output: AxisChannel(axis: axis, ChannelRef("out")))
    }

    public func initialParameterShapes(_ inputs: [SampleShape?]) throws -> [(String, [Int])] {
        guard let fanIn = inputs[0]?.last ?? nil else {
            throw NetworkError(.badShape, tensor: weight, "cannot be initialised: the node's input width is unknown")
        }
        guard let fanOut = outFeatures else {
            throw NetworkError(.badAttribute, tensor: weight, key: "out", "cannot be initialised without the node's \"out\" width")
        }
        return [(weight, [fanIn, fanOut])] + (bias.map { [($0, [fanOut])] } ?? [])
    }

    public func initialParameters(_ inputs: [SampleShape?], generator g: inout SeededGenerator) throws -> [(String, Tensor)] {
        guard let fanIn = inputs[0]?.last ?? nil else {
            throw NetworkError(.badShape, tensor: weight, "cannot be initialised: the node's input width is unknown")
        }
        guard let fanOut = outFeatures else {
            throw NetworkError(.badAttribute, tensor: weight, key: "out", "cannot be initialised without the node's \"out\" width")
        }
        var out = [(weight, Tensor(shape: [fanIn, fanOut], storage: (0..<(fanIn * fanOut)).map { _ in Float(g.normal() * 0.02) }))]
        if let bias { out.append((bias, Tensor.zeros([fanOut]))) }
        return out
    }

    /// x [rows, in] W [in, out] + b: the bias broadcast first, then sgemm adds the product.
    public static func apply(_ x: Tensor, weight: Tensor, bias: Tensor?, epilogue: (any ElementwiseOp)? = nil) -> Tensor {
        let inF = weight.shape[0], outF = weight.shape[1]
        let n = inF == 0 ? x.rows : x.count / inF
        var y = Tensor(shape: [n, outF]) { out in
            if let bias {
                bias.withUnsafeBufferPointer { b in
                    for r in 0..<n { (out.baseAddress! + r * outF).update(from: b.baseAddress!, count: outF) }
                }
            } else {
                out.initialize(repeating: 0)
            }
        }
        if n > 0 && inF > 0 {
            x.withUnsafeBufferPointer { xs in
                weight.withUnsafeBufferPointer { ws in
                    y.withUnsafeMutableBufferPointer { ys in
                        BLAS.sgemm(transA: false, transB: false, m: n, n: outF, k: inF, alpha: 1, a: xs.baseAddress!, lda: inF,
                                   b: ws.baseAddress!, ldb: outF, beta: 1, c: ys.baseAddress!, ldc: outF)
                    }
                }
            }
        }
        if let epilogue { y.withUnsafeMutableBufferPointer { epilogue.apply($0) } }
        return y
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let x = inputs[0]
        let w = context.parameter(weight)
        let outShape = Array(x.shape.dropLast()) + [w.shape[1]]
        let y = HFConv1D.apply(x, weight: w, bias: bias.map { context.parameter($0) }, epilogue: context.epilogue)
        context.epilogue = nil
        return y.reshaped(outShape)
    }

    public func backward(_ c: inout BackwardContext) {
        let x = c.inputs[0]
        let w = c.parameter(weight)
        let inF = w.shape[0], outF = w.shape[1]
        let rows = x.count / max(1, inF)
        let x2 = x.reshaped([rows, inF])
        let dy = c.outputGradient.reshaped([rows, outF])
        // dW = X^T dY [in, out], db = column sums of dY, dX = dY W^T.
        c.parameterGradients.append((weight, x2.matmul(dy, transposeSelf: true)))
        if let bias { c.parameterGradients.append((bias, dy.sumRows())) }
        if c.wantsInputGradient[0] { c.inputGradients[0] = dy.matmul(w, transposeOther: true).reshaped(x.shape) }
    }
}

/// The output layer of a language model: logits = x W^T (+ b) with W [vocabulary, width] — `lm_head.weight`,
/// or with tied embeddings the token embedding itself (GPT-2's `transformer.wte.weight`), so anything that
/// moves the embedding moves the output layer with it. Architecture file: `{"op": "lm_head", "weight": NAME,
/// "bias": NAME?}`. Unlike a linear layer, its rows (the vocabulary) are never a permutable channel set.
public struct LMHead: Op {
    public static let typeNames = ["lm_head"]

    public var weight: String
    public var bias: String?

    public init(weight: String, bias: String? = nil) {
        self.weight = weight
        self.bias = bias
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> LMHead {
        LMHead(weight: try a.string("weight"), bias: try a.optionalString("bias"))
    }

    public func write(to a: inout [String: JSONValue]) {
        a["weight"] = .string(weight)
        if let bias { a["bias"] = .string(bias) }
    }

    public var parameters: [ParameterSlot] {
        [ParameterSlot("weight", weight, channels: [nil, ChannelRef("in")])]
            + (bias.map { [ParameterSlot("bias", $0, channels: [nil])] } ?? [])
    }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let w = shapeOf(weight) else { throw NetworkError(.missingTensor, tensor: weight, "needed by the LM head is missing") }
        guard w.count == 2 else { throw NetworkError(.badShape, tensor: weight, "has shape \(w); an LM head weight must be [vocabulary, width]") }
        if let bias {
            guard let b = shapeOf(bias) else { throw NetworkError(.missingTensor, tensor: bias, "needed by the LM head is missing") }
            guard b == [w[0]] else { throw NetworkError(.badShape, tensor: bias, "has shape \(b); expected [\(w[0])]") }
        }
        guard let x = inputs[0] else { return [nil, w[0]] }
        guard let last = x.last else { throw NetworkError(.badShape, tensor: weight, "the LM head cannot take a scalar per sample") }
        if let last, last != w[1] {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the LM head receives \(last) features")
        }
        return x.dropLast() + [w[0]]
    }

    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        let axis = max(0, (inputs[0]?.count ?? 1) - 1)
        return .axes(inputs: [AxisChannel(axis: axis, ChannelRef("in"))], output: nil)
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let x = inputs[0]
        let w = context.parameter(weight)
        return Linear.apply(x, weight: w, bias: bias.map { context.parameter($0) }).reshaped(Array(x.shape.dropLast()) + [w.shape[0]])
    }

    public func backward(_ c: inout BackwardContext) {
        let x = c.inputs[0]
        let w = c.parameter(weight)
        let inF = w.shape[1], outF = w.shape[0]
        let rows = x.count / max(1, inF)
        let dy = c.outputGradient.reshaped([rows, outF])
        c.parameterGradients.append((weight, dy.matmul(x.reshaped([rows, inF]), transposeSelf: true)))
        if let bias { c.parameterGradients.append((bias, dy.sumRows())) }
        if c.wantsInputGradient[0] { c.inputGradients[0] = dy.matmul(w).reshaped(x.shape) }
    }
}
