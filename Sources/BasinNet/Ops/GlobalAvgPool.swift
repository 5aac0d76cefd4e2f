import BasinTensor

/// The mean over every position after the channel axis: [C, H, W] -> [C] (PyTorch `x.mean((2, 3))`,
/// ONNX GlobalAveragePool / ReduceMean over the spatial axes). With `keepdims` the output is [C, 1, 1].
/// Architecture file: `{"op": "global_avg_pool", "keepdims": false}`.
public struct GlobalAvgPool: Op {
    public static let typeNames = ["global_avg_pool", "globalaveragepool", "adaptive_avg_pool"]

    public var keepDims: Bool
    /// ONNX ReduceMean's `axes` as the graph gives them (negative ones count from the end of the [N, C, ...]
    /// input). The input's rank is only known when shapes are inferred, so they are checked there: this op is
    /// ReduceMean only when they are every axis after the channel axis ([2, 3] of a 4-D input, [2, 3, 4] of a
    /// 5-D one); any other set is an error naming the node. nil for GlobalAveragePool and arch files.
    public var reduceAxes: [Int]?

    public init(keepDims: Bool = false, reduceAxes: [Int]? = nil) {
        self.keepDims = keepDims
        self.reduceAxes = reduceAxes
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> GlobalAvgPool {
        if typeName == "adaptive_avg_pool", let size = try a.optionalInts("output_size", count: 2, minimum: 1), size != [1, 1] {
            throw a.error("output_size", "only output size 1 (a global mean) is supported")
        }
        return GlobalAvgPool(keepDims: try a.bool("keepdims", default: false))
    }

    public func write(to a: inout [String: JSONValue]) {
        if keepDims { a["keepdims"] = .bool(true) }
    }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let x = inputs[0] else { return nil }
        guard x.count >= 2 else {
            throw NetworkError(.badShape, "global_avg_pool takes [C, positions...] per sample, got \(Shapes.describe(x))")
        }
        if let reduceAxes {
            let rank = x.count + 1
            let spatial = Array(2..<rank)
            let normalised = reduceAxes.map { $0 < 0 ? $0 + rank : $0 }
            guard normalised.sorted() == spatial else {
                throw NetworkError(.badAttribute, "ReduceMean over axes \(reduceAxes) of a \(rank)-D input [N, C, ...] (\(Shapes.describe(x)) per sample) is not supported: only the mean over every axis after the channel axis (\(spatial))")
            }
        }
        return keepDims ? [x[0]] + Array(repeating: 1, count: x.count - 1) : [x[0]]
    }

    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        .axes(inputs: [AxisChannel(axis: 0, ChannelRef("c"))], output: AxisChannel(axis: 0, ChannelRef("c")))
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let x = inputs[0]
        let n = x.shape[0], c = x.shape[1]
        let positions = x.count / max(1, n * c)
        let shape = keepDims ? [n, c] + Array(repeating: 1, count: x.rank - 2) : [n, c]
        return Tensor(shape: shape) { out in
            x.withUnsafeBufferPointer { xs in
                for plane in 0..<(n * c) {
                    let src = xs.baseAddress! + plane * positions
                    var s = 0.0
                    for j in 0..<positions { s += Double(src[j]) }
                    out[plane] = Float(s / Double(positions))
                }
            }
        }
    }

    public func backward(_ context: inout BackwardContext) {
        guard context.wantsInputGradient[0] else { return }
        let x = context.inputs[0]
        let dy = context.outputGradient
        let planes = x.shape[0] * x.shape[1]
        let positions = x.count / max(1, planes)
        let scale = 1 / Float(positions)
        context.inputGradients[0] = Tensor(shape: x.shape) { out in
            dy.withUnsafeBufferPointer { g in
                for plane in 0..<planes {
                    (out.baseAddress! + plane * positions).initialize(repeating: g[plane] * scale, count: positions)
                }
            }
        }
    }
}
