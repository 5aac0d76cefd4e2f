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

/// For BF16 words `s` and base words `bw`: for each compare point p (magnitude bits, as Int32), how many magnitudes
/// |s - b| are above it (added to `above[q]`), eight at a time without storing them: a signed compare per point (the
/// magnitudes' sign bit is clear), its all-ones lanes subtracted from a count. Points are taken four at a time, or
/// eight when more than four remain, with the counts in registers (missing points are Int32.max, above which no
/// magnitude lies). Returns NaN/Inf flags: bit 15 set when some |s - b| had an all-ones exponent, i.e. the input or
/// the base was NaN or infinite there (or, rarely, s - b overflowed: the caller's exact count then finds none).
@inline(never)
public func countAboveBF16(_ s: UnsafePointer<UInt16>, base bw: UnsafePointer<UInt16>, _ m: Int, points: UnsafePointer<Int32>, count np: Int,
                           above: UnsafeMutablePointer<Int>) -> KernelFlags {
    typealias I = SIMD8<Int32>
    typealias U = SIMD8<UInt32>
    typealias H = SIMD8<UInt16>
    let magnitude = I(repeating: 0x7FFF_FFFF), exponentOne = I(repeating: 0x0080_0000)
    @inline(__always) func widen(_ p: UnsafePointer<UInt16>) -> SIMD8<Float> {
        unsafeBitCast(U(truncatingIfNeeded: UnsafeRawPointer(p).loadUnaligned(as: H.self)) &<< 16, to: SIMD8<Float>.self)
    }
    @inline(__always) func magnitudes(_ j: Int) -> I { unsafeBitCast(widen(s + j) - widen(bw + j), to: I.self) & magnitude }
    @inline(__always) func mask(_ c: SIMDMask<I>) -> I { unsafeBitCast(c, to: I.self) }
    // OR of magnitude bits + 2^23: the sign bit is set where the exponent was all ones.
    var seen = I()
    var group = 0
    repeat {
        let wide = np - group > 4
        @inline(__always) func point(_ q: Int) -> I { I(repeating: group + q < np ? points[group + q] : Int32.max) }
        @inline(__always) func add(_ q: Int, _ a: I) {
            guard group + q < np else { return }
            var t = 0
            for l in 0..<8 { t -= Int(a[l]) }
            above[group + q] += t
        }
        let p0 = point(0), p1 = point(1), p2 = point(2), p3 = point(3)
        var a0 = I(), a1 = I(), a2 = I(), a3 = I()
        var j = 0
        if wide {
            let p4 = point(4), p5 = point(5), p6 = point(6), p7 = point(7)
            var a4 = I(), a5 = I(), a6 = I(), a7 = I()
            while j + 8 <= m {
                let v = magnitudes(j)
                seen |= v &+ exponentOne
                a0 &+= mask(v .> p0)
                a1 &+= mask(v .> p1)
                a2 &+= mask(v .> p2)
                a3 &+= mask(v .> p3)
                a4 &+= mask(v .> p4)
                a5 &+= mask(v .> p5)
                a6 &+= mask(v .> p6)
                a7 &+= mask(v .> p7)
                j += 8
            }
            add(4, a4); add(5, a5); add(6, a6); add(7, a7)
        } else {
            while j + 8 <= m {
                let v = magnitudes(j)
                seen |= v &+ exponentOne
                a0 &+= mask(v .> p0)
                a1 &+= mask(v .> p1)
                a2 &+= mask(v .> p2)
                a3 &+= mask(v .> p3)
                j += 8
            }
        }
        add(0, a0); add(1, a1); add(2, a2); add(3, a3)
        while j < m {
            let v = Int32(bitPattern: abs(Float(bitPattern: UInt32(s[j]) << 16) - Float(bitPattern: UInt32(bw[j]) << 16)).bitPattern)
            seen[0] |= v &+ 0x0080_0000
            for q in group..<min(np, group + (wide ? 8 : 4)) where v > points[q] { above[q] += 1 }
            j += 1
        }
        group += wide ? 8 : 4
    } while group < np
    var any: Int32 = 0
    for l in 0..<8 { any |= seen[l] }
    return UInt16(truncatingIfNeeded: UInt32(bitPattern: any) >> 16) & 0x8000
}

/// TIES on BF16 inputs and base, eight elements at a time over [0, m - m % 8) (the caller does the rest the same way):
/// per element, task vector x_i = input_i - base; d_i = (kept ? x_i : 0) * w_i, kept when the magnitude's bits (as
/// Int32) are above `points[i]`, or at least `points[i]` at an index below `limits[i]` (the threshold's ties kept in
/// index order; an untrimmed input has point -1 and limit 0); mass = (0 + d_0) + d_1 ...; the d_i agreeing with the
/// sign of the mass summed, with their weights; normalised, scaled by lambda, added to the base. `d` holds 32 bytes
/// per input. `powerOfTwoDivisors`: the caller found that every sum of weights the divisor can be is zero or a power of
/// two in [2^-126, 2^126] (the default weights of 1); then the division by it is a multiplication by its reciprocal,
/// made by integer subtraction from the exponent bits (x * 2^-e and x / 2^e are the same real number, so rounding gives
/// the same bits; a vector division costs ten times more). Returns how many elements it did and NaN/Inf flags: bit 15
/// set when some |x_i| had an all-ones exponent, i.e. some input or the base was NaN or infinite there (or, rarely,
/// x_i overflowed: the caller then counts every source exactly and finds none).
///
/// Fewer operations than the literal formula, same bits (the tests compare with it on every BF16 pattern):
/// - "above p, or at least p below the limit" is "above p - 1" below it: one signed compare per input and block, the
///   compare point chosen per block (per lane only in the block the limit falls in);
/// - a weight of 1 is not multiplied (d * 1 is d, NaN and -0 included);
/// - the mass starts at d_0, not 0 + d_0: they differ only when d_0 is -0, and then every later sum differs at most in
///   the sign of a zero, which `mass >= 0` does not see;
/// - d_i agrees with the elected sign iff (d_i with its sign flipped when the mass is not >= 0) > 0: NaN and zeros
///   never agree, as in `positive ? d > 0 : d < 0`; an agreeing d_i is never a zero, so the sum of agreeing entries
///   starting at the first (+0 for the others) is the sum starting at 0, and the divisor's sums differ at most in
///   the sign of a zero, which `divisor == 0` does not see;
/// - with power-of-two divisors, no agreeing input leaves divisor +0 and the sum +0, and +0 * 2^127 is +0 = +0 / 1.
@inline(never)
public func tiesBF16(inputs k: Int, words: UnsafePointer<UnsafePointer<UInt16>>, base bw: UnsafePointer<UInt16>, points: UnsafePointer<Int32>,
                     limits: UnsafePointer<Int32>, weights: UnsafePointer<Float>, normalize: Bool, powerOfTwoDivisors: Bool, lambda: Float,
                     count m: Int, out: UnsafeMutablePointer<Float>, d: UnsafeMutableRawPointer) -> (done: Int, flags: KernelFlags) {
    guard k > 0 else { return (0, 0) }
    typealias V = SIMD8<Float>
    typealias U = SIMD8<UInt32>
    typealias H = SIMD8<UInt16>
    typealias I = SIMD8<Int32>
    @inline(__always) func widen(_ p: UnsafePointer<UInt16>) -> V {
        unsafeBitCast(U(truncatingIfNeeded: UnsafeRawPointer(p).loadUnaligned(as: H.self)) &<< 16, to: V.self)
    }
    @inline(__always) func bits(_ v: V) -> I { unsafeBitCast(v, to: I.self) }
    @inline(__always) func float(_ v: I) -> V { unsafeBitCast(v, to: V.self) }
    // A comparison's lanes as all-ones / all-zeros integers, to mask with (what the compare instruction gives).
    @inline(__always) func mask(_ c: SIMDMask<I>) -> I { unsafeBitCast(c, to: I.self) }
    let lanes = I(0, 1, 2, 3, 4, 5, 6, 7)
    let magnitude = I(repeating: 0x7FFF_FFFF), signBit = I(repeating: Int32.min), exponentOne = I(repeating: 0x0080_0000)
    let zero = V(), lambdaV = V(repeating: lambda)
    // OR of |x_i| bits + 2^23: the sign bit is set where the exponent was all ones.
    var seen = I()
    var j = 0
    while j + 8 <= m {
        let b = widen(bw + j)
        // Trim and weigh input i's task vector, keeping the NaN/Inf watch.
        @inline(__always) func trimmed(_ i: Int) -> V {
            let x = bits(widen(words[i] + j) - b)
            let magnitudes = x & magnitude
            seen |= magnitudes &+ exponentOne
            let p = points[i], limit = limits[i]
            let point = limit <= Int32(j) ? I(repeating: p)
                : limit >= Int32(j + 8) ? I(repeating: p &- 1)
                : I(repeating: p) &+ ((lanes &+ (Int32(j) &- limit)) &>> 31)
            let di = float(x & mask(magnitudes .> point))
            let w = weights[i]
            return w == 1 ? di : di * V(repeating: w)
        }
        var mass = trimmed(0)
        d.storeBytes(of: mass, as: V.self)
        for i in 1..<k {
            let di = trimmed(i)
            d.storeBytes(of: di, toByteOffset: 32 * i, as: V.self)
            mass = mass + di
        }
        // The sign an agreeing entry must not have: none when the mass is >= 0, else the sign bit.
        let flip = ~mask(mass .>= zero) & signBit
        var mixed = zero, divisor = zero
        for i in 0..<k {
            let v = d.load(fromByteOffset: 32 * i, as: I.self)
            let agrees = mask(float(v ^ flip) .> zero)
            let a = float(v & agrees)
            mixed = i == 0 ? a : mixed + a
            if normalize {
                let wa = float(bits(V(repeating: weights[i])) & agrees)
                divisor = i == 0 ? wa : divisor + wa
            }
        }
        if normalize {
            if powerOfTwoDivisors {
                mixed = mixed * float(I(repeating: 0x7F00_0000) &- bits(divisor))
            } else {
                let none = mask(divisor .== zero)
                mixed = mixed / float((bits(divisor) & ~none) | (bits(V(repeating: 1)) & none))
            }
        }
        if lambda != 1 { mixed = mixed * lambdaV }
        UnsafeMutableRawPointer(out + j).storeBytes(of: b + mixed, as: V.self)
        j += 8
    }
    var any: Int32 = 0
    for l in 0..<8 { any |= seen[l] }
    return (j, UInt16(truncatingIfNeeded: UInt32(bitPattern: any) >> 16) & 0x8000)
}
