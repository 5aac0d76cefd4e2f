import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Merges that look at data: Fisher merging and RegMean. They need every model in memory and a network.
public enum DataAwareMerge {
    /// Diagonal (empirical) Fisher of a model: the mean over samples of each per-sample gradient squared,
    /// from the first `samples` rows of `data` (true labels).
    public static func diagonalFisher(network: Network, params: ParameterSet, data: Dataset, samples: Int = 256) -> ParameterSet {
        let n = min(samples, data.count)
        let x = data.x
        var fisher = params.mapTensors { _, t in Tensor.zeros(like: t) }
        for s in 0..<n {
            let (_, g) = network.lossAndGradients(params, x: x.rows(s..<(s + 1)), y: data.labels(s..<(s + 1)))
            for name in params.names {
                guard let gt = g[name] else { continue }
                var f = fisher[name]!
                f.withUnsafeMutableBufferPointer { fv in
                    gt.withUnsafeBufferPointer { gv in for j in 0..<fv.count { fv[j] += gv[j] * gv[j] } }
                }
                fisher[name] = f
            }
        }
        return fisher.mapTensors { _, t in t.scaled(by: 1 / Float(max(1, n))) }
    }

    /// Fisher merging (Matena & Raffel 2022): theta = sum_i w_i F_i theta_i / sum_i w_i F_i elementwise, where an
    /// element with no Fisher mass in any model falls back to the weighted average.
    public static func fisherMerge(models: [ParameterSet], fishers: [ParameterSet], weights: [Float]? = nil,
                                   epsilon: Float = 1e-10) throws -> ParameterSet {
        guard let reference = models.first, fishers.count == models.count else { throw MergeError("fisher merge needs one Fisher per model") }
        let w = weights ?? Array(repeating: 1, count: models.count)
        var out = ParameterSet()
        for name in reference.names {
            let n = reference[name]!.count
            var num = [Float](repeating: 0, count: n), den = [Float](repeating: 0, count: n), plain = [Float](repeating: 0, count: n)
            let wsum = w.reduce(0, +)
            for i in models.indices {
                let theta = models[i][name]!.storage, f = fishers[i][name]!.storage
                for j in 0..<n {
                    let fw = w[i] * f[j]
                    num[j] += fw * theta[j]
                    den[j] += fw
                    plain[j] += w[i] * theta[j] / wsum
                }
            }
            out[name] = Tensor(shape: reference[name]!.shape, storage: (0..<n).map { den[$0] > epsilon ? num[$0] / den[$0] : plain[$0] })
        }
        return out
    }

    /// Fisher merging end to end: estimate each model's diagonal Fisher on `data`, then merge.
    public static func fisherMerge(network: Network, models: [ParameterSet], data: Dataset, weights: [Float]? = nil,
                                   samples: Int = 256) throws -> ParameterSet {
        let fishers = models.map { diagonalFisher(network: network, params: $0, data: data, samples: samples) }
        return try fisherMerge(models: models, fishers: fishers, weights: weights)
    }

    /// A layer RegMean solves: a product with a weight read by this node alone (a linear layer, GPT-2's
    /// Conv1D with its [in, out] layout, an untied LM head).
    struct RegMeanSite {
        var node: Int
        var weight: String
        var bias: String?
        /// The weight is stored [in, out] (GPT-2's Conv1D) rather than [out, in].
        var inputMajor: Bool
    }

    static func regMeanSites(_ arch: Architecture) -> [RegMeanSite] {
        var readers: [String: Int] = [:]
        for node in arch.nodes { for name in Set(node.op.parameterNames) { readers[name, default: 0] += 1 } }
        return arch.nodes.indices.compactMap { i -> RegMeanSite? in
            let op = arch.nodes[i].op
            let site: RegMeanSite? = if let l = op as? Linear {
                RegMeanSite(node: i, weight: l.weight, bias: l.bias, inputMajor: false)
            } else if let c = op as? HFConv1D {
                RegMeanSite(node: i, weight: c.weight, bias: c.bias, inputMajor: true)
            } else if let h = op as? LMHead {
                RegMeanSite(node: i, weight: h.weight, bias: h.bias, inputMajor: false)
            } else {
                nil
            }
            // A weight shared with another node (tied embeddings) is not this layer's alone: it is averaged.
            guard let site, readers[site.weight] == 1 else { return nil }
            return site
        }
    }

    /// RegMean (Jin et al. 2023): for each linear layer y = x W^T + b, with G_i = X_i^T X_i the Gram matrix of the
    /// layer's inputs in model i (a column of ones appended so the bias is solved jointly), the merged
    /// [W b]^T = (sum_i G_i)^-1 sum_i G_i [W_i b_i]^T, solved with LAPACK (Cholesky). Off-diagonal Gram entries
    /// are scaled by `alpha` (the paper's regularisation); other tensors are averaged. Every position of a
    /// sequence is a row of X (token data), and GPT-2's Conv1D ([in, out]) and an untied LM head count as linear
    /// layers; a weight another node also reads (tied embeddings) is averaged.
    public static func regMean(network: Network, models: [ParameterSet], data: Dataset, samples: Int = 1024,
                               alpha: Double = 0.9, batchSize: Int = 256) throws -> ParameterSet {
        guard let reference = models.first else { throw MergeError("regmean of no models") }
        for m in models { try reference.checkCompatible(with: m) }
        var out = try ParameterMerge.uniformSoup(models)
        let arch = network.architecture
        let sites = regMeanSites(arch)
        let n = min(samples, data.count)
        let x = data.x
        /// (in, out) of a site's weight.
        func dims(_ site: RegMeanSite, _ w: Tensor) -> (inDim: Int, outDim: Int) {
            site.inputMajor ? (w.shape[0], w.shape[1]) : (w.shape[1], w.shape[0])
        }
        // Gram sums per site, accumulated in Double over batches.
        var totalGram: [Int: [Double]] = [:]
        var totalRHS: [Int: [Double]] = [:]
        for params in models {
            var grams: [Int: [Double]] = [:]
            var start = 0
            while start < n {
                let end = min(n, start + batchSize)
                let trace = network.forwardTrace(x.rows(start..<end), params, keepAll: true)
                for site in sites {
                    let input = arch.nodes[site.node].inputs[0]
                    let xin = input < 0 ? x.rows(start..<end) : trace[input]!
                    let cols = dims(site, params[site.weight]!).inDim
                    let rows = xin.count / max(1, cols)
                    // Augment with a ones column: [X 1].
                    var aug = Tensor.zeros([rows, cols + 1])
                    aug.withUnsafeMutableBufferPointer { a in
                        xin.withUnsafeBufferPointer { s in
                            for r in 0..<rows {
                                (a.baseAddress! + r * (cols + 1)).update(from: s.baseAddress! + r * cols, count: cols)
                                a[r * (cols + 1) + cols] = 1
                            }
                        }
                    }
                    let g = aug.matmul(aug, transposeSelf: true)
                    if grams[site.node] == nil { grams[site.node] = [Double](repeating: 0, count: g.count) }
                    g.withUnsafeBufferPointer { gs in
                        for j in 0..<gs.count { grams[site.node]![j] += Double(gs[j]) }
                    }
                }
                start = end
            }
            for site in sites {
                guard var g = grams[site.node] else { continue }
                let w = params[site.weight]!
                let (inDim, outDim) = dims(site, w)
                let bias = site.bias.flatMap { params[$0] }
                let d = inDim + (bias == nil ? 0 : 1)
                if bias == nil {
                    // Without a bias only the X^T X block of the augmented Gram applies.
                    g = (0..<(d * d)).map { g[($0 / d) * (inDim + 1) + $0 % d] }
                }
                // Off-diagonal scaling.
                for r in 0..<d { for c in 0..<d where r != c { g[r * d + c] *= alpha } }
                // A small ridge, applied to this model's Gram on both sides, keeps the system positive definite and
                // makes inputs that never vary (dead pixels, dead ReLUs) fall back to the plain average.
                let ridge = 1e-6 * (0..<d).reduce(0.0) { $0 + g[$1 * d + $1] } / Double(d) + 1e-12
                for i in 0..<d { g[i * d + i] += ridge }
                // [W b]^T : d x outDim.
                var wt = [Double](repeating: 0, count: d * outDim)
                w.withUnsafeBufferPointer { ws in
                    for o in 0..<outDim {
                        for i in 0..<inDim { wt[i * outDim + o] = Double(site.inputMajor ? ws[i * outDim + o] : ws[o * inDim + i]) }
                    }
                }
                if let bias { for o in 0..<outDim { wt[inDim * outDim + o] = Double(bias[o]) } }
                var rhs = [Double](repeating: 0, count: d * outDim)
                g.withUnsafeBufferPointer { a in
                    wt.withUnsafeBufferPointer { b in
                        rhs.withUnsafeMutableBufferPointer { c in
                            BLAS.dgemm(transA: false, transB: false, m: d, n: outDim, k: d, alpha: 1, a: a.baseAddress!, lda: d,
                                       b: b.baseAddress!, ldb: outDim, beta: 0, c: c.baseAddress!, ldc: outDim)
                        }
                    }
                }
                if totalGram[site.node] == nil {
                    totalGram[site.node] = g
                    totalRHS[site.node] = rhs
                } else {
                    for j in 0..<g.count { totalGram[site.node]![j] += g[j] }
                    for j in 0..<rhs.count { totalRHS[site.node]![j] += rhs[j] }
                }
            }
        }
        for site in sites {
            guard var a = totalGram[site.node], var b = totalRHS[site.node] else { continue }
            let w = reference[site.weight]!
            let (inDim, outDim) = dims(site, w)
            let d = inDim + (site.bias.flatMap { reference[$0] } == nil ? 0 : 1)
            let info = BLAS.solveSPD(n: d, nrhs: outDim, a: &a, b: &b)
            guard info == 0 else { throw MergeError("regmean: the Gram matrix of '\(site.weight)' is not positive definite (LAPACK info \(info))") }
            // b holds [W b]^T (d x out): row i of it is input i.
            out[site.weight] = Tensor(shape: w.shape, storage: (0..<(outDim * inDim)).map { k in
                site.inputMajor ? Float(b[k]) : Float(b[(k % inDim) * outDim + k / inDim])
            })
            if let bName = site.bias, let bt = reference[bName] {
                out[bName] = Tensor(shape: bt.shape, storage: (0..<outDim).map { Float(b[inDim * outDim + $0]) })
            }
        }
        return out
    }
}
