import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// What the task vectors tau_i = theta_i - theta_base of a base's fine-tunes look like, tensor by tensor: the
/// picture behind task arithmetic, TIES and DARE (Ilharco et al. 2023; Yadav et al. 2023; Yu et al. 2024).
///
/// - cosine similarity of every pair of task vectors (near 0: the fine-tunes moved in unrelated directions,
///   so adding them interferes little);
/// - TIES trimming at `density` (per tensor, top magnitudes, exactly as the ties merge method trims): the share
///   of each task vector's L1 mass it removes;
/// - TIES sign conflicts after trimming: the share of entries where two or more trimmed task vectors are
///   non-zero and disagree in sign, and the share of the trimmed mass the sign election then drops;
/// - the magnitude distribution: the share of a task vector's L1 mass held by its largest entries (a few
///   entries carry most of it, which is why trimming and dropping at random with rescaling work).
public struct TaskVectorAnalysis: Sendable, Codable {
    public struct TensorStats: Sendable, Codable {
        public var name: String
        public var count: Int
        /// `cosine[i][j]` between task vectors i and j on this tensor (nil where one of them is zero).
        public var cosine: [[Double?]]
        /// Per model: the share of the task vector's L1 mass trimming removes.
        public var trimmedMass: [Double]
        /// Share of entries with two or more non-zero trimmed values of opposite signs, among entries with two or
        /// more non-zero trimmed values (0 when there are none).
        public var signConflict: Double
        /// Share of the trimmed task vectors' total L1 mass that disagrees with the elected sign (dropped by TIES).
        public var electionDropped: Double
        /// Per model: L2 norm of the task vector on this tensor.
        public var norms: [Double]
    }

    /// The fraction of entries (largest magnitudes first) the mass curve is sampled at.
    public static let massFractions: [Double] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1]

    public var models: [String]
    public var density: Double
    public var tensors: [TensorStats]
    /// Whole-model cosine similarity of every pair of task vectors (nil where one of them is zero).
    public var cosine: [[Double?]]
    /// Per model: the share of its L1 mass in its largest `massFractions[k]` entries (all tensors together).
    public var massCurve: [[Double]]
    /// Per model: histogram of log10 |tau| over `histogramEdges` (entries equal to zero are left out).
    public var histogram: [[Int]]
    public var histogramEdges: [Double]
    /// Whole-model shares, weighted by tensor size / mass.
    public var trimmedMass: [Double]
    public var signConflict: Double
    public var electionDropped: Double

    /// Computes the analysis of `models` against `base` (same tensors), trimming at `density` (0 < density <= 1)
    /// as TIES does. Names label the models in the result.
    public static func compute(base: ParameterSet, models: [ParameterSet], names: [String], density: Double,
                               bins: Int = 24) throws -> TaskVectorAnalysis {
        guard models.count >= 1 else { throw AnalysisError(.invalidArgument, "a task-vector analysis needs at least one fine-tuned model") }
        guard names.count == models.count else { throw AnalysisError(.invalidArgument, "\(names.count) names for \(models.count) models") }
        guard density > 0, density <= 1 else { throw AnalysisError(.invalidArgument, "density must be in (0, 1] (got \(density))") }
        guard bins >= 2 else { throw AnalysisError(.invalidArgument, "the magnitude histogram needs at least 2 bins (got \(bins))") }
        for (m, n) in zip(models, names) { try base.checkCompatible(with: m, "the base and \(n)") }
        let k = models.count
        var tensors: [TensorStats] = []
        var dots = [[Double]](repeating: [Double](repeating: 0, count: k), count: k)
        var allMagnitudes = [[Float]](repeating: [], count: k)
        var conflictEntries = 0, multiEntries = 0
        var dropped = 0.0, trimmedTotal = 0.0
        var removed = [Double](repeating: 0, count: k), massTotal = [Double](repeating: 0, count: k)
        for name in base.names {
            let b = base[name]!
            let n = b.count
            var taus: [[Float]] = []
            for m in models {
                var d = [Float](repeating: 0, count: n)
                m[name]!.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { y in for j in 0..<n { d[j] = x[j] - y[j] } } }
                taus.append(d)
            }
            var local = [[Double]](repeating: [Double](repeating: 0, count: k), count: k)
            for i in 0..<k {
                for j in i..<k {
                    var s = 0.0
                    for e in 0..<n { s += Double(taus[i][e]) * Double(taus[j][e]) }
                    local[i][j] = s
                    local[j][i] = s
                }
            }
            for i in 0..<k { for j in 0..<k { dots[i][j] += local[i][j] } }
            var trimmed: [[Float]] = []
            var tensorRemoved = [Double](repeating: 0, count: k)
            for i in 0..<k {
                allMagnitudes[i].append(contentsOf: taus[i].map { abs($0) })
                var t = taus[i]
                try TensorMerge.sparsify(&t, shape: b.shape, method: .magnitude, density: Float(density), gamma: 0, epsilon: 0,
                                         rescale: false, seed: 0, name: name)
                let mass = taus[i].reduce(0.0) { $0 + Double(abs($1)) }
                let kept = t.reduce(0.0) { $0 + Double(abs($1)) }
                tensorRemoved[i] = mass > 0 ? (mass - kept) / mass : 0
                removed[i] += mass - kept
                massTotal[i] += mass
                trimmed.append(t)
            }
            // Sign election on the trimmed vectors (TIES: the sign of the summed mass, >= 0 counting as +).
            var conflicts = 0, multi = 0
            var tDropped = 0.0, tTotal = 0.0
            for e in 0..<n {
                var pos = 0, neg = 0
                var sum: Float = 0
                for i in 0..<k {
                    let v = trimmed[i][e]
                    if v > 0 { pos += 1 } else if v < 0 { neg += 1 }
                    sum += v
                }
                if pos + neg >= 2 {
                    multi += 1
                    if pos > 0 && neg > 0 { conflicts += 1 }
                }
                for i in 0..<k {
                    let v = trimmed[i][e]
                    tTotal += Double(abs(v))
                    if v != 0 && !(sum >= 0 ? v > 0 : v < 0) { tDropped += Double(abs(v)) }
                }
            }
            conflictEntries += conflicts
            multiEntries += multi
            dropped += tDropped
            trimmedTotal += tTotal
            tensors.append(TensorStats(name: name, count: n, cosine: cosines(local), trimmedMass: tensorRemoved,
                                  signConflict: multi > 0 ? Double(conflicts) / Double(multi) : 0,
                                  electionDropped: tTotal > 0 ? tDropped / tTotal : 0,
                                  norms: (0..<k).map { local[$0][$0].squareRoot() }))
        }
        // Mass curve and histogram over all tensors.
        var curves: [[Double]] = []
        var logs: [[Double]] = []
        for i in 0..<k {
            let sorted = allMagnitudes[i].sorted(by: >)
            let total = sorted.reduce(0.0) { $0 + Double($1) }
            var prefix = 0.0
            var next = 0
            var curve: [Double] = []
            for (r, v) in sorted.enumerated() {
                prefix += Double(v)
                while next < massFractions.count && r + 1 >= Int((massFractions[next] * Double(sorted.count)).rounded(.up)) {
                    curve.append(total > 0 ? prefix / total : 0)
                    next += 1
                }
            }
            while curve.count < massFractions.count { curve.append(1) }
            curves.append(curve)
            logs.append(sorted.filter { $0 > 0 }.map { log10(Double($0)) })
        }
        let finiteLogs = logs.flatMap { $0 }
        let lo = (finiteLogs.min() ?? -8).rounded(.down), hi = max(lo + 1, (finiteLogs.max() ?? 0).rounded(.up))
        let edges = (0...bins).map { lo + (hi - lo) * Double($0) / Double(bins) }
        let histogram = logs.map { values -> [Int] in
            var h = [Int](repeating: 0, count: bins)
            for v in values { h[min(bins - 1, max(0, Int((v - lo) / (hi - lo) * Double(bins))))] += 1 }
            return h
        }
        return TaskVectorAnalysis(models: names, density: density, tensors: tensors, cosine: cosines(dots), massCurve: curves,
                                  histogram: histogram, histogramEdges: edges,
                                  trimmedMass: (0..<k).map { massTotal[$0] > 0 ? removed[$0] / massTotal[$0] : 0 },
                                  signConflict: multiEntries > 0 ? Double(conflictEntries) / Double(multiEntries) : 0,
                                  electionDropped: trimmedTotal > 0 ? dropped / trimmedTotal : 0)
    }

    static func cosines(_ gram: [[Double]]) -> [[Double?]] {
        gram.indices.map { i in
            gram.indices.map { j in
                let d = (gram[i][i] * gram[j][j]).squareRoot()
                return d > 0 ? gram[i][j] / d : nil
            }
        }
    }
}
