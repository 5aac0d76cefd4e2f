import BasinTensor
import Foundation

/// Rotary position embedding as Hugging Face's LLaMA applies it (`rotate_half`: the two halves of a head
/// are paired, dimension j with j + D/2, not neighbouring dimensions). At position p, for j < D/2,
/// theta = p * base^(-2j/D):
///     x'[j] = x[j] cos theta - x[j + D/2] sin theta,   x'[j + D/2] = x[j + D/2] cos theta + x[j] sin theta.
/// The rotation is orthogonal, so backward is the same rotation by -theta.
public struct RoPETable: Sendable, Equatable {
    public let headDim: Int
    public let length: Int
    public let base: Double
    /// cos and sin [length, headDim / 2].
    public let cos: [Float]
    public let sin: [Float]

    /// The table for positions 0 ..< length. Frequencies and angles are computed in float32 as
    /// `LlamaRotaryEmbedding` does (inv_freq = 1 / base^(arange(0, D, 2) / D), freqs = p * inv_freq),
    /// so the rotation agrees with PyTorch to the last bit or so.
    public init(headDim: Int, length: Int, base: Double) {
        precondition(headDim % 2 == 0, "RoPE needs an even head dimension, got \(headDim)")
        self.headDim = headDim
        self.length = length
        self.base = base
        let half = headDim / 2
        let invFreq: [Float] = (0..<half).map { j in
            Float(1) / powf(Float(base), Float(2 * j) / Float(headDim))
        }
        var c = [Float](repeating: 1, count: length * half)
        var s = [Float](repeating: 0, count: length * half)
        for p in 0..<length {
            for j in 0..<half {
                let angle = Float(p) * invFreq[j]
                c[p * half + j] = Foundation.cos(angle)
                s[p * half + j] = Foundation.sin(angle)
            }
        }
        self.cos = c
        self.sin = s
    }

    /// Rotates, in place, `heads` heads of `headDim` values starting at column `offset` of every row of
    /// `x` (rows of `stride` values, `length` rows per sample, `batch` samples). `inverse` rotates by
    /// -theta (backward).
    public func apply(_ x: UnsafeMutablePointer<Float>, batch: Int, length l: Int, stride: Int, offset: Int, heads: Int,
                      inverse: Bool = false) {
        precondition(l <= length, "RoPE table covers \(length) positions, asked for \(l)")
        let half = headDim / 2
        let sign: Float = inverse ? -1 : 1
        cos.withUnsafeBufferPointer { cs in
            sin.withUnsafeBufferPointer { ss in
                for b in 0..<batch {
                    for p in 0..<l {
                        let row = x + (b * l + p) * stride + offset
                        let cp = cs.baseAddress! + p * half, sp = ss.baseAddress! + p * half
                        for h in 0..<heads {
                            let head = row + h * headDim
                            for j in 0..<half {
                                let a = head[j], bb = head[j + half]
                                let c = cp[j], s = sign * sp[j]
                                head[j] = a * c - bb * s
                                head[j + half] = bb * c + a * s
                            }
                        }
                    }
                }
            }
        }
    }
}
