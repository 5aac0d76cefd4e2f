import BasinTensor

/// Element-wise sum of two inputs of one shape (residual connections): `{"op": "add", "inputs": [A, B]}`.
/// Channel sets of the two inputs merge (a ResNet stage shares one permutation).
public struct Add: Op {
    public static let typeNames = ["add"]

    public init() {}

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> Add { Add() }

    public var inputCount: Int { 2 }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        guard let a = inputs[0] else { return inputs[1] }
        guard let b = inputs[1] else { return a }
        guard a.count == b.count, zip(a, b).allSatisfy({ $0 == nil || $1 == nil || $0 == $1 }) else {
            throw NetworkError(.badShape, "add sums shapes \(Shapes.describe(a)) and \(Shapes.describe(b))")
        }
        return zip(a, b).map { $0 ?? $1 }
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        var y = inputs.take(0)
        y.addScaled(inputs[1], 1)
        return y
    }

    public func backward(_ c: inout BackwardContext) {
        if c.wantsInputGradient[0] { c.inputGradients[0] = c.outputGradient }
        if c.wantsInputGradient[1] { c.inputGradients[1] = c.outputGradient }
    }
}

extension Op where Self == Add {
    public static var add: Add { Add() }
}
