import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// The shape of a path between models in weight space.
public enum PathType: String, Sendable, Codable, CaseIterable {
    /// phi(t) = (1 - t) w_A + t w_B; with three or more models, a chain A -> B -> C ... through them.
    case linear
    /// A polygonal chain w_A -> theta_1 -> ... -> theta_k -> w_B with knots at t = j / (k + 1)
    /// (Garipov et al. 2018; k = 1 is Eq. 3 of the survey).
    case polychain
    /// A Bezier curve with control points w_A, theta_1, ..., theta_k, w_B through Bernstein weights
    /// (k = 1 is the quadratic curve of Eq. 6).
    case bezier
}

/// A path between parameter sets: control points and, for every t in [0, 1], the weight of each control
/// point in phi(t) = sum_i c_i(t) P_i. Every tensor moves along the path (biases included).
///
/// - linear with n models: P = the models, piecewise linear with knots at t = i / (n - 1).
/// - polychain with k bends: P = [w_A, theta_1, ..., theta_k, w_B], piecewise linear, knots at i / (k + 1).
/// - bezier with k bends: P = [w_A, theta_1, ..., theta_k, w_B], c_i(t) = C(k+1, i) t^i (1 - t)^(k+1-i).
public struct ModelPath: Sendable {
    public let type: PathType
    /// Control points in order: the first and last are the endpoints (fixed); for a linear chain the
    /// middle ones are the intermediate models, for polychain/Bezier they are the bends.
    public private(set) var controlPoints: [ParameterSet]

    /// Builds a path and checks every control point has the same tensors and shapes.
    public init(type: PathType, controlPoints: [ParameterSet]) throws {
        guard controlPoints.count >= 2 else { throw NetworkError("a path needs at least two models") }
        if type != .linear, controlPoints.count < 3 {
            throw NetworkError("a \(type.rawValue) path needs at least one bend")
        }
        for (i, p) in controlPoints.enumerated().dropFirst() {
            try controlPoints[0].checkCompatible(with: p, "path point \(i)")
        }
        self.type = type
        self.controlPoints = controlPoints
    }

    /// The segment between two models.
    public static func linear(_ a: ParameterSet, _ b: ParameterSet) throws -> ModelPath {
        try ModelPath(type: .linear, controlPoints: [a, b])
    }

    /// A chain through the models in the order given (A -> B -> C ...), knots equally spaced in t.
    public static func chain(_ models: [ParameterSet]) throws -> ModelPath {
        try ModelPath(type: .linear, controlPoints: models)
    }

    /// A polychain or Bezier path with `bends` bends initialised on the segment w_A -> w_B
    /// (bend j at (1 - s) w_A + s w_B with s = j / (k + 1), which makes the curve the segment itself
    /// for a polychain, and for a quadratic Bezier puts the bend at the midpoint as Garipov et al. do).
    public static func initialised(_ type: PathType, from a: ParameterSet, to b: ParameterSet, bends: Int) throws -> ModelPath {
        guard type != .linear else { return try .linear(a, b) }
        guard bends >= 1 else { throw NetworkError("a \(type.rawValue) path needs at least one bend (got \(bends))") }
        let inner = (1...bends).map { j in ParameterSet.lerp(a, b, Float(j) / Float(bends + 1)) }
        return try ModelPath(type: type, controlPoints: [a] + inner + [b])
    }

    /// A polychain or Bezier path through the given bends.
    public static func withBends(_ type: PathType, from a: ParameterSet, to b: ParameterSet, bends: [ParameterSet]) throws -> ModelPath {
        try ModelPath(type: type, controlPoints: [a] + bends + [b])
    }

    public var start: ParameterSet { controlPoints[0] }
    public var end: ParameterSet { controlPoints[controlPoints.count - 1] }

    /// The trainable control points (polychain/Bezier bends; none for a linear path or chain).
    public var bends: [ParameterSet] {
        type == .linear ? [] : Array(controlPoints.dropFirst().dropLast())
    }

    /// Indices into `controlPoints` of the bends.
    public var bendIndices: Range<Int> { type == .linear ? 1..<1 : 1..<(controlPoints.count - 1) }

    /// Replaces the bends (same count and shapes).
    public mutating func setBends(_ newBends: [ParameterSet]) {
        precondition(newBends.count == bendIndices.count, "\(newBends.count) bends for a path with \(bendIndices.count)")
        for (j, b) in newBends.enumerated() { controlPoints[1 + j] = b }
    }

    /// c_i(t): the weight of each control point at t (clamped to [0, 1]); they sum to 1.
    public func weights(at t: Double) -> [Double] {
        ModelPath.weights(type: type, count: controlPoints.count, at: t)
    }

    public static func weights(type: PathType, count n: Int, at tRaw: Double) -> [Double] {
        let t = min(1, max(0, tRaw))
        var c = [Double](repeating: 0, count: n)
        switch type {
        case .linear, .polychain:
            let segments = Double(n - 1)
            let s = t * segments
            let i = min(n - 2, Int(s.rounded(.down)))
            let u = s - Double(i)
            c[i] = 1 - u
            c[i + 1] = u
        case .bezier:
            let d = n - 1
            var binom = 1.0
            for i in 0...d {
                c[i] = binom * pow(t, Double(i)) * pow(1 - t, Double(d - i))
                binom = binom * Double(d - i) / Double(i + 1)
            }
        }
        return c
    }

    /// phi(t): the full parameter set at t.
    public func parameters(at t: Double) -> ParameterSet {
        let c = weights(at: t)
        let terms = zip(controlPoints, c).filter { $0.1 != 0 }.map { ($0.0, Float($0.1)) }
        return ParameterSet.combination(terms.isEmpty ? [(controlPoints[0], Float(0))] : terms)
    }

    /// The Gram matrix of the control points' differences from the first one, G_ij = <P_i - P_0, P_j - P_0>,
    /// in double precision (lengths and distances along the path come from it without touching weights again).
    public func differenceGram() -> [[Double]] {
        let d = controlPoints.map { $0 - controlPoints[0] }
        let n = d.count
        var g = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for i in 1..<n {
            for j in i..<n {
                let v = d[i].dot(d[j])
                g[i][j] = v
                g[j][i] = v
            }
        }
        return g
    }

    /// Euclidean length of the path in weight space (all tensors). Exact for piecewise-linear paths;
    /// for Bezier curves the sum of chords over `segments` equal steps of t.
    public func length(segments: Int = 1000) -> Double {
        let g = differenceGram()
        let n = controlPoints.count
        func distance(_ a: [Double], _ b: [Double]) -> Double {
            // || sum_i (a_i - b_i) P_i || with sum(a_i - b_i) = 0, so P_i can be replaced by P_i - P_0.
            let d = zip(a, b).map { $0 - $1 }
            var s = 0.0
            for i in 1..<n where d[i] != 0 { for j in 1..<n where d[j] != 0 { s += d[i] * d[j] * g[i][j] } }
            return max(0, s).squareRoot()
        }
        switch type {
        case .linear, .polychain:
            var total = 0.0
            for i in 0..<(n - 1) {
                var a = [Double](repeating: 0, count: n), b = a
                a[i] = 1
                b[i + 1] = 1
                total += distance(a, b)
            }
            return total
        case .bezier:
            var total = 0.0
            var previous = weights(at: 0)
            for s in 1...max(1, segments) {
                let w = weights(at: Double(s) / Double(max(1, segments)))
                total += distance(w, previous)
                previous = w
            }
            return total
        }
    }

    /// Equally spaced points 0, 1/(n-1), ..., 1 (n >= 2).
    public static func grid(_ n: Int) -> [Double] {
        precondition(n >= 2, "a path grid needs at least two points")
        return (0..<n).map { Double($0) / Double(n - 1) }
    }
}
