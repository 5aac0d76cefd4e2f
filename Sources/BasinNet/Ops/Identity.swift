import BasinTensor

/// The input unchanged: `{"op": "identity"}` (ONNX Identity nodes, placeholders).
public struct Identity: Op {
    public static let typeNames = ["identity"]

    public init() {}

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> Identity { Identity() }

    public var isLayoutOnly: Bool { true }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? { inputs[0] }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor { inputs.take(0) }

    public func backward(_ context: inout BackwardContext) {
        if context.wantsInputGradient[0] { context.inputGradients[0] = context.outputGradient }
    }
}
