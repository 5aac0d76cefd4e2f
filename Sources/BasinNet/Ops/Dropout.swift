import BasinTensor

/// Dropout (PyTorch nn.Dropout): identity in eval mode; in train mode each value is zeroed with probability
/// `p` and the others scaled by 1 / (1 - p), the mask drawn from the run's seed (reproducible).
/// Architecture file: `{"op": "dropout", "p": 0.5}`.
public struct Dropout: Op {
    public static let typeNames = ["dropout"]

    public var p: Double

    public init(p: Double = 0.5) { self.p = p }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> Dropout {
        let p = try a.double("p", default: 0.5)
        guard p >= 0 && p < 1 else { throw a.error("p", "must be in [0, 1)") }
        return Dropout(p: p)
    }

    public func write(to a: inout [String: JSONValue]) { a["p"] = .number(p) }

    /// At eval, which is when path evaluation looks: no arithmetic.
    public var isLayoutOnly: Bool { true }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? { inputs[0] }

    struct Saved: Sendable { let scale: [Float] }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        var y = inputs.take(0)
        guard context.mode == .train, p > 0 else { return y }
        var g = SeededGenerator(seed: context.seed)
        let keep = Float(1 / (1 - p))
        let scale = (0..<y.count).map { _ in g.nextUnit() < p ? Float(0) : keep }
        y.withUnsafeMutableBufferPointer { v in for i in 0..<v.count { v[i] *= scale[i] } }
        if context.recordForBackward { context.saved = Saved(scale: scale) }
        return y
    }

    public func backward(_ context: inout BackwardContext) {
        guard context.wantsInputGradient[0] else { return }
        guard let saved = context.saved as? Saved else {
            context.inputGradients[0] = context.outputGradient
            return
        }
        var dx = context.outputGradient
        dx.withUnsafeMutableBufferPointer { v in for i in 0..<v.count { v[i] *= saved.scale[i] } }
        context.inputGradients[0] = dx
    }
}
