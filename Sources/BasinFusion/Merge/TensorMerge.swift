import BasinTensor
import Foundation

/// The per-tensor merge functions. Both the streaming export and the in-memory `ParameterSet` merge call
/// `TensorMerge.merge`, so a recipe gives the same numbers whichever way it runs.
public enum TensorMerge {
    /// Merges one tensor. `inputs` are the (non-base) models' tensors in recipe order; `base` is the base
    /// model's tensor (required by task arithmetic, TIES and DARE; the t = 0 end of slerp when given).
    public static func merge(_ method: MergeMethod, name: String, inputs: [Tensor], base: Tensor?,
                             parameters p: TensorMergeParameters) throws -> Tensor {
        guard !inputs.isEmpty || base != nil else { throw MergeError("\(name): nothing to merge") }
        switch method {
        case .linear, .fisher, .regmean:
            // fisher and regmean fall back to the weighted average for tensors they have no statistics for.
            return linear(inputs, weights: p.weights, normalize: p.normalize)
        case .slerp:
            let ends: [Tensor] = base.map { [$0] + inputs } ?? inputs
            guard ends.count == 2 else {
                throw MergeError("\(name): slerp takes exactly two models (a base and one other, or two models); got \(ends.count)")
            }
            return slerp(ends[0], ends[1], t: p.t)
        case .taskArithmetic, .ties, .dareLinear, .dareTies:
            guard let base else { throw MergeError("\(name): \(method.rawValue) needs a base_model") }
            let sparsify: Sparsification = switch method {
            case .ties: .magnitude
            case .dareLinear, .dareTies: .random
            default: .none
            }
            let consensus = method == .ties || method == .dareTies
            return generalizedTaskArithmetic(name: name, inputs: inputs, base: base, parameters: p,
                                             sparsify: sparsify, signConsensus: consensus)
        }
    }

    // MARK: Linear

    /// sum_i w_i x_i, divided by sum_i w_i when normalising.
    public static func linear(_ inputs: [Tensor], weights: [Float], normalize: Bool) -> Tensor {
        precondition(inputs.count == weights.count, "\(inputs.count) tensors for \(weights.count) weights")
        let total = weights.reduce(0, +)
        let scale: Float = normalize && total != 0 ? 1 / total : 1
        return Tensor.combination(zip(inputs, weights).map { ($0, $1 * scale) })
    }

    // MARK: SLERP

    /// Spherical interpolation between two tensors treated as flat vectors, as mergekit does: the angle is
    /// that of the normalised vectors; when they are nearly collinear (|cos| > 0.9995) it is linear.
    public static func slerp(_ a: Tensor, _ b: Tensor, t: Float, dotThreshold: Double = 0.9995) -> Tensor {
        let na = a.norm, nb = b.norm
        guard na > 1e-12, nb > 1e-12 else { return Tensor.lerp(a, b, t) }
        let cosTheta = a.dot(b) / (na * nb)
        if abs(cosTheta) > dotThreshold { return Tensor.lerp(a, b, t) }
        let theta = acos(cosTheta)
        let s = sin(theta)
        let s0 = sin(theta * (1 - Double(t))) / s
        let s1 = sin(theta * Double(t)) / s
        return Tensor.combination([(a, Float(s0)), (b, Float(s1))])
    }

    // MARK: Task arithmetic, TIES, DARE

    public enum Sparsification: Sendable { case none, magnitude, random }

    /// mergekit's generalized task arithmetic: task vectors d_i = x_i - base, optionally sparsified (TIES's
    /// top-k magnitudes or DARE's random drop and rescale), weighted by w_i, optionally masked to the entries
    /// whose sign agrees with the sign of the total mass sum_i w_i d_i, summed, divided by the agreeing weights
    /// when normalising, scaled by lambda and added to the base.
    public static func generalizedTaskArithmetic(name: String, inputs: [Tensor], base: Tensor, parameters p: TensorMergeParameters,
                                                 sparsify: Sparsification, signConsensus: Bool) -> Tensor {
        let n = base.count
        let k = inputs.count
        precondition(p.weights.count == k && p.densities.count == k, "parameters for \(p.weights.count) models, got \(k) tensors")
        var deltas: [Tensor] = []
        deltas.reserveCapacity(k)
        for (i, x) in inputs.enumerated() {
            var d = x - base
            switch sparsify {
            case .none: break
            case .magnitude: keepTopMagnitudes(&d, density: p.densities[i])
            case .random: dropAndRescale(&d, density: p.densities[i], rescale: p.rescale,
                                         seed: dareSeed(p.seed, name: name, model: i))
            }
            d.scale(by: p.weights[i])
            deltas.append(d)
        }
        var mixed = Tensor.zeros(like: base)
        if !signConsensus {
            for d in deltas { mixed.addScaled(d, 1) }
            let total = p.weights.reduce(0, +)
            if p.normalize && abs(total) > 1e-8 { mixed.scale(by: 1 / total) }
        } else {
            // Elect each entry's sign by total (weighted) mass; keep the agreeing entries.
            var mass = Tensor.zeros(like: base)
            for d in deltas { mass.addScaled(d, 1) }
            var divisor = [Float](repeating: 0, count: n)
            mass.withUnsafeBufferPointer { m in
                mixed.withUnsafeMutableBufferPointer { out in
                    divisor.withUnsafeMutableBufferPointer { div in
                        for (i, d) in deltas.enumerated() {
                            let w = p.weights[i]
                            d.withUnsafeBufferPointer { dv in
                                for j in 0..<n {
                                    let v = dv[j]
                                    let agrees = m[j] >= 0 ? v > 0 : v < 0
                                    if agrees {
                                        out[j] += v
                                        div[j] += w
                                    }
                                }
                            }
                        }
                        if p.normalize {
                            for j in 0..<n where abs(div[j]) >= 1e-8 { out[j] /= div[j] }
                        }
                    }
                }
            }
        }
        var result = base
        result.addScaled(mixed, p.lambda)
        return result
    }

    /// Zeroes all but the round(density * n) (truncated, as mergekit's int(density * n)) largest magnitudes.
    public static func keepTopMagnitudes(_ d: inout Tensor, density: Float) {
        let n = d.count
        guard density < 1, n > 0 else { return }
        let k = max(0, min(n, Int(Double(density) * Double(n))))
        if k == 0 {
            d = Tensor.zeros(like: d)
            return
        }
        var mags = d.storage.map { abs($0) }
        let threshold = kthLargest(&mags, k)
        // Keep everything above the threshold and, in index order, enough entries equal to it to make k.
        var above = 0
        d.withUnsafeBufferPointer { v in for x in v where abs(x) > threshold { above += 1 } }
        var equalBudget = k - above
        d.withUnsafeMutableBufferPointer { v in
            for j in 0..<n {
                let m = abs(v[j])
                if m > threshold { continue }
                if m == threshold && equalBudget > 0 {
                    equalBudget -= 1
                } else {
                    v[j] = 0
                }
            }
        }
    }

    /// The k-th largest value (1-based) by quickselect; reorders `values`.
    static func kthLargest(_ values: inout [Float], _ k: Int) -> Float {
        var lo = 0, hi = values.count - 1
        let target = k - 1
        var rng = SeededGenerator(seed: 0x5EED)
        return values.withUnsafeMutableBufferPointer { a in
            while lo < hi {
                let pivot = a[lo + Int(rng.next() % UInt64(hi - lo + 1))]
                var i = lo, j = hi
                while i <= j {
                    while a[i] > pivot { i += 1 }
                    while a[j] < pivot { j -= 1 }
                    if i <= j {
                        a.swapAt(i, j)
                        i += 1
                        j -= 1
                    }
                }
                if target <= j { hi = j } else if target >= i { lo = i } else { return a[target] }
            }
            return a[target]
        }
    }

    /// DARE: drops each entry with probability 1 - density and (optionally) rescales the kept ones by 1/density.
    public static func dropAndRescale(_ d: inout Tensor, density: Float, rescale: Bool, seed: UInt64) {
        guard density < 1 else { return }
        var rng = SeededGenerator(seed: seed)
        let keepScale: Float = rescale && density > 0 ? 1 / density : 1
        let p = Double(density)
        d.withUnsafeMutableBufferPointer { v in
            for j in 0..<v.count {
                v[j] = rng.nextUnit() < p ? v[j] * keepScale : 0
            }
        }
    }

    /// A per-tensor, per-model seed that does not depend on the order tensors are merged in
    /// (FNV-1a of the name; Swift's Hasher is randomised per process).
    public static func dareSeed(_ seed: UInt64, name: String, model: Int) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in name.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return seed ^ h ^ (UInt64(model) &* 0x9E37_79B9_7F4A_7C15)
    }
}
