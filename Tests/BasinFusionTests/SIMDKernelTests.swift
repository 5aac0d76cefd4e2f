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
            let s = words(n, seed: seed), t = words(n, seed: seed + 100), u = words(n, seed: seed + 200)
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
            let points: [Int32] = [0, 0x3B80_0000, 0x3B7F_FFFF, Int32(bitPattern: ma.first ?? 5), 0x7F80_0000, 1, 0x3C00_0000, 0x3A00_0000, Int32.max, 12]
            for np in [1, 4, 8, 10] {
                var ca = [Int](repeating: 3, count: np), cb = ca
                XCTAssertEqual(BasinKernels.countAboveBF16(t, base, n, points: points, count: np, above: &ca),
                               BasinKernelsAVX2.countAboveBF16(t, base, n, points: points, count: np, above: &cb))
                XCTAssertEqual(ca, cb, "count above \(np) \(n)")
                // and the counts are right
                let mags = (0..<n).map { Int32(bitPattern: abs(Float(bitPattern: UInt32(t[$0]) << 16) - base[$0]).bitPattern) }
                XCTAssertEqual(ca, (0..<np).map { q in 3 + mags.filter { $0 > points[q] }.count }, "count above is exact \(np) \(n)")
            }
            // TIES's combine, two and three inputs, trimmed or not, with limits inside the chunk
            for k in [2, 3] {
                let inputs = [t, u, s].prefix(k).map { $0 }
                // Every sum of the weights a power of two: possible for one or two inputs (1 and 1), not for three.
                for (normalize, pow2) in [(false, false), (true, false), (true, true)] where !pow2 || k == 2 {
                    let thresholds: [UInt32] = [0x3B80_0000, 0, 0x3A00_0000]
                    let trimmed = [true, false, true], limits: [Int32] = [Int32(n / 2), 0, Int32(n)]
                    let weights: [Float] = pow2 ? [1, 1] : [0.5, -0.25, 1.5]
                    var outA = [Float](repeating: 0, count: n), outB = outA
                    var fa = [UInt16](repeating: 0, count: k + 1), fb = fa
                    let d = UnsafeMutableRawPointer.allocate(byteCount: 32 * k, alignment: 32)
                    defer { d.deallocate() }
                    let ja = try withWordPointers(inputs) { w in
                        BasinKernels.tiesBF16(inputs: k, words: w, base: s, thresholds: thresholds, trimmed: trimmed, limits: limits, weights: weights,
                                              normalize: normalize, powerOfTwoDivisors: pow2, lambda: 0.8, count: n, out: &outA, d: d, flags: &fa)
                    }
                    let jb = try withWordPointers(inputs) { w in
                        BasinKernelsAVX2.tiesBF16(inputs: k, words: w, base: s, thresholds: thresholds, trimmed: trimmed, limits: limits, weights: weights,
                                                  normalize: normalize, powerOfTwoDivisors: pow2, lambda: 0.8, count: n, out: &outB, d: d, flags: &fb)
                    }
                    XCTAssertEqual(ja, n - n % 8)
                    XCTAssertEqual(ja, jb)
                    XCTAssertEqual(fa, fb)
                    same(Array(outA[0..<ja]), Array(outB[0..<jb]), "ties k=\(k) normalize=\(normalize) \(n)")
                    if pow2 {
                        // The reciprocal's product is the quotient's bits: the same combine with the division.
                        var outC = [Float](repeating: 0, count: n), fc = [UInt16](repeating: 0, count: k + 1)
                        _ = try withWordPointers(inputs) { w in
                            BasinKernels.tiesBF16(inputs: k, words: w, base: s, thresholds: thresholds, trimmed: trimmed, limits: limits, weights: weights,
                                                  normalize: true, powerOfTwoDivisors: false, lambda: 0.8, count: n, out: &outC, d: d, flags: &fc)
                        }
                        same(Array(outA[0..<ja]), Array(outC[0..<ja]), "ties reciprocal = division k=\(k) \(n)")
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
