import BasinIO
import BasinNet
import Foundation

/// A point of a `WeightPlane` in its own coordinates.
public struct PlaneCoordinates: Sendable, Equatable, Codable {
    public var x: Double
    public var y: Double
    public init(x: Double, y: Double) {
        self.x = x
        self.y = y
    }
}

/// A plane in weight space: origin + x u + y v, with u and v orthonormal under the inner product over every
/// tensor (biases included), and the rectangle of (x, y) a landscape covers.
public struct WeightPlane: Sendable {
    public var origin: ParameterSet
    public var u: ParameterSet
    public var v: ParameterSet
    /// Plane coordinates of the points the plane was built through, in the order given.
    public var anchors: [PlaneCoordinates]
    public var xRange: ClosedRange<Double>
    public var yRange: ClosedRange<Double>

    public init(origin: ParameterSet, u: ParameterSet, v: ParameterSet, anchors: [PlaneCoordinates],
                xRange: ClosedRange<Double>, yRange: ClosedRange<Double>) {
        self.origin = origin
        self.u = u
        self.v = v
        self.anchors = anchors
        self.xRange = xRange
        self.yRange = yRange
    }

    /// The parameter set at plane coordinates (x, y).
    public func point(x: Double, y: Double) -> ParameterSet {
        ParameterSet.combination([(origin, 1), (u, Float(x)), (v, Float(y))])
    }

    /// The coordinates of a parameter set's orthogonal projection onto the plane.
    public func project(_ p: ParameterSet) -> PlaneCoordinates {
        let d = p - origin
        return PlaneCoordinates(x: d.dot(u), y: d.dot(v))
    }

    /// The plane through three points (Garipov et al. 2018, section 3): origin p0, u along p2 - p0, v along the
    /// part of p1 - p0 orthogonal to u (Gram-Schmidt). The ranges are the three points' bounding box widened by
    /// `margin` of its width and height on every side.
    public static func through(_ p0: ParameterSet, _ p1: ParameterSet, _ p2: ParameterSet, margin: Double = 0.2) throws -> WeightPlane {
        try p0.checkCompatible(with: p1, "plane point 2")
        try p0.checkCompatible(with: p2, "plane point 3")
        let e1 = p2 - p0
        let n1 = e1.norm
        guard n1 > 0 else { throw AnalysisError(.coincidentPoints, "the plane's first and last points coincide") }
        let u = e1.mapTensors { _, t in t.scaled(by: Float(1 / n1)) }
        var e2 = p1 - p0
        let proj = e2.dot(u)
        e2 = ParameterSet.combination([(e2, 1), (u, Float(-proj))])
        let n2 = e2.norm
        // Float32 parameters: a point on the line through the others is off it by rounding, about 1e-7 relative.
        guard n2 > 1e-5 * n1 else { throw AnalysisError(.collinearPoints, "the three points are collinear: no plane through them") }
        let v = e2.mapTensors { _, t in t.scaled(by: Float(1 / n2)) }
        let anchors = [PlaneCoordinates(x: 0, y: 0), PlaneCoordinates(x: proj, y: n2), PlaneCoordinates(x: n1, y: 0)]
        let xs = anchors.map(\.x), ys = anchors.map(\.y)
        let w = xs.max()! - xs.min()!, h = ys.max()! - ys.min()!
        return WeightPlane(origin: p0, u: u, v: v, anchors: anchors,
                           xRange: (xs.min()! - margin * w)...(xs.max()! + margin * w),
                           yRange: (ys.min()! - margin * h)...(ys.max()! + margin * h))
    }
}

/// Loss and accuracy on a square grid over a `WeightPlane`.
public struct LossLandscape: Sendable {
    public var plane: WeightPlane
    /// The data set's name.
    public var data: String
    /// x of each column, left to right.
    public var xs: [Double]
    /// y of each row, top (largest y) to bottom.
    public var ys: [Double]
    /// `loss[row][column]` and `accuracy[row][column]`.
    public var loss: [[Double]]
    public var accuracy: [[Double]]

    /// Column and row coordinates of a grid with `resolution` points per side (ends included).
    public static func axes(_ plane: WeightPlane, resolution n: Int) -> (xs: [Double], ys: [Double]) {
        let (x, y) = (plane.xRange, plane.yRange)
        let xs = (0..<n).map { x.lowerBound + (x.upperBound - x.lowerBound) * Double($0) / Double(n - 1) }
        let ys = (0..<n).map { y.upperBound - (y.upperBound - y.lowerBound) * Double($0) / Double(n - 1) }
        return (xs, ys)
    }

    /// Evaluates the network at every grid point, row by row from the top, calling `onPoint(pointsDone, points)`
    /// after each point (a BN-reset point costs a train pass: progress per point moves where per row would stall)
    /// and `onRow` after each row.
    /// With `reset` (networks with BatchNorm), every point's BatchNorm statistics are recomputed first, as
    /// `basin path --bn-reset` does for a point of a path (one train-mode pass over the reset's data per point);
    /// without it a point's running statistics are the plane's combination of the anchors'. Returns nil when
    /// `cancel` is set (checked between points).
    public static func compute(plane: WeightPlane, network: Network, data: Dataset, resolution n: Int,
                               reset: BatchNormReset? = nil, cancel: CancellationFlag? = nil,
                               onPoint: (_ done: Int, _ total: Int) -> Void = { _, _ in },
                               onRow: (_ row: Int, _ metrics: [Metrics]) -> Void = { _, _ in }) throws -> LossLandscape? {
        guard n >= 2 else { throw AnalysisError(.invalidArgument, "a landscape grid needs at least 2 points per side (got \(n))") }
        let (xs, ys) = axes(plane, resolution: n)
        var loss: [[Double]] = [], accuracy: [[Double]] = []
        for (r, y) in ys.enumerated() {
            var row: [Metrics] = []
            for x in xs {
                if cancel?.isCancelled == true { return nil }
                let p = plane.point(x: x, y: y)
                row.append(network.evaluate(reset.map { $0.apply(p) } ?? p, on: data))
                onPoint(r * n + row.count, n * n)
            }
            loss.append(row.map(\.loss))
            accuracy.append(row.map(\.accuracy))
            onRow(r, row)
        }
        return LossLandscape(plane: plane, data: data.name, xs: xs, ys: ys, loss: loss, accuracy: accuracy)
    }
}
