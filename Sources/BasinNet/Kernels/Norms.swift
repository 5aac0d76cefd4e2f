import BasinTensor
import Foundation

/// Normalisations over the last axis of row-major activations [rows, width], forward and backward, in
/// PyTorch's definitions: LayerNorm (biased variance, GPT-2) and RMSNorm (LLaMA's `LlamaRMSNorm`). Row
/// statistics are accumulated in double precision.
public enum NormKernel {
    /// y = (x - mean) / sqrt(var + eps) * weight + bias per row. Returns y and each row's mean and
    /// 1 / sqrt(var + eps) (for backward).
    public static func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor?, epsilon: Float) -> (y: Tensor, mean: [Float], inverseStd: [Float]) {
        let width = weight.count
        let rows = width == 0 ? 0 : x.count / width
        precondition(rows * width == x.count, "layer norm: input \(x.shape) does not end in \(width) features")
        var mean = [Float](repeating: 0, count: rows)
        var rstd = [Float](repeating: 0, count: rows)
        let y = Tensor(shape: x.shape) { out in
            x.withUnsafeBufferPointer { xs in
                weight.withUnsafeBufferPointer { ws in
                    let bs = bias?.storage
                    for r in 0..<rows {
                        let row = xs.baseAddress! + r * width
                        var s = 0.0
                        for j in 0..<width { s += Double(row[j]) }
                        let mu = s / Double(width)
                        var v = 0.0
                        for j in 0..<width {
                            let c = Double(row[j]) - mu
                            v += c * c
                        }
                        let inv = 1 / (v / Double(width) + Double(epsilon)).squareRoot()
                        mean[r] = Float(mu)
                        rstd[r] = Float(inv)
                        let m = Float(mu), i = Float(inv)
                        let o = out.baseAddress! + r * width
                        if let bs {
                            for j in 0..<width { o[j] = (row[j] - m) * i * ws[j] + bs[j] }
                        } else {
                            for j in 0..<width { o[j] = (row[j] - m) * i * ws[j] }
                        }
                    }
                }
            }
        }
        return (y, mean, rstd)
    }

    /// Gradients of LayerNorm: d x, d weight, d bias from d y and the forward's statistics.
    public static func layerNormBackward(_ x: Tensor, weight: Tensor, mean: [Float], inverseStd: [Float],
                                         outputGradient dy: Tensor) -> (dx: Tensor, dWeight: Tensor, dBias: Tensor) {
        let width = weight.count
        let rows = mean.count
        var dw = [Double](repeating: 0, count: width)
        var db = [Double](repeating: 0, count: width)
        let dx = Tensor(shape: x.shape) { out in
            x.withUnsafeBufferPointer { xs in
                dy.withUnsafeBufferPointer { gs in
                    weight.withUnsafeBufferPointer { ws in
                        let xhat = UnsafeMutablePointer<Float>.allocate(capacity: width)
                        defer { xhat.deallocate() }
                        for r in 0..<rows {
                            let xr = xs.baseAddress! + r * width, gr = gs.baseAddress! + r * width
                            let m = mean[r], inv = inverseStd[r]
                            // x̂ = (x - mean) inv; g = dy * w; dx = inv (g - mean(g) - x̂ mean(g x̂)).
                            var sg = 0.0, sgx = 0.0
                            for j in 0..<width {
                                let xh = (xr[j] - m) * inv
                                xhat[j] = xh
                                let g = gr[j] * ws[j]
                                sg += Double(g)
                                sgx += Double(g * xh)
                                dw[j] += Double(gr[j] * xh)
                                db[j] += Double(gr[j])
                            }
                            let mg = Float(sg / Double(width)), mgx = Float(sgx / Double(width))
                            let o = out.baseAddress! + r * width
                            for j in 0..<width { o[j] = inv * (gr[j] * ws[j] - mg - xhat[j] * mgx) }
                        }
                    }
                }
            }
        }
        return (dx, Tensor(shape: [width], storage: dw.map(Float.init)), Tensor(shape: [width], storage: db.map(Float.init)))
    }

    /// y = weight * x / sqrt(mean(x^2) + eps) per row. Returns y and each row's 1 / sqrt(mean(x^2) + eps).
    public static func rmsNorm(_ x: Tensor, weight: Tensor, epsilon: Float) -> (y: Tensor, inverseRMS: [Float]) {
        let width = weight.count
        let rows = width == 0 ? 0 : x.count / width
        precondition(rows * width == x.count, "RMS norm: input \(x.shape) does not end in \(width) features")
        var rinv = [Float](repeating: 0, count: rows)
        let y = Tensor(shape: x.shape) { out in
            x.withUnsafeBufferPointer { xs in
                weight.withUnsafeBufferPointer { ws in
                    for r in 0..<rows {
                        let row = xs.baseAddress! + r * width
                        var s = 0.0
                        for j in 0..<width { s += Double(row[j]) * Double(row[j]) }
                        let inv = Float(1 / (s / Double(width) + Double(epsilon)).squareRoot())
                        rinv[r] = inv
                        let o = out.baseAddress! + r * width
                        // LlamaRMSNorm: weight * (x * inv), the product in that order.
                        for j in 0..<width { o[j] = ws[j] * (row[j] * inv) }
                    }
                }
            }
        }
        return (y, rinv)
    }

    /// Gradients of RMSNorm: d x and d weight.
    public static func rmsNormBackward(_ x: Tensor, weight: Tensor, inverseRMS: [Float], outputGradient dy: Tensor) -> (dx: Tensor, dWeight: Tensor) {
        let width = weight.count
        let rows = inverseRMS.count
        var dw = [Double](repeating: 0, count: width)
        let dx = Tensor(shape: x.shape) { out in
            x.withUnsafeBufferPointer { xs in
                dy.withUnsafeBufferPointer { gs in
                    weight.withUnsafeBufferPointer { ws in
                        for r in 0..<rows {
                            let xr = xs.baseAddress! + r * width, gr = gs.baseAddress! + r * width
                            let inv = inverseRMS[r]
                            // g = dy * w; dx = inv g - x inv^3 mean(g x).
                            var sgx = 0.0
                            for j in 0..<width {
                                sgx += Double(gr[j] * ws[j] * xr[j])
                                dw[j] += Double(gr[j] * xr[j] * inv)
                            }
                            let c = Float(sgx / Double(width)) * inv * inv * inv
                            let o = out.baseAddress! + r * width
                            for j in 0..<width { o[j] = inv * gr[j] * ws[j] - xr[j] * c }
                        }
                    }
                }
            }
        }
        return (dx, Tensor(shape: [width], storage: dw.map(Float.init)))
    }
}
