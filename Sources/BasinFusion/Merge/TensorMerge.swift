import BasinTensor
import Foundation

/// The per-tensor merge functions, one per mergekit method, in Float32 with mergekit's order of operations
/// (so deterministic methods agree with mergekit's float32 output to rounding). The streaming executor, the
/// in-memory `ParameterMerge` and the explorer all call `TensorMerge.merge`, so a recipe gives the same numbers
/// whichever way it runs. (mergekit 0.1.5 is the reference: `mergekit/merge_methods/*.py`, `mergekit/sparsify.py`.)
public enum TensorMerge {
    /// Merges one tensor. `inputs` are the models' tensors in recipe order, the base model excluded when the method
    /// separates it (`MergeMethod.separatesBase`); `base` is the base model's tensor then.
    public static func merge(_ method: MergeMethod, name: String, inputs: [Tensor], base: Tensor?,
                             parameters p: TensorMergeParameters) throws -> Tensor {
        guard let reference = base ?? inputs.first else { throw MergeError(.methodFailed, tensor: name, "nothing to merge") }
        for x in inputs where x.shape != reference.shape {
            throw MergeError(.incompatibleModels, tensor: name, "inputs have shapes \(x.shape) and \(reference.shape)")
        }
        guard p.weights.count == inputs.count else {
            throw MergeError(.methodFailed, tensor: name, "\(p.weights.count) weights for \(inputs.count) models")
        }
        func needBase() throws -> Tensor {
            guard let base else { throw MergeError(.methodFailed, tensor: name, "\(method.rawValue) needs a base_model") }
            return base
        }
        func exactly(_ n: Int, _ what: String) throws {
            guard inputs.count == n else { throw MergeError(.methodFailed, tensor: name, "\(method.rawValue) \(what); got \(inputs.count) model(s) besides the base") }
        }
        switch method {
        case .linear, .fisher, .regmean:
            // fisher and regmean fall back to the weighted average for tensors they have no statistics for.
            return try linear(name: name, inputs, weights: p.weights, normalize: p.normalize)
        case .taskArithmetic, .ties, .dareTies, .dareLinear, .breadcrumbs, .breadcrumbsTies, .della, .dellaLinear:
            let b = try needBase()
            if inputs.isEmpty { return b }
            return try generalizedTaskArithmetic(method, name: name, inputs: inputs, base: b, parameters: p)
        case .slerp:
            let b = try needBase()
            if inputs.isEmpty { return b }
            try exactly(1, "takes base_model and exactly one other model")
            return slerp(b, inputs[0], t: p.t)
        case .nuslerp:
            try exactly(2, "takes exactly two models (plus an optional base_model)")
            let w = p.weights
            let total = w[0] + w[1]
            let t: Float = abs(total) < 1e-6 ? 0.5 : w[1] / total
            let rowWise = p.option("nuslerp_row_wise", 0) != 0, flatten = p.option("nuslerp_flatten", 1) != 0
            if let base {
                return base + nuslerp(t, inputs[0] - base, inputs[1] - base, rowWise: rowWise, flatten: flatten)
            }
            return nuslerp(t, inputs[0], inputs[1], rowWise: rowWise, flatten: flatten)
        case .modelStock:
            let b = try needBase()
            if inputs.isEmpty { return b }
            guard inputs.count >= 2 else { throw MergeError(.methodFailed, tensor: name, "model_stock needs at least two models besides the base") }
            return modelStock(base: b, inputs, filterWise: p.option("filter_wise", 0) != 0)
        case .karcher:
            return karcher(inputs, maxIterations: Int(p.option("max_iter", 10)), tolerance: p.option("tol", 1e-5))
        case .multislerp:
            return try multislerp(name: name, inputs, weights: p.weights, base: base,
                                  normalizeWeights: p.option("normalize_weights", 1) != 0, eps: Float(p.option("eps", 1e-8)))
        case .nearswap:
            let b = try needBase()
            if inputs.isEmpty { return b }
            try exactly(1, "takes base_model and exactly one other model")
            return nearswap(base: b, inputs[0], t: p.t)
        case .sce:
            let b = try needBase()
            if inputs.isEmpty { return b }
            return sce(base: b, inputs, selectTopK: Float(p.option("select_topk", 1)))
        case .arceeFusion:
            let b = try needBase()
            if inputs.isEmpty { return b }
            try exactly(1, "takes base_model and exactly one other model")
            return arceeFusion(base: b, inputs[0], seed: dareSeed(p.seed, name: name, model: 0))
        case .ram, .ramplusTL:
            let b = try needBase()
            if inputs.isEmpty { return b }
            return ram(base: b, inputs, epsilon: Float(p.option("epsilon", 1e-5)),
                       plus: method == .ramplusTL ? (r: Float(p.option("r", 0.1)), alpha: Float(p.option("alpha", 0.2))) : nil)
        case .passthrough:
            guard inputs.count == 1 else { throw MergeError(.methodFailed, tensor: name, "passthrough expects exactly one model; got \(inputs.count)") }
            if let s = p.scales.first ?? nil { return inputs[0].scaled(by: s) }
            return inputs[0]
        case .basinPath:
            // A point on a path is a fixed linear combination of its control points (weights = path coefficients).
            return try linear(name: name, inputs, weights: p.weights, normalize: false)
        }
    }

    // MARK: Linear

    /// sum_i w_i x_i (in order), then divided by sum_i w_i when normalising: mergekit's
    /// `(weights * tensors).sum(dim=0) / weights.sum(dim=0)`.
    public static func linear(name: String = "", _ inputs: [Tensor], weights: [Float], normalize: Bool) throws -> Tensor {
        guard let first = inputs.first else { throw MergeError(.methodFailed, tensor: name, "linear of no models") }
        var total: Float = 0
        for w in weights { total += w }
        if normalize && total == 0 {
            throw MergeError(.methodFailed, tensor: name, "the weights sum to zero, so normalizing divides by zero")
        }
        let n = first.count
        return Tensor(shape: first.shape) { out in
            for j in 0..<n { out[j] = 0 }
            let o = out.baseAddress!
            for (i, x) in inputs.enumerated() {
                let w = weights[i]
                x.withUnsafeBufferPointer { xs in
                    let s = xs.baseAddress!
                    if i == 0 { for j in 0..<n { o[j] = w * s[j] } } else { for j in 0..<n { o[j] += w * s[j] } }
                }
            }
            if normalize { for j in 0..<n { o[j] /= total } }
        }
    }

    /// Linear with a plain Float32 order (kept for callers that want the simple weighted average).
    public static func linear(_ inputs: [Tensor], weights: [Float], normalize: Bool) -> Tensor {
        (try? linear(name: "", inputs, weights: weights, normalize: normalize)) ?? Tensor.zeros(like: inputs[0])
    }

    // MARK: SLERP

    /// Spherical interpolation between two tensors treated as flat vectors (mergekit's `slerp`): the angle is
    /// that of the normalised vectors; when |cos| > 0.9995 it is the lerp (1 - t) a + t b.
    public static func slerp(_ a: Tensor, _ b: Tensor, t: Float, dotThreshold: Double = 0.9995) -> Tensor {
        let na = a.norm, nb = b.norm
        let ua = na > 1e-8 ? na : 1, ub = nb > 1e-8 ? nb : 1
        let cosTheta = a.dot(b) / (ua * ub)
        if abs(cosTheta) > dotThreshold { return lerp(a, b, t) }
        let theta0 = acos(cosTheta)
        let sinTheta0 = sin(theta0)
        let thetaT = theta0 * Double(t)
        let s0 = Float(sin(theta0 - thetaT) / sinTheta0)
        let s1 = Float(sin(thetaT) / sinTheta0)
        return combine(a, s0, b, s1)
    }

    /// (1 - t) a + t b, each product in Float32 as torch computes it.
    static func lerp(_ a: Tensor, _ b: Tensor, _ t: Float) -> Tensor { combine(a, 1 - t, b, t) }

    /// s0 a + s1 b elementwise (two products, one sum).
    static func combine(_ a: Tensor, _ s0: Float, _ b: Tensor, _ s1: Float) -> Tensor {
        Tensor(shape: a.shape) { out in
            a.withUnsafeBufferPointer { x in
                b.withUnsafeBufferPointer { y in
                    for j in 0..<out.count { out[j] = s0 * x[j] + s1 * y[j] }
                }
            }
        }
    }

    /// mergekit's `nuslerp`: slerp of whole flattened tensors (default), of rows (`flatten: false`) or of columns
    /// (`row_wise: true`), with the lerp wherever sin(theta) < 1e-8.
    public static func nuslerp(_ t: Float, _ v0: Tensor, _ v1: Tensor, rowWise: Bool, flatten: Bool) -> Tensor {
        let shape = v0.shape
        let rows: Int, cols: Int, transpose: Bool
        if flatten || shape.count < 2 {
            rows = 1; cols = v0.count; transpose = false
        } else if rowWise {
            // dim 0: vectors run down the first axis (one per remaining index).
            rows = v0.count / shape[0]; cols = shape[0]; transpose = true
        } else {
            cols = shape[shape.count - 1]; rows = v0.count / max(1, cols); transpose = false
        }
        var out = [Float](repeating: 0, count: v0.count)
        v0.withUnsafeBufferPointer { a in
            v1.withUnsafeBufferPointer { b in
                var x = [Float](repeating: 0, count: cols), y = [Float](repeating: 0, count: cols)
                for r in 0..<rows {
                    for c in 0..<cols {
                        let idx = transpose ? c * rows + r : r * cols + c
                        x[c] = a[idx]; y[c] = b[idx]
                    }
                    var nx = 0.0, ny = 0.0
                    for c in 0..<cols { nx += Double(x[c]) * Double(x[c]); ny += Double(y[c]) * Double(y[c]) }
                    nx = max(nx.squareRoot(), 1e-7); ny = max(ny.squareRoot(), 1e-7)
                    var cosTheta = 0.0
                    for c in 0..<cols { cosTheta += (Double(x[c]) / nx) * (Double(y[c]) / ny) }
                    let theta = acos(min(1, max(-1, cosTheta)))
                    let sinTheta = sin(theta)
                    let lerp = abs(sinTheta) < 1e-8
                    let s0 = Float(sin((1 - Double(t)) * theta) / sinTheta), s1 = Float(sin(Double(t) * theta) / sinTheta)
                    for c in 0..<cols {
                        let idx = transpose ? c * rows + r : r * cols + c
                        out[idx] = lerp ? (1 - t) * x[c] + t * y[c] : s0 * x[c] + s1 * y[c]
                    }
                }
            }
        }
        return Tensor(shape: shape, storage: out)
    }

    // MARK: Generalized task arithmetic (task_arithmetic, TIES, DARE, breadcrumbs, DELLA)

    public typealias Sparsification = MergeMethod.Sparsification

    /// mergekit's `GTATask`: task vectors d_i = x_i - base, sparsified per the method, times their weights;
    /// with sign consensus only entries whose sign matches the sign of the summed mass (>= 0 counts as +) are
    /// kept and the divisor is the sum of their models' weights (1 where none), else the divisor is the sum of
    /// the weights (1 when |sum| < 1e-8); the sum is divided when normalising, scaled by lambda, added to the base.
    public static func generalizedTaskArithmetic(_ method: MergeMethod, name: String, inputs: [Tensor], base: Tensor,
                                                 parameters p: TensorMergeParameters) throws -> Tensor {
        let n = base.count
        let k = inputs.count
        var deltas: [[Float]] = []
        deltas.reserveCapacity(k)
        for (i, x) in inputs.enumerated() {
            var d = [Float](repeating: 0, count: n)
            x.withUnsafeBufferPointer { xs in base.withUnsafeBufferPointer { bs in for j in 0..<n { d[j] = xs[j] - bs[j] } } }
            if let s = method.sparsification {
                try sparsify(&d, shape: base.shape, method: s, density: p.densities[i], gamma: p.gammas[i], epsilon: p.epsilons[i],
                             rescale: p.rescale, seed: dareSeed(p.seed, name: name, model: i), name: name)
            }
            let w = p.weights[i]
            for j in 0..<n { d[j] *= w }
            deltas.append(d)
        }
        var mixed = [Float](repeating: 0, count: n)
        if method.signConsensus {
            var divisor = [Float](repeating: 0, count: n)
            var mass = [Float](repeating: 0, count: n)
            for d in deltas { for j in 0..<n { mass[j] += d[j] } }
            for (i, d) in deltas.enumerated() {
                let w = p.weights[i]
                for j in 0..<n {
                    let v = d[j]
                    if mass[j] >= 0 ? v > 0 : v < 0 {
                        mixed[j] += v
                        divisor[j] += w
                    }
                }
            }
            if p.normalize { for j in 0..<n { mixed[j] /= divisor[j] == 0 ? 1 : divisor[j] } }
        } else {
            for d in deltas { for j in 0..<n { mixed[j] += d[j] } }
            if p.normalize {
                var total: Float = 0
                for w in p.weights { total += w }
                if abs(total) < 1e-8 { total = 1 }
                for j in 0..<n { mixed[j] /= total }
            }
        }
        if p.lambda != 1 { for j in 0..<n { mixed[j] *= p.lambda } }
        return Tensor(shape: base.shape) { out in
            base.withUnsafeBufferPointer { b in for j in 0..<n { out[j] = b[j] + mixed[j] } }
        }
    }

    /// Sparsifies one task vector in place (mergekit's `sparsify`), rescaling what is kept to the original L1 norm
    /// when `rescale` is on (unless either norm is below 1e-7).
    public static func sparsify(_ d: inout [Float], shape: [Int], method: Sparsification, density: Float, gamma: Float, epsilon: Float,
                         rescale: Bool, seed: UInt64, name: String) throws {
        let n = d.count
        guard n > 0 else { return }
        var mask = [Bool](repeating: true, count: n)
        switch method {
        case .magnitude:
            guard density < 1 else { return }
            let k = max(1, Int(Double(density) * Double(n)))
            mask = topMagnitudeMask(d, keep: k)
        case .random:
            guard density < 1 else { return }
            var rng = SeededGenerator(seed: seed)
            let pKeep = Double(density)
            for j in 0..<n { mask[j] = rng.nextUnit() < pKeep }
        case .magnitudeOutliers:
            guard density < 1 else { return }
            let target = Int(Double(density) * Double(n))
            var top = Int(Double(gamma) * Double(n))
            var bottom = n - target - top
            if bottom < 0 {
                top += bottom
                bottom = 0
            }
            // Ascending by magnitude (stable: equal magnitudes in index order); keep ranks [bottom, n - top).
            let order = (0..<n).sorted { abs(d[$0]) < abs(d[$1]) || (abs(d[$0]) == abs(d[$1]) && $0 < $1) }
            for j in 0..<n { mask[j] = false }
            if n - top > bottom { for r in bottom..<(n - top) { mask[order[r]] = true } }
        case .dellaMagprune:
            guard density < 1 else { return }
            if density <= 0 {
                for j in 0..<n { d[j] = 0 }
                return
            }
            guard density + epsilon < 1, density - epsilon > 0 else {
                throw MergeError(.invalidValue, tensor: name, "DELLA needs density - epsilon > 0 and density + epsilon < 1 (density \(density), epsilon \(epsilon))")
            }
            // Rank magnitudes within each row (dim 1; a vector is one row); keep probability rises linearly with rank
            // from density - epsilon (smallest) to density + epsilon (largest).
            let rows = shape.count < 2 ? 1 : shape[0]
            let cols = n / max(1, rows)
            var rng = SeededGenerator(seed: seed)
            for r in 0..<rows {
                let base = r * cols
                let order = (0..<cols).sorted { abs(d[base + $0]) < abs(d[base + $1]) || (abs(d[base + $0]) == abs(d[base + $1]) && $0 < $1) }
                for (rank, c) in order.enumerated() {
                    let norm = cols > 1 ? Double(rank) / Double(cols - 1) : 0
                    let pKeep = Double(density - epsilon) + norm * 2 * Double(epsilon)
                    mask[base + c] = rng.nextUnit() < pKeep
                }
            }
        }
        var before = 0.0, after = 0.0
        for j in 0..<n {
            before += Double(abs(d[j]))
            if mask[j] { after += Double(abs(d[j])) } else { d[j] = 0 }
        }
        if rescale && before >= 1e-7 && after >= 1e-7 {
            let f = Float(before / after)
            for j in 0..<n { d[j] *= f }
        }
    }

    /// The `keep` entries of largest magnitude (ties at the threshold taken in index order; mergekit's unstable
    /// argsort leaves their order unspecified).
    static func topMagnitudeMask(_ d: [Float], keep k: Int) -> [Bool] {
        let n = d.count
        if k >= n { return [Bool](repeating: true, count: n) }
        var mags = d.map { abs($0) }
        let threshold = kthLargest(&mags, k)
        var above = 0
        for v in d where abs(v) > threshold { above += 1 }
        var equalBudget = k - above
        var mask = [Bool](repeating: false, count: n)
        for j in 0..<n {
            let m = abs(d[j])
            if m > threshold {
                mask[j] = true
            } else if m == threshold && equalBudget > 0 {
                equalBudget -= 1
                mask[j] = true
            }
        }
        return mask
    }

    /// Zeroes all but the max(1, floor(density * n)) largest magnitudes (TIES's trim step).
    public static func keepTopMagnitudes(_ t: inout Tensor, density: Float) {
        guard density < 1, t.count > 0 else { return }
        let mask = topMagnitudeMask(t.storage, keep: max(1, Int(Double(density) * Double(t.count))))
        t.withUnsafeMutableBufferPointer { v in for j in 0..<v.count where !mask[j] { v[j] = 0 } }
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

    // MARK: Model Stock

    /// mergekit's `model_stock`: c = mean over pairs of cos(x_i - base, x_j - base) (norm product clamped at 1e-6,
    /// cos clamped to [-1, 1]), t = N c / (1 + (N - 1) c) (0 where the denominator is below 1e-6), result =
    /// t mean_i(x_i) + (1 - t) base; per row with `filter_wise`.
    public static func modelStock(base: Tensor, _ inputs: [Tensor], filterWise: Bool) -> Tensor {
        let n = base.count
        let rows = filterWise && base.rank >= 2 ? base.count / base.shape[base.rank - 1] : 1
        let cols = n / max(1, rows)
        let N = inputs.count
        var out = [Float](repeating: 0, count: n)
        let xs = inputs.map(\.storage)
        let b = base.storage
        for r in 0..<rows {
            let lo = r * cols, hi = lo + cols
            var cosSum = 0.0, pairs = 0
            for i in 0..<N {
                for j in (i + 1)..<N where j < N {
                    var dot = 0.0, ni = 0.0, nj = 0.0
                    for e in lo..<hi {
                        let a = Double(xs[i][e] - b[e]), c = Double(xs[j][e] - b[e])
                        dot += a * c; ni += a * a; nj += c * c
                    }
                    let c = dot / max(ni.squareRoot() * nj.squareRoot(), 1e-6)
                    cosSum += min(1, max(-1, c))
                    pairs += 1
                }
            }
            let c = cosSum / Double(max(1, pairs))
            let denominator = 1 + Double(N - 1) * c
            let t = Float(abs(denominator) < 1e-6 ? 0 : Double(N) * c / denominator)
            for e in lo..<hi {
                var s: Float = 0
                for i in 0..<N { s += xs[i][e] }
                out[e] = t * (s / Float(N)) + (1 - t) * b[e]
            }
        }
        return Tensor(shape: base.shape, storage: out)
    }

    // MARK: Karcher mean

    /// mergekit's `karcher`: the Riemannian mean of the directions u_i = x_i / |x_i| (equal weights), found by up to
    /// `maxIterations` gradient steps (terms with angle below `tolerance` skipped, stop when the step is below it),
    /// scaled by the mean norm.
    public static func karcher(_ inputs: [Tensor], maxIterations: Int, tolerance: Double) -> Tensor {
        guard inputs.count > 1 else { return inputs[0] }
        let n = inputs[0].count
        let alphas = [Double](repeating: 1 / Double(inputs.count), count: inputs.count)
        let norms = inputs.map(\.norm)
        let units: [[Double]] = inputs.enumerated().map { i, x in norms[i] == 0 ? [Double](repeating: 0, count: n) : x.storage.map { Double($0) / norms[i] } }
        let valid = norms.indices.filter { norms[$0] > tolerance }
        guard !valid.isEmpty else { return Tensor.zeros(like: inputs[0]) }
        let alphaSum = valid.reduce(0.0) { $0 + alphas[$1] }
        let weights = valid.map { alphas[$0] / alphaSum }
        func norm(_ v: [Double]) -> Double { v.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        var u = [Double](repeating: 0, count: n)
        for (w, i) in zip(weights, valid) { for e in 0..<n { u[e] += w * units[i][e] } }
        let nu = norm(u)
        if nu < tolerance { u = units[valid[0]] } else { for e in 0..<n { u[e] /= nu } }
        for _ in 0..<maxIterations {
            var g = [Double](repeating: 0, count: n)
            for (w, i) in zip(weights, valid) {
                var dot = 0.0
                for e in 0..<n { dot += u[e] * units[i][e] }
                dot = min(1, max(-1, dot))
                let theta = acos(dot)
                if theta < tolerance { continue }
                let f = w * theta / sin(theta)
                for e in 0..<n { g[e] += f * (units[i][e] - dot * u[e]) }
            }
            let ng = norm(g)
            if ng < tolerance { break }
            let c = cos(ng), s = sin(ng)
            for e in 0..<n { u[e] = c * u[e] + s * g[e] / ng }
            let nu2 = norm(u)
            if nu2 > tolerance { for e in 0..<n { u[e] /= nu2 } }
        }
        var scale = 0.0
        for (a, nrm) in zip(alphas, norms) { scale += a * nrm }
        return Tensor(shape: inputs[0].shape, storage: u.map { Float(scale * $0) })
    }

    // MARK: Multi-SLERP

    /// mergekit's `multislerp`: barycentric interpolation on the sphere (task vectors when there is a base).
    public static func multislerp(name: String, _ inputs: [Tensor], weights: [Float], base: Tensor?, normalizeWeights: Bool, eps: Float) throws -> Tensor {
        if inputs.count == 1 { return inputs[0] }
        let n = inputs[0].count
        let vs: [[Float]] = inputs.map { x in base.map { b in zip(x.storage, b.storage).map { $0 - $1 } } ?? x.storage }
        var w = weights
        if normalizeWeights {
            let s = w.reduce(0, +)
            w = w.map { $0 / s }
        }
        let norms = vs.map { v in Float(v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()) }
        let units = vs.enumerated().map { i, v in v.map { $0 / (norms[i] + eps) } }
        var mean = [Float](repeating: 0, count: n)
        for (i, u) in units.enumerated() { for e in 0..<n { mean[e] += u[e] * w[i] } }
        let meanNorm = Float(mean.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot())
        if meanNorm < eps {
            if inputs.count == 2 {
                var r = (0..<n).map { vs[0][$0] * w[0] + vs[1][$0] * w[1] }
                if let b = base { for e in 0..<n { r[e] += b.storage[e] } }
                return Tensor(shape: inputs[0].shape, storage: r)
            }
            throw MergeError(.methodFailed, tensor: name, "multislerp: the weighted sum of the directions is zero (antipodal inputs with balancing weights); choose other weights")
        }
        for e in 0..<n { mean[e] /= meanNorm }
        var tangent = [Float](repeating: 0, count: n)
        for (i, u) in units.enumerated() {
            var dot: Float = 0
            for e in 0..<n { dot += u[e] * mean[e] }
            for e in 0..<n { tangent[e] += (u[e] - dot * mean[e]) * w[i] }
        }
        let tn = Float(tangent.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()) + eps
        var avgNorm: Float = 0
        for i in norms.indices { avgNorm += norms[i] * w[i] }
        var r = (0..<n).map { (mean[$0] * cos(tn) + tangent[$0] * (sin(tn) / tn)) * avgNorm }
        if let b = base { for e in 0..<n { r[e] += b.storage[e] } }
        return Tensor(shape: inputs[0].shape, storage: r)
    }

    // MARK: NearSwap, SCE, RAM, Arcee Fusion

    /// mergekit's `nearswap`: w = clamp(t / max(|a - b|, 1e-6), 0, 1); result = w b + (1 - w) a (a = base).
    public static func nearswap(base a: Tensor, _ b: Tensor, t: Float) -> Tensor {
        Tensor(shape: a.shape) { out in
            a.withUnsafeBufferPointer { x in
                b.withUnsafeBufferPointer { y in
                    for j in 0..<out.count {
                        let w = min(1, max(0, t / max(abs(x[j] - y[j]), 1e-6)))
                        out[j] = w * y[j] + (1 - w) * x[j]
                    }
                }
            }
        }
    }

    /// mergekit's `sce`: optional top-k by variance across models, sign election, and weights proportional to each
    /// task vector's mean square.
    public static func sce(base: Tensor, _ inputs: [Tensor], selectTopK: Float) -> Tensor {
        let n = base.count, k = inputs.count
        var tv = inputs.map { x in zip(x.storage, base.storage).map { $0 - $1 } }
        if selectTopK < 1 {
            var variance = [Float](repeating: 0, count: n)
            for e in 0..<n {
                var m: Float = 0
                for i in 0..<k { m += tv[i][e] }
                m /= Float(k)
                var v: Float = 0
                for i in 0..<k { v += (tv[i][e] - m) * (tv[i][e] - m) }
                variance[e] = v / Float(k)
            }
            let nonzero = variance.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
            let keep = Int(Double(nonzero) * Double(selectTopK))
            let mask = keep == 0 ? [Bool](repeating: false, count: n) : topMagnitudeMask(variance, keep: keep)
            for i in 0..<k { for e in 0..<n where !mask[e] { tv[i][e] = 0 } }
        }
        var weights = tv.map { v in Float(v.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(max(1, n))) }
        let ws = weights.reduce(0, +)
        weights = abs(ws) < 1e-6 ? weights.map { _ in 1 / Float(k) } : weights.map { $0 / ws }
        var out = [Float](repeating: 0, count: n)
        for e in 0..<n {
            var mass: Float = 0
            for i in 0..<k { mass += tv[i][e] }
            var num: Float = 0, den: Float = 0
            for i in 0..<k {
                let v = tv[i][e]
                if mass >= 0 ? v > 0 : v < 0 {
                    num += v * weights[i]
                    den += weights[i]
                }
            }
            out[e] = base.storage[e] + num / max(den, 1e-6)
        }
        return Tensor(shape: base.shape, storage: out)
    }

    /// mergekit's `ram` and `ramplus_tl`: entries changed (|d| > epsilon) by one model keep that model's change; entries
    /// changed by several are averaged over them. RAM+ scales the unique changes of model i by
    /// 1 + r min(alpha, shared_i / unique_i).
    public static func ram(base: Tensor, _ inputs: [Tensor], epsilon: Float, plus: (r: Float, alpha: Float)?) -> Tensor {
        let n = base.count, k = inputs.count
        let tv = inputs.map { x in zip(x.storage, base.storage).map { $0 - $1 } }
        var counts = [Int](repeating: 0, count: n)
        for i in 0..<k { for e in 0..<n where abs(tv[i][e]) > epsilon { counts[e] += 1 } }
        var lambdas = [Float](repeating: 1, count: k)
        if let plus {
            for i in 0..<k {
                var shared = 0, unique = 0
                for e in 0..<n where abs(tv[i][e]) > epsilon {
                    if counts[e] > 1 { shared += 1 } else if counts[e] == 1 { unique += 1 }
                }
                let rho = Float(shared) / max(Float(unique), epsilon)
                lambdas[i] = 1 + plus.r * min(max(rho, 0), plus.alpha)
            }
        }
        var out = base.storage
        for e in 0..<n {
            var s: Float = 0
            for i in 0..<k where abs(tv[i][e]) > epsilon {
                s += counts[e] == 1 ? tv[i][e] * lambdas[i] : tv[i][e] / Float(max(1, counts[e]))
            }
            out[e] += s
        }
        return Tensor(shape: base.shape, storage: out)
    }

    /// mergekit's `arcee_fusion`: importance = |x - base| times the KL divergence of softmax(x) from softmax(base)
    /// per row; entries with importance >= median + 1.5 IQR take x, the rest keep the base. Quantiles come from
    /// the sorted importances (a random million of them for larger tensors, as mergekit samples).
    public static func arceeFusion(base: Tensor, _ x: Tensor, seed: UInt64) -> Tensor {
        let n = base.count
        let cols = base.rank >= 1 ? base.shape[base.rank - 1] : 1
        let rows = n / max(1, cols)
        var importance = [Float](repeating: 0, count: n)
        for r in 0..<rows {
            let lo = r * cols
            // Float32 throughout, as mergekit's torch code computes it: importances near the threshold decide which
            // entries move, so a more precise KL would flip a few of them.
            func softmax(_ v: ArraySlice<Float>) -> [Float] {
                let m = v.max() ?? 0
                let e = v.map { Foundation.exp($0 - m) }
                var s: Float = 0
                for x in e { s += x }
                return e.map { $0 / s }
            }
            let p = softmax(x.storage[lo..<(lo + cols)]), q = softmax(base.storage[lo..<(lo + cols)])
            var kl: Float = 0
            for c in 0..<cols {
                let pc = p[c] + 1e-8, qc = q[c] + 1e-8
                kl += pc * Foundation.log(pc / qc)
            }
            for c in 0..<cols { importance[lo + c] = abs(x.storage[lo + c] - base.storage[lo + c]) * kl }
        }
        var sample = importance
        if n > 1_000_000 {
            var rng = SeededGenerator(seed: seed)
            sample = Array(rng.permutation(n).prefix(1_000_000).map { importance[$0] })
        }
        sample.sort()
        func quantile(_ q: Double) -> Float { sample[Int(q * Double(sample.count - 1))] }
        let threshold = quantile(0.5) + 1.5 * (quantile(0.75) - quantile(0.25))
        return Tensor(shape: base.shape) { out in
            for e in 0..<n {
                let d = x.storage[e] - base.storage[e]
                out[e] = base.storage[e] + (importance[e] >= threshold ? d : 0)
            }
        }
    }
}
