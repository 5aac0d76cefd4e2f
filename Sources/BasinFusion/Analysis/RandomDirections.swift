import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Filter-normalised random directions (Li, Xu, Taylor, Studer and Goldstein 2018, "Visualizing the Loss
/// Landscape of Neural Nets", section 4): a Gaussian direction d of the model's shape whose every filter is
/// rescaled to the norm of the same filter of the weights, d_f <- d_f / ||d_f|| * ||theta_f||, so the plot's
/// scale means the same for every layer and every network whatever its weights' scale.
public enum RandomDirections {
    /// A filter-normalised direction like `weights`. A filter is a slice along the first axis of a tensor of
    /// rank 2 or more (an output unit of a linear layer, an output channel of a convolution); tensors of rank 0
    /// or 1 (biases, normalisation parameters) get a zero direction, as Li et al.'s default (`ignore biasbn`).
    /// Draws from `generator` in tensor-name order, so a seed gives the same direction every time.
    public static func filterNormalized(like weights: ParameterSet, generator: inout SeededGenerator) -> ParameterSet {
        var out = ParameterSet()
        for (name, t) in weights.pairs {
            guard t.shape.count >= 2, t.count > 0 else {
                out[name] = Tensor.zeros(like: t)
                continue
            }
            let filters = t.shape[0]
            let per = t.count / filters
            var d = [Float](repeating: 0, count: t.count)
            for i in 0..<t.count { d[i] = Float(generator.normal()) }
            t.withUnsafeBufferPointer { w in
                for f in 0..<filters {
                    var wn = 0.0, dn = 0.0
                    for j in (f * per)..<((f + 1) * per) {
                        wn += Double(w[j]) * Double(w[j])
                        dn += Double(d[j]) * Double(d[j])
                    }
                    let scale = dn > 0 ? Float((wn / dn).squareRoot()) : 0
                    for j in (f * per)..<((f + 1) * per) { d[j] *= scale }
                }
            }
            out[name] = Tensor(shape: t.shape, storage: d)
        }
        return out
    }
}

extension WeightPlane {
    /// The plane through `center` spanned by two filter-normalised random directions drawn from `seed` (Li et al.
    /// 2018), covering [-span, span] on both axes (they plot [-1, 1]). Unlike the plane through three points, u
    /// and v are not orthonormal: each has the weights' norm filter by filter (two random directions in many
    /// dimensions are nearly orthogonal), so `project` gives approximate coordinates; the only anchor is the centre.
    public static func randomDirections(center: ParameterSet, seed: UInt64, span: Double = 1) throws -> WeightPlane {
        guard span > 0, span.isFinite else { throw AnalysisError(.invalidArgument, "the random plane's span must be positive (got \(span))") }
        var generator = SeededGenerator(seed: seed)
        let u = RandomDirections.filterNormalized(like: center, generator: &generator)
        let v = RandomDirections.filterNormalized(like: center, generator: &generator)
        guard u.norm > 0, v.norm > 0 else {
            throw AnalysisError(.invalidArgument, "the model has no tensor of rank 2 or more to draw a filter-normalised direction for")
        }
        return WeightPlane(origin: center, u: u, v: v, anchors: [PlaneCoordinates(x: 0, y: 0)], xRange: -span...span, yRange: -span...span)
    }
}
