import BasinTensor
import Foundation

/// Causal scaled dot-product attention with grouped-query heads, forward and backward, as Hugging Face's
/// GPT-2 and LLaMA compute it: per sample and query head h, softmax(Q_h K_g^T * scale + causal mask) V_g
/// where g = h / (queryHeads / keyValueHeads) is the key-value head the query head reads (`repeat_kv`).
///
/// Activations are row-major [N, L, width]; q, k and v are column ranges of such tensors (GPT-2 packs all
/// three in one [N, L, 3 * H * D] tensor, LLaMA has three). Every product is one OpenBLAS sgemm per sample
/// and head, reading the strided head slices in place (no copies into per-head buffers).
public enum AttentionKernel {
    /// Where the heads live: q, k and v are columns `qOffset + h * headDim ..< + headDim` (and likewise k, v)
    /// of rows of `qStride` (`kStride`, `vStride`) values; one row per position, `length` rows per sample.
    public struct Layout: Sendable, Equatable {
        public var batch: Int
        public var length: Int
        public var queryHeads: Int
        public var keyValueHeads: Int
        public var headDim: Int
        public var qStride: Int, qOffset: Int
        public var kStride: Int, kOffset: Int
        public var vStride: Int, vOffset: Int
        /// Sliding-window attention (Mistral): position i reads positions i - window + 1 ... i only.
        public var window: Int? = nil

        /// Query heads per key-value head.
        public var groupSize: Int { queryHeads / keyValueHeads }
        /// Width of the attention output (heads concatenated in order).
        public var outputWidth: Int { queryHeads * headDim }

        /// q, k, v packed in one tensor [N, L, (Hq + 2 Hkv) D] as q | k | v (GPT-2's c_attn output).
        public static func packed(batch: Int, length: Int, heads: Int, keyValueHeads: Int? = nil, headDim: Int) -> Layout {
            let kv = keyValueHeads ?? heads
            let width = (heads + 2 * kv) * headDim
            return Layout(batch: batch, length: length, queryHeads: heads, keyValueHeads: kv, headDim: headDim,
                          qStride: width, qOffset: 0, kStride: width, kOffset: heads * headDim,
                          vStride: width, vOffset: (heads + kv) * headDim)
        }

        /// q [N, L, Hq D], k and v [N, L, Hkv D] as three tensors (LLaMA's projections).
        public static func separate(batch: Int, length: Int, queryHeads: Int, keyValueHeads: Int, headDim: Int) -> Layout {
            Layout(batch: batch, length: length, queryHeads: queryHeads, keyValueHeads: keyValueHeads, headDim: headDim,
                   qStride: queryHeads * headDim, qOffset: 0, kStride: keyValueHeads * headDim, kOffset: 0,
                   vStride: keyValueHeads * headDim, vOffset: 0)
        }
    }

    /// The attention output [N * L, Hq * D] (row-major) for q, k, v at the layout's places. `probabilities`,
    /// when given, receives the softmax weights [N, Hq, L, L] (zero above the diagonal) for backward.
    public static func forward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, layout s: Layout,
                               scale: Float, output: UnsafeMutablePointer<Float>,
                               probabilities: UnsafeMutablePointer<Float>?) {
        let (n, l, hq, d) = (s.batch, s.length, s.queryHeads, s.headDim)
        let groupSize = s.groupSize
        let outWidth = s.outputWidth
        let scratch = probabilities == nil ? UnsafeMutablePointer<Float>.allocate(capacity: l * l) : nil
        defer { scratch?.deallocate() }
        for b in 0..<n {
            for h in 0..<hq {
                let g = h / groupSize
                let qh = q + b * l * s.qStride + s.qOffset + h * d
                let kg = k + b * l * s.kStride + s.kOffset + g * d
                let vg = v + b * l * s.vStride + s.vOffset + g * d
                let p = probabilities.map { $0 + (b * hq + h) * l * l } ?? scratch!
                // S = Q K^T * scale (only the lower triangle is used).
                BLAS.sgemm(transA: false, transB: true, m: l, n: l, k: d, alpha: scale, a: qh, lda: s.qStride,
                           b: kg, ldb: s.kStride, beta: 0, c: p, ldc: l)
                causalSoftmaxRows(p, length: l, window: s.window)
                // O_h = P V_g into the output's head columns.
                BLAS.sgemm(transA: false, transB: false, m: l, n: d, k: l, alpha: 1, a: p, lda: l,
                           b: vg, ldb: s.vStride, beta: 0, c: output + b * l * outWidth + h * d, ldc: outWidth)
            }
        }
    }

    /// The first column row i reads.
    @inline(__always)
    static func firstColumn(_ i: Int, window: Int?) -> Int {
        guard let window else { return 0 }
        return Swift.max(0, i - window + 1)
    }

    /// Row i of the [L, L] scores keeps columns lo...i (lo = 0 without a window): softmax over them, zeros
    /// elsewhere.
    @inline(__always)
    static func causalSoftmaxRows(_ p: UnsafeMutablePointer<Float>, length l: Int, window: Int?) {
        for i in 0..<l {
            let row = p + i * l
            let lo = firstColumn(i, window: window)
            if lo > 0 { row.update(repeating: 0, count: lo) }
            var m = row[lo]
            for j in lo...i where row[j] > m { m = row[j] }
            var sum: Float = 0
            for j in lo...i {
                let e = expf(row[j] - m)
                row[j] = e
                sum += e
            }
            let inv = 1 / sum
            for j in lo...i { row[j] *= inv }
            if i + 1 < l { (row + i + 1).update(repeating: 0, count: l - i - 1) }
        }
    }

    /// Gradients of q, k, v (written at the same places in `dq`, `dk`, `dv`, which are overwritten there and
    /// may be one buffer for a packed layout) from d loss / d output [N * L, Hq * D] and the forward's
    /// softmax weights.
    public static func backward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, layout s: Layout,
                                scale: Float, probabilities: UnsafePointer<Float>, outputGradient dout: UnsafePointer<Float>,
                                dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>) {
        let (n, l, hq, d) = (s.batch, s.length, s.queryHeads, s.headDim)
        let groupSize = s.groupSize
        let outWidth = s.outputWidth
        let dp = UnsafeMutablePointer<Float>.allocate(capacity: l * l)
        defer { dp.deallocate() }
        for b in 0..<n {
            for h in 0..<hq {
                let g = h / groupSize
                let first = h % groupSize == 0
                let qOff = b * l * s.qStride + s.qOffset + h * d
                let kOff = b * l * s.kStride + s.kOffset + g * d
                let vOff = b * l * s.vStride + s.vOffset + g * d
                let p = probabilities + (b * hq + h) * l * l
                let doh = dout + b * l * outWidth + h * d
                // dV_g (+)= P^T dO_h: the group's query heads accumulate into their key-value head.
                BLAS.sgemm(transA: true, transB: false, m: l, n: d, k: l, alpha: 1, a: p, lda: l, b: doh, ldb: outWidth,
                           beta: first ? 0 : 1, c: dv + vOff, ldc: s.vStride)
                // dP = dO_h V_g^T.
                BLAS.sgemm(transA: false, transB: true, m: l, n: l, k: d, alpha: 1, a: doh, lda: outWidth, b: v + vOff,
                           ldb: s.vStride, beta: 0, c: dp, ldc: l)
                // dS = P * (dP - sum_j dP_ij P_ij) * scale (softmax backward; masked entries have P = 0).
                for i in 0..<l {
                    let pr = p + i * l, dr = dp + i * l
                    let lo = firstColumn(i, window: s.window)
                    if lo > 0 { dr.update(repeating: 0, count: lo) }
                    var dot: Float = 0
                    for j in lo...i { dot += pr[j] * dr[j] }
                    for j in lo...i { dr[j] = pr[j] * (dr[j] - dot) * scale }
                    if i + 1 < l { (dr + i + 1).update(repeating: 0, count: l - i - 1) }
                }
                // dQ_h = dS K_g; dK_g (+)= dS^T Q_h.
                BLAS.sgemm(transA: false, transB: false, m: l, n: d, k: l, alpha: 1, a: dp, lda: l, b: k + kOff,
                           ldb: s.kStride, beta: 0, c: dq + qOff, ldc: s.qStride)
                BLAS.sgemm(transA: true, transB: false, m: l, n: d, k: l, alpha: 1, a: dp, lda: l, b: q + qOff,
                           ldb: s.qStride, beta: first ? 0 : 1, c: dk + kOff, ldc: s.kStride)
            }
        }
    }
}
