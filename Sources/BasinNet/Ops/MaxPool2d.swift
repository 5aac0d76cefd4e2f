import BasinTensor

/// 2-D max pooling (PyTorch nn.MaxPool2d, dilation 1, floor mode): images [C, H, W] per sample; padding counts
/// as -infinity. Architecture file: `{"op": "maxpool2d", "kernel_size": K, "stride": S (K), "padding": P (0)}`.
public struct MaxPool2d: Op {
    public static let typeNames = ["maxpool2d", "maxpool", "max_pool2d"]

    public var window: Window2d

    public init(kernel: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0]) {
        window = Window2d(kernel: kernel, stride: stride ?? kernel, padding: padding)
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> MaxPool2d {
        if try a.bool("ceil_mode", default: false) { throw a.error("ceil_mode", "ceil mode is not supported") }
        let w = try Window2d.read(&a, kernelRequired: true, defaultStride: nil)
        return MaxPool2d(kernel: w.kernel!, stride: w.stride, padding: w.padding)
    }

    public func write(to a: inout [String: JSONValue]) { window.write(to: &a, defaultStride: nil) }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let (c, h, w) = try imageShape(inputs[0], op: "maxpool2d") else { return nil }
        let k = window.kernel!
        return [c, try window.outputSize(h, axis: 0, kernel: k[0]), try window.outputSize(w, axis: 1, kernel: k[1])]
    }

    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        .axes(inputs: [AxisChannel(axis: 0, ChannelRef("c"))], output: AxisChannel(axis: 0, ChannelRef("c")))
    }

    /// For each output, the index (within its image plane) of the input that won.
    struct Saved: Sendable { let argmax: [Int32] }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let x = inputs[0]
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let k = window.kernel!, s = window.stride, p = window.padding
        let ho = (h + 2 * p[0] - k[0]) / s[0] + 1, wo = (w + 2 * p[1] - k[1]) / s[1] + 1
        let record = context.recordForBackward
        var argmax = [Int32](repeating: 0, count: record ? n * c * ho * wo : 0)
        let y = Tensor(shape: [n, c, ho, wo]) { out in
            x.withUnsafeBufferPointer { xs in
                argmax.withUnsafeMutableBufferPointer { am in
                    for plane in 0..<(n * c) {
                        let src = xs.baseAddress! + plane * h * w
                        for oh in 0..<ho {
                            let i0 = max(0, oh * s[0] - p[0]), i1 = min(h, oh * s[0] - p[0] + k[0])
                            for ow in 0..<wo {
                                let j0 = max(0, ow * s[1] - p[1]), j1 = min(w, ow * s[1] - p[1] + k[1])
                                var best = -Float.infinity
                                var at = i0 * w + j0
                                for i in i0..<i1 {
                                    for j in j0..<j1 where src[i * w + j] > best || src[i * w + j].isNaN {
                                        best = src[i * w + j]
                                        at = i * w + j
                                        if best.isNaN { break }
                                    }
                                }
                                let o = (plane * ho + oh) * wo + ow
                                out[o] = best
                                if record { am[o] = Int32(at) }
                            }
                        }
                    }
                }
            }
        }
        if record { context.saved = Saved(argmax: argmax) }
        return y
    }

    public func backward(_ context: inout BackwardContext) {
        guard context.wantsInputGradient[0], let saved = context.saved as? Saved else { return }
        let x = context.inputs[0]
        let dy = context.outputGradient
        let plane = x.shape[2] * x.shape[3], outPlane = dy.shape[2] * dy.shape[3]
        var dx = Tensor.zeros(x.shape)
        dx.withUnsafeMutableBufferPointer { d in
            dy.withUnsafeBufferPointer { g in
                for o in 0..<g.count {
                    d[(o / outPlane) * plane + Int(saved.argmax[o])] += g[o]
                }
            }
        }
        context.inputGradients[0] = dx
    }
}
