import BasinTensor

/// Layer normalisation over the last axis (nn.LayerNorm: biased variance, affine weight and bias).
/// Architecture file: `{"op": "layernorm", "weight": NAME, "bias": NAME?, "eps": 1e-5}`.
public struct LayerNorm: Op {
    public static let typeNames = ["layernorm"]

    public var weight: String
    public var bias: String?
    public var epsilon: Float

    public init(weight: String, bias: String?, epsilon: Float = 1e-5) {
        self.weight = weight
        self.bias = bias
        self.epsilon = epsilon
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> LayerNorm {
        let eps = try a.double("eps", default: 1e-5)
        guard eps >= 0, eps.isFinite else { throw a.error("eps", "must be a non-negative number, not \(eps)") }
        return LayerNorm(weight: try a.string("weight"), bias: try a.optionalString("bias"), epsilon: Float(eps))
    }

    public func write(to a: inout [String: JSONValue]) {
        a["weight"] = .string(weight)
        if let bias { a["bias"] = .string(bias) }
        a["eps"] = .number(Double(epsilon))
    }

    public var parameters: [ParameterSlot] {
        [ParameterSlot("weight", weight, channels: [ChannelRef("c")])]
            + (bias.map { [ParameterSlot("bias", $0, channels: [ChannelRef("c")])] } ?? [])
    }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        try NormShapes.check(inputs[0], weight: weight, bias: bias, shapeOf: shapeOf, what: "a layer norm")
    }

    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow { NormShapes.flow(inputs[0]) }

    public func initialParameterShapes(_ inputs: [SampleShape?]) throws -> [(String, [Int])] {
        guard let width = inputs[0]?.last ?? nil else {
            throw NetworkError(.badShape, tensor: weight, "cannot be initialised: the node's input width is unknown")
        }
        return [(weight, [width])] + (bias.map { [($0, [width])] } ?? [])
    }

    /// PyTorch's default: weight 1, bias 0.
    public func initialParameters(_ inputs: [SampleShape?], generator: inout SeededGenerator) throws -> [(String, Tensor)] {
        guard let width = inputs[0]?.last ?? nil else {
            throw NetworkError(.badShape, tensor: weight, "cannot be initialised: the node's input width is unknown")
        }
        return [(weight, Tensor(shape: [width], repeating: 1))] + (bias.map { [($0, Tensor.zeros([width]))] } ?? [])
    }

    struct Saved: Sendable {
        var mean: [Float]
        var inverseStd: [Float]
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let r = NormKernel.layerNorm(inputs[0], weight: context.parameter(weight), bias: bias.map { context.parameter($0) }, epsilon: epsilon)
        if context.recordForBackward { context.saved = Saved(mean: r.mean, inverseStd: r.inverseStd) }
        return r.y
    }

    public func backward(_ c: inout BackwardContext) {
        let saved = c.saved as! Saved
        let g = NormKernel.layerNormBackward(c.inputs[0], weight: c.parameter(weight), mean: saved.mean, inverseStd: saved.inverseStd,
                                             outputGradient: c.outputGradient)
        c.parameterGradients.append((weight, g.dWeight))
        if let bias { c.parameterGradients.append((bias, g.dBias)) }
        if c.wantsInputGradient[0] { c.inputGradients[0] = g.dx }
    }
}

/// RMS normalisation over the last axis (LLaMA's `LlamaRMSNorm`): weight * x / sqrt(mean(x^2) + eps).
/// Architecture file: `{"op": "rmsnorm", "weight": NAME, "eps": 1e-6}`.
public struct RMSNorm: Op {
    public static let typeNames = ["rmsnorm"]

    public var weight: String
    public var epsilon: Float

    public init(weight: String, epsilon: Float = 1e-6) {
        self.weight = weight
        self.epsilon = epsilon
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> RMSNorm {
        let eps = try a.double("eps", default: 1e-6)
        guard eps >= 0, eps.isFinite else { throw a.error("eps", "must be a non-negative number, not \(eps)") }
        return RMSNorm(weight: try a.string("weight"), epsilon: Float(eps))
    }

    public func write(to a: inout [String: JSONValue]) {
        a["weight"] = .string(weight)
        a["eps"] = .number(Double(epsilon))
    }

    public var parameters: [ParameterSlot] { [ParameterSlot("weight", weight, channels: [ChannelRef("c")])] }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        try NormShapes.check(inputs[0], weight: weight, bias: nil, shapeOf: shapeOf, what: "an RMS norm")
    }

    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow { NormShapes.flow(inputs[0]) }

    public func initialParameterShapes(_ inputs: [SampleShape?]) throws -> [(String, [Int])] {
        guard let width = inputs[0]?.last ?? nil else {
            throw NetworkError(.badShape, tensor: weight, "cannot be initialised: the node's input width is unknown")
        }
        return [(weight, [width])]
    }

    public func initialParameters(_ inputs: [SampleShape?], generator: inout SeededGenerator) throws -> [(String, Tensor)] {
        guard let width = inputs[0]?.last ?? nil else {
            throw NetworkError(.badShape, tensor: weight, "cannot be initialised: the node's input width is unknown")
        }
        return [(weight, Tensor(shape: [width], repeating: 1))]
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let r = NormKernel.rmsNorm(inputs[0], weight: context.parameter(weight), epsilon: epsilon)
        if context.recordForBackward { context.saved = r.inverseRMS }
        return r.y
    }

    public func backward(_ c: inout BackwardContext) {
        let g = NormKernel.rmsNormBackward(c.inputs[0], weight: c.parameter(weight), inverseRMS: c.saved as! [Float],
                                           outputGradient: c.outputGradient)
        c.parameterGradients.append((weight, g.dWeight))
        if c.wantsInputGradient[0] { c.inputGradients[0] = g.dx }
    }
}

enum NormShapes {
    static func check(_ x: SampleShape?, weight: String, bias: String?, shapeOf: (String) -> [Int]?, what: String) throws -> SampleShape? {
        guard let w = shapeOf(weight) else { throw NetworkError(.missingTensor, tensor: weight, "needed by \(what) is missing") }
        guard w.count == 1 else { throw NetworkError(.badShape, tensor: weight, "has shape \(w); \(what) weight must be [width]") }
        if let bias {
            guard let b = shapeOf(bias) else { throw NetworkError(.missingTensor, tensor: bias, "needed by \(what) is missing") }
            guard b == w else { throw NetworkError(.badShape, tensor: bias, "has shape \(b); expected \(w)") }
        }
        guard let x else { return nil }
        guard let last = x.last else { throw NetworkError(.badShape, tensor: weight, "\(what) cannot take a scalar per sample") }
        if let last, last != w[0] {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the node receives \(last) features")
        }
        return x
    }

    /// The last axis's channels pass through (a permutation of the features permutes weight and output alike).
    static func flow(_ x: SampleShape?) -> ChannelFlow {
        let axis = max(0, (x?.count ?? 1) - 1)
        return .axes(inputs: [AxisChannel(axis: axis, ChannelRef("c"))], output: AxisChannel(axis: axis, ChannelRef("c")))
    }
}
