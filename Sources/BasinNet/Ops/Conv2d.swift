import BasinTensor

/// 2-D convolution (PyTorch nn.Conv2d, groups 1, dilation 1): weight [out, in, kh, kw], optional bias [out],
/// images [C, H, W] per sample. Computed as im2col + one sgemm per chunk of images.
///
/// Architecture file: `{"op": "conv2d", "weight": NAME, "bias": NAME?, "out_channels": N?, "kernel_size": K?,
/// "stride": S (1), "padding": P (0)}`; kernel and stride may be [h, w]. `out_channels` and `kernel_size`
/// are needed only to initialise from scratch; otherwise the weight says them.
public struct Conv2d: Op {
    public static let typeNames = ["conv2d", "conv"]

    public var weight: String
    public var bias: String?
    public var outChannels: Int?
    public var window: Window2d

    public init(weight: String, bias: String? = nil, outChannels: Int? = nil, kernel: [Int]? = nil, stride: [Int] = [1, 1],
                padding: [Int] = [0, 0]) {
        self.weight = weight
        self.bias = bias
        self.outChannels = outChannels
        self.window = Window2d(kernel: kernel, stride: stride, padding: padding)
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> Conv2d {
        let weight = try a.string("weight")
        let bias = try a.optionalString("bias")
        let out = try a.optionalInt("out_channels", minimum: 1)
        if let groups = try a.optionalInt("groups"), groups != 1 { throw a.error("groups", "grouped convolution (groups \(groups)) is not supported") }
        let window = try Window2d.read(&a, kernelRequired: false, defaultStride: [1, 1])
        var conv = Conv2d(weight: weight, bias: bias, outChannels: out)
        conv.window = window
        return conv
    }

    public func write(to a: inout [String: JSONValue]) {
        a["weight"] = .string(weight)
        if let bias { a["bias"] = .string(bias) }
        if let outChannels { a["out_channels"] = .int(outChannels) }
        window.write(to: &a, defaultStride: [1, 1])
    }

    public var parameters: [ParameterSlot] {
        [ParameterSlot("weight", weight, channels: [ChannelRef("out"), ChannelRef("in"), nil, nil])]
            + (bias.map { [ParameterSlot("bias", $0, channels: [ChannelRef("out")])] } ?? [])
    }

    public var isLinearInParameters: Bool { true }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let w = shapeOf(weight) else { throw NetworkError(.missingTensor, tensor: weight, "needed by a conv2d node is missing") }
        guard w.count == 4 else { throw NetworkError(.badShape, tensor: weight, "has shape \(w); a conv2d weight must be [out, in, kh, kw]") }
        if let outChannels, outChannels != w[0] {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the node declares \"out_channels\": \(outChannels)")
        }
        if let k = window.kernel, k != [w[2], w[3]] {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the node declares \"kernel_size\": \(k)")
        }
        if window.padding[0] * 2 > w[2] || window.padding[1] * 2 > w[3] {
            throw NetworkError(.badShape, tensor: weight, "padding \(window.padding) is more than half the kernel \(w[2])x\(w[3])")
        }
        if let bias {
            guard let b = shapeOf(bias) else { throw NetworkError(.missingTensor, tensor: bias, "needed by a conv2d node is missing") }
            guard b == [w[0]] else { throw NetworkError(.badShape, tensor: bias, "has shape \(b); expected [\(w[0])]") }
        }
        guard let (c, h, wd) = try imageShape(inputs[0], op: "conv2d") else { return [w[0], nil, nil] }
        if let c, c != w[1] { throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the node receives \(c) channels") }
        do {
            return [w[0], try window.outputSize(h, axis: 0, kernel: w[2]), try window.outputSize(wd, axis: 1, kernel: w[3])]
        } catch let e as NetworkError {
            throw NetworkError(.badShape, tensor: weight, e.problem)
        }
    }

    public func inputShapeHint(shapeOf: (String) -> [Int]?) -> SampleShape? {
        shapeOf(weight).flatMap { $0.count == 4 ? [$0[1], nil, nil] : nil }
    }

    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        .axes(inputs: [AxisChannel(axis: 0, ChannelRef("in"))], output: AxisChannel(axis: 0, ChannelRef("out")))
    }

    public func initialParameterShapes(_ inputs: [SampleShape?]) throws -> [(String, [Int])] {
        guard let c = inputs[0]?.first ?? nil else {
            throw NetworkError(.badShape, tensor: weight, "cannot be initialised: the node's input channels are unknown (declare \"input_shape\")")
        }
        guard let out = outChannels, let k = window.kernel else {
            throw NetworkError(.badAttribute, tensor: weight, key: outChannels == nil ? "out_channels" : "kernel_size",
                               "cannot be initialised without the node's \"out_channels\" and \"kernel_size\"")
        }
        return [(weight, [out, c, k[0], k[1]])] + (bias.map { [($0, [out])] } ?? [])
    }

    /// PyTorch's default: weight kaiming-uniform with a = sqrt(5) (uniform in +-1/sqrt(fan_in), fan_in = in*kh*kw),
    /// then the bias uniform in +-1/sqrt(fan_in).
    public func initialParameters(_ inputs: [SampleShape?], generator g: inout SeededGenerator) throws -> [(String, Tensor)] {
        guard let c = inputs[0]?.first ?? nil else {
            throw NetworkError(.badShape, tensor: weight, "cannot be initialised: the node's input channels are unknown (declare \"input_shape\")")
        }
        guard let out = outChannels, let k = window.kernel else {
            throw NetworkError(.badAttribute, tensor: weight, key: outChannels == nil ? "out_channels" : "kernel_size",
                               "cannot be initialised without the node's \"out_channels\" and \"kernel_size\"")
        }
        let fanIn = c * k[0] * k[1]
        let bound = 1 / Float(fanIn).squareRoot()
        var result = [(weight, Tensor(shape: [out, c, k[0], k[1]], storage: (0..<(out * fanIn)).map { _ in g.uniform(-bound, bound) }))]
        if let bias { result.append((bias, Tensor(shape: [out], storage: (0..<out).map { _ in g.uniform(-bound, bound) }))) }
        return result
    }

    func geometry(_ x: [Int], _ w: [Int]) -> Im2col.Geometry {
        let (h, wd) = (x[2], x[3])
        let ho = (h + 2 * window.padding[0] - w[2]) / window.stride[0] + 1
        let wo = (wd + 2 * window.padding[1] - w[3]) / window.stride[1] + 1
        return Im2col.Geometry(c: x[1], h: h, w: wd, kh: w[2], kw: w[3], sh: window.stride[0], sw: window.stride[1],
                               ph: window.padding[0], pw: window.padding[1], ho: ho, wo: wo)
    }

    /// Floats of columns per im2col tile (512 KB): about a core's L2 cache, so sgemm reads them from cache.
    static let tileFloats = 1 << 17

    /// Images per chunk when a whole image's columns fit a tile (several images, then one sgemm), else 1.
    static func chunk(_ g: Im2col.Geometry, images: Int) -> Int {
        max(1, min(images, tileFloats / max(1, g.rows * g.positions)))
    }

    /// Output rows per tile of one image.
    static func rowsPerTile(_ g: Im2col.Geometry) -> Int {
        max(1, min(g.ho, tileFloats / max(1, g.rows * g.wo)))
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let x = inputs[0]
        let w = context.parameter(weight)
        let b = bias.map { context.parameter($0) }
        let g = geometry(x.shape, w.shape)
        let n = x.shape[0], o = w.shape[0], k = g.rows, p = g.positions
        let chunk = Conv2d.chunk(g, images: n)
        let tileRows = chunk > 1 ? g.ho : Conv2d.rowsPerTile(g)
        let threads = BLAS.threads
        var cols = [Float](repeating: 0, count: k * max(chunk * p, tileRows * g.wo))
        var product = [Float](repeating: 0, count: chunk > 1 ? o * chunk * p : 0)
        let imageSize = g.c * g.h * g.w
        return Tensor(shape: [n, o, g.ho, g.wo]) { out in
            x.withUnsafeBufferPointer { xs in
                w.withUnsafeBufferPointer { ws in
                    cols.withUnsafeMutableBufferPointer { cs in
                        product.withUnsafeMutableBufferPointer { ps in
                            // C = bias (broadcast) + W cols: sgemm with beta 1 over the bias, or beta 0.
                            func multiply(into c: UnsafeMutablePointer<Float>, width: Int, ldc: Int) {
                                if let b {
                                    b.withUnsafeBufferPointer { bs in
                                        for r in 0..<o { (c + r * ldc).update(repeating: bs[r], count: width) }
                                    }
                                }
                                BLAS.sgemm(transA: false, transB: false, m: o, n: width, k: k, alpha: 1, a: ws.baseAddress!, lda: k,
                                           b: cs.baseAddress!, ldb: width, beta: b == nil ? 0 : 1, c: c, ldc: ldc)
                            }
                            var start = 0
                            while start < n {
                                let images = min(chunk, n - start)
                                let source = xs.baseAddress! + start * imageSize
                                if images == 1 {
                                    // One image, in tiles of output rows, each straight into the output.
                                    var row = 0
                                    while row < g.ho {
                                        let rows = min(tileRows, g.ho - row)
                                        Im2col.fill(g, x: source, images: 1, outRows: row..<(row + rows), cols: cs.baseAddress!, threads: threads)
                                        multiply(into: out.baseAddress! + start * o * p + row * g.wo, width: rows * g.wo, ldc: p)
                                        row += rows
                                    }
                                } else {
                                    // Several small images: one sgemm into [o, images*p], then each image's block out.
                                    let width = images * p
                                    Im2col.fill(g, x: source, images: images, outRows: 0..<g.ho, cols: cs.baseAddress!, threads: threads)
                                    multiply(into: ps.baseAddress!, width: width, ldc: width)
                                    for i in 0..<images {
                                        for r in 0..<o {
                                            (out.baseAddress! + ((start + i) * o + r) * p).update(from: ps.baseAddress! + r * width + i * p, count: p)
                                        }
                                    }
                                }
                                start += images
                            }
                        }
                    }
                }
            }
        }
    }

    public func backward(_ context: inout BackwardContext) {
        let x = context.inputs[0]
        let w = context.parameter(weight)
        let dy = context.outputGradient
        let g = geometry(x.shape, w.shape)
        let n = x.shape[0], o = w.shape[0], k = g.rows, p = g.positions
        let chunk = Conv2d.chunk(g, images: n)
        var cols = [Float](repeating: 0, count: k * chunk * p)
        var dyChunk = [Float](repeating: 0, count: o * chunk * p)
        var dW = [Float](repeating: 0, count: o * k)
        var dB = [Double](repeating: 0, count: o)
        let wantsInput = context.wantsInputGradient[0]
        var dx = wantsInput ? [Float](repeating: 0, count: x.count) : []
        x.withUnsafeBufferPointer { xs in
            w.withUnsafeBufferPointer { ws in
                dy.withUnsafeBufferPointer { ds in
                    var start = 0
                    while start < n {
                        let images = min(chunk, n - start)
                        let width = images * p
                        // dY of these images as [o, images*p].
                        dyChunk.withUnsafeMutableBufferPointer { dc in
                            for i in 0..<images {
                                for r in 0..<o {
                                    (dc.baseAddress! + r * width + i * p).update(from: ds.baseAddress! + ((start + i) * o + r) * p, count: p)
                                }
                            }
                            for r in 0..<o {
                                var s = 0.0
                                for j in 0..<width { s += Double(dc[r * width + j]) }
                                dB[r] += s
                            }
                        }
                        cols.withUnsafeMutableBufferPointer { cs in
                            Im2col.fill(g, x: xs.baseAddress! + start * g.c * g.h * g.w, images: images, outRows: 0..<g.ho,
                                        cols: cs.baseAddress!, threads: BLAS.threads)
                        }
                        // dW += dY cols^T.
                        dyChunk.withUnsafeBufferPointer { dc in
                            cols.withUnsafeBufferPointer { cs in
                                dW.withUnsafeMutableBufferPointer { dws in
                                    BLAS.sgemm(transA: false, transB: true, m: o, n: k, k: width, alpha: 1, a: dc.baseAddress!, lda: width,
                                               b: cs.baseAddress!, ldb: width, beta: start == 0 ? 0 : 1, c: dws.baseAddress!, ldc: k)
                                }
                            }
                        }
                        if wantsInput {
                            // dcols = W^T dY, added back into the images.
                            dyChunk.withUnsafeBufferPointer { dc in
                                cols.withUnsafeMutableBufferPointer { cs in
                                    BLAS.sgemm(transA: true, transB: false, m: k, n: width, k: o, alpha: 1, a: ws.baseAddress!, lda: k,
                                               b: dc.baseAddress!, ldb: width, beta: 0, c: cs.baseAddress!, ldc: width)
                                }
                            }
                            cols.withUnsafeBufferPointer { cs in
                                dx.withUnsafeMutableBufferPointer { dxs in
                                    Im2col.accumulate(g, cols: cs.baseAddress!, images: images, dx: dxs.baseAddress! + start * g.c * g.h * g.w)
                                }
                            }
                        }
                        start += images
                    }
                }
            }
        }
        context.parameterGradients.append((weight, Tensor(shape: w.shape, storage: dW)))
        if let bias { context.parameterGradients.append((bias, Tensor(shape: [o], storage: dB.map { Float($0) }))) }
        if wantsInput { context.inputGradients[0] = Tensor(shape: x.shape, storage: dx) }
    }
}
