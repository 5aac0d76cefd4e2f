import BasinIO
import BasinKernels
import BasinKernelsAVX2
import BasinTensor
import CBLAS
import Dispatch
import Foundation

/// Chunked merge kernels for the methods that dominate LLM merging (linear, task arithmetic, TIES, passthrough and
/// Basin's path points): they read the inputs' memory-mapped bytes a few thousand elements at a time, decode into
/// small reused buffers, combine, encode, and write each thread's range straight into the output file (pwrite), split
/// across threads. No tensor-sized buffer is ever made, so memory stays flat however large the tensor.
///
/// Every kernel performs exactly the Float32 operations of `TensorMerge` in the same order, so a streamed tensor
/// is bit-identical to the in-memory result (an explorer export and `basin merge` of its recipe agree exactly).
///
/// TIES needs, per task vector, the k-th largest |x_i - base| over the whole tensor. It is found without sorting or
/// copying the tensor, by radix selection over histograms of the magnitudes' bits (see `selectThresholds`), then a
/// final pass keeps what is above it (and entries equal to it in index order, exactly as
/// `TensorMerge.topMagnitudeMask` does).
///
/// Input pages are released as each range is consumed (in the final pass), so resident memory stays at a few
/// megabytes per input however large the tensor.
enum StreamingKernels {
    static let chunk = 8192
    /// Tests turn the sample's guess of TIES's threshold bins off to exercise the full-histogram path.
    nonisolated(unsafe) package static var sampleGuesses = true
    /// Ranges at least this long count TIES's threshold histograms four ways (tests lower it to cover that path).
    nonisolated(unsafe) package static var manyWays = 1 << 20
    /// A thread writes its buffered output once it holds this many elements and no other thread is writing (tests
    /// lower it so small tensors take the coalescing path too).
    nonisolated(unsafe) package static var outputFlushAt = 1 << 17

    /// Which build of the hot loops runs (Sources/BasinKernels/Kernels.swift): the AVX2 build when the CPU has AVX2,
    /// unless the environment says BASIN_SIMD=baseline; tests switch it to run both and compare.
    package enum SIMDPath: String, Sendable { case baseline, avx2 }
    package static let cpuHasAVX2 = basin_cpu_has_avx2() != 0
    nonisolated(unsafe) package static var simd: SIMDPath =
        cpuHasAVX2 && ProcessInfo.processInfo.environment["BASIN_SIMD"]?.lowercased() != "baseline" ? .avx2 : .baseline

    /// The kernels of the path chosen by `simd` (one switch per chunk of 8,192 elements).
    enum K {
        static func decodeBF16(_ s: UnsafePointer<UInt16>, _ m: Int, into out: UnsafeMutablePointer<Float>) -> UInt16 {
            simd == .avx2 ? BasinKernelsAVX2.decodeBF16(s, m, into: out) : BasinKernels.decodeBF16(s, m, into: out)
        }
        static func linearBF16(_ acc: UnsafeMutablePointer<Float>, _ s: UnsafePointer<UInt16>, _ m: Int, weight w: Float, mode: Int, total: Float) -> UInt16 {
            simd == .avx2 ? BasinKernelsAVX2.linearBF16(acc, s, m, weight: w, mode: mode, total: total)
                : BasinKernels.linearBF16(acc, s, m, weight: w, mode: mode, total: total)
        }
        static func taskVectorBF16(_ mixed: UnsafeMutablePointer<Float>, _ s: UnsafePointer<UInt16>, _ b: UnsafePointer<Float>, _ m: Int,
                                   weight w: Float) -> UInt16 {
            simd == .avx2 ? BasinKernelsAVX2.taskVectorBF16(mixed, s, b, m, weight: w) : BasinKernels.taskVectorBF16(mixed, s, b, m, weight: w)
        }
        static func taskArithmeticFinish(_ out: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, _ mixed: UnsafePointer<Float>, _ m: Int,
                                         normalize: Bool, total: Float, lambda: Float) {
            if simd == .avx2 {
                BasinKernelsAVX2.taskArithmeticFinish(out, b, mixed, m, normalize: normalize, total: total, lambda: lambda)
            } else {
                BasinKernels.taskArithmeticFinish(out, b, mixed, m, normalize: normalize, total: total, lambda: lambda)
            }
        }
        static func encodeBF16(_ values: UnsafePointer<Float>, _ m: Int, into d: UnsafeMutablePointer<UInt16>) -> UInt16 {
            simd == .avx2 ? BasinKernelsAVX2.encodeBF16(values, m, into: d) : BasinKernels.encodeBF16(values, m, into: d)
        }
        static func magnitudesBF16(_ s: UnsafePointer<UInt16>, _ b: UnsafePointer<Float>, _ m: Int, into out: UnsafeMutablePointer<UInt32>) -> UInt16 {
            simd == .avx2 ? BasinKernelsAVX2.magnitudesBF16(s, b, m, into: out) : BasinKernels.magnitudesBF16(s, b, m, into: out)
        }
        static func countEqualBF16(_ s: UnsafePointer<UInt16>, _ bw: UnsafePointer<UInt16>, _ m: Int, _ t: UInt32) -> Int {
            simd == .avx2 ? BasinKernelsAVX2.countEqualBF16(s, bw, m, t) : BasinKernels.countEqualBF16(s, bw, m, t)
        }
        static func countAboveBF16(_ s: UnsafePointer<UInt16>, base bw: UnsafePointer<UInt16>, _ m: Int, points: UnsafePointer<Int32>, count np: Int,
                                   above: UnsafeMutablePointer<Int>) -> UInt16 {
            simd == .avx2 ? BasinKernelsAVX2.countAboveBF16(s, base: bw, m, points: points, count: np, above: above)
                : BasinKernels.countAboveBF16(s, base: bw, m, points: points, count: np, above: above)
        }
        static func tiesBF16(inputs k: Int, words: UnsafePointer<UnsafePointer<UInt16>>, base bw: UnsafePointer<UInt16>, points: UnsafePointer<Int32>,
                             limits: UnsafePointer<Int32>, weights: UnsafePointer<Float>, normalize: Bool, powerOfTwoDivisors: Bool, lambda: Float,
                             count m: Int, out: UnsafeMutablePointer<Float>, d: UnsafeMutableRawPointer) -> (done: Int, flags: UInt16) {
            simd == .avx2
                ? BasinKernelsAVX2.tiesBF16(inputs: k, words: words, base: bw, points: points, limits: limits, weights: weights, normalize: normalize,
                                            powerOfTwoDivisors: powerOfTwoDivisors, lambda: lambda, count: m, out: out, d: d)
                : BasinKernels.tiesBF16(inputs: k, words: words, base: bw, points: points, limits: limits, weights: weights, normalize: normalize,
                                        powerOfTwoDivisors: powerOfTwoDivisors, lambda: lambda, count: m, out: out, d: d)
        }
    }

    /// Whether `run` handles this entry (otherwise the executor decodes whole tensors).
    static func canStream(_ e: MergePlan.Entry, method: MergeMethod) -> Bool {
        guard e.isFloatingPoint else { return false }
        switch method {
        case .linear, .basinPath: return !e.inputs.isEmpty && e.base == nil
        case .passthrough: return e.inputs.count == 1 && e.base == nil
        case .taskArithmetic: return e.base != nil && !e.inputs.isEmpty
        case .ties: return e.base != nil && !e.inputs.isEmpty && !e.parameters.rescale
        default: return false
        }
    }

    /// Computes `e` and writes it (encoded in its output dtype) through `writer` if the method has a streaming kernel.
    static func run(_ e: MergePlan.Entry, plan: MergePlan, writer: CheckpointWriter, threads: Int, allowNonFinite: Bool) throws -> Bool {
        let method = plan.recipe.method
        guard canStream(e, method: method) else { return false }
        let sources = e.inputs + (e.base.map { [$0] } ?? [])
        for s in sources {
            guard let info = plan.sources[s.model].info(s.tensor), info.dtype.isFloatingPoint else { return false }
        }
        return try withRawBytes(sources, plan: plan) { raws in
            let n = Tensor.elementCount(e.shape)
            let job = Job(entry: e, n: n, inputs: Array(raws.prefix(e.inputs.count)), base: e.base != nil ? raws.last! : nil,
                          writer: writer, outDType: e.outputDType, allowNonFinite: allowNonFinite, plan: plan)
            let ranges = split(n, threads: n < 4 * chunk ? 1 : threads)
            switch method {
            case .linear, .basinPath:
                let normalize = method == .linear && e.parameters.normalize
                try parallel(ranges) { try job.linear($0, normalize: normalize) }
            case .passthrough:
                try parallel(ranges) { try job.passthrough($0) }
            case .taskArithmetic:
                try parallel(ranges) { try job.taskArithmetic($0) }
            case .ties:
                guard let selection = try job.selectThresholds(ranges) else { return false }
                try job.throwIfNonFinite(plan: plan)
                try parallel(ranges.indices.map { ($0, ranges[$0]) }) { try job.ties($0.1, range: $0.0, selection: selection) }
            default:
                return false
            }
            try job.throwIfNonFinite(plan: plan)
            return true
        }
    }

    /// Calls `body` with the raw bytes (and dtype) of every source, nested so each stays valid.
    static func withRawBytes<R>(_ sources: [MergePlan.Source], plan: MergePlan, _ acc: [Raw] = [], _ body: ([Raw]) throws -> R) throws -> R {
        guard let first = sources.first else { return try body(acc) }
        let source = plan.sources[first.model]
        let info = source.info(first.tensor)!
        return try source.withRawBytes(first.tensor) { raw in
            try withRawBytes(Array(sources.dropFirst()), plan: plan, acc + [Raw(pointer: raw.baseAddress!, dtype: info.dtype, source: first)], body)
        }
    }

    struct Raw: @unchecked Sendable {
        let pointer: UnsafeRawPointer
        let dtype: DType
        let source: MergePlan.Source
        func decode(_ start: Int, _ count: Int, into out: UnsafeMutablePointer<Float>) {
            DTypeConversion.decode(dtype, from: pointer + start * dtype.byteSize, count: count, into: out)
        }
    }

    /// Values of `dtype` at `p` whose exponent bits are all ones (NaN or infinity): one OR-reduction per chunk (an
    /// all-ones exponent plus one carries into the sign bit), an exact count only when it finds some.
    static func nonFiniteCount(_ p: UnsafeRawPointer, count n: Int, dtype: DType) -> Int {
        switch dtype {
        case .f32:
            return DTypeConversion.nonFiniteCount(p.assumingMemoryBound(to: Float.self), count: n)
        case .bf16, .f16:
            let (mask, one): (UInt16, UInt16) = dtype == .bf16 ? (0x7F80, 0x0080) : (0x7C00, 0x0400)
            let words = p.assumingMemoryBound(to: UInt16.self)
            var flags: UInt16 = 0
            for i in 0..<n { flags |= (words[i] & mask) &+ one }
            guard flags & 0x8000 != 0 else { return 0 }
            var total = 0
            for i in 0..<n where words[i] & mask == mask { total += 1 }
            return total
        default:
            return NonFinite.count(UnsafeRawBufferPointer(start: p, count: n * dtype.byteSize), dtype: dtype)
        }
    }

    /// Contiguous element ranges, one per thread, aligned to chunks.
    static func split(_ n: Int, threads: Int) -> [Range<Int>] {
        let t = max(1, threads)
        let chunks = (n + chunk - 1) / chunk
        let per = (chunks + t - 1) / t
        return (0..<t).compactMap { i in
            let lo = min(n, i * per * chunk), hi = min(n, (i + 1) * per * chunk)
            return lo < hi ? lo..<hi : nil
        }
    }

    static func parallel<T: Sendable>(_ items: [T], _ body: @Sendable (T) throws -> Void) throws {
        if items.count == 1 { return try body(items[0]) }
        let errors = ErrorBox()
        items.withUnsafeBufferPointer { buffer in
            let b = UnsafeBuffer(buffer)
            DispatchQueue.concurrentPerform(iterations: b.buffer.count) { i in
                do { try body(b.buffer[i]) } catch { errors.set(error) }
            }
        }
        if let e = errors.error { throw e }
    }

    struct UnsafeBuffer<T>: @unchecked Sendable {
        let buffer: UnsafeBufferPointer<T>
        init(_ b: UnsafeBufferPointer<T>) { buffer = b }
    }

    final class ErrorBox: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var error: Error?
        func set(_ e: Error) {
            lock.lock()
            if error == nil { error = e }
            lock.unlock()
        }
    }

    /// Per-range histograms of the threshold passes, filled from several threads.
    final class Histograms: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var high: [[[UInt32]]]
        private(set) var low: [[[UInt32]]]
        private(set) var above: [[Int]]
        /// Low-16 histograms of each model's candidate bins, one 65,536-entry block per candidate.
        private(set) var candidates: [[[UInt32]]]
        /// For each model's candidate values: how many magnitudes are above it and how many at least it.
        private(set) var values: [[[Int]]]
        init(ranges: Int, models: Int) {
            values = Array(repeating: Array(repeating: [], count: models), count: ranges)
            candidates = Array(repeating: Array(repeating: [], count: models), count: ranges)
            high = Array(repeating: Array(repeating: [], count: models), count: ranges)
            low = Array(repeating: Array(repeating: [], count: models), count: ranges)
            above = Array(repeating: Array(repeating: 0, count: models), count: ranges)
        }
        func store(_ r: Int, high h: [[UInt32]], low l: [[UInt32]], above a: [Int], candidates c: [[UInt32]] = [], values v: [[Int]] = []) {
            lock.lock()
            if !v.isEmpty { values[r] = v }
            if !c.isEmpty { candidates[r] = c }
            high[r] = h
            low[r] = l
            if !a.isEmpty { above[r] = a }
            lock.unlock()
        }
    }

    /// Per-model threshold of TIES's trim step.
    struct Selection {
        /// Magnitude bits above which an entry is kept (nil: keep everything).
        var threshold: [UInt32?]
        /// For each model and range: how many entries equal to the threshold that range keeps (index order).
        var equalBudget: [[Int]]
    }

    /// One tensor's streaming job.
    final class Job: @unchecked Sendable {
        let entry: MergePlan.Entry
        let n: Int
        let inputs: [Raw]
        let base: Raw?
        let writer: CheckpointWriter
        let outDType: DType
        let allowNonFinite: Bool
        let plan: MergePlan
        private let lock = NSLock()
        /// Serialises the threads' writes into the output. Without it they contend for the file's inode lock in the
        /// kernel, which spins (CPU burnt while waiting); with it a thread that finds the lock taken keeps computing
        /// into its buffer and writes more at once later (see `OutputStream`).
        let writeLock = NSLock()
        private var nonFinite: [Int: Int] = [:]
        private var outputNonFinite = 0
        /// Release consumed input pages every this many elements (8 MB of BF16 per source and thread: fewer madvise
        /// calls, each of which interrupts the other cores to flush their TLBs).
        static let releaseStride = 1 << 22

        init(entry: MergePlan.Entry, n: Int, inputs: [Raw], base: Raw?, writer: CheckpointWriter, outDType: DType, allowNonFinite: Bool,
             plan: MergePlan) {
            self.plan = plan
            self.entry = entry
            self.n = n
            self.inputs = inputs
            self.base = base
            self.writer = writer
            self.outDType = outDType
            self.allowNonFinite = allowNonFinite
        }

        var p: TensorMergeParameters { entry.parameters }

        /// Whether every value TIES's divisor can take -- the sum, in index order from 0, of the weights of any subset
        /// of the inputs, with 0 read as 1 -- is a power of two whose reciprocal is normal (then the fused pass
        /// multiplies by the exact reciprocal; see BasinKernels.tiesBF16). Up to 12 inputs are checked, more are not.
        static func powerOfTwoDivisors(_ w: [Float]) -> Bool {
            guard w.count <= 12 else { return false }
            for subset in 0..<(1 << w.count) {
                var sum: Float = 0
                for i in w.indices where subset & (1 << i) != 0 { sum = sum + w[i] }
                let d = sum == 0 ? 1 : sum
                let bits = d.bitPattern
                // Positive, normal, no mantissa bits, exponent within [-126, 126].
                guard bits & 0x807F_FFFF == 0, bits >= 0x0080_0000, bits <= 0x7E80_0000 else { return false }
            }
            return true
        }

        /// Lets go of the input pages holding elements [from, to) of every source (whole pages only).
        func release(_ from: Int, _ to: Int) {
            guard to > from else { return }
            for raw in inputs + (base.map { [$0] } ?? []) {
                let size = raw.dtype.byteSize
                plan.sources[raw.source.model].release(raw.source.tensor, bytes: (from * size)..<(to * size))
            }
        }

        /// Calls `release` once every `releaseStride` elements of a range's progress.
        struct Releaser {
            let job: Job
            var done: Int
            mutating func advance(to c: Int) {
                if c - done >= Job.releaseStride {
                    job.release(done, c)
                    done = c
                }
            }
            mutating func finish(_ end: Int) { job.release(done, end) }
        }

        /// Decodes a chunk of source `index` (inputs, then the base at `inputs.count`), counting non-finite values.
        @inline(__always)
        func load(_ raw: Raw, _ index: Int, _ start: Int, _ count: Int, _ into: UnsafeMutablePointer<Float>) {
            raw.decode(start, count, into: into)
            if !allowNonFinite {
                let bad = DTypeConversion.nonFiniteCount(into, count: count)
                if bad > 0 {
                    lock.lock()
                    nonFinite[index, default: 0] += bad
                    lock.unlock()
                }
            }
        }

        /// BF16 source `raw` at elements [start, start + count) as aligned 16-bit words, when it can be read in place.
        @inline(__always)
        func bf16Words(_ raw: Raw, _ start: Int) -> UnsafePointer<UInt16>? {
            guard raw.dtype == .bf16, DTypeConversion.hostIsLittleEndian, Int(bitPattern: raw.pointer) % 2 == 0 else { return nil }
            return raw.pointer.assumingMemoryBound(to: UInt16.self) + start
        }

        /// Decodes a chunk of source `index` like `load`; BF16 words are widened and watched for NaN/Inf in one pass.
        @inline(__always)
        func decodeChecked(_ raw: Raw, _ index: Int, _ start: Int, _ count: Int, _ into: UnsafeMutablePointer<Float>) {
            guard let s = bf16Words(raw, start) else { return load(raw, index, start, count, into) }
            let flags = K.decodeBF16(s, count, into: into)
            // Found some: `load` decodes the same values again and counts them exactly.
            checkBF16(flags, raw, index, start, count, scratch: into)
        }

        /// After a fused BF16 loop: `flags` has bit 15 set when some word had an all-ones exponent (NaN or
        /// infinity); then count them exactly.
        @inline(__always)
        func checkBF16(_ flags: UInt16, _ raw: Raw, _ index: Int, _ start: Int, _ count: Int, scratch: UnsafeMutablePointer<Float>) {
            if flags & 0x8000 != 0 && !allowNonFinite { load(raw, index, start, count, scratch) }
        }

        /// Non-finite values found in the inputs (blamed first: they explain the output's) or else in the output.
        func throwIfNonFinite(plan: MergePlan) throws {
            lock.lock()
            let first = nonFinite.sorted(by: { $0.key < $1.key }).first
            let output = outputNonFinite
            lock.unlock()
            if let (index, count) = first {
                let raw = index < inputs.count ? inputs[index] : base!
                throw MergeExecutor.nonFinite(plan, raw.source, count)
            }
            if output > 0 {
                throw MergeError(.nonFinite, tensor: entry.name,
                                 "merges into \(output) NaN or infinite value\(output == 1 ? "" : "s") (\(outDType.rawValue)) from finite inputs: an overflow; refusing to write them (pass --allow-nonfinite to write anyway)")
            }
        }

        func countOutputNonFinite(_ count: Int) {
            lock.lock()
            outputNonFinite += count
            lock.unlock()
        }

        /// A thread's output: encoded chunks gather in a small buffer written to the file (the chunks of a range arrive
        /// in order, so each write is contiguous). Past `flushAt` elements the thread writes if no other thread is
        /// writing; otherwise it keeps computing, and waits for the lock only when the buffer is full.
        struct OutputStream {
            static let capacity = 1 << 19
            let flushAt = min(StreamingKernels.outputFlushAt, OutputStream.capacity - StreamingKernels.chunk)
            let job: Job
            var start: Int
            var filled = 0
            let buffer: UnsafeMutableRawPointer

            init(job: Job, start: Int) {
                self.job = job
                self.start = start
                buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.capacity * job.outDType.byteSize, alignment: 64)
            }

            mutating func put(_ values: UnsafePointer<Float>, _ at: Int, _ count: Int) throws {
                if filled + count > Self.capacity {
                    try flush()
                } else if filled >= flushAt && job.writeLock.try() {
                    defer { job.writeLock.unlock() }
                    try writeOut()
                }
                let encoded = buffer + filled * job.outDType.byteSize
                if job.outDType == .bf16 && DTypeConversion.hostIsLittleEndian {
                    // Round to nearest even (as DTypeConversion.encode) and watch for NaN/Inf in the same pass.
                    let flags = K.encodeBF16(values, count, into: encoded.assumingMemoryBound(to: UInt16.self))
                    if flags & 0x8000 != 0 && !job.allowNonFinite {
                        job.countOutputNonFinite(StreamingKernels.nonFiniteCount(encoded, count: count, dtype: .bf16))
                    }
                } else {
                    DTypeConversion.encode(values, count: count, as: job.outDType, into: encoded)
                }
                if !job.allowNonFinite && !(job.outDType == .bf16 && DTypeConversion.hostIsLittleEndian) {
                    // Finite inputs can still overflow (a sum beyond Float32's range, a value beyond F16's).
                    let bad = StreamingKernels.nonFiniteCount(encoded, count: count, dtype: job.outDType)
                    if bad > 0 { job.countOutputNonFinite(bad) }
                }
                filled += count
            }

            mutating func flush() throws {
                guard filled > 0 else { return }
                job.writeLock.lock()
                defer { job.writeLock.unlock() }
                try writeOut()
            }

            private mutating func writeOut() throws {
                guard filled > 0 else { return }
                let size = job.outDType.byteSize
                try job.writer.write(job.entry.name, bytes: UnsafeRawBufferPointer(start: buffer, count: filled * size), at: start * size)
                start += filled
                filled = 0
            }

            func close() { buffer.deallocate() }
        }

        func linear(_ range: Range<Int>, normalize: Bool) throws {
            let weights = p.weights
            var total: Float = 0
            for w in weights { total += w }
            let acc = UnsafeMutablePointer<Float>.allocate(capacity: chunk), x = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
            defer { acc.deallocate(); x.deallocate() }
            var releaser = Releaser(job: self, done: range.lowerBound)
            defer { releaser.finish(range.upperBound) }
            var output = OutputStream(job: self, start: range.lowerBound)
            defer { output.close() }
            var c = range.lowerBound
            while c < range.upperBound {
                releaser.advance(to: c)
                let m = min(chunk, range.upperBound - c)
                var normalized = false
                for (i, input) in inputs.enumerated() {
                    let w = weights[i]
                    if let s = bf16Words(input, c) {
                        // Decode, accumulate and watch for non-finite values in one pass over the raw words; the last
                        // input and the normalisation in one pass too (the same two operations per element).
                        let mode = i == 0 ? 0 : normalize && i == inputs.count - 1 ? 2 : 1
                        if mode == 2 { normalized = true }
                        let flags = K.linearBF16(acc, s, m, weight: w, mode: mode, total: total)
                        checkBF16(flags, input, i, c, m, scratch: x)
                        continue
                    }
                    load(input, i, c, m, x)
                    if i == 0 { for j in 0..<m { acc[j] = w * x[j] } } else { for j in 0..<m { acc[j] += w * x[j] } }
                }
                if normalize && !normalized { for j in 0..<m { acc[j] /= total } }
                try output.put(acc, c, m)
                c += m
            }
            try output.flush()
        }

        func passthrough(_ range: Range<Int>) throws {
            let scale = p.scales.first ?? nil
            let input = inputs[0]
            if scale == nil && input.dtype == outDType && allowNonFinite {
                let size = outDType.byteSize
                writeLock.lock()
                defer { writeLock.unlock() }
                try writer.write(entry.name, bytes: UnsafeRawBufferPointer(start: input.pointer + range.lowerBound * size, count: range.count * size),
                                 at: range.lowerBound * size)
                return
            }
            let x = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
            defer { x.deallocate() }
            var releaser = Releaser(job: self, done: range.lowerBound)
            defer { releaser.finish(range.upperBound) }
            var output = OutputStream(job: self, start: range.lowerBound)
            defer { output.close() }
            var c = range.lowerBound
            while c < range.upperBound {
                releaser.advance(to: c)
                let m = min(chunk, range.upperBound - c)
                load(input, 0, c, m, x)
                if let s = scale { for j in 0..<m { x[j] = x[j] * s } }
                try output.put(x, c, m)
                c += m
            }
            try output.flush()
        }

        func taskArithmetic(_ range: Range<Int>) throws {
            let weights = p.weights
            var total: Float = 0
            for w in weights { total += w }
            if abs(total) < 1e-8 { total = 1 }
            let normalize = p.normalize, lambda = p.lambda
            let b = UnsafeMutablePointer<Float>.allocate(capacity: chunk), x = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
            let mixed = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
            defer { b.deallocate(); x.deallocate(); mixed.deallocate() }
            var releaser = Releaser(job: self, done: range.lowerBound)
            defer { releaser.finish(range.upperBound) }
            var output = OutputStream(job: self, start: range.lowerBound)
            defer { output.close() }
            var c = range.lowerBound
            while c < range.upperBound {
                releaser.advance(to: c)
                let m = min(chunk, range.upperBound - c)
                decodeChecked(base!, inputs.count, c, m, b)
                for j in 0..<m { mixed[j] = 0 }
                for (i, input) in inputs.enumerated() {
                    let w = weights[i]
                    if let s = bf16Words(input, c) {
                        checkBF16(K.taskVectorBF16(mixed, s, b, m, weight: w), input, i, c, m, scratch: x)
                        continue
                    }
                    load(input, i, c, m, x)
                    for j in 0..<m { mixed[j] += (x[j] - b[j]) * w }
                }
                // x = b + ((mixed / total) * lambda), the divide and multiply only when they apply.
                K.taskArithmeticFinish(x, b, mixed, m, normalize: normalize, total: total, lambda: lambda)
                try output.put(x, c, m)
                c += m
            }
            try output.flush()
        }

        /// Finds each model's trim threshold: the k-th largest |x_i - base| as Float32 bits, by radix selection over
        /// histograms (exact, however many entries are equal). One pass histograms the top 16 bits of every
        /// magnitude and, for the few top-16 bins a random sample says the threshold falls in, the low 16 bits too;
        /// a second pass is needed only when the sample guessed the bin wrong. Per-range counts of entries equal to
        /// the threshold let each thread keep ties in index order as the in-memory merge does.
        /// How many of `values[0..<count]` exceed `t`; magnitudes (sign bit clear) only, so the differences t - v fit
        /// an Int32 and their sign is the answer: a SIMD subtract, shift and add per 8 values (the compiler had
        /// turned `count += v > t ? 1 : 0` into a mispredicted branch per value).
        @inline(__always)
        static func countAbove(_ values: UnsafePointer<UInt32>, _ count: Int, _ t: UInt32) -> Int {
            let threshold = Int32(bitPattern: t)
            let tv = SIMD8<Int32>(repeating: threshold)
            var acc = SIMD8<Int32>()
            let raw = UnsafeRawPointer(values)
            var j = 0
            while j + 8 <= count {
                let v = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Int32>.self)
                acc &+= (tv &- v) &>> 31
                j += 8
            }
            var total = -Int(acc.wrappedSum())
            while j < count {
                total += Int(((threshold &- Int32(bitPattern: values[j])) >> 31) & 1)
                j += 1
            }
            return total
        }

        /// At most this many candidate bins per model (each costs a 256 KB histogram per way and thread).
        static let maxCandidates = 8
        /// At most this many candidate values per model (each costs two compares per element).
        static let maxValues = 4

        func selectThresholds(_ ranges: [Range<Int>], useGuesses: Bool = StreamingKernels.sampleGuesses) throws -> Selection? {
            let k = inputs.count
            var keep = [Int?](repeating: nil, count: k)
            for i in 0..<k where p.densities[i] < 1 {
                keep[i] = max(1, Int(Double(p.densities[i]) * Double(n)))
                if keep[i]! >= n { keep[i] = nil }
            }
            var selection = Selection(threshold: Array(repeating: nil, count: k),
                                      equalBudget: Array(repeating: Array(repeating: 0, count: ranges.count), count: k))
            if keep.allSatisfy({ $0 == nil }) { return selection }
            // Guess the threshold's top-16 bin(s) from a sample: one run of `run` neighbours at a random place in each
            // of m / run equal strata, in index order. Reading runs in order costs a cache miss per run, not per
            // element (single random elements were most of the sampling's time), and stratifying keeps the sample
            // spread over the whole tensor. The sample only guides: every threshold is then counted exactly, and a
            // guess the counts refute is redone without it (slower, same result).
            let m = min(n, 16384), run = 8
            var rng = SeededGenerator(seed: TensorMerge.dareSeed(0x71E5, name: entry.name, model: 0))
            let stratum = n / max(1, m / run)
            let positions = m == n ? Array(0..<n) : (0..<(m / run)).flatMap { q -> Range<Int> in
                let start = q * stratum + Int(rng.next() % UInt64(stratum - run + 1))
                return start..<(start + run)
            }
            var guesses: [ClosedRange<Int>?] = Array(repeating: nil, count: k)
            // When the guessed bins span too far (BF16 task vectors: a few distinct magnitudes, powers of two apart),
            // the distinct bins the sample finds near the k-th value: pass 1 histograms their low bits as it
            // histograms the top bits of everything, so the threshold is usually found without a second pass.
            var candidates: [[Int]] = Array(repeating: [], count: k)
            // When the sample finds only a few distinct magnitudes near the k-th (BF16 task vectors: differences of a
            // few units in the last place), the threshold is almost surely one of them: pass 1 then just counts the
            // magnitudes above and at least each (vectorised compares, no histogram), which settles it exactly
            // when one of them has fewer than k above it and at least k at or above it.
            var values: [[UInt32]] = Array(repeating: [], count: k)
            // Each model's sample on its own thread (reading it faults in pages at random: the slow part), sorted.
            let samples = ConcurrentSlots<[UInt32]>(count: k)
            let wantedModels = (0..<k).filter { keep[$0] != nil }
            try parallel(wantedModels) { i in
                var sample: [UInt32] = []
                sample.reserveCapacity(m)
                if let bw = bf16Words(base!, 0), let iw = bf16Words(inputs[i], 0) {
                    for pos in positions { sample.append(abs(Float(bitPattern: UInt32(iw[pos]) << 16) - Float(bitPattern: UInt32(bw[pos]) << 16)).bitPattern) }
                } else {
                    var pair = [Float](repeating: 0, count: 2)
                    for pos in positions {
                        pair.withUnsafeMutableBufferPointer { s in
                            base!.decode(pos, 1, into: s.baseAddress!)
                            inputs[i].decode(pos, 1, into: s.baseAddress! + 1)
                            sample.append(abs(s[1] - s[0]).bitPattern)
                        }
                    }
                }
                // Largest first (the default ascending sort, reversed, is several times faster than sort(by: >)).
                sample.sort()
                sample.reverse()
                samples.set(i, sample)
            }
            for i in 0..<k {
                guard let kk = keep[i] else { continue }
                let sample = samples[i] ?? []
                let q = Double(kk) / Double(n), r = q * Double(m)
                let margin = 4 * (Double(m) * q * (1 - q)).squareRoot() + 4
                let top = Int(sample[max(0, min(m - 1, Int(r - margin)))] >> 16)
                let bottom = Int(sample[max(0, min(m - 1, Int(r + margin)))] >> 16)
                if useGuesses && top - bottom < 16 { guesses[i] = bottom...top }
                if useGuesses {
                    let lo = max(0, min(m - 1, Int(r - margin))), hi = max(0, min(m - 1, Int(r + margin)))
                    var distinct: [UInt32] = []
                    for v in sample[lo...hi] where distinct.last != v {
                        distinct.append(v)
                        if distinct.count > Self.maxValues { break }
                    }
                    if distinct.count <= Self.maxValues {
                        values[i] = distinct
                        guesses[i] = nil
                    }
                }
                if useGuesses && guesses[i] == nil && values[i].isEmpty {
                    let lo = max(0, min(m - 1, Int(r - margin))), hi = max(0, min(m - 1, Int(r + margin)))
                    var bins: [Int] = []
                    for v in sample[lo...hi] where bins.last != Int(v >> 16) {
                        bins.append(Int(v >> 16))
                        if bins.count > Self.maxCandidates { break }
                    }
                    if bins.count <= Self.maxCandidates { candidates[i] = bins }
                }
            }
            // Pass 1: top-16 histograms, and low-16 histograms of the guessed bins. Histograms are kept `ways` times
            // over, interleaved by element index, and every element is counted (those outside the guessed bins into a
            // discard slot): no branch to mispredict, and runs of equal magnitudes (BF16 task vectors are full of
            // them) do not wait on one counter's increments. The ways are summed at the end.
            let counts = Histograms(ranges: ranges.count, models: k)
            let guessed = guesses, wanted = keep, candidateBins = candidates, candidateValues = values
            // BF16 models with a few candidate values only count, per value t, the magnitudes above t and above t - 1
            // (at least t; everything when t is 0, as -1 is below every magnitude): SIMD compares against these points
            // on the raw words, nothing stored (BasinKernels.countAboveBF16), the base widened as they go.
            let bf16Base = bf16Words(base!, 0) != nil
            let countsOnly = (0..<k).map { wanted[$0] != nil && !candidateValues[$0].isEmpty && bf16Base && bf16Words(inputs[$0], 0) != nil }
            let valuePoints = candidateValues.map { $0.flatMap { [Int32(bitPattern: $0), Int32(bitPattern: $0) &- 1] } }
            let widenBase = (0..<k).contains { wanted[$0] != nil && !countsOnly[$0] }
            // Per model, a table from top-16 bin to candidate slot (0: not a candidate; the slot's block discards).
            let slotTables: [[UInt8]] = candidateBins.map { bins in
                guard !bins.isEmpty else { return [] }
                var t = [UInt8](repeating: 0, count: 1 << 15)
                for (q, bin) in bins.enumerated() { t[bin] = UInt8(q + 1) }
                return t
            }
            try parallel(Array(ranges.indices)) { r in
                let range = ranges[r]
                // Small ranges: one way (the histograms would cost more to clear than the elements to count).
                let ways = range.count >= StreamingKernels.manyWays ? 4 : 1
                let b = UnsafeMutablePointer<Float>.allocate(capacity: chunk), x = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
                defer { b.deallocate(); x.deallocate() }
                let bitsBuffer = UnsafeMutablePointer<UInt32>.allocate(capacity: chunk)
                defer { bitsBuffer.deallocate() }
                var high = [[UInt32]](repeating: [], count: k), low = [[UInt32]](repeating: [], count: k)
                var above = [Int](repeating: 0, count: k)
                var cand = [[UInt32]](repeating: [], count: k)
                var valueCounts = [[Int]](repeating: [], count: k)
                for i in 0..<k where wanted[i] != nil {
                    if !candidateValues[i].isEmpty {
                        valueCounts[i] = [Int](repeating: 0, count: 2 * candidateValues[i].count)
                    } else if let g = guessed[i] {
                        low[i] = [UInt32](repeating: 0, count: ways * ((g.count << 16) + 1))
                    } else {
                        high[i] = [UInt32](repeating: 0, count: ways << 15)
                        if !candidateBins[i].isEmpty { cand[i] = [UInt32](repeating: 0, count: ways * ((candidateBins[i].count + 1) << 16)) }
                    }
                }
                var c = range.lowerBound
                while c < range.upperBound {
                    let mm = min(chunk, range.upperBound - c)
                    if widenBase { decodeChecked(base!, k, c, mm, b) }
                    var baseChecked = widenBase
                    for i in 0..<k where wanted[i] != nil {
                        if countsOnly[i] {
                            let flags = valuePoints[i].withUnsafeBufferPointer { points in
                                valueCounts[i].withUnsafeMutableBufferPointer {
                                    K.countAboveBF16(bf16Words(inputs[i], c)!, base: bf16Words(base!, c)!, mm, points: points.baseAddress!,
                                                     count: points.count, above: $0.baseAddress!)
                                }
                            }
                            // NaN or infinity in the input or the base: count each exactly (the base once per chunk).
                            if flags & 0x8000 != 0 {
                                checkBF16(flags, inputs[i], i, c, mm, scratch: x)
                                if !baseChecked { checkBF16(flags, base!, k, c, mm, scratch: x) }
                                baseChecked = true
                            }
                            continue
                        }
                        if let s = bf16Words(inputs[i], c) {
                            checkBF16(K.magnitudesBF16(s, b, mm, into: bitsBuffer), inputs[i], i, c, mm, scratch: x)
                        } else {
                            load(inputs[i], i, c, mm, x)
                            for j in 0..<mm { bitsBuffer[j] = abs(x[j] - b[j]).bitPattern }
                        }
                        if !candidateValues[i].isEmpty {
                            for (q, t) in candidateValues[i].enumerated() {
                                valueCounts[i][2 * q] += Self.countAbove(bitsBuffer, mm, t)
                                // At least t: above t - 1 (everything when t is 0).
                                valueCounts[i][2 * q + 1] += t == 0 ? mm : Self.countAbove(bitsBuffer, mm, t - 1)
                            }
                        } else if let g = guessed[i] {
                            let lowest = UInt32(g.lowerBound) << 16, highest = UInt32(g.upperBound) << 16 | 0xFFFF
                            let span = UInt32(g.count) << 16, stride = Int(span) + 1
                            above[i] += Self.countAbove(bitsBuffer, mm, highest)
                            low[i].withUnsafeMutableBufferPointer { l in
                                let h = l.baseAddress!
                                var j = 0
                                if ways == 4 {
                                    let h1 = h + stride, h2 = h + 2 * stride, h3 = h + 3 * stride
                                    while j + 4 <= mm {
                                        let d0 = bitsBuffer[j] &- lowest, d1 = bitsBuffer[j + 1] &- lowest
                                        let d2 = bitsBuffer[j + 2] &- lowest, d3 = bitsBuffer[j + 3] &- lowest
                                        h[Int(d0 < span ? d0 : span)] &+= 1
                                        h1[Int(d1 < span ? d1 : span)] &+= 1
                                        h2[Int(d2 < span ? d2 : span)] &+= 1
                                        h3[Int(d3 < span ? d3 : span)] &+= 1
                                        j += 4
                                    }
                                }
                                while j < mm {
                                    let d = bitsBuffer[j] &- lowest
                                    h[Int(d < span ? d : span)] &+= 1
                                    j += 1
                                }
                            }
                        } else if !cand[i].isEmpty {
                            // Top-16 histogram of everything and low-16 histograms of the candidate bins, together.
                            let blocks = (candidateBins[i].count + 1) << 16
                            slotTables[i].withUnsafeBufferPointer { table in
                                let slot = table.baseAddress!
                                high[i].withUnsafeMutableBufferPointer { hh in
                                    cand[i].withUnsafeMutableBufferPointer { cc in
                                        let h = hh.baseAddress!, l = cc.baseAddress!
                                        var j = 0
                                        if ways == 4 {
                                            let h1 = h + (1 << 15), h2 = h + (2 << 15), h3 = h + (3 << 15)
                                            let l1 = l + blocks, l2 = l + 2 * blocks, l3 = l + 3 * blocks
                                            while j + 4 <= mm {
                                                let v0 = bitsBuffer[j], v1 = bitsBuffer[j + 1], v2 = bitsBuffer[j + 2], v3 = bitsBuffer[j + 3]
                                                let t0 = Int(v0 >> 16), t1 = Int(v1 >> 16), t2 = Int(v2 >> 16), t3 = Int(v3 >> 16)
                                                h[t0] &+= 1
                                                h1[t1] &+= 1
                                                h2[t2] &+= 1
                                                h3[t3] &+= 1
                                                l[Int(slot[t0]) << 16 | Int(v0 & 0xFFFF)] &+= 1
                                                l1[Int(slot[t1]) << 16 | Int(v1 & 0xFFFF)] &+= 1
                                                l2[Int(slot[t2]) << 16 | Int(v2 & 0xFFFF)] &+= 1
                                                l3[Int(slot[t3]) << 16 | Int(v3 & 0xFFFF)] &+= 1
                                                j += 4
                                            }
                                        }
                                        while j < mm {
                                            let v = bitsBuffer[j], t = Int(v >> 16)
                                            h[t] &+= 1
                                            l[Int(slot[t]) << 16 | Int(v & 0xFFFF)] &+= 1
                                            j += 1
                                        }
                                    }
                                }
                            }
                        } else {
                            high[i].withUnsafeMutableBufferPointer { l in
                                let h = l.baseAddress!
                                var j = 0
                                if ways == 4 {
                                    let h1 = h + (1 << 15), h2 = h + (2 << 15), h3 = h + (3 << 15)
                                    while j + 4 <= mm {
                                        h[Int(bitsBuffer[j] >> 16)] &+= 1
                                        h1[Int(bitsBuffer[j + 1] >> 16)] &+= 1
                                        h2[Int(bitsBuffer[j + 2] >> 16)] &+= 1
                                        h3[Int(bitsBuffer[j + 3] >> 16)] &+= 1
                                        j += 4
                                    }
                                }
                                while j < mm {
                                    h[Int(bitsBuffer[j] >> 16)] &+= 1
                                    j += 1
                                }
                            }
                        }
                    }
                    c += mm
                }
                // Sum the ways (dropping the discard slots).
                for i in 0..<k where wanted[i] != nil && candidateValues[i].isEmpty {
                    if let g = guessed[i] {
                        let span = g.count << 16, stride = span + 1
                        var folded = [UInt32](repeating: 0, count: span)
                        for w in 0..<ways { for t in 0..<span { folded[t] &+= low[i][w * stride + t] } }
                        low[i] = folded
                    } else {
                        var folded = [UInt32](repeating: 0, count: 1 << 15)
                        for w in 0..<ways { for t in 0..<(1 << 15) { folded[t] &+= high[i][w << 15 + t] } }
                        high[i] = folded
                        if !cand[i].isEmpty {
                            // Drop slot 0 (the discard block) of every way.
                            let blocks = (candidateBins[i].count + 1) << 16
                            var c = [UInt32](repeating: 0, count: candidateBins[i].count << 16)
                            for w in 0..<ways { for t in 0..<c.count { c[t] &+= cand[i][w * blocks + (1 << 16) + t] } }
                            cand[i] = c
                        }
                    }
                }
                counts.store(r, high: high, low: low, above: above, candidates: cand, values: valueCounts)
            }
            // Find each threshold's bin: within the guessed bins (if the guess was wrong, start over without guesses),
            // or from the full histogram (then a second pass histograms that bin's low bits).
            var resolved = [Bool](repeating: false, count: k)
            for i in 0..<k where !values[i].isEmpty {
                guard let kk = keep[i] else { continue }
                var found = false
                for (q, t) in values[i].enumerated() {
                    var above = 0, atLeast = 0
                    for r in ranges.indices {
                        above += counts.values[r][i][2 * q]
                        atLeast += counts.values[r][i][2 * q + 1]
                    }
                    guard above < kk && kk <= atLeast else { continue }
                    // t is the k-th largest magnitude; ranges keep entries equal to it in index order.
                    var budget = kk - above
                    for r in ranges.indices {
                        let take = min(counts.values[r][i][2 * q + 1] - counts.values[r][i][2 * q], budget)
                        selection.equalBudget[i][r] = take
                        budget -= take
                    }
                    selection.threshold[i] = t
                    found = true
                    break
                }
                // Not among them (unlikely): histograms, from the start.
                guard found else { return try selectThresholds(ranges, useGuesses: false) }
                resolved[i] = true
            }
            var bins = [Int](repeating: -1, count: k), aboveBin = [Int](repeating: 0, count: k)
            for i in 0..<k {
                guard let kk = keep[i], let g = guesses[i] else { continue }
                var total = 0
                for r in ranges.indices { total += counts.above[r][i] }
                var bin = g.upperBound
                while bin >= g.lowerBound {
                    var c = 0
                    let start = (bin - g.lowerBound) << 16
                    for r in ranges.indices { c += counts.low[r][i][start..<(start + (1 << 16))].reduce(0) { $0 + Int($1) } }
                    if total + c >= kk { break }
                    total += c
                    bin -= 1
                }
                guard bin >= g.lowerBound else { return try selectThresholds(ranges, useGuesses: false) }
                bins[i] = bin
                aboveBin[i] = total
            }
            for i in 0..<k {
                guard let kk = keep[i], guesses[i] == nil, !resolved[i] else { continue }
                var total = 0, bin = (1 << 15) - 1
                while bin >= 0 {
                    var c = 0
                    for r in ranges.indices { c += Int(counts.high[r][i][bin]) }
                    if total + c >= kk { break }
                    total += c
                    bin -= 1
                }
                bins[i] = max(bin, 0)
                aboveBin[i] = total
            }
            let missed = (0..<k).filter { keep[$0] != nil && !resolved[$0] && guesses[$0] == nil && !candidates[$0].contains(bins[$0]) }
            var lowOf: [[[UInt32]]] = (0..<ranges.count).map { r in (0..<k).map { i in
                if guesses[i] == nil, let q = candidates[i].firstIndex(of: bins[i]) {
                    return Array(counts.candidates[r][i][(q << 16)..<((q + 1) << 16)])
                }
                guard let g = guesses[i], g.contains(bins[i]) else { return [] }
                let start = (bins[i] - g.lowerBound) << 16
                return Array(counts.low[r][i][start..<(start + (1 << 16))])
            } }
            if !missed.isEmpty {
                let target = bins
                let second = Histograms(ranges: ranges.count, models: k)
                try parallel(Array(ranges.indices)) { r in
                    let range = ranges[r]
                    let b = UnsafeMutablePointer<Float>.allocate(capacity: chunk), x = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
                    defer { b.deallocate(); x.deallocate() }
                    // The target bin's low 16 bits, branch-free (other bins count into a discard slot at 65,536).
                    var low = [[UInt32]](repeating: [], count: k)
                    for i in missed { low[i] = [UInt32](repeating: 0, count: (1 << 16) + 1) }
                    var c = range.lowerBound
                    while c < range.upperBound {
                        let mm = min(chunk, range.upperBound - c)
                        // Pass 1 checked these values for NaN/Inf already (not counted twice).
                        if let s = bf16Words(base!, c) {
                            for j in 0..<mm { b[j] = Float(bitPattern: UInt32(s[j]) << 16) }
                        } else {
                            base!.decode(c, mm, into: b)
                        }
                        for i in missed {
                            if let s = bf16Words(inputs[i], c) {
                                for j in 0..<mm { x[j] = Float(bitPattern: UInt32(s[j]) << 16) }
                            } else {
                                inputs[i].decode(c, mm, into: x)
                            }
                            let bin = UInt32(target[i])
                            low[i].withUnsafeMutableBufferPointer { l in
                                let h = l.baseAddress!
                                for j in 0..<mm {
                                    let bits = abs(x[j] - b[j]).bitPattern
                                    h[bits >> 16 == bin ? Int(bits & 0xFFFF) : 1 << 16] &+= 1
                                }
                            }
                        }
                        c += mm
                    }
                    second.store(r, high: [], low: low, above: [])
                }
                for r in ranges.indices { for i in missed { lowOf[r][i] = second.low[r][i] } }
            }
            // The exact threshold within its bin, and how many entries equal to it each range keeps.
            for i in 0..<k {
                guard let kk = keep[i], !resolved[i] else { continue }
                var total = aboveBin[i], low = (1 << 16) - 1
                while low >= 0 {
                    var c = 0
                    for r in ranges.indices { c += Int(lowOf[r][i][low]) }
                    if total + c >= kk { break }
                    total += c
                    low -= 1
                }
                low = max(low, 0)
                var budget = kk - total
                for r in ranges.indices {
                    let take = min(Int(lowOf[r][i][low]), budget)
                    selection.equalBudget[i][r] = take
                    budget -= take
                }
                selection.threshold[i] = UInt32(bins[i]) << 16 | UInt32(low)
            }
            return selection
        }

        /// BF16 TIES, chunk [c, c + m): entries of input i equal to its threshold are kept below chunk index
        /// `equalLimit` (the range's budget of them, in index order), and the budget is charged for them.
        func equalLimit(_ i: Int, _ c: Int, _ m: Int, threshold: UInt32?, budget: inout Int, scratch: UnsafeMutablePointer<Float>) -> Int {
            guard let t = threshold, budget > 0 else { return 0 }
            let s = bf16Words(inputs[i], c)!, bw = bf16Words(base!, c)!
            let equal = K.countEqualBF16(s, bw, m, t)
            if equal <= budget {
                budget -= equal
                return m
            }
            // The budget runs out in this chunk: keep equal entries up to (and including) the budget-th.
            var seen = 0
            for j in 0..<m {
                let bits = abs(Float(bitPattern: UInt32(s[j]) << 16) - Float(bitPattern: UInt32(bw[j]) << 16)).bitPattern
                if bits == t {
                    seen += 1
                    if seen == budget {
                        budget = 0
                        return j + 1
                    }
                }
            }
            budget = 0
            return m
        }

        /// TIES on BF16 inputs and base in one pass over chunk [c, c + m), eight elements at a time, into `out`:
        /// every element goes through exactly the Float32 operations of the general pass (and of
        /// `TensorMerge.ties`) in the same order -- task vector x_i = input_i - base; d_i = (kept ? x_i : 0) * w_i;
        /// mass = (0 + d_0) + d_1 ...; the entries agreeing with the sign of the mass summed, with their weights;
        /// normalised, scaled by lambda, added to the base -- or ones that give the same bits (BasinKernels.tiesBF16
        /// says which), so the bytes are identical; only the intermediate arrays are gone. NaN/Inf words are counted
        /// as before.
        func tiesBF16(_ c: Int, _ m: Int, thresholds: [UInt32?], limits: UnsafePointer<Int>, powerOfTwoDivisors: Bool, out: UnsafeMutablePointer<Float>,
                      scratch: UnsafeMutablePointer<Float>) {
            let k = inputs.count
            let weights = p.weights
            let normalize = p.normalize, lambda = p.lambda
            let bw = bf16Words(base!, c)!
            // Everything the loop reads per input in plain buffers (no arrays or optionals inside it).
            let words = UnsafeMutablePointer<UnsafePointer<UInt16>>.allocate(capacity: k)
            let points = UnsafeMutablePointer<Int32>.allocate(capacity: k), limit = UnsafeMutablePointer<Int32>.allocate(capacity: k)
            let wv = UnsafeMutablePointer<Float>.allocate(capacity: k), dj = UnsafeMutablePointer<Float>.allocate(capacity: k)
            let d = UnsafeMutableRawPointer.allocate(byteCount: 32 * k, alignment: 32)
            defer { words.deallocate(); points.deallocate(); limit.deallocate(); wv.deallocate(); dj.deallocate(); d.deallocate() }
            for i in 0..<k {
                words[i] = bf16Words(inputs[i], c)!
                // Kept: magnitude bits above the threshold (or at least it below the limit); untrimmed: above -1.
                points[i] = thresholds[i].map { Int32(bitPattern: $0) } ?? -1
                limit[i] = thresholds[i] == nil ? 0 : Int32(limits[i])
                wv[i] = weights[i]
            }
            var (j, flags) = K.tiesBF16(inputs: k, words: words, base: bw, points: points, limits: limit, weights: wv, normalize: normalize,
                                        powerOfTwoDivisors: powerOfTwoDivisors, lambda: lambda, count: m, out: out, d: d)
            // The last few elements, one at a time (the same operations as the general pass).
            while j < m {
                let b = Float(bitPattern: UInt32(bw[j]) << 16)
                flags |= (bw[j] & 0x7F80) &+ 0x0080
                var mass: Float = 0
                for i in 0..<k {
                    let w = words[i][j]
                    flags |= (w & 0x7F80) &+ 0x0080
                    let x = Float(bitPattern: UInt32(w) << 16) - b
                    var keep = true
                    if let t = thresholds[i] {
                        let bits = abs(x).bitPattern
                        keep = bits > t || (bits == t && j < limits[i])
                    }
                    dj[i] = (keep ? x : 0) * weights[i]
                    mass += dj[i]
                }
                var mixed: Float = 0, divisor: Float = 0
                for i in 0..<k {
                    let v = dj[i]
                    let agrees = mass >= 0 ? v > 0 : v < 0
                    mixed += agrees ? v : 0
                    divisor += agrees ? weights[i] : 0
                }
                if normalize { mixed /= divisor == 0 ? 1 : divisor }
                if lambda != 1 { mixed *= lambda }
                out[j] = b + mixed
                j += 1
            }
            // Some source had an all-ones exponent in this chunk: count each one's exactly (as the general pass does).
            guard flags & 0x8000 != 0 else { return }
            for i in 0..<k { checkBF16(0x8000, inputs[i], i, c, m, scratch: scratch) }
            checkBF16(0x8000, base!, k, c, m, scratch: scratch)
        }

        func ties(_ range: Range<Int>, range r: Int, selection: Selection) throws {
            let k = inputs.count
            let weights = p.weights
            let normalize = p.normalize, lambda = p.lambda
            var budgets = selection.equalBudget.map { $0[r] }
            let thresholds = selection.threshold
            let b = UnsafeMutablePointer<Float>.allocate(capacity: chunk), x = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
            let d = UnsafeMutablePointer<Float>.allocate(capacity: chunk * k)
            let mass = UnsafeMutablePointer<Float>.allocate(capacity: chunk), mixed = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
            let divisor = UnsafeMutablePointer<Float>.allocate(capacity: chunk), scratch = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
            defer { b.deallocate(); x.deallocate(); d.deallocate(); mass.deallocate(); mixed.deallocate(); divisor.deallocate(); scratch.deallocate() }
            var releaser = Releaser(job: self, done: range.lowerBound)
            defer { releaser.finish(range.upperBound) }
            var output = OutputStream(job: self, start: range.lowerBound)
            defer { output.close() }
            var c = range.lowerBound
            let allBF16 = bf16Words(base!, c) != nil && inputs.allSatisfy { bf16Words($0, c) != nil }
            let powerOfTwoDivisors = allBF16 && normalize && Self.powerOfTwoDivisors(weights)
            let limits = UnsafeMutablePointer<Int>.allocate(capacity: k)
            defer { limits.deallocate() }
            while c < range.upperBound {
                releaser.advance(to: c)
                let m = min(chunk, range.upperBound - c)
                if allBF16 {
                    // BF16 inputs and base: one fused pass (see `tiesBF16`).
                    for i in 0..<k { limits[i] = equalLimit(i, c, m, threshold: thresholds[i], budget: &budgets[i], scratch: x) }
                    tiesBF16(c, m, thresholds: thresholds, limits: limits, powerOfTwoDivisors: powerOfTwoDivisors, out: x, scratch: scratch)
                    try output.put(x, c, m)
                    c += m
                    continue
                }
                decodeChecked(base!, k, c, m, b)
                for j in 0..<m { mass[j] = 0; mixed[j] = 0; divisor[j] = 0 }
                for i in 0..<k {
                    let w = weights[i]
                    let di = d + i * chunk
                    // The task vector entries (checked for non-finite values again: cheap, and the threshold pass
                    // does not run when every density is 1).
                    if let s = bf16Words(inputs[i], c) {
                        var flags: UInt16 = 0
                        for j in 0..<m {
                            x[j] = Float(bitPattern: UInt32(s[j]) << 16) - b[j]
                            flags |= (s[j] & 0x7F80) &+ 0x0080
                        }
                        checkBF16(flags, inputs[i], i, c, m, scratch: scratch)
                    } else {
                        load(inputs[i], i, c, m, x)
                        for j in 0..<m { x[j] = x[j] - b[j] }
                    }
                    if let threshold = thresholds[i] {
                        var budget = budgets[i]
                        var j = 0
                        // Entries equal to the threshold are kept in index order while the range's budget lasts.
                        while j < m && budget > 0 {
                            let bits = abs(x[j]).bitPattern
                            var keep = bits > threshold
                            if bits == threshold {
                                keep = true
                                budget -= 1
                            }
                            di[j] = (keep ? x[j] : 0) * w
                            j += 1
                        }
                        for jj in j..<m { di[jj] = (abs(x[jj]).bitPattern > threshold ? x[jj] : 0) * w }
                        budgets[i] = budget
                    } else {
                        for j in 0..<m { di[j] = x[j] * w }
                    }
                    for j in 0..<m { mass[j] += di[j] }
                }
                for i in 0..<k {
                    let di = d + i * chunk
                    let w = weights[i]
                    for j in 0..<m {
                        let v = di[j]
                        let agrees = mass[j] >= 0 ? v > 0 : v < 0
                        mixed[j] += agrees ? v : 0
                        divisor[j] += agrees ? w : 0
                    }
                }
                if normalize { for j in 0..<m { mixed[j] /= divisor[j] == 0 ? 1 : divisor[j] } }
                if lambda != 1 { for j in 0..<m { mixed[j] *= lambda } }
                for j in 0..<m { x[j] = b[j] + mixed[j] }
                try output.put(x, c, m)
                c += m
            }
            try output.flush()
        }
    }
}
