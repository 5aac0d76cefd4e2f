import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Evaluates a path's loss and accuracy at many t on one or more data sets: the explorer's hot loop.
///
/// The fast mode exploits the path's structure. phi(t) = sum_i c_i(t) P_i, so the first layer's
/// pre-activation X W(t)^T + b(t) = sum_i c_i(t) (X W_i^T + b_i): the products X W_i^T for every control
/// point are computed once (at construction: one sgemm per data batch against every control point's first-layer
/// weight stacked), and each t costs
/// only an elementwise combination of them (two terms for linear/polychain, k + 2 for Bezier) before the rest
/// of the network runs with phi(t)'s other tensors. Architectures whose input does not go straight into a
/// linear layer (or through a flatten into one) fall back to the naive evaluation, which builds phi(t) and
/// runs the network.
public struct PathEvaluator: Sendable {
    public let path: ModelPath
    public let network: Network
    public let datasets: [Dataset]
    public let batchSize: Int

    /// The linear node whose output is precomputed (nil: naive evaluation).
    public let shortcutNode: Int?
    /// Width of the shortcut layer's output.
    private let shortcutWidth: Int
    /// products[dataset][batch] = [rows, controlPoints x width]: column block i holds X_batch W_i^T + b_i
    /// (one sgemm per batch against every control point's weight stacked).
    private let products: [[Tensor]]
    /// For each node, the last node reading its output (to free it, or to update it in place).
    private let lastUse: [Int]
    /// A ReLU that is the shortcut's only reader: applied in the same pass as the combination.
    private let fusedReLU: Int?
    /// For each linear node, the ReLU that is its only reader (applied in the same pass as the bias), if any.
    private let reluAfter: [Int?]
    /// Whether a node other than the shortcut (and a flatten feeding it) reads the network input.
    private let needsInput: Bool
    /// Tensors phi(t) need not hold: the shortcut's weight and bias, unless another node shares them.
    private let omitted: Set<String>

    public var usesFirstLayerShortcut: Bool { shortcutNode != nil }

    /// Prepares evaluation. With `fast` (the default) and a suitable architecture, computes the first-layer
    /// products now (memory: control points x samples x first-layer width floats per data set).
    public init(path: ModelPath, network: Network, datasets: [Dataset], batchSize: Int = 512, fast: Bool = true) {
        self.path = path
        self.network = network
        self.datasets = datasets
        self.batchSize = max(1, batchSize)
        let arch = network.architecture
        var last = Array(repeating: -1, count: arch.nodes.count)
        for (i, node) in arch.nodes.enumerated() {
            for j in node.inputs where j >= 0 { last[j] = max(last[j], i) }
        }
        last[arch.output] = Int.max
        lastUse = last
        reluAfter = arch.nodes.indices.map { i in
            guard case .linear = arch.nodes[i].op, arch.output != i else { return nil }
            let readers = arch.nodes.indices.filter { arch.nodes[$0].inputs.contains(i) }
            guard readers.count == 1, arch.nodes[readers[0]].op == .activation(.relu) else { return nil }
            return readers[0]
        }
        let node = fast ? PathEvaluator.firstLinearOnInput(arch) : nil
        guard let node, case let .linear(w, b) = arch.nodes[node].op else {
            shortcutNode = nil
            shortcutWidth = 0
            products = []
            fusedReLU = nil
            needsInput = true
            omitted = []
            return
        }
        let feeding = arch.nodes[node].inputs[0]
        needsInput = arch.nodes.indices.contains { i in
            i != node && i != feeding && arch.nodes[i].inputs.contains(Architecture.inputIndex)
        }
        fusedReLU = reluAfter[node]
        let usedElsewhere = Set(arch.nodes.indices.filter { $0 != node }.flatMap { arch.nodes[$0].op.parameterNames })
        omitted = Set([w] + (b.map { [$0] } ?? [])).subtracting(usedElsewhere)
        shortcutNode = node
        let width = path.start[w]!.shape[0]
        shortcutWidth = width
        // Every control point's weight and bias stacked: [P x width, in] and [P x width].
        let stackedWeight = Tensor(shape: [path.controlPoints.count * width, path.start[w]!.shape[1]],
                                   storage: path.controlPoints.flatMap { $0[w]!.storage })
        let stackedBias = b.map { name in Tensor(shape: [path.controlPoints.count * width], storage: path.controlPoints.flatMap { $0[name]!.storage }) }
        var all: [[Tensor]] = []
        for data in datasets {
            let x = data.x.reshaped([data.count, data.x.columns])
            var perBatch: [Tensor] = []
            var start = 0
            while start < data.count {
                let end = min(data.count, start + self.batchSize)
                let xb = start == 0 && end == data.count ? x : x.rows(start..<end)
                perBatch.append(Network.linear(xb, weight: stackedWeight, bias: stackedBias))
                start = end
            }
            all.append(perBatch)
        }
        products = all
    }

    /// The first linear node reading the network input directly (or through a flatten of it); nil when
    /// there is none (then evaluation is naive).
    public static func firstLinearOnInput(_ arch: Architecture) -> Int? {
        for (i, node) in arch.nodes.enumerated() {
            guard case .linear = node.op, node.inputs.count == 1 else { continue }
            let src = node.inputs[0]
            if src == Architecture.inputIndex { return i }
            if src >= 0, case .flatten = arch.nodes[src].op, arch.nodes[src].inputs == [Architecture.inputIndex] { return i }
        }
        return nil
    }

    /// Loss and accuracy at t on every data set (in the order given).
    public func evaluate(at t: Double) -> [Metrics] {
        let c = path.weights(at: t)
        let terms = c.enumerated().filter { $0.element != 0 }.map { ($0.offset, Float($0.element)) }
        guard let node = shortcutNode else {
            let params = path.parameters(at: t)
            return datasets.map { network.evaluate(params, on: $0, batchSize: batchSize) }
        }
        // phi(t) without the first layer's tensors (its output is supplied).
        var params = ParameterSet()
        for name in path.start.names where !omitted.contains(name) {
            params[name] = Tensor.combination(terms.map { (path.controlPoints[$0.0][name]!, $0.1) })
        }
        var out: [Metrics] = []
        for (d, data) in datasets.enumerated() {
            // The input batch is only sliced out when a node besides the shortcut reads it.
            let x = needsInput ? data.x.reshaped([data.count, data.x.columns]) : Tensor.zeros([0])
            var lossSum = 0.0, correct = 0
            for (b, z) in products[d].enumerated() {
                let range = (b * batchSize)..<min(data.count, (b + 1) * batchSize)
                let xb = needsInput ? x.rows(range) : x
                let logits = forward(xb, params, shortcut: node, output: combine(z, terms, relu: fusedReLU != nil))
                let r = Network.crossEntropy(logits, labels: data.y[range])
                lossSum += r.lossSum
                correct += r.correct
            }
            let n = max(1, data.count)
            out.append(Metrics(loss: lossSum / Double(n), accuracy: Double(correct) / Double(n), samples: data.count))
        }
        return out
    }

    /// sum_i c_i (block i of the stacked products), one pass per term.
    private func combine(_ z: Tensor, _ terms: [(Int, Float)], relu: Bool) -> Tensor {
        let rows = z.rows, width = shortcutWidth, stride = z.columns
        return Tensor(shape: [rows, width]) { out in
            let o = out.baseAddress!
            z.withUnsafeBufferPointer { zs in
                let base = zs.baseAddress!
                for r in 0..<rows {
                    let orow = o + r * width
                    let (i0, c0) = terms[0]
                    let z0 = base + r * stride + i0 * width
                    for j in 0..<width { orow[j] = c0 * z0[j] }
                    for (i, c) in terms.dropFirst() {
                        let zi = base + r * stride + i * width
                        for j in 0..<width { orow[j] += c * zi[j] }
                    }
                    if relu { for j in 0..<width { let e = orow[j]; orow[j] = e > 0 ? e : 0 } }
                }
            }
        }
    }

    /// The network's logits with node `shortcut`'s output given. Activations whose input is read by
    /// nothing else run in place (no copies); every intermediate is freed after its last use.
    private func forward(_ x: Tensor, _ params: ParameterSet, shortcut: Int, output: Tensor) -> Tensor {
        let nodes = network.architecture.nodes
        var outputs = [Tensor?](repeating: nil, count: nodes.count)
        for (i, node) in nodes.enumerated() {
            if i == shortcut {
                outputs[i] = output
                continue
            }
            if !needsInput && node.inputs == [Architecture.inputIndex] {
                // The flatten feeding the shortcut: its output is not needed.
                continue
            }
            if let j = node.inputs.first, j >= 0, reluAfter[j] == i {
                // Already applied with the bias (or by `combine` for the shortcut).
                outputs[i] = outputs[j]
                outputs[j] = nil
                continue
            }
            func input(_ k: Int) -> Tensor { node.inputs[k] < 0 ? x : outputs[node.inputs[k]]! }
            switch node.op {
            case let .linear(w, b):
                outputs[i] = PathEvaluator.linear(input(0), weight: params[w]!, bias: b.flatMap { params[$0] }, relu: reluAfter[i] != nil)
            case let .activation(a):
                let j = node.inputs[0]
                var y: Tensor
                if j >= 0 && lastUse[j] == i {
                    y = outputs[j]!
                    outputs[j] = nil
                } else {
                    y = input(0)
                }
                Network.activate(a, &y)
                outputs[i] = y
            case .flatten:
                let v = input(0)
                outputs[i] = v.reshaped([v.rows, v.columns])
            case .add:
                outputs[i] = input(0) + input(1)
            }
            for j in node.inputs where j >= 0 && lastUse[j] == i { outputs[j] = nil }
        }
        return outputs[network.architecture.output]!
    }

    /// x W^T (sgemm, beta 0) then the bias and optionally ReLU in one pass over the output.
    static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, relu: Bool) -> Tensor {
        let n = x.rows, inF = x.columns, outF = weight.shape[0]
        precondition(weight.shape[1] == inF, "linear: input has \(inF) features, weight is \(weight.shape)")
        if n == 0 || inF == 0 { return Network.linear(x, weight: weight, bias: bias) }
        return Tensor(shape: [n, outF]) { out in
            let o = out.baseAddress!
            x.withUnsafeBufferPointer { xs in
                weight.withUnsafeBufferPointer { ws in
                    BLAS.sgemm(transA: false, transB: true, m: n, n: outF, k: inF, alpha: 1, a: xs.baseAddress!, lda: inF,
                               b: ws.baseAddress!, ldb: inF, beta: 0, c: o, ldc: outF)
                }
            }
            if let bias {
                bias.withUnsafeBufferPointer { bs in
                    let bp = bs.baseAddress!
                    for r in 0..<n {
                        let row = o + r * outF
                        if relu {
                            for j in 0..<outF { let e = row[j] + bp[j]; row[j] = e > 0 ? e : 0 }
                        } else {
                            for j in 0..<outF { row[j] += bp[j] }
                        }
                    }
                }
            } else if relu {
                for k in 0..<(n * outF) { let e = o[k]; o[k] = e > 0 ? e : 0 }
            }
        }
    }

    /// Evaluates at every t in `ts`, calling `onPoint(index, metrics)` after each and checking `isCancelled`
    /// between points. Returns the metrics per point (each an array over data sets), or nil if cancelled.
    public func evaluatePoints(ts: [Double], isCancelled: () -> Bool = { false },
                               onPoint: (Int, [Metrics]) -> Void = { _, _ in }) -> [[Metrics]]? {
        var results: [[Metrics]] = []
        results.reserveCapacity(ts.count)
        for (i, t) in ts.enumerated() {
            if isCancelled() { return nil }
            let m = evaluate(at: t)
            onPoint(i, m)
            results.append(m)
        }
        return results
    }
}
