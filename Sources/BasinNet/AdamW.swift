import BasinTensor
import Foundation

/// AdamW (Loshchilov & Hutter) as torch.optim.AdamW computes it: weight decay decoupled from the gradient
/// (p <- p (1 - lr wd) before the Adam step) and applied only to the tensors `decays` selects — by default
/// those with two or more dimensions (matrices and embeddings, not norm weights or biases), the usual
/// transformer recipe. The learning rate may change between steps (`learningRate` is read each step).
public struct AdamW: Optimizer {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float
    /// Which tensors (by their shapes) get weight decay.
    public var decays: @Sendable ([Int]) -> Bool
    private var m: [Tensor] = []
    private var v: [Tensor] = []
    public private(set) var stepCount = 0

    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01,
                decays: @escaping @Sendable ([Int]) -> Bool = { $0.count >= 2 }) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decays = decays
    }

    public mutating func step(_ parameters: inout [Tensor], gradients: [Tensor]) {
        precondition(parameters.count == gradients.count, "AdamW: \(parameters.count) tensors, \(gradients.count) gradients")
        if m.isEmpty {
            m = parameters.map { Tensor.zeros(like: $0) }
            v = parameters.map { Tensor.zeros(like: $0) }
        }
        stepCount += 1
        // Bias corrections as PyTorch's single-tensor path: step size lr / (1 - b1^t), denominator
        // sqrt(v) / sqrt(1 - b2^t) + eps.
        let c1 = 1 - pow(Double(beta1), Double(stepCount))
        let c2 = 1 - pow(Double(beta2), Double(stepCount))
        let stepSize = Float(Double(learningRate) / c1)
        let c2Root = Float(c2.squareRoot())
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        for i in parameters.indices {
            let decay: Float = weightDecay != 0 && decays(parameters[i].shape) ? 1 - learningRate * weightDecay : 1
            let g = gradients[i]
            precondition(g.shape == parameters[i].shape, "AdamW: gradient \(g.shape) for a tensor of shape \(parameters[i].shape)")
            m[i].withUnsafeMutableBufferPointer { ms in
                v[i].withUnsafeMutableBufferPointer { vs in
                    g.withUnsafeBufferPointer { gs in
                        parameters[i].withUnsafeMutableBufferPointer { ps in
                            for k in 0..<ps.count {
                                let gk = gs[k]
                                ms[k] = b1 * ms[k] + (1 - b1) * gk
                                vs[k] = b2 * vs[k] + (1 - b2) * gk * gk
                                ps[k] = ps[k] * decay - stepSize * ms[k] / (vs[k].squareRoot() / c2Root + eps)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A learning-rate schedule over a fixed number of steps: linear warmup from 0, a constant stretch, then a
/// linear decay to 0 over the last `decaySteps` (the shapes of Hugging Face's `get_constant_schedule_with_warmup`
/// and `get_linear_schedule_with_warmup`).
public struct WarmupDecaySchedule: Sendable, Equatable, Codable {
    public var peak: Float
    public var totalSteps: Int
    public var warmupSteps: Int
    public var decaySteps: Int

    public init(peak: Float, totalSteps: Int, warmupSteps: Int = 0, decaySteps: Int = 0) {
        self.peak = peak
        self.totalSteps = max(1, totalSteps)
        self.warmupSteps = max(0, warmupSteps)
        self.decaySteps = max(0, decaySteps)
    }

    /// The rate for step `s` (0-based): s / warmup during warmup (as LambdaLR gives, so step 0 has rate 0
    /// when there is warmup), then 1, then (total - s) / decay over the tail.
    public func rate(at s: Int) -> Float {
        var f: Double = 1
        if s < warmupSteps { f = Double(s) / Double(warmupSteps) }
        let tailStart = totalSteps - decaySteps
        if decaySteps > 0, s >= tailStart { f = min(f, Double(totalSteps - s) / Double(decaySteps)) }
        return peak * Float(max(0, f))
    }
}
