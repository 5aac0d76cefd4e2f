import BasinTensor

/// [N, d1, d2, ...] -> [N, d1*d2*...] (PyTorch's flatten from axis 1): `{"op": "flatten"}`.
public struct Flatten: Op {
    public static let typeNames = ["flatten"]

    public init() {}

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> Flatten { Flatten() }

    public var isLayoutOnly: Bool { true }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let x = inputs[0] else { return nil }
        return [try Shapes.checkedCount(x, what: "the flattened input")]
    }

    /// The first axis's channels, each spread over the positions after it.
    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        guard let x = inputs[0], !x.isEmpty, let block = Shapes.count(Array(x.dropFirst())) else { return .opaque }
        return .axes(inputs: [AxisChannel(axis: 0, ChannelRef("c"))], output: AxisChannel(axis: 0, ChannelRef("c", block: block)))
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        let x = inputs.take(0)
        return x.reshaped([x.rows, x.columns])
    }

    public func backward(_ c: inout BackwardContext) {
        if c.wantsInputGradient[0] { c.inputGradients[0] = c.outputGradient.reshaped(c.inputs[0].shape) }
    }
}

extension Op where Self == Flatten {
    public static var flatten: Flatten { Flatten() }
}
