import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Evaluates a path's loss and accuracy at many t on one or more data sets: the explorer's hot loop.
///
/// The fast mode exploits the path's structure through the graph interpreter. phi(t) = sum_i c_i(t) P_i,
/// so the output of a node that is linear in its parameters and reads only the input (the first linear or
/// conv layer, possibly behind a flatten) is sum_i c_i(t) (its output for P_i): those outputs are computed
/// once per control point and data batch at construction (`Network.outputsPerParameterSet`), and each t
/// costs only their combination (two terms for linear/polychain, k + 2 for Bezier, fused with the activation
/// after it) before the interpreter runs the rest of the network with phi(t)'s other tensors (bias and
/// activation fused after each product). Architectures with no such node fall back to the naive evaluation,
/// which builds phi(t) and runs the network.
///
/// A `PointCorrection` fixes each point's BatchNorm statistics before it is evaluated: `.bnReset` recomputes
/// them over a data set (`BatchNormReset`; the first layer's combined outputs still apply, since only
/// buffers change), `.repair` renormalises every site to the interpolation of the control points'
/// statistics (`Repair`, measured once per control point here; evaluated naively on the repaired graph).
public struct PathEvaluator: Sendable {
    public let path: ModelPath
    public let network: Network
    public let datasets: [Dataset]
    public let batchSize: Int
    public let correction: PointCorrection
    /// REPAIR: each control point's site statistics (empty otherwise).
    private let controlStatistics: [Repair.Statistics]

    /// The nodes whose outputs are combined from per-control-point outputs (empty: naive evaluation).
    public let combinedNodes: [Int]
    /// parts[dataset][batch][node]: the node's output on that batch for each control point.
    private let parts: [[[Int: [Tensor]]]]
    /// Whether the rest of the network reads the input once those outputs are supplied.
    private let needsInput: Bool
    /// Tensors phi(t) need not hold: those read only by the combined nodes.
    private let omitted: Set<String>

    public var usesFirstLayerShortcut: Bool { !combinedNodes.isEmpty }
    /// The first combined node, if any.
    public var shortcutNode: Int? { combinedNodes.first }

    /// Prepares evaluation. With `fast` (the default) and a suitable architecture, computes the per-control-point
    /// outputs now (memory: control points x samples x that layer's width floats per data set).
    public init(path: ModelPath, network: Network, datasets: [Dataset], batchSize: Int = 512, fast: Bool = true,
                correction: PointCorrection = .none) {
        self.path = path
        self.network = network
        self.datasets = datasets
        self.batchSize = max(1, batchSize)
        self.correction = correction
        if case let .repair(repair) = correction {
            controlStatistics = path.controlPoints.map { repair.statistics($0) }
        } else {
            controlStatistics = []
        }
        var repairing = false
        if case .repair = correction { repairing = true }
        let nodes = fast && !repairing ? network.combinableNodes : []
        combinedNodes = nodes
        omitted = network.parameters(readOnlyBy: nodes)
        needsInput = nodes.isEmpty || network.readsInput(supplied: Set(nodes))
        var all: [[[Int: [Tensor]]]] = []
        if !nodes.isEmpty {
            for data in datasets {
                var perBatch: [[Int: [Tensor]]] = []
                var start = 0
                while start < data.count {
                    let end = min(data.count, start + self.batchSize)
                    let xb = start == 0 && end == data.count ? data.x : data.x.rows(start..<end)
                    perBatch.append(network.outputsPerParameterSet(nodes: nodes, sets: path.controlPoints, input: xb))
                    start = end
                }
                all.append(perBatch)
            }
        }
        parts = all
    }

    /// The first node whose output path evaluation can combine from per-control-point outputs (a linear
    /// layer reading the input directly or through a flatten); nil when there is none (then evaluation is naive).
    public static func firstLinearOnInput(_ arch: Architecture) -> Int? {
        Network(arch).combinableNodes.first
    }

    /// The goal statistics of REPAIR at t: the control points' statistics with the path's weights.
    public func repairGoal(at t: Double) -> Repair.Statistics? {
        guard !controlStatistics.isEmpty else { return nil }
        let c = path.weights(at: t)
        return .combination(zip(controlStatistics, c).filter { $0.1 != 0 }.map { ($0.0, $0.1) })
    }

    /// phi(t) as evaluated: BatchNorm statistics reset, or REPAIR folded into the model's own tensors
    /// (throws `cannotFold` when it cannot be), or phi(t) itself. What an export of the point writes.
    public func correctedParameters(at t: Double) throws -> ParameterSet {
        switch correction {
        case .none: return path.parameters(at: t)
        case let .bnReset(reset): return reset.apply(path.parameters(at: t))
        case let .repair(repair): return try repair.fold(repair.apply(path.parameters(at: t), goal: repairGoal(at: t)!))
        }
    }

    /// Loss and accuracy at t on every data set (in the order given).
    public func evaluate(at t: Double) -> [Metrics] {
        let c = path.weights(at: t)
        let terms = c.enumerated().filter { $0.element != 0 }.map { ($0.offset, Float($0.element)) }
        var reset: ParameterSet?
        switch correction {
        case .none: break
        case let .bnReset(r): reset = r.apply(path.parameters(at: t))
        case let .repair(repair):
            let p = repair.apply(path.parameters(at: t), goal: repairGoal(at: t)!)
            return datasets.map { repair.repairedNetwork.evaluate(p, on: $0, batchSize: batchSize) }
        }
        guard !combinedNodes.isEmpty else {
            let params = reset ?? path.parameters(at: t)
            return datasets.map { network.evaluate(params, on: $0, batchSize: batchSize) }
        }
        // phi(t) without the combined nodes' own tensors (their outputs are supplied).
        var params = ParameterSet()
        for name in path.start.names where !omitted.contains(name) {
            params[name] = reset?[name] ?? Tensor.combination(terms.map { (path.controlPoints[$0.0][name]!, $0.1) })
        }
        let empty = Tensor.zeros([0])
        var out: [Metrics] = []
        for (d, data) in datasets.enumerated() {
            var lossSum = 0.0, correct = 0, scored = 0
            for (b, batchParts) in parts[d].enumerated() {
                let range = (b * batchSize)..<min(data.count, (b + 1) * batchSize)
                // The input batch is only sliced out when a node besides the combined ones reads it.
                let xb = !needsInput ? empty : range.count == data.count ? data.x : data.x.rows(range)
                var supplied: [Int: SuppliedOutput] = [:]
                for (node, outputs) in batchParts { supplied[node] = .combination(parts: outputs, terms: terms) }
                let trace = network.run(xb, params, Network.RunOptions(supplied: supplied, fused: true))
                let r = Network.crossEntropy(trace.outputs[network.architecture.output]!, labels: data.labels(range))
                lossSum += r.lossSum
                correct += r.correct
                scored += r.count
            }
            let n = max(1, scored)
            out.append(Metrics(loss: lossSum / Double(n), accuracy: Double(correct) / Double(n), samples: data.count))
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
}
