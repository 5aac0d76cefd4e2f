import BasinTensor
import Foundation

/// Element-wise activation functions.
public enum Activation: String, Sendable, Codable, CaseIterable {
    case relu, tanh, gelu
    /// GPT-2's tanh approximation of GELU (Hugging Face `gelu_new`).
    case geluNew = "gelu_new"
    /// x sigmoid(x) (LLaMA's MLP gate).
    case silu
}

/// An element-wise activation: `{"op": "relu"}`, `"tanh"`, `"gelu"` (PyTorch's exact erf form),
/// `"gelu_new"` (the tanh approximation GPT-2 uses) or `"silu"`.
public struct ActivationOp: ElementwiseOp {
    public static let typeNames = Activation.allCases.map(\.rawValue)

    public var function: Activation

    public init(_ function: Activation) { self.function = function }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> ActivationOp {
        ActivationOp(Activation(rawValue: typeName)!)
    }

    public var typeName: String { function.rawValue }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? { inputs[0] }

    public func apply(_ v: UnsafeMutableBufferPointer<Float>) {
        switch function {
        case .relu:
            for i in 0..<v.count { v[i] = v[i] > 0 ? v[i] : 0 }
        case .tanh:
            for i in 0..<v.count { v[i] = Foundation.tanh(v[i]) }
        case .gelu:
            // Exact form, as PyTorch's default: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
            for i in 0..<v.count { v[i] = 0.5 * v[i] * (1 + erff(v[i] * 0.70710678118654752)) }
        case .geluNew:
            TransformerActivationKernel.geluNew(v)
        case .silu:
            TransformerActivationKernel.silu(v)
        }
    }

    public func backward(_ c: inout BackwardContext) {
        guard c.wantsInputGradient[0] else { return }
        let y = c.output
        var dx = c.outputGradient
        dx.withUnsafeMutableBufferPointer { d in
            y.withUnsafeBufferPointer { yv in
                switch function {
                case .relu:
                    for k in 0..<d.count where !(yv[k] > 0) { d[k] = 0 }
                case .tanh:
                    for k in 0..<d.count { d[k] *= 1 - yv[k] * yv[k] }
                case .gelu:
                    c.inputs[0].withUnsafeBufferPointer { xv in
                        for k in 0..<d.count {
                            let v = xv[k]
                            let cdf = 0.5 * (1 + erff(v * 0.70710678118654752))
                            let pdf = 0.39894228040143268 * expf(-0.5 * v * v)
                            d[k] *= cdf + v * pdf
                        }
                    }
                case .geluNew:
                    c.inputs[0].withUnsafeBufferPointer { xv in
                        for k in 0..<d.count { d[k] *= TransformerActivationKernel.geluNewDerivative(xv[k]) }
                    }
                case .silu:
                    c.inputs[0].withUnsafeBufferPointer { xv in
                        for k in 0..<d.count { d[k] *= TransformerActivationKernel.siluDerivative(xv[k]) }
                    }
                }
            }
        }
        c.inputGradients[0] = dx
    }
}

extension Op where Self == ActivationOp {
    public static func activation(_ a: Activation) -> ActivationOp { ActivationOp(a) }
}
