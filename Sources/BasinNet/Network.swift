import BasinIO
import BasinTensor
import Foundation

/// Loss and accuracy of a model on a data set.
public struct Metrics: Sendable, Codable, Equatable {
    /// Mean softmax cross-entropy (natural log).
    public var loss: Double
    /// Fraction of samples whose argmax logit is the label.
    public var accuracy: Double
    public var samples: Int

    public init(loss: Double, accuracy: Double, samples: Int) {
        self.loss = loss
        self.accuracy = accuracy
        self.samples = samples
    }

    public var error: Double { 1 - accuracy }
}

/// An architecture ready to run: forward, backward and evaluation, batched on BLAS.
public struct Network: Sendable {
    public let architecture: Architecture
    /// For each node, the index of the last node that reads its output (to free it early when evaluating).
    private let lastUse: [Int]

    public init(_ architecture: Architecture) {
        self.architecture = architecture
        var last = Array(repeating: -1, count: architecture.nodes.count)
        for (i, node) in architecture.nodes.enumerated() {
            for j in node.inputs where j >= 0 { last[j] = max(last[j], i) }
        }
        last[architecture.output] = Int.max
        lastUse = last
    }

    // MARK: Forward

    /// Every node's output for one batch. `keepAll: false` frees intermediate outputs once consumed
    /// (evaluation); backward needs them all. `overrides` supplies the outputs of some nodes (they are
    /// not computed), which lets path evaluation feed a precomputed first-layer pre-activation.
    public func forwardTrace(_ x: Tensor, _ params: ParameterSet, overrides: [Int: Tensor] = [:], keepAll: Bool = true) -> [Tensor?] {
        var outputs = [Tensor?](repeating: nil, count: architecture.nodes.count)
        for (i, node) in architecture.nodes.enumerated() {
            if let o = overrides[i] {
                outputs[i] = o
            } else if !keepAll, case let .activation(a) = node.op, let j = node.inputs.first, j >= 0, lastUse[j] == i {
                // The input dies here: take it out of the trace so the activation runs in place without a copy.
                var y = outputs[j]!
                outputs[j] = nil
                Network.activate(a, &y)
                outputs[i] = y
            } else {
                outputs[i] = apply(node, inputs: node.inputs.map { $0 < 0 ? x : outputs[$0]! }, params: params)
            }
            if !keepAll {
                for j in node.inputs where j >= 0 && lastUse[j] == i { outputs[j] = nil }
            }
        }
        return outputs
    }

    /// The logits for a batch.
    public func logits(_ x: Tensor, _ params: ParameterSet, overrides: [Int: Tensor] = [:]) -> Tensor {
        forwardTrace(x, params, overrides: overrides, keepAll: false)[architecture.output]!
    }

    private func apply(_ node: Node, inputs: [Tensor], params: ParameterSet) -> Tensor {
        switch node.op {
        case let .linear(w, b):
            return Network.linear(inputs[0], weight: params[w]!, bias: b.flatMap { params[$0] })
        case let .activation(a):
            var y = inputs[0]
            Network.activate(a, &y)
            return y
        case .flatten:
            let x = inputs[0]
            return x.reshaped([x.rows, x.columns])
        case .add:
            return inputs[0] + inputs[1]
        }
    }

    /// x [N, in] W^T [in, out] + b: the bias is broadcast into the output first and sgemm adds the product.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let n = x.rows, inF = x.columns, outF = weight.shape[0]
        precondition(weight.shape[1] == inF, "linear: input has \(inF) features, weight is \(weight.shape)")
        var y = Tensor(shape: [n, outF]) { out in
            if let bias {
                bias.withUnsafeBufferPointer { b in
                    for r in 0..<n { (out.baseAddress! + r * outF).update(from: b.baseAddress!, count: outF) }
                }
            } else {
                out.initialize(repeating: 0)
            }
        }
        x.withUnsafeBufferPointer { xs in
            weight.withUnsafeBufferPointer { ws in
                y.withUnsafeMutableBufferPointer { ys in
                    BLAS.sgemm(transA: false, transB: true, m: n, n: outF, k: inF, alpha: 1,
                               a: xs.baseAddress!, lda: inF, b: ws.baseAddress!, ldb: inF, beta: 1,
                               c: ys.baseAddress!, ldc: outF)
                }
            }
        }
        return y
    }

    /// Applies an activation in place.
    public static func activate(_ a: Activation, _ y: inout Tensor) {
        y.withUnsafeMutableBufferPointer { v in
            switch a {
            case .relu:
                for i in 0..<v.count { v[i] = v[i] > 0 ? v[i] : 0 }
            case .tanh:
                for i in 0..<v.count { v[i] = Foundation.tanh(v[i]) }
            case .gelu:
                // Exact form, as PyTorch's default: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
                for i in 0..<v.count { v[i] = 0.5 * v[i] * (1 + erff(v[i] * 0.70710678118654752)) }
            }
        }
    }

    // MARK: Loss

    /// Sum over rows of softmax cross-entropy, the number of argmax hits, and (optionally) the gradient of
    /// the *mean* loss over `normaliser` samples with respect to the logits.
    public static func crossEntropy(_ logits: Tensor, labels: ArraySlice<Int32>, normaliser: Int? = nil,
                                    wantGradient: Bool = false) -> (lossSum: Double, correct: Int, gradient: Tensor?) {
        let n = logits.rows, c = logits.columns
        precondition(labels.count == n, "\(labels.count) labels for \(n) rows")
        var lossSum = 0.0
        var correct = 0
        var grad: Tensor? = wantGradient ? Tensor.zeros([n, c]) : nil
        let scale = 1.0 / Double(normaliser ?? n)
        logits.withUnsafeBufferPointer { z in
            var g = grad?.storage ?? []
            g.withUnsafeMutableBufferPointer { gs in
                for r in 0..<n {
                    let row = z.baseAddress! + r * c
                    let label = Int(labels[labels.startIndex + r])
                    var best = 0
                    var m = row[0]
                    for j in 1..<c where row[j] > m {
                        m = row[j]
                        best = j
                    }
                    if best == label { correct += 1 }
                    var s = 0.0
                    for j in 0..<c { s += Foundation.exp(Double(row[j] - m)) }
                    let lse = Double(m) + Foundation.log(s)
                    let target = label >= 0 && label < c ? Double(row[label]) : Double.nan
                    lossSum += lse - target
                    if wantGradient {
                        let gr = gs.baseAddress! + r * c
                        for j in 0..<c {
                            let p = Foundation.exp(Double(row[j]) - lse)
                            gr[j] = Float((p - (j == label ? 1 : 0)) * scale)
                        }
                    }
                }
            }
            if wantGradient { grad = Tensor(shape: [n, c], storage: g) }
        }
        return (lossSum, correct, grad)
    }

    // MARK: Evaluation

    /// Loss and accuracy over a whole data set, in batches.
    public func evaluate(_ params: ParameterSet, on data: Dataset, batchSize: Int = 1024) -> Metrics {
        evaluate(on: data, batchSize: batchSize) { batch, _ in logits(batch, params) }
    }

    /// Evaluation with a custom way to produce each batch's logits (used by path evaluation).
    public func evaluate(on data: Dataset, batchSize: Int = 1024, logits: (Tensor, Range<Int>) -> Tensor) -> Metrics {
        var lossSum = 0.0
        var correct = 0
        var start = 0
        let x = data.x.reshaped([data.count, data.x.columns])
        while start < data.count {
            let end = min(data.count, start + batchSize)
            let batch = start == 0 && end == data.count ? x : x.rows(start..<end)
            let z = logits(batch, start..<end)
            let r = Network.crossEntropy(z, labels: data.y[start..<end])
            lossSum += r.lossSum
            correct += r.correct
            start = end
        }
        let n = max(1, data.count)
        return Metrics(loss: lossSum / Double(n), accuracy: Double(correct) / Double(n), samples: data.count)
    }

    // MARK: Backward

    /// Mean cross-entropy over the batch, its accuracy, and the gradient with respect to every parameter.
    public func lossAndGradients(_ params: ParameterSet, x: Tensor, y: ArraySlice<Int32>) -> (metrics: Metrics, gradients: ParameterSet) {
        let trace = forwardTrace(x, params, keepAll: true)
        let (lossSum, correct, dLogits) = Network.crossEntropy(trace[architecture.output]!, labels: y, wantGradient: true)
        let grads = backward(trace: trace, input: x, params: params, outputGradient: dLogits!)
        let n = max(1, x.rows)
        return (Metrics(loss: lossSum / Double(n), accuracy: Double(correct) / Double(n), samples: x.rows), grads)
    }

    /// Back-propagates `outputGradient` (d loss / d logits) through a trace; returns d loss / d parameter for
    /// every parameter the graph uses (parameters shared by several nodes accumulate).
    public func backward(trace: [Tensor?], input: Tensor, params: ParameterSet, outputGradient: Tensor) -> ParameterSet {
        let nodes = architecture.nodes
        var grad = [Tensor?](repeating: nil, count: nodes.count)
        grad[architecture.output] = outputGradient
        var pgrads: [String: Tensor] = [:]
        func accumulate(_ j: Int, _ g: Tensor) {
            guard j >= 0 else { return }
            if grad[j] == nil { grad[j] = g } else { grad[j]!.addScaled(g, 1) }
        }
        func accumulateParam(_ name: String, _ g: Tensor) {
            if pgrads[name] == nil { pgrads[name] = g } else { pgrads[name]!.addScaled(g, 1) }
        }
        for i in stride(from: nodes.count - 1, through: 0, by: -1) {
            guard let dy = grad[i] else { continue }
            let node = nodes[i]
            let xIn = node.inputs.first.map { $0 < 0 ? input : trace[$0]! }
            switch node.op {
            case let .linear(w, b):
                let x = xIn!.reshaped([xIn!.rows, xIn!.columns])
                let weight = params[w]!
                // dW = dY^T X, db = column sums of dY, dX = dY W.
                accumulateParam(w, dy.matmul(x, transposeSelf: true))
                if let b { accumulateParam(b, dy.sumRows()) }
                if node.inputs[0] >= 0 { accumulate(node.inputs[0], dy.matmul(weight).reshaped(xIn!.shape)) }
            case let .activation(a):
                let y = trace[i]!
                var dx = dy
                dx.withUnsafeMutableBufferPointer { d in
                    y.withUnsafeBufferPointer { yv in
                        switch a {
                        case .relu:
                            for k in 0..<d.count where !(yv[k] > 0) { d[k] = 0 }
                        case .tanh:
                            for k in 0..<d.count { d[k] *= 1 - yv[k] * yv[k] }
                        case .gelu:
                            xIn!.withUnsafeBufferPointer { xv in
                                for k in 0..<d.count {
                                    let v = xv[k]
                                    let cdf = 0.5 * (1 + erff(v * 0.70710678118654752))
                                    let pdf = 0.39894228040143268 * expf(-0.5 * v * v)
                                    d[k] *= cdf + v * pdf
                                }
                            }
                        }
                    }
                }
                accumulate(node.inputs[0], dx)
            case .flatten:
                accumulate(node.inputs[0], dy.reshaped(xIn!.shape))
            case .add:
                accumulate(node.inputs[0], dy)
                accumulate(node.inputs[1], dy)
            }
        }
        var out = ParameterSet()
        for n in params.names { if let g = pgrads[n] { out[n] = g } }
        return out
    }
}
