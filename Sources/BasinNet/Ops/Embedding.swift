import BasinTensor

/// Token embedding (nn.Embedding): token ids [N, L] (held as exact Float32) -> rows of weight [V, D],
/// [N, L, D]. Architecture file: `{"op": "embedding", "weight": NAME, "vocabulary": V?, "width": D?}`
/// (`vocabulary` and `width` only to initialise from scratch, N(0, 1) as PyTorch does).
public struct Embedding: Op {
    public static let typeNames = ["embedding"]

    public var weight: String
    public var vocabulary: Int?
    public var width: Int?

    public init(weight: String, vocabulary: Int? = nil, width: Int? = nil) {
        self.weight = weight
        self.vocabulary = vocabulary
        self.width = width
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> Embedding {
        Embedding(weight: try a.string("weight"), vocabulary: try a.optionalInt("vocabulary", minimum: 1),
                  width: try a.optionalInt("width", minimum: 1))
    }

    public func write(to a: inout [String: JSONValue]) {
        a["weight"] = .string(weight)
        if let vocabulary { a["vocabulary"] = .int(vocabulary) }
        if let width { a["width"] = .int(width) }
    }

    public var parameters: [ParameterSlot] { [ParameterSlot("weight", weight, channels: [nil, ChannelRef("out")])] }

    /// Each output row is a row of the weight: a combination of weights gives the same combination of outputs.
    public var isLinearInParameters: Bool { true }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let w = shapeOf(weight) else { throw NetworkError(.missingTensor, tensor: weight, "needed by an embedding node is missing") }
        guard w.count == 2 else { throw NetworkError(.badShape, tensor: weight, "has shape \(w); an embedding weight must be [vocabulary, width]") }
        if let vocabulary, vocabulary != w[0] {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the node declares \"vocabulary\": \(vocabulary)")
        }
        if let width, width != w[1] {
            throw NetworkError(.badShape, tensor: weight, "has shape \(w) but the node declares \"width\": \(width)")
        }
        guard let x = inputs[0] else { return [nil, w[1]] }
        guard x.count == 1 else {
            throw NetworkError(.badShape, tensor: weight, "an embedding takes token ids [L] per sample, not \(Shapes.describe(x))")
        }
        return x + [w[1]]
    }

    /// Token ids of any length.
    public func inputShapeHint(shapeOf: (String) -> [Int]?) -> SampleShape? { [nil] }

    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        .axes(inputs: [nil], output: AxisChannel(axis: 1, ChannelRef("out")))
    }

    public func initialParameterShapes(_ inputs: [SampleShape?]) throws -> [(String, [Int])] {
        guard let vocabulary, let width else {
            throw NetworkError(.badAttribute, tensor: weight, key: vocabulary == nil ? "vocabulary" : "width",
                               "an embedding cannot be initialised without its \"vocabulary\" and \"width\"")
        }
        return [(weight, [vocabulary, width])]
    }

    public func initialParameters(_ inputs: [SampleShape?], generator g: inout SeededGenerator) throws -> [(String, Tensor)] {
        guard let vocabulary, let width else {
            throw NetworkError(.badAttribute, tensor: weight, key: vocabulary == nil ? "vocabulary" : "width",
                               "an embedding cannot be initialised without its \"vocabulary\" and \"width\"")
        }
        return [(weight, Tensor(shape: [vocabulary, width], storage: (0..<(vocabulary * width)).map { _ in Float(g.normal()) }))]
    }

    /// The first id of `ids` that is not a row of a `vocabulary`-row table (nil: all are).
    public static func firstInvalidID(_ ids: Tensor, vocabulary: Int) -> (index: Int, value: Float)? {
        ids.withUnsafeBufferPointer { xs in
            for i in 0..<xs.count {
                let v = xs[i]
                if !(v >= 0 && v < Float(vocabulary)) || v != v.rounded() { return (i, v) }
            }
            return nil
        }
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let ids = inputs[0]
        let w = context.parameter(weight)
        let (v, d) = (w.shape[0], w.shape[1])
        return Tensor(shape: ids.shape + [d]) { out in
            ids.withUnsafeBufferPointer { xs in
                w.withUnsafeBufferPointer { ws in
                    for i in 0..<xs.count {
                        let id = Int(xs[i])
                        let o = out.baseAddress! + i * d
                        // Data is checked against the vocabulary before it reaches the network
                        // (LoadedModel.check); a stray id gives a zero row rather than a read out of bounds.
                        if id >= 0 && id < v {
                            o.update(from: ws.baseAddress! + id * d, count: d)
                        } else {
                            o.update(repeating: 0, count: d)
                        }
                    }
                }
            }
        }
    }

    public func backward(_ c: inout BackwardContext) {
        let ids = c.inputs[0]
        let w = c.parameter(weight)
        let (v, d) = (w.shape[0], w.shape[1])
        var dw = Tensor.zeros(w.shape)
        dw.withUnsafeMutableBufferPointer { g in
            ids.withUnsafeBufferPointer { xs in
                c.outputGradient.withUnsafeBufferPointer { dy in
                    for i in 0..<xs.count {
                        let id = Int(xs[i])
                        guard id >= 0 && id < v else { continue }
                        let row = g.baseAddress! + id * d, src = dy.baseAddress! + i * d
                        for j in 0..<d { row[j] += src[j] }
                    }
                }
            }
        }
        c.parameterGradients.append((weight, dw))
    }
}
