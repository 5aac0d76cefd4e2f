import BasinTensor

/// 2-D average pooling (PyTorch nn.AvgPool2d, floor mode): images [C, H, W] per sample. With
/// `count_include_pad` (PyTorch's default) the padding's zeros count in the mean. Architecture file:
/// `{"op": "avgpool2d", "kernel_size": K, "stride": S (K), "padding": P (0), "count_include_pad": true}`.
public struct AvgPool2d: Op {
    public static let typeNames = ["avgpool2d", "avgpool", "avg_pool2d"]

    public var window: Window2d
    public var countIncludePad: Bool

    public init(kernel: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0], countIncludePad: Bool = true) {
        window = Window2d(kernel: kernel, stride: stride ?? kernel, padding: padding)
        self.countIncludePad = countIncludePad
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> AvgPool2d {
        if try a.bool("ceil_mode", default: false) { throw a.error("ceil_mode", "ceil mode is not supported") }
        let w = try Window2d.read(&a, kernelRequired: true, defaultStride: nil)
        return AvgPool2d(kernel: w.kernel!, stride: w.stride, padding: w.padding, countIncludePad: try a.bool("count_include_pad", default: true))
    }

    public func write(to a: inout [String: JSONValue]) {
        window.write(to: &a, defaultStride: nil)
        if !countIncludePad { a["count_include_pad"] = .bool(false) }
    }

    public var isLinearInParameters: Bool { false }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let (c, h, w) = try imageShape(inputs[0], op: "avgpool2d") else { return nil }
        let k = window.kernel!
        return [c, try window.outputSize(h, axis: 0, kernel: k[0]), try window.outputSize(w, axis: 1, kernel: k[1])]
    }

    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        .axes(inputs: [AxisChannel(axis: 0, ChannelRef("c"))], output: AxisChannel(axis: 0, ChannelRef("c")))
    }

    /// Visits every output with its window [i0, i1) x [j0, j1) inside the image and its divisor.
    private func windows(h: Int, w: Int, _ body: (_ o: Int, _ i0: Int, _ i1: Int, _ j0: Int, _ j1: Int, _ divisor: Float) -> Void) {
        let k = window.kernel!, s = window.stride, p = window.padding
        let ho = (h + 2 * p[0] - k[0]) / s[0] + 1, wo = (w + 2 * p[1] - k[1]) / s[1] + 1
        for oh in 0..<ho {
            let a0 = oh * s[0] - p[0], a1 = min(a0 + k[0], h + p[0])
            let i0 = max(0, a0), i1 = min(h, a1)
            for ow in 0..<wo {
                let b0 = ow * s[1] - p[1], b1 = min(b0 + k[1], w + p[1])
                let j0 = max(0, b0), j1 = min(w, b1)
                let divisor = countIncludePad ? Float((a1 - a0) * (b1 - b0)) : Float(max(1, (i1 - i0) * (j1 - j0)))
                body(oh * wo + ow, i0, i1, j0, j1, divisor)
            }
        }
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let x = inputs[0]
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let k = window.kernel!, s = window.stride, p = window.padding
        let ho = (h + 2 * p[0] - k[0]) / s[0] + 1, wo = (w + 2 * p[1] - k[1]) / s[1] + 1
        return Tensor(shape: [n, c, ho, wo]) { out in
            x.withUnsafeBufferPointer { xs in
                for plane in 0..<(n * c) {
                    let src = xs.baseAddress! + plane * h * w
                    let dst = out.baseAddress! + plane * ho * wo
                    windows(h: h, w: w) { o, i0, i1, j0, j1, divisor in
                        var sum: Float = 0
                        for i in i0..<i1 { for j in j0..<j1 { sum += src[i * w + j] } }
                        dst[o] = sum / divisor
                    }
                }
            }
        }
    }

    public func backward(_ context: inout BackwardContext) {
        guard context.wantsInputGradient[0] else { return }
        let x = context.inputs[0]
        let dy = context.outputGradient
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let outPlane = dy.shape[2] * dy.shape[3]
        var dx = Tensor.zeros(x.shape)
        dx.withUnsafeMutableBufferPointer { d in
            dy.withUnsafeBufferPointer { g in
                for plane in 0..<(n * c) {
                    let dst = d.baseAddress! + plane * h * w
                    let src = g.baseAddress! + plane * outPlane
                    windows(h: h, w: w) { o, i0, i1, j0, j1, divisor in
                        let v = src[o] / divisor
                        for i in i0..<i1 { for j in j0..<j1 { dst[i * w + j] += v } }
                    }
                }
            }
        }
        context.inputGradients[0] = dx
    }
}
