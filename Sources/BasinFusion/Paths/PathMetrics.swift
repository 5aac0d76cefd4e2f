import BasinNet
import Foundation

/// Loss and accuracy at one point of a path.
public struct PathPoint: Sendable, Codable, Equatable {
    public var t: Double
    public var loss: Double
    public var accuracy: Double

    public init(t: Double, loss: Double, accuracy: Double) {
        self.t = t
        self.loss = loss
        self.accuracy = accuracy
    }

    public var error: Double { 1 - accuracy }
}

/// Min, max, mean over the points, and the trapezoid integral over t in [0, 1].
public struct PathSummary: Sendable, Codable, Equatable {
    public var min: Double
    public var max: Double
    public var mean: Double
    public var integral: Double

    public init(ts: [Double], values: [Double]) {
        min = values.min() ?? .nan
        max = values.max() ?? .nan
        mean = values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
        var s = 0.0
        for i in 1..<Swift.max(1, values.count) { s += (ts[i] - ts[i - 1]) * (values[i] + values[i - 1]) / 2 }
        integral = s
    }
}

/// Barriers along a path, each the largest rise above a reference line over the evaluated points.
///
/// - `loss`: Eq. 1, max_t [L(t) - ((1 - t) L(0) + t L(1))].
/// - `error`: the same for the error rate 1 - accuracy.
/// - `accuracy`: max_t [((1 - t) A(0) + t A(1)) - A(t)], the largest drop of accuracy below the
///   interpolation of the endpoints' accuracies. It equals `error` (the error barrier in accuracy units).
/// All three are >= 0 because t = 0 is among the points.
public struct PathBarrier: Sendable, Codable, Equatable {
    public var loss: Double
    public var accuracy: Double
    public var error: Double
    /// t where the loss barrier is reached.
    public var lossAt: Double

    enum CodingKeys: String, CodingKey {
        case loss, accuracy, error
        case lossAt = "loss_at"
    }
}

/// Barriers against the endpoints' mean, as Git Re-Basin reports them: max_t L(t) - (L(0) + L(1)) / 2
/// (may be negative when the whole path is below the mean).
public struct MeanBarrier: Sendable, Codable, Equatable {
    public var loss: Double
    public var error: Double
}

/// The metrics of a path on one data set.
public struct PathMetrics: Sendable, Codable, Equatable {
    public var type: PathType
    public var data: String
    public var samples: Int
    public var points: [PathPoint]
    public var barrier: PathBarrier
    public var meanBarrier: MeanBarrier
    public var lossSummary: PathSummary
    public var accuracySummary: PathSummary
    /// Euclidean length of the path in weight space (nil when not computed).
    public var length: Double?

    enum CodingKeys: String, CodingKey {
        case type, data, samples, points, barrier, length
        case meanBarrier = "mean_barrier"
        case lossSummary = "loss"
        case accuracySummary = "accuracy"
    }

    /// Eq. 1 of the survey on any curve: the largest excess of values[i] over the straight line (chord) between
    /// the first and last values, max_i v(t_i) - ((1 - s_i) v_0 + s_i v_n) with s_i = (t_i - t_0) / (t_n - t_0),
    /// and the index where it is reached (the first on ties). `ts` sorted, as many as `values`, at least one.
    public static func excessOverChord(ts: [Double], values: [Double]) -> (height: Double, index: Int) {
        precondition(!ts.isEmpty && ts.count == values.count, "excessOverChord needs one value per t")
        let (t0, t1) = (ts.first!, ts.last!)
        let (v0, v1) = (values.first!, values.last!)
        var best = (height: -Double.infinity, index: 0)
        for i in ts.indices {
            let s = t1 > t0 ? (ts[i] - t0) / (t1 - t0) : 0
            let h = values[i] - ((1 - s) * v0 + s * v1)
            if h > best.height { best = (h, i) }
        }
        return best
    }

    /// Summarises points (sorted by t; the first at t = 0 and the last at t = 1 for the barriers to be Eq. 1).
    public init(type: PathType, data: String, samples: Int, points: [PathPoint], length: Double? = nil) {
        precondition(points.count >= 2, "path metrics need at least two points")
        self.type = type
        self.data = data
        self.samples = samples
        self.points = points
        self.length = length
        let ts = points.map(\.t)
        let l = points.map(\.loss), a = points.map(\.accuracy)
        let (l0, l1, a0, a1) = (l.first!, l.last!, a.first!, a.last!)
        let lossBarrier = PathMetrics.excessOverChord(ts: ts, values: l)
        // The accuracy barrier is the largest drop below the chord: the excess of -A(t) over its chord.
        let accBarrier = PathMetrics.excessOverChord(ts: ts, values: a.map { -$0 }).height
        barrier = PathBarrier(loss: lossBarrier.height, accuracy: accBarrier, error: accBarrier, lossAt: ts[lossBarrier.index])
        meanBarrier = MeanBarrier(loss: l.max()! - (l0 + l1) / 2, error: (1 - a.min()!) - ((1 - a0) + (1 - a1)) / 2)
        lossSummary = PathSummary(ts: ts, values: l)
        accuracySummary = PathSummary(ts: ts, values: a)
    }
}

extension PathEvaluator {
    /// Evaluates at `points` equally spaced t (default 25) on every data set and summarises each.
    /// Returns nil if cancelled between points.
    public func metrics(points n: Int = 25, length: Double? = nil, isCancelled: () -> Bool = { false },
                        onPoint: (Int, [Metrics]) -> Void = { _, _ in }) -> [PathMetrics]? {
        metrics(ts: ModelPath.grid(n), length: length, isCancelled: isCancelled, onPoint: onPoint)
    }

    /// Evaluates at the given t (sorted, from 0 to 1) on every data set and summarises each.
    public func metrics(ts: [Double], length: Double? = nil, isCancelled: () -> Bool = { false },
                        onPoint: (Int, [Metrics]) -> Void = { _, _ in }) -> [PathMetrics]? {
        guard let results = evaluatePoints(ts: ts, isCancelled: isCancelled, onPoint: onPoint) else { return nil }
        return datasets.indices.map { d in
            let points = zip(ts, results).map { PathPoint(t: $0.0, loss: $0.1[d].loss, accuracy: $0.1[d].accuracy) }
            return PathMetrics(type: path.type, data: datasets[d].name, samples: datasets[d].count, points: points, length: length)
        }
    }
}

extension PathEvaluator {
    /// `evaluatePoints(ts:isCancelled:onPoint:)` stopped by a flag another thread sets.
    public func evaluatePoints(ts: [Double], cancel: CancellationFlag, onPoint: (Int, [Metrics]) -> Void = { _, _ in }) -> [[Metrics]]? {
        evaluatePoints(ts: ts, isCancelled: { cancel.isCancelled }, onPoint: onPoint)
    }

    /// `metrics(points:...)` stopped by a flag another thread sets.
    public func metrics(points n: Int = 25, length: Double? = nil, cancel: CancellationFlag,
                        onPoint: (Int, [Metrics]) -> Void = { _, _ in }) -> [PathMetrics]? {
        metrics(ts: ModelPath.grid(n), length: length, isCancelled: { cancel.isCancelled }, onPoint: onPoint)
    }
}
