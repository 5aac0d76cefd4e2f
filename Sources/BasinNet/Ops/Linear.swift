import BasinTensor

/// y = x W^T + b over the last axis (PyTorch nn.Linear): weight [out, in], bias [out]. Inputs [N, in] or
/// [N, ..., in]. Architecture file: `{"op": "linear", "weight": NAME, "bias": NAME?, "out": N?}` (`out`
/// is needed only to initialise from scratch; otherwise the weight says it).
public struct Linear: DenseOp {
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

    public static let storesInputsFirst = false
    public static let nodeDescription = "a linear node"

    /// PyTorch's default: weight kaiming-uniform with a = sqrt(5), i.e. uniform in +-1/sqrt(fan_in), then the
    /// bias uniform in +-1/sqrt(fan_in); weight drawn row by row before the bias.
    public func initialParameters(_ inputs: [SampleShape?], generator g: inout SeededGenerator) throws -> [(String, Tensor)] {
        let (fanIn, fanOut) = try dense.fans(inputs)
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


    /// x [rows, in] W^T + b as [rows, out]: the bias is broadcast into the output first and sgemm adds the
    /// product (beta 1). Training's arithmetic: the sample models are reproduced bit for bit with it.
    public static func apply(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        Dense.apply(x, weight: weight, bias: bias, layout: .outIn)
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
