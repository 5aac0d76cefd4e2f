import BasinIO
import BasinNet
import Foundation

/// The barriers of the straight paths between every pair of models (Eq. 1 on each data set).
public struct BarrierMatrix: Sendable {
    public struct Pair: Sendable {
        public var a: Int
        public var b: Int
        /// The path a -> b summarised on each data set, in the order given.
        public var metrics: [PathMetrics]
    }

    /// Number of models.
    public var count: Int
    /// Data set names, in the order given.
    public var data: [String]
    /// Points evaluated along each path.
    public var points: Int
    /// Every pair a < b, in order.
    public var pairs: [Pair]

    /// Eq. 1 loss barriers on data set `d`: symmetric, NaN on the diagonal.
    public func lossBarriers(data d: Int = 0) -> [[Double]] { matrix { $0.metrics[d].barrier.loss } }

    /// Accuracy barriers (the largest drop below the endpoints' chord) on data set `d`.
    public func accuracyBarriers(data d: Int = 0) -> [[Double]] { matrix { $0.metrics[d].barrier.accuracy } }

    private func matrix(_ value: (Pair) -> Double) -> [[Double]] {
        var m = Array(repeating: Array(repeating: Double.nan, count: count), count: count)
        for p in pairs {
            m[p.a][p.b] = value(p)
            m[p.b][p.a] = value(p)
        }
        return m
    }

    /// Evaluates the straight path between every pair at `points` equally spaced t on every data set.
    /// `progress(pairsDone, pairs)` follows each pair. Returns nil when `cancel` is set (checked between points).
    public static func compute(models: [ParameterSet], network: Network, datasets: [Dataset], points: Int = 11,
                               cancel: CancellationFlag? = nil,
                               progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws -> BarrierMatrix? {
        guard models.count >= 2 else { throw AnalysisError(.invalidArgument, "a barrier matrix needs at least two models (got \(models.count))") }
        guard points >= 3 else { throw AnalysisError(.invalidArgument, "a barrier needs at least 3 points along each path (got \(points))") }
        guard !datasets.isEmpty else { throw AnalysisError(.invalidArgument, "a barrier matrix needs a data set") }
        let n = models.count
        let total = n * (n - 1) / 2
        var pairs: [Pair] = []
        for a in 0..<n {
            for b in (a + 1)..<n where b < n {
                let evaluator = PathEvaluator(path: try .linear(models[a], models[b]), network: network, datasets: datasets)
                guard let m = evaluator.metrics(points: points, isCancelled: { cancel?.isCancelled == true }) else { return nil }
                pairs.append(Pair(a: a, b: b, metrics: m))
                progress(pairs.count, total)
            }
        }
        return BarrierMatrix(count: n, data: datasets.map(\.name), points: points, pairs: pairs)
    }
}
