import BasinTensor

/// y = x W^T + b over the last axis (PyTorch nn.Linear): weight [out, in], bias [out]. Inputs [N, in] or
/// [N, ..., in]. Architecture file: `{"op": "linear", "weight": NAME, "bias": NAME?, "out": N?}` (`out`
/// is needed only to initialise from scratch; otherwise the weight says it).
public struct Linear: Op {
    public static let typeNames = ["linear"]

    public var weight: String
    public var bias: String?
    /// Output features, for initialisation (nil: read from the weight).
    public var outFeatures: Int?

    public init(weight: String, bias: String?, outFeatures: Int? = nil) {
        self.weight = weight
        self.bias = bias
        self.outFeatures = outFeatures
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> Linear {
        Linear(weight: try a.string("weight"), bias: try a.optionalString("bias"), outFeatures: try a.optionalInt("out", minimum: 1))
    }

    public func write(to a: inout [String: JSONValue]) {
        a["weight"] = .string(weight)
        if let bias { a["bias"] = .string(bias) }
        if let outFeatures { a["out"] = .int(outFeatures) }
    }

    public var parameters: [ParameterSlot] {
        [ParameterSlot("weight", weight, channels: [ChannelRef("out"), ChannelRef("in")])]
            + (bias.map { [ParameterSlot("bias", $0, channels: [ChannelRef("out")])] } ?? [])
    }

    public var isLinearInParameters: Bool { true }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let w = shapeOf(weight) else { throw NetworkError(.missingTensor, tensor: weight, "needed by a linear node is missing") }
        guard w.count == 2 else { throw NetworkError(.badShape, tensor: weight, "has shape \(w); a linear weight must be [out, in]") }
        if let outFeatures, outFeatures != w[0] {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the node declares \"out\": \(outFeatures)")
        }
        if let bias {
            guard let b = shapeOf(bias) else { throw NetworkError(.missingTensor, tensor: bias, "needed by a linear node is missing") }
            guard b == [w[0]] else { throw NetworkError(.badShape, tensor: bias, "has shape \(b); expected [\(w[0])]") }
        }
        guard let x = inputs[0] else { return [w[0]] }
        guard let last = x.last else { throw NetworkError(.badShape, tensor: weight, "a linear node cannot take a scalar per sample") }
        if let last, last != w[1] {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the node receives \(last) features")
        }
        return x.dropLast() + [w[0]]
    }

    public func inputShapeHint(shapeOf: (String) -> [Int]?) -> SampleShape? {
        shapeOf(weight).flatMap { $0.count == 2 ? [$0[1]] : nil }
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
        return [(weight, [fanOut, fanIn])] + (bias.map { [($0, [fanOut])] } ?? [])
    }

    /// PyTorch's default: weight kaiming-uniform with a = sqrt(5), i.e. uniform in +-1/sqrt(fan_in), then the
    /// bias uniform in +-1/sqrt(fan_in); weight drawn row by row before the bias.
    public func initialParameters(_ inputs: [SampleShape?], generator g: inout SeededGenerator) throws -> [(String, Tensor)] {
        guard let fanIn = inputs[0]?.last ?? nil else {
            throw NetworkError(.badShape, tensor: weight, "cannot be initialised: the node's input width is unknown")
        }
        guard let fanOut = outFeatures else {
            throw NetworkError(.badAttribute, tensor: weight, key: "out", "cannot be initialised without the node's \"out\" width")
        }
        return Linear.initialise(weight: weight, bias: bias, fanIn: fanIn, fanOut: fanOut, generator: &g)
    }

    static func initialise(weight: String, bias: String?, fanIn: Int, fanOut: Int, generator g: inout SeededGenerator) -> [(String, Tensor)] {
        let bound = 1 / Float(fanIn).squareRoot()
        var out = [(weight, Tensor(shape: [fanOut, fanIn], storage: (0..<(fanIn * fanOut)).map { _ in g.uniform(-bound, bound) }))]
        if let bias { out.append((bias, Tensor(shape: [fanOut], storage: (0..<fanOut).map { _ in g.uniform(-bound, bound) }))) }
        return out
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let x = inputs[0]
        let w = context.parameter(weight)
        let b = bias.map { context.parameter($0) }
        let outShape = Array(x.shape.dropLast()) + [w.shape[0]]
        if context.fused {
            // Product first (beta 0), then bias and the fused activation in one pass over the output.
            let y = Linear.productThenBias(x, weight: w, bias: b, epilogue: context.epilogue)
            context.epilogue = nil
            return y.reshaped(outShape)
        }
        return Linear.apply(x, weight: w, bias: b).reshaped(outShape)
    }

    public func backward(_ c: inout BackwardContext) {
        let x = c.inputs[0]
        let w = c.parameter(weight)
        let inF = w.shape[1], outF = w.shape[0]
        let rows = x.count / max(1, inF)
        let x2 = x.reshaped([rows, inF])
        let dy = c.outputGradient.reshaped([rows, outF])
        // dW = dY^T X, db = column sums of dY, dX = dY W.
        c.parameterGradients.append((weight, dy.matmul(x2, transposeSelf: true)))
        if let bias { c.parameterGradients.append((bias, dy.sumRows())) }
        if c.wantsInputGradient[0] { c.inputGradients[0] = dy.matmul(w).reshaped(x.shape) }
    }

    /// x [rows, in] W^T + b as [rows, out]: the bias is broadcast into the output first and sgemm adds the
    /// product (beta 1). Training's arithmetic: the sample models are reproduced bit for bit with it.
    public static func apply(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let inF = weight.shape[1], outF = weight.shape[0]
        let n = inF == 0 ? x.rows : x.count / inF
        precondition(n * inF == x.count, "linear: input \(x.shape) does not end in \(inF) features (weight \(weight.shape))")
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
                    BLAS.sgemm(transA: false, transB: true, m: n, n: outF, k: inF, alpha: 1,
                               a: xs.baseAddress!, lda: inF, b: ws.baseAddress!, ldb: inF, beta: 1,
                               c: ys.baseAddress!, ldc: outF)
                }
            }
        }
        return y
    }

    /// x W^T (sgemm, beta 0), then the bias and `epilogue` in one pass over each output row.
    static func productThenBias(_ x: Tensor, weight: Tensor, bias: Tensor?, epilogue: (any ElementwiseOp)?) -> Tensor {
        let inF = weight.shape[1], outF = weight.shape[0]
        let n = inF == 0 ? x.rows : x.count / inF
        if n == 0 || inF == 0 {
            var y = apply(x, weight: weight, bias: bias)
            if let epilogue { y.withUnsafeMutableBufferPointer { epilogue.apply($0) } }
            return y
        }
        return Tensor(shape: [n, outF]) { out in
            let o = out.baseAddress!
            x.withUnsafeBufferPointer { xs in
                weight.withUnsafeBufferPointer { ws in
                    BLAS.sgemm(transA: false, transB: true, m: n, n: outF, k: inF, alpha: 1, a: xs.baseAddress!, lda: inF,
                               b: ws.baseAddress!, ldb: inF, beta: 0, c: o, ldc: outF)
                }
            }
            if let bias {
                bias.withUnsafeBufferPointer { bs in
                    let bp = bs.baseAddress!
                    for r in 0..<n {
                        let row = o + r * outF
                        for j in 0..<outF { row[j] += bp[j] }
                        epilogue?.apply(UnsafeMutableBufferPointer(start: row, count: outF))
                    }
                }
            } else if let epilogue {
                epilogue.apply(out)
            }
        }
    }
}

extension Op where Self == Linear {
    public static func linear(weight: String, bias: String?) -> Linear { Linear(weight: weight, bias: bias) }
}
