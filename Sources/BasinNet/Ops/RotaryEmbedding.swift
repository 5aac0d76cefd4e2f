import BasinTensor

/// Rotary position embedding of query or key heads, as Hugging Face's LLaMA applies it (`rotate_half`):
/// activations [N, L, H * D] (H heads of `head_dim` D), position p rotated by p * theta^(-2j/D).
/// Architecture file: `{"op": "rope", "head_dim": D, "theta": 10000}`. Whole heads may be permuted; the
/// dimensions within a head never are (they are paired by the rotation).
public struct RotaryEmbedding: Op {
    public static let typeNames = ["rope"]

    public var headDim: Int
    public var theta: Double

    public init(headDim: Int, theta: Double = 10000) {
        self.headDim = headDim
        self.theta = theta
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> RotaryEmbedding {
        guard let d = try a.optionalInt("head_dim", minimum: 2) else { throw a.error("head_dim", "a rope node needs the head dimension") }
        guard d % 2 == 0 else { throw a.error("head_dim", "must be even for a rotary embedding, not \(d)") }
        let theta = try a.double("theta", default: 10000)
        guard theta > 0, theta.isFinite else { throw a.error("theta", "must be a positive number, not \(theta)") }
        return RotaryEmbedding(headDim: d, theta: theta)
    }

    public func write(to a: inout [String: JSONValue]) {
        a["head_dim"] = .int(headDim)
        a["theta"] = .number(theta)
    }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let x = inputs[0] else { return nil }
        guard x.count == 2 else { throw NetworkError(.badShape, "a rope node takes [L, heads * head_dim] per sample, not \(Shapes.describe(x))") }
        if let w = x[1], w % headDim != 0 {
            throw NetworkError(.badShape, "a rope node with head_dim \(headDim) receives \(w) features, not a whole number of heads")
        }
        return x
    }

    /// Heads (blocks of `head_dim`) pass through.
    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        .axes(inputs: [AxisChannel(axis: 1, ChannelRef("heads", block: headDim))], output: AxisChannel(axis: 1, ChannelRef("heads", block: headDim)))
    }

    func rotate(_ y: inout Tensor, inverse: Bool) {
        let l = y.rank >= 2 ? y.shape[y.rank - 2] : 1
        let width = y.shape.last ?? 0
        let n = y.count / max(1, l * width)
        let table = RoPETable(headDim: headDim, length: l, base: theta)
        y.withUnsafeMutableBufferPointer { ys in
            table.apply(ys.baseAddress!, batch: n, length: l, stride: width, offset: 0, heads: width / headDim, inverse: inverse)
        }
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        var y = inputs.take(0)
        rotate(&y, inverse: false)
        return y
    }

    public func backward(_ c: inout BackwardContext) {
        guard c.wantsInputGradient[0] else { return }
        var dx = c.outputGradient
        rotate(&dx, inverse: true)
        c.inputGradients[0] = dx
    }
}

/// Element-wise product of two inputs of one shape (the gate of LLaMA's SwiGLU MLP:
/// silu(gate_proj x) * up_proj x): `{"op": "mul", "inputs": [A, B]}`. Channel sets of the two inputs merge.
public struct Multiply: Op {
    public static let typeNames = ["mul"]

    public init() {}

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> Multiply { Multiply() }

    public var inputCount: Int { 2 }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let a = inputs[0] else { return inputs[1] }
        guard let b = inputs[1] else { return a }
        guard a.count == b.count, zip(a, b).allSatisfy({ $0 == nil || $1 == nil || $0 == $1 }) else {
            throw NetworkError(.badShape, "mul multiplies shapes \(Shapes.describe(a)) and \(Shapes.describe(b))")
        }
        return zip(a, b).map { $0 ?? $1 }
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        var y = inputs.take(0)
        let b = inputs[1]
        y.withUnsafeMutableBufferPointer { ys in
            b.withUnsafeBufferPointer { bs in
                for i in 0..<ys.count { ys[i] *= bs[i] }
            }
        }
        return y
    }

    public func backward(_ c: inout BackwardContext) {
        if c.wantsInputGradient[0] { c.inputGradients[0] = c.outputGradient.hadamard(c.inputs[1]) }
        if c.wantsInputGradient[1] { c.inputGradients[1] = c.outputGradient.hadamard(c.inputs[0]) }
    }
}
