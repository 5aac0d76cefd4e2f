import Foundation
import BasinTensor

/// Window geometry shared by 2-D ops (convolution, pooling): kernel, stride and zero padding per axis.
public struct Window2d: Sendable, Equatable {
    public var kernel: [Int]?
    public var stride: [Int]
    public var padding: [Int]

    public init(kernel: [Int]?, stride: [Int] = [1, 1], padding: [Int] = [0, 0]) {
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
    }

    /// Reads `kernel_size`, `stride` (default `defaultStride`, or the kernel when nil) and `padding`, and refuses
    /// dilation other than 1 (not supported).
    static func read(_ a: inout NodeAttributes, kernelRequired: Bool, defaultStride: [Int]?) throws -> Window2d {
        let kernel = try a.optionalInts("kernel_size", count: 2, minimum: 1)
        if kernelRequired && kernel == nil { throw a.error("kernel_size", "\(a.op) node needs this key") }
        let stride = try a.optionalInts("stride", count: 2, minimum: 1) ?? defaultStride ?? kernel ?? [1, 1]
        let padding = try a.optionalInts("padding", count: 2, minimum: 0) ?? [0, 0]
        if let d = try a.optionalInts("dilation", count: 2, minimum: 1), d != [1, 1] {
            throw a.error("dilation", "dilation \(d) is not supported (only 1)")
        }
        if let k = kernel, padding[0] * 2 > k[0] || padding[1] * 2 > k[1] {
            throw a.error("padding", "padding \(padding) is more than half the kernel \(k)")
        }
        return Window2d(kernel: kernel, stride: stride, padding: padding)
    }

    func write(to a: inout [String: JSONValue], defaultStride: [Int]?) {
        if let kernel { a["kernel_size"] = kernel[0] == kernel[1] ? .int(kernel[0]) : .ints(kernel) }
        if stride != (defaultStride ?? kernel ?? [1, 1]) { a["stride"] = stride[0] == stride[1] ? .int(stride[0]) : .ints(stride) }
        if padding != [0, 0] { a["padding"] = padding[0] == padding[1] ? .int(padding[0]) : .ints(padding) }
    }

    /// Output size along one axis (nil when the input size is unknown); throws when the window does not fit.
    func outputSize(_ input: Int?, axis: Int, kernel k: Int) throws -> Int? {
        guard let input else { return nil }
        let span = input + 2 * padding[axis] - k
        guard span >= 0 else {
            throw NetworkError(.badShape, "a \(k)-wide window with padding \(padding[axis]) does not fit an input \(input) wide")
        }
        return span / stride[axis] + 1
    }
}

/// The per-sample [C, H, W] of an input, or an error naming what was received.
func imageShape(_ s: SampleShape?, op: String) throws -> (c: Int?, h: Int?, w: Int?)? {
    guard let s else { return nil }
    guard s.count == 3 else {
        throw NetworkError(.badShape, "\(op) takes images [C, H, W] per sample, got \(Shapes.describe(s))")
    }
    return (s[0], s[1], s[2])
}

/// im2col and col2im for a batch of images: the columns matrix is [C*kh*kw, B*R*Wo] for B images and R output
/// rows, row (c, i, j), column (image, output row, output column), zero where the window reaches into the padding.
enum Im2col {
    struct Geometry {
        let c, h, w, kh, kw, sh, sw, ph, pw, ho, wo: Int
        var rows: Int { c * kh * kw }
        var positions: Int { ho * wo }
    }

    /// Fills `cols` for `images` consecutive images starting at `x` and output rows `outRows` (all of them for
    /// several images), on up to `threads` threads (split by input channel: disjoint rows of `cols`).
    static func fill(_ g: Geometry, x: UnsafePointer<Float>, images: Int, outRows: Range<Int>, cols: UnsafeMutablePointer<Float>,
                     threads: Int = 1) {
        let width = images * outRows.count * g.wo
        let parts = min(max(1, threads), g.c, max(1, g.rows * width / 32768))
        if parts <= 1 {
            fill(g, x: x, images: images, outRows: outRows, channels: 0..<g.c, cols: cols, width: width)
            return
        }
        // Pointers cross into the workers as addresses; each worker writes its own channels' rows.
        let (xa, ca) = (UInt(bitPattern: x), UInt(bitPattern: cols))
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let lo = g.c * part / parts, hi = g.c * (part + 1) / parts
            fill(g, x: UnsafePointer(bitPattern: xa)!, images: images, outRows: outRows, channels: lo..<hi,
                 cols: UnsafeMutablePointer(bitPattern: ca)!, width: width)
        }
    }

    private static func fill(_ g: Geometry, x: UnsafePointer<Float>, images: Int, outRows: Range<Int>, channels: Range<Int>,
                             cols: UnsafeMutablePointer<Float>, width: Int) {
        let span = outRows.count * g.wo
        for c in channels {
            for ki in 0..<g.kh {
                for kj in 0..<g.kw {
                    let row = cols + ((c * g.kh + ki) * g.kw + kj) * width
                    // Output columns whose input column is inside the image: [owLo, owHi).
                    let owLo = max(0, (g.pw - kj + g.sw - 1) / g.sw)
                    let owHi = min(g.wo, max(owLo, (g.w + g.pw - kj + g.sw - 1) / g.sw))
                    for b in 0..<images {
                        let src = x + (b * g.c + c) * g.h * g.w
                        let dst = row + b * span
                        var out = dst
                        for oh in outRows {
                            let ih = oh * g.sh - g.ph + ki
                            if ih < 0 || ih >= g.h {
                                out.update(repeating: 0, count: g.wo)
                            } else {
                                if owLo > 0 { out.update(repeating: 0, count: owLo) }
                                let line = src + ih * g.w - g.pw + kj
                                if g.sw == 1 {
                                    if owHi > owLo { (out + owLo).update(from: line + owLo, count: owHi - owLo) }
                                } else {
                                    for ow in owLo..<owHi { out[ow] = line[ow * g.sw] }
                                }
                                if owHi < g.wo { (out + owHi).update(repeating: 0, count: g.wo - owHi) }
                            }
                            out += g.wo
                        }
                    }
                }
            }
        }
    }

    /// Adds `cols` (all output rows of `images` images) back into the images at `dx` (the adjoint of `fill`).
    static func accumulate(_ g: Geometry, cols: UnsafePointer<Float>, images: Int, dx: UnsafeMutablePointer<Float>) {
        let width = images * g.positions
        for c in 0..<g.c {
            for ki in 0..<g.kh {
                for kj in 0..<g.kw {
                    let row = cols + ((c * g.kh + ki) * g.kw + kj) * width
                    let owLo = max(0, (g.pw - kj + g.sw - 1) / g.sw)
                    let owHi = min(g.wo, max(owLo, (g.w + g.pw - kj + g.sw - 1) / g.sw))
                    for b in 0..<images {
                        let dst = dx + (b * g.c + c) * g.h * g.w
                        let src = row + b * g.positions
                        for oh in 0..<g.ho {
                            let ih = oh * g.sh - g.ph + ki
                            if ih < 0 || ih >= g.h { continue }
                            let line = dst + ih * g.w - g.pw + kj
                            let col = src + oh * g.wo
                            for ow in owLo..<owHi { line[ow * g.sw] += col[ow] }
                        }
                    }
                }
            }
        }
    }
}
