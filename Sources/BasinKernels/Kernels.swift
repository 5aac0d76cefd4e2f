// The merge's hot loops over raw pointers (BF16 decode, linear / task-arithmetic accumulation, TIES's candidate
// counts and combine, BF16 round-to-nearest-even encode), compiled TWICE from this one file:
//
//  - BasinKernels (this folder): the baseline build, for any x86-64 (SSE2) or other CPU;
//  - BasinKernelsAVX2 (Sources/BasinKernelsAVX2/Kernels.swift is a symlink to this file): built with `-Xcc -mavx2`,
//    so the same loops run eight floats per instruction. StreamingKernels calls it only after a once-per-process
//    CPU check (basin_cpu_has_avx2, CBLAS/shim.h); BASIN_SIMD=baseline forces the baseline build.
//
// Swift has no per-function target attribute, hence the second module. Both builds perform the same IEEE Float32
// operations in the same order (no FMA: -mfma is not passed, so no multiply-add can be contracted), so their bytes
// are identical; the tests run the merge tests through both and compare.
//
// What keeps the AVX2 build from leaking AVX2 instructions into code that runs on older CPUs: every function here is
// non-generic over raw pointers, public, `@inline(never)` and not `@inlinable` (so no caller inlines an AVX2 body,
// and cross-module optimisation cannot either), and uses only fixed-size SIMD types whose operations the optimiser
// inlines completely. A generic specialisation left out of line would get shared (weak) linkage, and the linker
// could then hand the AVX2 copy to baseline callers; `.ci` does not check this, so after changing this file check
// `nm .build/release/BasinKernelsAVX2.build/Kernels.swift.o | grep -v " U "`: every defined symbol must be one of
// these functions (`T`), a local constant (`r`) or code (`t`); the only weak one (`V`) may be
// __swift_reflection_version, a data constant every Swift module emits. And
// `objdump -d .build/release/basin | grep -B40 %ymm` should show ymm only in BasinKernelsAVX2 (and BoringSSL, which
// dispatches on its own).

public typealias KernelFlags = UInt16

/// BF16 words to Float32 (the exact widening), returning the NaN/Inf flags: OR over the words of
/// (word & 0x7F80) + 0x0080, whose bit 15 is set iff some word had an all-ones exponent.
@inline(never)
public func decodeBF16(_ s: UnsafePointer<UInt16>, _ m: Int, into out: UnsafeMutablePointer<Float>) -> KernelFlags {
    var flags: UInt16 = 0
    for j in 0..<m {
        out[j] = Float(bitPattern: UInt32(s[j]) << 16)
        flags |= (s[j] & 0x7F80) &+ 0x0080
    }
    return flags
}

/// Linear merge, one input's BF16 words into `acc`: mode 0 acc = w*x; 1 acc += w*x; 2 acc = (acc + w*x) / total.
@inline(never)
public func linearBF16(_ acc: UnsafeMutablePointer<Float>, _ s: UnsafePointer<UInt16>, _ m: Int, weight w: Float, mode: Int,
                       total: Float) -> KernelFlags {
    var flags: UInt16 = 0
    switch mode {
    case 0:
        for j in 0..<m {
            acc[j] = w * Float(bitPattern: UInt32(s[j]) << 16)
            flags |= (s[j] & 0x7F80) &+ 0x0080
        }
    case 2:
        for j in 0..<m {
            acc[j] = (acc[j] + w * Float(bitPattern: UInt32(s[j]) << 16)) / total
            flags |= (s[j] & 0x7F80) &+ 0x0080
        }
    default:
        for j in 0..<m {
            acc[j] += w * Float(bitPattern: UInt32(s[j]) << 16)
            flags |= (s[j] & 0x7F80) &+ 0x0080
        }
    }
    return flags
}

/// Task arithmetic, one input's BF16 words against the widened base `b`: mixed += (x - b) * w.
@inline(never)
public func taskVectorBF16(_ mixed: UnsafeMutablePointer<Float>, _ s: UnsafePointer<UInt16>, _ b: UnsafePointer<Float>, _ m: Int,
                           weight w: Float) -> KernelFlags {
    var flags: UInt16 = 0
    for j in 0..<m {
        mixed[j] += (Float(bitPattern: UInt32(s[j]) << 16) - b[j]) * w
        flags |= (s[j] & 0x7F80) &+ 0x0080
    }
    return flags
}

/// Task arithmetic's end: out = b + ((mixed / total if normalize) * lambda if lambda != 1).
@inline(never)
public func taskArithmeticFinish(_ out: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, _ mixed: UnsafePointer<Float>, _ m: Int,
                                 normalize: Bool, total: Float, lambda: Float) {
    switch (normalize, lambda != 1) {
    case (true, true): for j in 0..<m { out[j] = b[j] + (mixed[j] / total) * lambda }
    case (true, false): for j in 0..<m { out[j] = b[j] + mixed[j] / total }
    case (false, true): for j in 0..<m { out[j] = b[j] + mixed[j] * lambda }
    case (false, false): for j in 0..<m { out[j] = b[j] + mixed[j] }
    }
}

/// Float32 to BF16, rounded to nearest even (NaN kept quiet with its sign), returning the NaN/Inf flags of the words.
@inline(never)
public func encodeBF16(_ values: UnsafePointer<Float>, _ m: Int, into d: UnsafeMutablePointer<UInt16>) -> KernelFlags {
    var flags: UInt16 = 0
    values.withMemoryRebound(to: UInt32.self, capacity: m) { bits in
        for i in 0..<m {
            let b = bits[i]
            let isNaN = (b & 0x7FFF_FFFF) > 0x7F80_0000
            let rounded = (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16
            let word = UInt16(truncatingIfNeeded: isNaN ? ((b >> 16) | 0x0040) : rounded)
            d[i] = word
            flags |= (word & 0x7F80) &+ 0x0080
        }
    }
    return flags
}

/// Magnitudes |x - b| as Float32 bits for BF16 words `s` and the widened base `b`, returning the words' NaN/Inf flags.
@inline(never)
public func magnitudesBF16(_ s: UnsafePointer<UInt16>, _ b: UnsafePointer<Float>, _ m: Int, into out: UnsafeMutablePointer<UInt32>) -> KernelFlags {
    var flags: UInt16 = 0
    for j in 0..<m {
        out[j] = abs(Float(bitPattern: UInt32(s[j]) << 16) - b[j]).bitPattern
        flags |= (s[j] & 0x7F80) &+ 0x0080
    }
    return flags
}

/// How many of the BF16 magnitudes |s - bw| (both BF16) have exactly the bits `t`.
@inline(never)
public func countEqualBF16(_ s: UnsafePointer<UInt16>, _ bw: UnsafePointer<UInt16>, _ m: Int, _ t: UInt32) -> Int {
    var equal: Int32 = 0  // m is a chunk (at most a few thousand), and 32-bit counts vectorise
    for j in 0..<m {
        let bits = abs(Float(bitPattern: UInt32(s[j]) << 16) - Float(bitPattern: UInt32(bw[j]) << 16)).bitPattern
        equal &+= bits == t ? 1 : 0
    }
    return Int(equal)
}

/// For BF16 words `s` and the widened base `b`: for each compare point p (magnitude bits, as Int32), how many
/// magnitudes |s - b| are above it (added to `above[q]`), eight at a time without storing them: the sign of p - v,
/// for magnitudes whose sign bit is clear. Points are taken eight at a time with the counts in registers (missing
/// points are Int32.max, above which no magnitude lies). Returns the words' NaN/Inf flags.
@inline(never)
public func countAboveBF16(_ s: UnsafePointer<UInt16>, _ b: UnsafePointer<Float>, _ m: Int, points: UnsafePointer<Int32>, count np: Int,
                           above: UnsafeMutablePointer<Int>) -> KernelFlags {
    typealias I = SIMD8<Int32>
    let magnitude = I(repeating: 0x7FFF_FFFF)
    let mask7F80 = SIMD8<UInt16>(repeating: 0x7F80), one80 = SIMD8<UInt16>(repeating: 0x0080)
    var flags = SIMD8<UInt16>()
    var group = 0
    repeat {
        @inline(__always) func point(_ q: Int) -> I { I(repeating: group + q < np ? points[group + q] : Int32.max) }
        let p0 = point(0), p1 = point(1), p2 = point(2), p3 = point(3), p4 = point(4), p5 = point(5), p6 = point(6), p7 = point(7)
        var a0 = I(), a1 = I(), a2 = I(), a3 = I(), a4 = I(), a5 = I(), a6 = I(), a7 = I()
        var j = 0
        while j + 8 <= m {
            let h = UnsafeRawPointer(s + j).loadUnaligned(as: SIMD8<UInt16>.self)
            flags |= (h & mask7F80) &+ one80
            let x = unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: h) &<< 16, to: SIMD8<Float>.self)
            let bv = UnsafeRawPointer(b + j).loadUnaligned(as: SIMD8<Float>.self)
            let v = unsafeBitCast(x - bv, to: I.self) & magnitude
            a0 &+= (p0 &- v) &>> 31
            a1 &+= (p1 &- v) &>> 31
            a2 &+= (p2 &- v) &>> 31
            a3 &+= (p3 &- v) &>> 31
            a4 &+= (p4 &- v) &>> 31
            a5 &+= (p5 &- v) &>> 31
            a6 &+= (p6 &- v) &>> 31
            a7 &+= (p7 &- v) &>> 31
            j += 8
        }
        @inline(__always) func add(_ q: Int, _ a: I) {
            guard group + q < np else { return }
            var t = 0
            for l in 0..<8 { t -= Int(a[l]) }
            above[group + q] += t
        }
        add(0, a0); add(1, a1); add(2, a2); add(3, a3); add(4, a4); add(5, a5); add(6, a6); add(7, a7)
        while j < m {
            if group == 0 { flags[0] |= (s[j] & 0x7F80) &+ 0x0080 }
            let v = Int32(bitPattern: abs(Float(bitPattern: UInt32(s[j]) << 16) - b[j]).bitPattern)
            for q in group..<min(np, group + 8) where v > points[q] { above[q] += 1 }
            j += 1
        }
        group += 8
    } while group < np
    var f: UInt16 = 0
    for l in 0..<8 { f |= flags[l] }
    return f
}

/// TIES on BF16 inputs and base, eight elements at a time over [0, m - m % 8) (the caller does the rest the same way):
/// per element, task vector x_i = input_i - base; d_i = (kept ? x_i : 0) * w_i, kept when the magnitude's bits are
/// above `thresholds[i]` or equal to it at an index below `limits[i]` (untrimmed when `trimmed[i]` is false);
/// mass = (0 + d_0) + d_1 ...; the d_i agreeing with the sign of the mass summed, with their weights; normalised,
/// scaled by lambda, added to the base. `d` holds 32 bytes per input; `flags` (k + 1 words, the base's last) are
/// OR-ed with NaN/Inf flags: the base's, and every input's with the inputs' flags together (kept in a register; an
/// input then recounted exactly finds none of its own). `powerOfTwoDivisors`: the caller found that every sum of
/// weights the divisor can be is zero or a power of two in [2^-126, 2^126] (the default weights of 1); then the
/// division by it is a multiplication by its reciprocal, made by integer subtraction from the exponent bits (x * 2^-e
/// and x / 2^e are the same real number, so rounding gives the same bits; a vector division costs ten times more).
/// Returns how many elements it did.
@inline(never)
public func tiesBF16(inputs k: Int, words: UnsafePointer<UnsafePointer<UInt16>>, base bw: UnsafePointer<UInt16>, thresholds: UnsafePointer<UInt32>,
                     trimmed: UnsafePointer<Bool>, limits: UnsafePointer<Int32>, weights: UnsafePointer<Float>, normalize: Bool,
                     powerOfTwoDivisors: Bool, lambda: Float, count m: Int, out: UnsafeMutablePointer<Float>, d: UnsafeMutableRawPointer,
                     flags: UnsafeMutablePointer<UInt16>) -> Int {
    typealias V = SIMD8<Float>
    typealias U = SIMD8<UInt32>
    typealias H = SIMD8<UInt16>
    typealias I = SIMD8<Int32>
    let mask7F80 = H(repeating: 0x7F80), one80 = H(repeating: 0x0080)
    let lanes = I(0, 1, 2, 3, 4, 5, 6, 7)
    let zero = V(repeating: 0), oneV = V(repeating: 1), lambdaV = V(repeating: lambda)
    let magnitude = I(repeating: 0x7FFF_FFFF)
    var baseFlags = H()
    var inputFlags = H()
    var j = 0
    while j + 8 <= m {
        let bh = UnsafeRawPointer(bw + j).loadUnaligned(as: H.self)
        let b = unsafeBitCast(U(truncatingIfNeeded: bh) &<< 16, to: V.self)
        baseFlags |= (bh & mask7F80) &+ one80
        var mass = zero
        for i in 0..<k {
            let xh = UnsafeRawPointer(words[i] + j).loadUnaligned(as: H.self)
            let xi = unsafeBitCast(U(truncatingIfNeeded: xh) &<< 16, to: V.self)
            inputFlags |= (xh & mask7F80) &+ one80
            let x = xi - b
            var di = x
            if trimmed[i] {
                // Kept: magnitude above the threshold (the sign of t - |x|), or equal to it below the limit.
                let bits = unsafeBitCast(x, to: I.self) & magnitude
                let t = I(repeating: Int32(bitPattern: thresholds[i]))
                var keep = (t &- bits) &>> 31
                if limits[i] > Int32(j) {
                    let eq = ((bits ^ t) &- 1) & ~(bits ^ t)  // sign bit set where bits == t
                    let before = (lanes &+ Int32(j)) &- limits[i]  // negative where the index is below the limit
                    keep |= (eq & before) &>> 31
                }
                di = unsafeBitCast(unsafeBitCast(x, to: I.self) & keep, to: V.self)
            }
            di = di * V(repeating: weights[i])
            d.storeBytes(of: di, toByteOffset: 32 * i, as: V.self)
            mass = i == 0 ? zero + di : mass + di
        }
        let positive = mass .>= zero
        var mixed = zero, divisor = zero
        for i in 0..<k {
            let v = d.load(fromByteOffset: 32 * i, as: V.self)
            let agrees = (positive .& (v .> zero)) .| (.!positive .& (v .< zero))
            mixed = mixed + v.replacing(with: zero, where: .!agrees)
            divisor = divisor + zero.replacing(with: V(repeating: weights[i]), where: agrees)
        }
        if normalize {
            let dv = divisor.replacing(with: oneV, where: divisor .== zero)
            if powerOfTwoDivisors {
                mixed = mixed * unsafeBitCast(I(repeating: 0x7F00_0000) &- unsafeBitCast(dv, to: I.self), to: V.self)
            } else {
                mixed = mixed / dv
            }
        }
        if lambda != 1 { mixed = mixed * lambdaV }
        UnsafeMutableRawPointer(out + j).storeBytes(of: b + mixed, as: V.self)
        j += 8
    }
    var fi: UInt16 = 0
    for l in 0..<8 { fi |= inputFlags[l] }
    for i in 0..<k { flags[i] |= fi }
    var f: UInt16 = 0
    for l in 0..<8 { f |= baseFlags[l] }
    flags[k] |= f
    return j
}
