import BasinTensor

/// Hugging Face's GPT-2 `Conv1D`: a linear layer that stores its weight as [in, out], y = x W + b (the
/// transpose of nn.Linear's layout). Architecture file: `{"op": "hf_conv1d", "weight": NAME, "bias": NAME?,
/// "out": N?}` (`out` only to initialise from scratch; N(0, 0.02) weights and zero bias as Hugging Face does).
public struct HFConv1D: DenseOp {
    public static let typeNames = ["hf_conv1d"]

    public var weight: String
    public var bias: String?
    public var outFeatures: Int?

    public init(weight: String, bias: String?, outFeatures: Int? = nil) {
        self.weight = weight
        self.bias = bias
        self.outFeatures = outFeatures
    }

    public static let storesInputsFirst = true
    public static let nodeDescription = "a Conv1D (GPT-2) node"

    public func initialParameters(_ inputs: [SampleShape?], generator g: inout SeededGenerator) throws -> [(String, Tensor)] {
        let (fanIn, fanOut) = try dense.fans(inputs)
        var out = [(weight, Tensor(shape: [fanIn, fanOut], storage: (0..<(fanIn * fanOut)).map { _ in Float(g.normal() * 0.02) }))]
        if let bias { out.append((bias, Tensor.zeros([fanOut]))) }
        return out
    }

    /// x [rows, in] W [in, out] + b (the bias broadcast first, then sgemm adds the product), then `epilogue`.
    public static func apply(_ x: Tensor, weight: Tensor, bias: Tensor?, epilogue: (any ElementwiseOp)? = nil) -> Tensor {
        var y = Dense.apply(x, weight: weight, bias: bias, layout: .inOut)
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
