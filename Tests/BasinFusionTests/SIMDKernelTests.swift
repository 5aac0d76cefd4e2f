@testable import BasinFusion
import BasinIO
import BasinKernels
import BasinKernelsAVX2
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// Runs `body` under every build of the merge's hot loops this CPU can run (the baseline, and the AVX2 build when the
/// CPU has AVX2), restoring the process's choice after.
func forEachSIMDPath(_ body: (StreamingKernels.SIMDPath) throws -> Void) throws {
    let previous = StreamingKernels.simd
    defer { StreamingKernels.simd = previous }
    for path in [StreamingKernels.SIMDPath.baseline, .avx2] where path == .baseline || StreamingKernels.cpuHasAVX2 {
        StreamingKernels.simd = path
        try body(path)
    }
}

/// The two builds of Sources/BasinKernels/Kernels.swift give the same bits on the same inputs, every BF16 bit pattern
/// included (NaN, infinities, denormals, signed zeros), at lengths that leave tails of every size. The merge tests
/// (streamed against in-memory, mergekit parity, non-finite refusal) run through both builds as well.
final class SIMDKernelTests: XCTestCase {
    func words(_ n: Int, seed: UInt64) -> [UInt16] {
        var rng = SeededGenerator(seed: seed)
        var w = (0..<n).map { _ in UInt16(truncatingIfNeeded: rng.next()) }
        // Plenty of ordinary values close together too (the magnitudes TIES compares), and every exponent class.
        for j in stride(from: 0, to: n, by: 3) { w[j] = 0x3C00 | (w[j] & 0x80FF) }
        for (j, special) in [0x7F80, 0xFF80, 0x7FC1, 0xFFFF, 0x0001, 0x8000, 0x0000, 0x807F].enumerated() where j < n { w[j * 7 % n] = UInt16(special) }
        return w
    }

    func same(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), what, file: file, line: line)
    }

    func testBothBuildsGiveTheSameBits() throws {
        try XCTSkipUnless(StreamingKernels.cpuHasAVX2, "this CPU has no AVX2: only the baseline build runs here")
        for (n, seed) in [(0, 1), (1, 2), (7, 3), (8, 4), (13, 5), (64, 6), (8191, 7), (8192, 8)] as [(Int, UInt64)] {
            let s = words(n, seed: seed), t = words(n, seed: seed + 100)
            let base = s.map { Float(bitPattern: UInt32($0) << 16) }
            // decode, magnitudes
            var a = [Float](repeating: 0, count: n), b = a
            XCTAssertEqual(BasinKernels.decodeBF16(s, n, into: &a), BasinKernelsAVX2.decodeBF16(s, n, into: &b))
            same(a, b, "decode \(n)")
            var ma = [UInt32](repeating: 0, count: n), mb = ma
            XCTAssertEqual(BasinKernels.magnitudesBF16(t, base, n, into: &ma), BasinKernelsAVX2.magnitudesBF16(t, base, n, into: &mb))
            XCTAssertEqual(ma, mb, "magnitudes \(n)")
            // linear, every mode; task vectors and the task-arithmetic end, every variant
            for mode in 0...2 {
                var x = base, y = base
                XCTAssertEqual(BasinKernels.linearBF16(&x, t, n, weight: 0.37, mode: mode, total: 1.3),
                               BasinKernelsAVX2.linearBF16(&y, t, n, weight: 0.37, mode: mode, total: 1.3))
                same(x, y, "linear mode \(mode) \(n)")
            }
            var mixA = [Float](repeating: 0.25, count: n), mixB = mixA
            XCTAssertEqual(BasinKernels.taskVectorBF16(&mixA, t, base, n, weight: -0.7), BasinKernelsAVX2.taskVectorBF16(&mixB, t, base, n, weight: -0.7))
            same(mixA, mixB, "task vector \(n)")
            for normalize in [false, true] {
                for lambda: Float in [1, 0.3] {
                    var oa = [Float](repeating: 0, count: n), ob = oa
                    BasinKernels.taskArithmeticFinish(&oa, base, mixA, n, normalize: normalize, total: 0.9, lambda: lambda)
                    BasinKernelsAVX2.taskArithmeticFinish(&ob, base, mixA, n, normalize: normalize, total: 0.9, lambda: lambda)
                    same(oa, ob, "finish \(normalize) \(lambda) \(n)")
                }
            }
            // encode (round to nearest even, NaN kept quiet), over the decoded values and in-between values
            let values = base.enumerated().map { $0.element * ($0.offset % 2 == 0 ? 1 : 1.0001) }
            var ea = [UInt16](repeating: 0, count: n), eb = ea
            XCTAssertEqual(BasinKernels.encodeBF16(values, n, into: &ea), BasinKernelsAVX2.encodeBF16(values, n, into: &eb))
            XCTAssertEqual(ea, eb, "encode \(n)")
            XCTAssertEqual(ea, values.map { DTypeConversion.bf16Bits($0) }, "encode = DTypeConversion.bf16Bits \(n)")
            // counts
            for tBits: UInt32 in [0, 0x3B80_0000, ma.first ?? 1] {
                XCTAssertEqual(BasinKernels.countEqualBF16(t, s, n, tBits), BasinKernelsAVX2.countEqualBF16(t, s, n, tBits))
            }
            let points: [Int32] = [0, 0x3B80_0000, 0x3B7F_FFFF, Int32(bitPattern: ma.first ?? 5), 0x7F80_0000, 1, 0x3C00_0000, 0x3A00_0000, Int32.max, -1]
            let mags = (0..<n).map { Int32(bitPattern: abs(Float(bitPattern: UInt32(t[$0]) << 16) - base[$0]).bitPattern) }
            let anyAllOnes = mags.contains { $0 & 0x7F80_0000 == 0x7F80_0000 }
            for np in [1, 2, 3, 4, 5, 8, 10] {
                var ca = [Int](repeating: 3, count: np), cb = ca
                let fa = BasinKernels.countAboveBF16(t, base: s, n, points: points, count: np, above: &ca)
                XCTAssertEqual(fa, BasinKernelsAVX2.countAboveBF16(t, base: s, n, points: points, count: np, above: &cb))
                XCTAssertEqual(ca, cb, "count above \(np) \(n)")
                // and the counts and the NaN/Inf flag are right
                XCTAssertEqual(ca, (0..<np).map { q in 3 + mags.filter { $0 > points[q] }.count }, "count above is exact \(np) \(n)")
                XCTAssertEqual(fa & 0x8000 != 0, anyAllOnes, "count above's NaN/Inf flag \(np) \(n)")
            }
        }
    }

    /// TIES's literal combine, one element at a time (as `TensorMerge.ties` and the general streamed pass): what the
    /// fused kernel's shortcuts must reproduce bit for bit.
    func referenceTies(_ inputs: [[UInt16]], base: [UInt16], thresholds: [UInt32?], limits: [Int], weights: [Float], normalize: Bool,
                       lambda: Float, count n: Int) -> [Float] {
        (0..<n).map { j in
            let b = Float(bitPattern: UInt32(base[j]) << 16)
            var mass: Float = 0
            var d = [Float]()
            for (i, words) in inputs.enumerated() {
                let x = Float(bitPattern: UInt32(words[j]) << 16) - b
                var keep = true
                if let t = thresholds[i] {
                    let bits = abs(x).bitPattern
                    keep = bits > t || (bits == t && j < limits[i])
                }
                d.append((keep ? x : 0) * weights[i])
                mass = mass + d[i]
            }
            var mixed: Float = 0, divisor: Float = 0
            for (i, v) in d.enumerated() {
                let agrees = mass >= 0 ? v > 0 : v < 0
                mixed = mixed + (agrees ? v : 0)
                divisor = divisor + (agrees ? weights[i] : 0)
            }
            if normalize { mixed = mixed / (divisor == 0 ? 1 : divisor) }
            if lambda != 1 { mixed = mixed * lambda }
            return b + mixed
        }
    }

    /// The fused TIES kernel of both builds against the literal combine: one to three inputs, trimmed or not, weights of
    /// 1 and others (zero and negative too), every normalisation, lambda or not, the threshold's ties kept below a limit
    /// that falls at every offset of an eight-wide block, NaN, infinities, denormals and signed zeros among the words,
    /// and lengths that leave tails of every size.
    func testTiesKernelIsTheLiteralCombine() throws {
        for (n, seed) in [(0, 11), (5, 12), (8, 13), (13, 14), (40, 15), (203, 16), (8192, 17)] as [(Int, UInt64)] {
            let s = words(n, seed: seed), t = words(n, seed: seed + 100), u = words(n, seed: seed + 200), v = words(n, seed: seed + 300)
            let base = s.map { Float(bitPattern: UInt32($0) << 16) }
            let all = [t, u, v]
            // Thresholds with many entries equal to them: each input's median magnitude.
            let medians: [UInt32] = all.map { w in
                let mags = (0..<n).map { abs(Float(bitPattern: UInt32(w[$0]) << 16) - base[$0]).bitPattern }.sorted()
                return mags.isEmpty ? 0 : mags[n / 2]
            }
            let weightSets: [[Float]] = [[1, 1, 1], [0.5, -0.25, 1.5], [1, 0, 2], [0.5, 0.5, 1]]
            let limitSets: [[Int]] = (0..<17).map { [$0, n / 2 + $0 % 8, n - $0] } + [[n, n, n]]
            for k in 1...3 {
                let inputs = Array(all.prefix(k))
                // The long chunk only with the common settings (the short ones cover every combination).
                for (weightIndex, weights) in weightSets.enumerated() where n < 1000 || weightIndex < 2 {
                    let w = Array(weights.prefix(k))
                    let pow2 = StreamingKernels.Job.powerOfTwoDivisors(w)
                    for (normalize, lambda) in [(false, Float(1)), (true, 1), (true, 0.8), (false, 0.3)] {
                        for (li, limits) in limitSets.enumerated() where li == 0 || li == limitSets.count - 1 || (n <= 203 && weightIndex == 0 && normalize && lambda == 1) {
                            for trimmedSet in [[true, true, true], [true, false, true], [false, false, false], [true, true, false]].prefix(n < 1000 ? 4 : 2) {
                                let thresholds: [UInt32?] = (0..<k).map { trimmedSet[$0] ? (medians[$0] == 0 ? 0 : medians[$0]) : nil }
                                // The kernel's compare points and limits, as the executor sets them (untrimmed: above -1).
                                let points = (0..<k).map { thresholds[$0].map { Int32(bitPattern: $0) } ?? -1 }
                                let kernelLimits = (0..<k).map { thresholds[$0] == nil ? Int32(0) : Int32(limits[$0]) }
                                let expected = referenceTies(inputs, base: s, thresholds: thresholds, limits: limits, weights: w, normalize: normalize,
                                                             lambda: lambda, count: n)
                                let d = UnsafeMutableRawPointer.allocate(byteCount: 32 * k, alignment: 32)
                                defer { d.deallocate() }
                                for path in [StreamingKernels.SIMDPath.baseline, .avx2] where path == .baseline || StreamingKernels.cpuHasAVX2 {
                                    for p2 in [false, pow2] where !p2 || normalize {
                                        var out = [Float](repeating: .nan, count: n)
                                        let (done, flags) = try withWordPointers(inputs) { wp in
                                            path == .avx2
                                                ? BasinKernelsAVX2.tiesBF16(inputs: k, words: wp, base: s, points: points, limits: kernelLimits, weights: w,
                                                                            normalize: normalize, powerOfTwoDivisors: p2, lambda: lambda, count: n, out: &out, d: d)
                                                : BasinKernels.tiesBF16(inputs: k, words: wp, base: s, points: points, limits: kernelLimits, weights: w,
                                                                        normalize: normalize, powerOfTwoDivisors: p2, lambda: lambda, count: n, out: &out, d: d)
                                        }
                                        let what = "\(path) n=\(n) k=\(k) w=\(w) normalize=\(normalize) pow2=\(p2) lambda=\(lambda) limits=\(limits) trimmed=\(trimmedSet)"
                                        XCTAssertEqual(done, n - n % 8, what)
                                        same(Array(out[0..<done]), Array(expected[0..<done]), what)
                                        // Flagged iff some |input - base| in the done part had an all-ones exponent, which every NaN or
                                        // infinite word there (input or base) gives.
                                        let allOnes = (0..<done).contains { j in
                                            inputs.contains { abs(Float(bitPattern: UInt32($0[j]) << 16) - base[j]).bitPattern & 0x7F80_0000 == 0x7F80_0000 }
                                        }
                                        let nonFinite = (0..<done).contains { j in ([s] + inputs).contains { $0[j] & 0x7F80 == 0x7F80 } }
                                        XCTAssertEqual(flags & 0x8000 != 0, allOnes, what)
                                        if nonFinite { XCTAssertNotEqual(flags & 0x8000, 0, what) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    func withWordPointers<R>(_ arrays: [[UInt16]], _ body: (UnsafePointer<UnsafePointer<UInt16>>) throws -> R) throws -> R {
        let copies = arrays.map { a -> UnsafeMutablePointer<UInt16> in
            let p = UnsafeMutablePointer<UInt16>.allocate(capacity: max(1, a.count))
            p.initialize(from: a, count: a.count)
            return p
        }
        defer { copies.forEach { $0.deallocate() } }
        let table = copies.map { UnsafePointer($0) }
        return try table.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }

    /// TIES's divisor is a sum of the agreeing inputs' weights: only when every such sum is a power of two (with a normal
    /// reciprocal) may the fused pass multiply by the reciprocal.
    func testPowerOfTwoDivisorsAreRecognised() {
        typealias J = StreamingKernels.Job
        XCTAssertTrue(J.powerOfTwoDivisors([1, 1]))
        XCTAssertTrue(J.powerOfTwoDivisors([1]))
        XCTAssertTrue(J.powerOfTwoDivisors([0.5, 0.5]))
        XCTAssertFalse(J.powerOfTwoDivisors([0.5, 0.5, 1]))  // 1.5
        XCTAssertFalse(J.powerOfTwoDivisors([1, 1, 1]))  // 3
        XCTAssertFalse(J.powerOfTwoDivisors([1, 0.5]))  // 1.5
        XCTAssertFalse(J.powerOfTwoDivisors([-1, 1]))  // -1
        XCTAssertFalse(J.powerOfTwoDivisors([0.3]))
        XCTAssertFalse(J.powerOfTwoDivisors([Float(sign: .plus, exponent: 127, significand: 1)]))  // reciprocal not normal
        XCTAssertFalse(J.powerOfTwoDivisors([Float](repeating: 1, count: 13).enumerated().map { $0.offset == 0 ? 1 : 0 }))  // too many to check
    }

    /// BASIN_SIMD=baseline (or a CPU without AVX2) picks the baseline build; the process's choice is one of the two.
    func testThePathFollowsTheCPUAndTheEnvironment() {
        let forced = ProcessInfo.processInfo.environment["BASIN_SIMD"]?.lowercased() == "baseline"
        if !StreamingKernels.cpuHasAVX2 || forced {
            XCTAssertEqual(StreamingKernels.simd, .baseline)
        } else {
            XCTAssertEqual(StreamingKernels.simd, .avx2)
        }
    }
}
