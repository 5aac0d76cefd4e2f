import BasinTensor

/// Learned absolute position embedding (GPT-2's wpe): adds row p of weight [P, D] to position p of
/// activations [N, L, D] (L <= P). Architecture file: `{"op": "position_embedding", "weight": NAME,
/// "positions": P?, "width": D?}` (the two only to initialise from scratch, N(0, 1) as nn.Embedding).
public struct PositionEmbedding: Op {
    public static let typeNames = ["position_embedding"]

    public var weight: String
    public var positions: Int?
    public var width: Int?

    public init(weight: String, positions: Int? = nil, width: Int? = nil) {
        self.weight = weight
        self.positions = positions
        self.width = width
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> PositionEmbedding {
        PositionEmbedding(weight: try a.string("weight"), positions: try a.optionalInt("positions", minimum: 1),
                          width: try a.optionalInt("width", minimum: 1))
    }

    public func write(to a: inout [String: JSONValue]) {
        a["weight"] = .string(weight)
        if let positions { a["positions"] = .int(positions) }
        if let width { a["width"] = .int(width) }
    }

    public var parameters: [ParameterSlot] { [ParameterSlot("weight", weight, channels: [nil, ChannelRef("c")])] }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let w = shapeOf(weight) else { throw NetworkError(.missingTensor, tensor: weight, "needed by a position embedding is missing") }
        guard w.count == 2 else { throw NetworkError(.badShape, tensor: weight, "has shape \(w); a position embedding must be [positions, width]") }
        guard let x = inputs[0] else { return [nil, w[1]] }
        guard x.count == 2 else {
            throw NetworkError(.badShape, tensor: weight, "a position embedding takes [L, width] per sample, not \(Shapes.describe(x))")
        }
        if let d = x[1], d != w[1] {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the node receives \(d) features")
        }
        if let l = x[0], l > w[0] {
            throw NetworkError(.badShape, tensor: weight, "holds \(w[0]) positions but the sequences are \(l) long")
        }
        return [x[0], w[1]]
    }

    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        .axes(inputs: [AxisChannel(axis: 1, ChannelRef("c"))], output: AxisChannel(axis: 1, ChannelRef("c")))
    }

    public func initialParameterShapes(_ inputs: [SampleShape?]) throws -> [(String, [Int])] {
        guard let positions, let width = width ?? (inputs[0]?.last ?? nil) else {
            throw NetworkError(.badAttribute, tensor: weight, key: "positions",
                               "a position embedding cannot be initialised without its \"positions\" and \"width\"")
        }
        return [(weight, [positions, width])]
    }

    public func initialParameters(_ inputs: [SampleShape?], generator g: inout SeededGenerator) throws -> [(String, Tensor)] {
        guard let positions, let width = width ?? (inputs[0]?.last ?? nil) else {
            throw NetworkError(.badAttribute, tensor: weight, key: "positions",
                               "a position embedding cannot be initialised without its \"positions\" and \"width\"")
        }
        return [(weight, Tensor(shape: [positions, width], storage: (0..<(positions * width)).map { _ in Float(g.normal()) }))]
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        var y = inputs.take(0)
        let w = context.parameter(weight)
        let d = w.shape[1]
        let l = y.shape.count >= 2 ? y.shape[y.rank - 2] : 1
        let n = y.count / max(1, l * d)
        precondition(l <= w.shape[0], "position embedding: \(l) positions, table of \(w.shape[0])")
        w.withUnsafeBufferPointer { ws in
            y.withUnsafeMutableBufferPointer { ys in
                for b in 0..<n {
                    for p in 0..<l {
                        let row = ys.baseAddress! + (b * l + p) * d, src = ws.baseAddress! + p * d
                        for j in 0..<d { row[j] += src[j] }
                    }
                }
            }
        }
        return y
    }

    public func backward(_ c: inout BackwardContext) {
        let w = c.parameter(weight)
        let d = w.shape[1]
        let dy = c.outputGradient
        let l = dy.shape.count >= 2 ? dy.shape[dy.rank - 2] : 1
        let n = dy.count / max(1, l * d)
        var dw = Tensor.zeros(w.shape)
        dw.withUnsafeMutableBufferPointer { g in
            dy.withUnsafeBufferPointer { gs in
                for b in 0..<n {
                    for p in 0..<l {
                        let row = g.baseAddress! + p * d, src = gs.baseAddress! + (b * l + p) * d
                        for j in 0..<d { row[j] += src[j] }
                    }
                }
            }
        }
        c.parameterGradients.append((weight, dw))
        if c.wantsInputGradient[0] { c.inputGradients[0] = dy }
    }
}
