import Foundation

/// The activations of transformer MLPs, value by value, with their derivatives.
public enum TransformerActivationKernel {
    /// sqrt(2 / pi).
    static let geluC: Float = 0.7978845608028654

    /// GPT-2's `gelu_new` (the tanh approximation): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    @inline(__always)
    public static func geluNew(_ x: Float) -> Float {
        0.5 * x * (1 + tanhf(geluC * (x + 0.044715 * x * x * x)))
    }

    /// d gelu_new / dx.
    @inline(__always)
    public static func geluNewDerivative(_ x: Float) -> Float {
        let x2 = x * x
        let t = tanhf(geluC * (x + 0.044715 * x2 * x))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * geluC * (1 + 3 * 0.044715 * x2)
    }

    /// SiLU (swish): x sigmoid(x).
    @inline(__always)
    public static func silu(_ x: Float) -> Float {
        x / (1 + expf(-x))
    }

    /// d silu / dx = s (1 + x (1 - s)), s = sigmoid(x).
    @inline(__always)
    public static func siluDerivative(_ x: Float) -> Float {
        let s = 1 / (1 + expf(-x))
        return s * (1 + x * (1 - s))
    }

    public static func geluNew(_ values: UnsafeMutableBufferPointer<Float>) {
        for i in values.indices { values[i] = geluNew(values[i]) }
    }

    public static func silu(_ values: UnsafeMutableBufferPointer<Float>) {
        for i in values.indices { values[i] = silu(values[i]) }
    }
}
