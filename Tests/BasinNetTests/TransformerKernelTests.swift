import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// The transformer kernels against direct definitions (double-precision loops) and their backward passes
/// against central finite differences of a random linear functional of the output.
final class TransformerKernelTests: XCTestCase {
    func random(_ shape: [Int], _ g: inout SeededGenerator, scale: Float = 1) -> Tensor {
        Tensor(shape: shape, storage: (0..<shape.reduce(1, *)).map { _ in Float(g.normal()) * scale })
    }

    /// Checks `analytic` (d f / d x) against central differences of f at a spread of entries of x.
    func checkGradient(_ x: Tensor, analytic: Tensor, step h: Float = 1e-2, tolerance: Double = 2e-3,
                       file: StaticString = #filePath, line: UInt = #line, _ f: (Tensor) -> Double) {
        XCTAssertEqual(x.shape, analytic.shape, file: file, line: line)
        let stride = max(1, x.count / 40)
        var worst = 0.0
        for i in Swift.stride(from: 0, to: x.count, by: stride) {
            var plus = x, minus = x
            plus[i] += h
            minus[i] -= h
            let numeric = (f(plus) - f(minus)) / Double(2 * h)
            let diff = abs(numeric - Double(analytic[i])) / max(1, abs(numeric))
            worst = max(worst, diff)
        }
        XCTAssertLessThan(worst, tolerance, "largest relative gradient error", file: file, line: line)
    }

    // MARK: Attention

    /// Direct attention in double precision: q [N, L, Hq D], k and v [N, L, Hkv D].
    func referenceAttention(q: Tensor, k: Tensor, v: Tensor, n: Int, l: Int, hq: Int, hkv: Int, d: Int, scale: Double,
                            window: Int? = nil) -> [Double] {
        var out = [Double](repeating: 0, count: n * l * hq * d)
        for b in 0..<n {
            for h in 0..<hq {
                let g = h / (hq / hkv)
                for i in 0..<l {
                    let lo = window.map { max(0, i - $0 + 1) } ?? 0
                    var scores: [Double] = []
                    for j in lo...i {
                        var s = 0.0
                        for t in 0..<d {
                            s += Double(q[(b * l + i) * hq * d + h * d + t]) * Double(k[(b * l + j) * hkv * d + g * d + t])
                        }
                        scores.append(s * scale)
                    }
                    let m = scores.max()!
                    let e = scores.map { exp($0 - m) }
                    let z = e.reduce(0, +)
                    for (jj, j) in (lo...i).enumerated() {
                        for t in 0..<d {
                            out[(b * l + i) * hq * d + h * d + t] += e[jj] / z * Double(v[(b * l + j) * hkv * d + g * d + t])
                        }
                    }
                }
            }
        }
        return out
    }

    func attention(q: Tensor, k: Tensor, v: Tensor, layout: AttentionKernel.Layout, scale: Float, keepProbabilities: Bool = false)
        -> (Tensor, [Float]) {
        var probs = [Float](repeating: 0, count: layout.batch * layout.queryHeads * layout.length * layout.length)
        let y = Tensor(shape: [layout.batch, layout.length, layout.outputWidth]) { out in
            q.withUnsafeBufferPointer { qs in
                k.withUnsafeBufferPointer { ks in
                    v.withUnsafeBufferPointer { vs in
                        probs.withUnsafeMutableBufferPointer { ps in
                            AttentionKernel.forward(q: qs.baseAddress!, k: ks.baseAddress!, v: vs.baseAddress!, layout: layout, scale: scale,
                                                    output: out.baseAddress!, probabilities: keepProbabilities ? ps.baseAddress! : nil)
                        }
                    }
                }
            }
        }
        return (y, probs)
    }

    func testGroupedQueryAttentionMatchesDirectDefinition() {
        var g = SeededGenerator(seed: 1)
        let (n, l, hq, hkv, d) = (2, 5, 4, 2, 6)
        let q = random([n, l, hq * d], &g), k = random([n, l, hkv * d], &g), v = random([n, l, hkv * d], &g)
        for window in [nil, 2] as [Int?] {
            var layout = AttentionKernel.Layout.separate(batch: n, length: l, queryHeads: hq, keyValueHeads: hkv, headDim: d)
            layout.window = window
            let (y, _) = attention(q: q, k: k, v: v, layout: layout, scale: 0.4)
            let ref = referenceAttention(q: q, k: k, v: v, n: n, l: l, hq: hq, hkv: hkv, d: d, scale: 0.4, window: window)
            let diff = zip(y.storage, ref).map { abs(Double($0) - $1) }.max()!
            XCTAssertLessThan(diff, 1e-5, "window \(String(describing: window))")
        }
    }

    func testGroupedQueryAttentionBackwardMatchesFiniteDifferences() {
        var g = SeededGenerator(seed: 2)
        let (n, l, hq, hkv, d) = (2, 5, 4, 2, 3)
        let q = random([n, l, hq * d], &g), k = random([n, l, hkv * d], &g), v = random([n, l, hkv * d], &g)
        let r = random([n, l, hq * d], &g)
        for window in [nil, 3] as [Int?] {
            var layout = AttentionKernel.Layout.separate(batch: n, length: l, queryHeads: hq, keyValueHeads: hkv, headDim: d)
            layout.window = window
            let scale: Float = 0.7
            let (_, probs) = attention(q: q, k: k, v: v, layout: layout, scale: scale, keepProbabilities: true)
            var dq = Tensor.zeros(q.shape), dk = Tensor.zeros(k.shape), dv = Tensor.zeros(v.shape)
            q.withUnsafeBufferPointer { qs in k.withUnsafeBufferPointer { ks in v.withUnsafeBufferPointer { vs in
                r.withUnsafeBufferPointer { rs in probs.withUnsafeBufferPointer { ps in
                    dq.withUnsafeMutableBufferPointer { dqs in dk.withUnsafeMutableBufferPointer { dks in dv.withUnsafeMutableBufferPointer { dvs in
                        AttentionKernel.backward(q: qs.baseAddress!, k: ks.baseAddress!, v: vs.baseAddress!, layout: layout, scale: scale,
                                                 probabilities: ps.baseAddress!, outputGradient: rs.baseAddress!,
                                                 dq: dqs.baseAddress!, dk: dks.baseAddress!, dv: dvs.baseAddress!)
                    } } }
                } }
            } } }
            let loss = { (q: Tensor, k: Tensor, v: Tensor) -> Double in
                self.attention(q: q, k: k, v: v, layout: layout, scale: scale).0.dot(r)
            }
            checkGradient(q, analytic: dq) { loss($0, k, v) }
            checkGradient(k, analytic: dk) { loss(q, $0, v) }
            checkGradient(v, analytic: dv) { loss(q, k, $0) }
        }
    }

    func testPackedLayoutEqualsSeparateTensors() {
        var g = SeededGenerator(seed: 3)
        let (n, l, h, d) = (2, 4, 3, 4)
        let qkv = random([n, l, 3 * h * d], &g)
        // Split the packed tensor into q, k, v.
        func columns(_ range: Range<Int>) -> Tensor {
            Tensor(shape: [n, l, range.count], storage: (0..<(n * l)).flatMap { r in (range).map { qkv[r * 3 * h * d + $0] } })
        }
        let q = columns(0..<(h * d)), k = columns((h * d)..<(2 * h * d)), v = columns((2 * h * d)..<(3 * h * d))
        let (ySeparate, pSeparate) = attention(q: q, k: k, v: v, layout: .separate(batch: n, length: l, queryHeads: h, keyValueHeads: h, headDim: d),
                                               scale: 0.5, keepProbabilities: true)
        let packed = AttentionKernel.Layout.packed(batch: n, length: l, heads: h, headDim: d)
        let (yPacked, pPacked) = attention(q: qkv, k: qkv, v: qkv, layout: packed, scale: 0.5, keepProbabilities: true)
        XCTAssertEqual(ySeparate.maxAbsDifference(yPacked), 0)
        XCTAssertEqual(pSeparate, pPacked)
        // Backward into one packed gradient equals the three separate gradients side by side.
        let r = random([n, l, h * d], &g)
        var dqkv = Tensor.zeros(qkv.shape)
        qkv.withUnsafeBufferPointer { a in r.withUnsafeBufferPointer { rs in pPacked.withUnsafeBufferPointer { ps in
            dqkv.withUnsafeMutableBufferPointer { d in
                AttentionKernel.backward(q: a.baseAddress!, k: a.baseAddress!, v: a.baseAddress!, layout: packed, scale: 0.5,
                                         probabilities: ps.baseAddress!, outputGradient: rs.baseAddress!,
                                         dq: d.baseAddress!, dk: d.baseAddress!, dv: d.baseAddress!)
            }
        } } }
        checkGradient(qkv, analytic: dqkv) { self.attention(q: $0, k: $0, v: $0, layout: packed, scale: 0.5).0.dot(r) }
    }

    // MARK: Norms

    func testLayerNormForwardAndBackward() {
        var g = SeededGenerator(seed: 4)
        let x = random([3, 4, 8], &g, scale: 2), w = random([8], &g), b = random([8], &g), r = random([3, 4, 8], &g)
        let (y, mean, rstd) = NormKernel.layerNorm(x, weight: w, bias: b, epsilon: 1e-5)
        for row in 0..<12 {
            let xs = (0..<8).map { Double(x[row * 8 + $0]) }
            let mu = xs.reduce(0, +) / 8
            let variance = xs.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / 8
            for j in 0..<8 {
                let want = (xs[j] - mu) / (variance + 1e-5).squareRoot() * Double(w[j]) + Double(b[j])
                XCTAssertEqual(Double(y[row * 8 + j]), want, accuracy: 1e-5)
            }
        }
        let grads = NormKernel.layerNormBackward(x, weight: w, mean: mean, inverseStd: rstd, outputGradient: r)
        checkGradient(x, analytic: grads.dx) { NormKernel.layerNorm($0, weight: w, bias: b, epsilon: 1e-5).y.dot(r) }
        checkGradient(w, analytic: grads.dWeight) { NormKernel.layerNorm(x, weight: $0, bias: b, epsilon: 1e-5).y.dot(r) }
        checkGradient(b, analytic: grads.dBias) { NormKernel.layerNorm(x, weight: w, bias: $0, epsilon: 1e-5).y.dot(r) }
    }

    func testRMSNormForwardAndBackward() {
        var g = SeededGenerator(seed: 5)
        let x = random([2, 5, 6], &g, scale: 2), w = random([6], &g), r = random([2, 5, 6], &g)
        let (y, inv) = NormKernel.rmsNorm(x, weight: w, epsilon: 1e-6)
        for row in 0..<10 {
            let xs = (0..<6).map { Double(x[row * 6 + $0]) }
            let rms = (xs.map { $0 * $0 }.reduce(0, +) / 6 + 1e-6).squareRoot()
            for j in 0..<6 { XCTAssertEqual(Double(y[row * 6 + j]), Double(w[j]) * xs[j] / rms, accuracy: 1e-5) }
        }
        let grads = NormKernel.rmsNormBackward(x, weight: w, inverseRMS: inv, outputGradient: r)
        checkGradient(x, analytic: grads.dx) { NormKernel.rmsNorm($0, weight: w, epsilon: 1e-6).y.dot(r) }
        checkGradient(w, analytic: grads.dWeight) { NormKernel.rmsNorm(x, weight: $0, epsilon: 1e-6).y.dot(r) }
    }

    // MARK: RoPE

    func testRoPERotatesHalvesAsHuggingFaceDoes() {
        var g = SeededGenerator(seed: 6)
        let (n, l, heads, d) = (2, 5, 3, 8)
        let x = random([n, l, heads * d], &g)
        let table = RoPETable(headDim: d, length: 8, base: 10000)
        var y = x
        y.withUnsafeMutableBufferPointer { table.apply($0.baseAddress!, batch: n, length: l, stride: heads * d, offset: 0, heads: heads) }
        for b in 0..<n {
            for p in 0..<l {
                for h in 0..<heads {
                    let base = (b * l + p) * heads * d + h * d
                    for j in 0..<(d / 2) {
                        let theta = Double(p) * pow(10000, -Double(2 * j) / Double(d))
                        let a = Double(x[base + j]), c = Double(x[base + j + d / 2])
                        XCTAssertEqual(Double(y[base + j]), a * cos(theta) - c * sin(theta), accuracy: 1e-5)
                        XCTAssertEqual(Double(y[base + j + d / 2]), c * cos(theta) + a * sin(theta), accuracy: 1e-5)
                    }
                }
            }
        }
        // Backward is the inverse rotation, which undoes the forward.
        y.withUnsafeMutableBufferPointer {
            table.apply($0.baseAddress!, batch: n, length: l, stride: heads * d, offset: 0, heads: heads, inverse: true)
        }
        XCTAssertLessThan(y.maxAbsDifference(x), 1e-5)
    }

    // MARK: Activations

    func testActivationDerivatives() {
        for x in stride(from: Float(-6), through: 6, by: 0.37) {
            let h: Float = 1e-2
            let numericGelu = (Double(TransformerActivationKernel.geluNew(x + h)) - Double(TransformerActivationKernel.geluNew(x - h))) / Double(2 * h)
            XCTAssertEqual(Double(TransformerActivationKernel.geluNewDerivative(x)), numericGelu, accuracy: 1e-3)
            let numericSilu = (Double(TransformerActivationKernel.silu(x + h)) - Double(TransformerActivationKernel.silu(x - h))) / Double(2 * h)
            XCTAssertEqual(Double(TransformerActivationKernel.siluDerivative(x)), numericSilu, accuracy: 1e-3)
            let xd = Double(x)
            XCTAssertEqual(Double(TransformerActivationKernel.geluNew(x)),
                           0.5 * xd * (1 + tanh((2 / Double.pi).squareRoot() * (xd + 0.044715 * xd * xd * xd))), accuracy: 1e-6)
        }
    }
}
