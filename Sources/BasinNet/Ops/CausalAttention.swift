import BasinTensor

/// Causal multi-head attention with grouped-query heads (the attention core, between the projections):
/// per sample and query head h, softmax(q_h k_g^T * scale + causal mask) v_g with g = h / (heads / kv_heads),
/// heads concatenated in order, [N, L, heads * head_dim]. Either one input holding q | k | v side by side
/// (GPT-2's c_attn output) or three inputs q, k, v (LLaMA's projections, after RoPE).
/// Architecture file: `{"op": "attention", "inputs": [...], "heads": H, "kv_heads": G?, "head_dim": D,
/// "scale": s?, "window": W?}` (scale defaults to 1/sqrt(D); `window` limits each position to the last W
/// positions, Mistral's sliding window).
public struct CausalAttention: Op {
    public static let typeNames = ["attention"]

    public var heads: Int
    public var keyValueHeads: Int
    public var headDim: Int
    public var scale: Float
    public var window: Int?
    /// One packed q | k | v input (true) or three inputs.
    public var packed: Bool

    public init(heads: Int, keyValueHeads: Int? = nil, headDim: Int, scale: Float? = nil, window: Int? = nil, packed: Bool) {
        self.heads = heads
        self.keyValueHeads = keyValueHeads ?? heads
        self.headDim = headDim
        self.scale = scale ?? 1 / Float(headDim).squareRoot()
        self.window = window
        self.packed = packed
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> CausalAttention {
        guard let h = try a.optionalInt("heads", minimum: 1) else { throw a.error("heads", "an attention node needs its number of heads") }
        guard let d = try a.optionalInt("head_dim", minimum: 1) else { throw a.error("head_dim", "an attention node needs the head dimension") }
        let g = try a.int("kv_heads", default: h, minimum: 1)
        guard h % g == 0 else { throw a.error("kv_heads", "\(g) key-value heads do not divide \(h) query heads") }
        let scale = try a.optionalDouble("scale")
        if let scale, !(scale.isFinite && scale > 0) { throw a.error("scale", "must be a positive number, not \(scale)") }
        let packed = try a.bool("packed", default: false)
        return CausalAttention(heads: h, keyValueHeads: g, headDim: d, scale: scale.map(Float.init),
                               window: try a.optionalInt("window", minimum: 1), packed: packed)
    }

    public func write(to a: inout [String: JSONValue]) {
        a["heads"] = .int(heads)
        if keyValueHeads != heads { a["kv_heads"] = .int(keyValueHeads) }
        a["head_dim"] = .int(headDim)
        if scale != 1 / Float(headDim).squareRoot() { a["scale"] = .number(Double(scale)) }
        if let window { a["window"] = .int(window) }
        if packed { a["packed"] = .bool(true) }
    }

    public var inputCount: Int { packed ? 1 : 3 }

    var queryWidth: Int { heads * headDim }
    var keyValueWidth: Int { keyValueHeads * headDim }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        let widths = packed ? [queryWidth + 2 * keyValueWidth] : [queryWidth, keyValueWidth, keyValueWidth]
        let names = packed ? ["q | k | v"] : ["q", "k", "v"]
        var length: Int?? = nil
        for (i, x) in inputs.enumerated() {
            guard let x else { continue }
            guard x.count == 2 else {
                throw NetworkError(.badShape, "attention takes [L, width] per sample, not \(Shapes.describe(x)) (\(names[i]))")
            }
            if let w = x[1], w != widths[i] {
                throw NetworkError(.badShape, "attention with \(heads) heads (\(keyValueHeads) key-value) of \(headDim) needs \(names[i]) \(widths[i]) wide, not \(w)")
            }
            if let l = length, let l, let xl = x[0], xl != l {
                throw NetworkError(.badShape, "attention inputs have \(l) and \(xl) positions")
            }
            if length == nil || length! == nil { length = .some(x[0]) }
        }
        return [length ?? nil, queryWidth]
    }

    /// Without grouping, heads are one channel set (blocks of head_dim) from the q, k, v projections to the
    /// output projection. Grouped or packed heads need structure a channel label cannot say (query heads
    /// move within their key-value group; q, k and v side by side); families declare those permutations.
    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        guard !packed, keyValueHeads == heads else { return .opaque }
        let h = AxisChannel(axis: 1, ChannelRef("heads", block: headDim))
        return .axes(inputs: [h, h, h], output: h)
    }

    func layout(batch: Int, length: Int) -> AttentionKernel.Layout {
        var s = packed
            ? AttentionKernel.Layout.packed(batch: batch, length: length, heads: heads, keyValueHeads: keyValueHeads, headDim: headDim)
            : AttentionKernel.Layout.separate(batch: batch, length: length, queryHeads: heads, keyValueHeads: keyValueHeads, headDim: headDim)
        s.window = window
        return s
    }

    static func dimensions(_ x: Tensor) -> (batch: Int, length: Int) {
        let l = x.rank >= 2 ? x.shape[x.rank - 2] : 1
        let width = x.shape.last ?? 0
        return (x.count / max(1, l * width), l)
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let q = inputs[0]
        let k = packed ? q : inputs[1]
        let v = packed ? q : inputs[2]
        let (n, l) = CausalAttention.dimensions(q)
        let s = layout(batch: n, length: l)
        var probabilities: [Float]? = context.recordForBackward ? [Float](repeating: 0, count: n * heads * l * l) : nil
        let y = Tensor(shape: Array(q.shape.dropLast()) + [queryWidth]) { out in
            q.withUnsafeBufferPointer { qs in
                k.withUnsafeBufferPointer { ks in
                    v.withUnsafeBufferPointer { vs in
                        if probabilities != nil {
                            probabilities!.withUnsafeMutableBufferPointer { ps in
                                AttentionKernel.forward(q: qs.baseAddress!, k: ks.baseAddress!, v: vs.baseAddress!, layout: s, scale: scale,
                                                        output: out.baseAddress!, probabilities: ps.baseAddress!)
                            }
                        } else {
                            AttentionKernel.forward(q: qs.baseAddress!, k: ks.baseAddress!, v: vs.baseAddress!, layout: s, scale: scale,
                                                    output: out.baseAddress!, probabilities: nil)
                        }
                    }
                }
            }
        }
        if let probabilities { context.saved = probabilities }
        return y
    }

    public func backward(_ c: inout BackwardContext) {
        let probabilities = c.saved as! [Float]
        let q = c.inputs[0]
        let k = packed ? q : c.inputs[1]
        let v = packed ? q : c.inputs[2]
        let (n, l) = CausalAttention.dimensions(q)
        let s = layout(batch: n, length: l)
        var dq = Tensor.zeros(q.shape)
        var dk = packed ? Tensor.zeros([0]) : Tensor.zeros(k.shape)
        var dv = packed ? Tensor.zeros([0]) : Tensor.zeros(v.shape)
        q.withUnsafeBufferPointer { qs in
            k.withUnsafeBufferPointer { ks in
                v.withUnsafeBufferPointer { vs in
                    probabilities.withUnsafeBufferPointer { ps in
                        c.outputGradient.withUnsafeBufferPointer { gs in
                            dq.withUnsafeMutableBufferPointer { dqs in
                                if packed {
                                    AttentionKernel.backward(q: qs.baseAddress!, k: ks.baseAddress!, v: vs.baseAddress!, layout: s, scale: scale,
                                                             probabilities: ps.baseAddress!, outputGradient: gs.baseAddress!,
                                                             dq: dqs.baseAddress!, dk: dqs.baseAddress!, dv: dqs.baseAddress!)
                                } else {
                                    dk.withUnsafeMutableBufferPointer { dks in
                                        dv.withUnsafeMutableBufferPointer { dvs in
                                            AttentionKernel.backward(q: qs.baseAddress!, k: ks.baseAddress!, v: vs.baseAddress!, layout: s, scale: scale,
                                                                     probabilities: ps.baseAddress!, outputGradient: gs.baseAddress!,
                                                                     dq: dqs.baseAddress!, dk: dks.baseAddress!, dv: dvs.baseAddress!)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        c.inputGradients[0] = dq
        if !packed {
            c.inputGradients[1] = dk
            c.inputGradients[2] = dv
        }
    }
}
