import BasinTensor

/// A new per-sample shape for the same values in the same order (one dimension may be -1: inferred).
/// Architecture file: `{"op": "reshape", "shape": [32, 4, 4]}` (the batch axis is not listed).
public struct Reshape: Op {
    public static let typeNames = ["reshape", "view"]

    /// Per-sample target shape; nil entries are inferred (at most one).
    public var shape: SampleShape

    public init(shape: SampleShape) { self.shape = shape }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> Reshape {
        guard let shape = try a.optionalShape("shape") else { throw a.error("shape", "a reshape node needs this key") }
        guard shape.filter({ $0 == nil }).count <= 1 else { throw a.error("shape", "at most one dimension can be -1") }
        return Reshape(shape: shape)
    }

    public func write(to a: inout [String: JSONValue]) {
        a["shape"] = .array(shape.map { $0.map { .int($0) } ?? .int(-1) })
    }

    public var isLayoutOnly: Bool { true }

    /// The target shape for `count` values per sample.
    func resolved(_ count: Int) -> [Int]? {
        let fixed: [Int] = shape.compactMap { $0 }
        guard let known = Shapes.count(fixed), known > 0 else { return nil }
        if shape.contains(where: { $0 == nil }) {
            guard count % known == 0 else { return nil }
            return shape.map { $0 ?? count / known }
        }
        return known == count ? shape.map { $0! } : nil
    }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        let fixed: [Int] = shape.compactMap { $0 }
        _ = try Shapes.checkedCount(fixed, what: "the reshape target")
        guard let x = inputs[0], let count = try Shapes.checkedCount(x, what: "the reshaped input") else {
            return shape.contains(where: { $0 == nil }) ? nil : shape
        }
        guard let r = resolved(count) else {
            throw NetworkError(.badShape, "cannot reshape samples of shape \(Shapes.describe(x)) (\(count) values) to \(Shapes.describe(shape))")
        }
        return r
    }

    /// To one axis: like flatten, each channel of the first axis spread over the positions after it.
    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        guard let x = inputs[0], !x.isEmpty, let block = Shapes.count(Array(x.dropFirst())) else { return .opaque }
        if shape.count == 1 {
            return .axes(inputs: [AxisChannel(axis: 0, ChannelRef("c"))], output: AxisChannel(axis: 0, ChannelRef("c", block: block)))
        }
        if let first = shape.first ?? nil, first == x[0] {
            return .axes(inputs: [AxisChannel(axis: 0, ChannelRef("c"))], output: AxisChannel(axis: 0, ChannelRef("c")))
        }
        return .opaque
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let x = inputs.take(0)
        guard let r = resolved(x.count / max(1, x.rows)) else {
            preconditionFailure("reshape of \(x.shape) to \(shape): the graph was not validated for this input")
        }
        return x.reshaped([x.rows] + r)
    }

    public func backward(_ context: inout BackwardContext) {
        if context.wantsInputGradient[0] { context.inputGradients[0] = context.outputGradient.reshaped(context.inputs[0].shape) }
    }
}
