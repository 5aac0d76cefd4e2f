import BasinTensor

/// A first-order optimiser over a list of tensors (model parameters, path bends, soup coefficients).
public protocol Optimizer {
    /// Read at every step, so a schedule may change it between steps.
    var learningRate: Float { get set }
    /// Updates `parameters` in place from their gradients (same order and shapes).
    mutating func step(_ parameters: inout [Tensor], gradients: [Tensor])
}

/// Stochastic gradient descent with momentum and L2 weight decay, as torch.optim.SGD computes it.
public struct SGD: Optimizer {
    public var learningRate: Float
    public var momentum: Float
    public var weightDecay: Float
    private var velocity: [Tensor] = []

    public init(learningRate: Float, momentum: Float = 0.9, weightDecay: Float = 0) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
    }

    public mutating func step(_ parameters: inout [Tensor], gradients: [Tensor]) {
        if velocity.isEmpty { velocity = parameters.map { Tensor.zeros(like: $0) } }
        for i in parameters.indices {
            var g = gradients[i]
            if weightDecay != 0 { g.addScaled(parameters[i], weightDecay) }
            if momentum != 0 {
                velocity[i].scale(by: momentum)
                velocity[i].addScaled(g, 1)
                g = velocity[i]
            }
            parameters[i].addScaled(g, -learningRate)
        }
    }
}

/// Adam (Kingma & Ba), with bias correction and optional L2 weight decay, as torch.optim.Adam computes it.
public struct Adam: Optimizer {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float
    private var m: [Tensor] = []
    private var v: [Tensor] = []
    private var t = 0

    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    public mutating func step(_ parameters: inout [Tensor], gradients: [Tensor]) {
        if m.isEmpty {
            m = parameters.map { Tensor.zeros(like: $0) }
            v = parameters.map { Tensor.zeros(like: $0) }
        }
        t += 1
        let c1 = 1 - Float(Double(beta1).power(t))
        let c2 = 1 - Float(Double(beta2).power(t))
        let step = learningRate / c1
        let (b1, b2, eps, wd) = (beta1, beta2, epsilon, weightDecay)
        for i in parameters.indices {
            let g = gradients[i]
            let p = parameters[i]
            m[i].withUnsafeMutableBufferPointer { ms in
                v[i].withUnsafeMutableBufferPointer { vs in
                    g.withUnsafeBufferPointer { gs in
                        p.withUnsafeBufferPointer { ps in
                            for k in 0..<ms.count {
                                let gk = gs[k] + wd * ps[k]
                                ms[k] = b1 * ms[k] + (1 - b1) * gk
                                vs[k] = b2 * vs[k] + (1 - b2) * gk * gk
                            }
                        }
                    }
                }
            }
            let mi = m[i], vi = v[i]
            parameters[i].withUnsafeMutableBufferPointer { ps in
                mi.withUnsafeBufferPointer { ms in
                    vi.withUnsafeBufferPointer { vs in
                        for k in 0..<ps.count {
                            ps[k] -= step * ms[k] / ((vs[k] / c2).squareRoot() + eps)
                        }
                    }
                }
            }
        }
    }
}

extension Double {
    fileprivate func power(_ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<n { r *= self }
        return r
    }
}

/// Which optimiser to build, as the CLI names them.
public enum OptimizerKind: String, Sendable, CaseIterable, Codable {
    case sgd, adam
    /// AdamW: weight decay decoupled from the gradient, on tensors with two or more dimensions only.
    case adamw

    public func make(learningRate: Float, momentum: Float = 0.9, weightDecay: Float = 0, beta2: Float = 0.999) -> any Optimizer {
        switch self {
        case .sgd: SGD(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay)
        case .adam: Adam(learningRate: learningRate, beta2: beta2, weightDecay: weightDecay)
        case .adamw: AdamW(learningRate: learningRate, beta2: beta2, weightDecay: weightDecay)
        }
    }
}
