import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Evaluates a path's loss and accuracy at many t on one or more data sets: the explorer's hot loop.
///
/// The fast mode exploits the path's structure. phi(t) = sum_i c_i(t) P_i, so the first layer's
/// pre-activation X W(t)^T + b(t) = sum_i c_i(t) (X W_i^T + b_i): the products X W_i^T for every control
/// point are computed once (one sgemm per control point and data batch, at construction), and each t costs
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
    private let shortcutWeight: String?
    private let shortcutBias: String?
    /// products[dataset][batch][controlPoint] = X_batch W_i^T + b_i.
    private let products: [[[Tensor]]]

    public var usesFirstLayerShortcut: Bool { shortcutNode != nil }

    /// Prepares evaluation. With `fast` (the default) and a suitable architecture, computes the first-layer
    /// products now (memory: control points x samples x first-layer width floats per data set).
    public init(path: ModelPath, network: Network, datasets: [Dataset], batchSize: Int = 2048, fast: Bool = true) {
        self.path = path
        self.network = network
        self.datasets = datasets
        self.batchSize = max(1, batchSize)
        let node = fast ? PathEvaluator.firstLinearOnInput(network.architecture) : nil
        guard let node, case let .linear(w, b) = network.architecture.nodes[node].op else {
            shortcutNode = nil
            shortcutWeight = nil
            shortcutBias = nil
            products = []
            return
        }
        shortcutNode = node
        shortcutWeight = w
        shortcutBias = b
        var all: [[[Tensor]]] = []
        for data in datasets {
            let x = data.x.reshaped([data.count, data.x.columns])
            var perBatch: [[Tensor]] = []
            var start = 0
            while start < data.count {
                let end = min(data.count, start + self.batchSize)
                let xb = start == 0 && end == data.count ? x : x.rows(start..<end)
                perBatch.append(path.controlPoints.map { p in
                    Network.linear(xb, weight: p[w]!, bias: b.flatMap { p[$0] })
                })
                start = end
            }
            all.append(perBatch)
        }
        products = all
    }

    /// The linear node reading the network input directly (or through a flatten of it), if the input feeds
    /// nothing else that would need the original node; nil when there is none.
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
        for name in path.start.names where name != shortcutWeight && name != shortcutBias {
            params[name] = Tensor.combination(terms.map { (path.controlPoints[$0.0][name]!, $0.1) })
        }
        var out: [Metrics] = []
        for (d, data) in datasets.enumerated() {
            let m = network.evaluate(on: data, batchSize: batchSize) { xb, range in
                let z = products[d][range.lowerBound / batchSize]
                let pre = PathEvaluator.combine(terms.map { (z[$0.0], $0.1) })
                return network.logits(xb, params, overrides: [node: pre])
            }
            out.append(m)
        }
        return out
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

    /// sum_i c_i Z_i, elementwise in one pass over the terms' storage.
    static func combine(_ terms: [(Tensor, Float)]) -> Tensor {
        let first = terms[0].0
        if terms.count == 1 && terms[0].1 == 1 { return first }
        let n = first.count
        return Tensor(shape: first.shape) { out in
            let o = out.baseAddress!
            first.withUnsafeBufferPointer { a in
                let c = terms[0].1
                for k in 0..<n { o[k] = c * a[k] }
            }
            for (z, c) in terms.dropFirst() {
                z.withUnsafeBufferPointer { a in
                    for k in 0..<n { o[k] += c * a[k] }
                }
            }
        }
    }
}
