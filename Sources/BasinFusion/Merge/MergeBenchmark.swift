import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// `basin bench merge`: three synthetic BF16 checkpoints with LLaMA-shaped tensor names (a base and two fine-tunes of
/// it), `cp` of one of them, and streaming merges of the three with linear, task arithmetic and TIES, each timed end
/// to end (planning, merging, writing, input digests) with its peak resident memory, all in one run on the
/// same files so the figures compare. Rounds of cp then every method repeat it; each merge is compared with its
/// round's cp and the medians are reported (a loaded machine's figures swing from one second to the next).
public enum MergeBenchmark {
    public struct MergeFigure: Codable, Sendable {
        public var method: String
        /// The median over the rounds.
        public var seconds: Double
        /// Output bytes written per second (at the median time).
        public var bytesPerSecond: Double
        /// The median over the rounds of (cp's rate in that round) / (the merge's rate in that round).
        public var fractionOfCopy: Double
        /// The fastest round, and its rate as a fraction of the fastest cp's (best against best: both measure the
        /// machine at its quietest, when other processes' load swings the medians).
        public var fastestSeconds: Double
        public var fractionOfFastestCopy: Double
        /// Each round's time and fraction of that round's cp.
        public var roundSeconds: [Double]
        public var roundFractions: [Double]
        public var peakResidentBytes: Int?
        public var outputFiles: Int
        public var streamedTensors: Int
        public var hashSeconds: Double
        /// CPU time of the process during the merge (user + system), every thread (median over the rounds).
        public var cpuSeconds: Double
        /// Resident memory just before the merge started (the peak counts from here).
        public var residentBytesBefore: Int?
    }

    public struct Figure: Codable, Sendable {
        public var tensors: Int
        public var layers: Int
        public var bytesPerModel: Int
        public var inputShardsPerModel: Int
        public var outputShardSize: Int?
        public var generateSeconds: Double
        /// `cp` of one input (a file, or the folder of shards), page cache warm, not synced: the median over the
        /// rounds, and each round's.
        public var copySeconds: Double
        public var copyRoundSeconds: [Double]
        public var copyFastestSeconds: Double
        public var copyBytesPerSecond: Double
        /// The same copy followed by fsync of what it wrote (for reference: merges fsync only with --sync).
        public var copySyncSeconds: Double
        public var copySyncBytesPerSecond: Double
        public var merges: [MergeFigure]
        public var threads: Int
        /// SHA-256 of every input file from scratch, on as many threads as there are cores (wall and CPU seconds).
        public var digestSeconds: Double
        public var digestCPUSeconds: Double
        /// Whether the merges hashed their inputs from scratch (else they found the digests the checkpoint writer
        /// recorded in the bench's own digest cache when it wrote the inputs, as in the hand-tuning loop).
        public var coldDigests: Bool
        /// Rounds: each runs cp, then every method, so a round's merges compare with a cp under the same load.
        public var rounds: Int
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return 0 }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// LLaMA-like shapes (TinyLlama: hidden 2048, intermediate 5632, 4 key-value heads of 64, vocab 32000) with as many
    /// layers as fit `bytes` of BF16.
    static func plan(bytes: Int) -> (plan: [TensorPlan], layers: Int) {
        let hidden = 2048, intermediate = 5632, kv = 256, vocab = 32000
        func layer(_ i: Int) -> [TensorPlan] {
            let p = "model.layers.\(i)."
            return [
                TensorPlan(name: p + "input_layernorm.weight", dtype: .bf16, shape: [hidden]),
                TensorPlan(name: p + "self_attn.q_proj.weight", dtype: .bf16, shape: [hidden, hidden]),
                TensorPlan(name: p + "self_attn.k_proj.weight", dtype: .bf16, shape: [kv, hidden]),
                TensorPlan(name: p + "self_attn.v_proj.weight", dtype: .bf16, shape: [kv, hidden]),
                TensorPlan(name: p + "self_attn.o_proj.weight", dtype: .bf16, shape: [hidden, hidden]),
                TensorPlan(name: p + "post_attention_layernorm.weight", dtype: .bf16, shape: [hidden]),
                TensorPlan(name: p + "mlp.gate_proj.weight", dtype: .bf16, shape: [intermediate, hidden]),
                TensorPlan(name: p + "mlp.up_proj.weight", dtype: .bf16, shape: [intermediate, hidden]),
                TensorPlan(name: p + "mlp.down_proj.weight", dtype: .bf16, shape: [hidden, intermediate]),
            ]
        }
        let ends = [TensorPlan(name: "model.embed_tokens.weight", dtype: .bf16, shape: [vocab, hidden]),
                    TensorPlan(name: "model.norm.weight", dtype: .bf16, shape: [hidden]),
                    TensorPlan(name: "lm_head.weight", dtype: .bf16, shape: [vocab, hidden])]
        let perLayer = layer(0).reduce(0) { $0 + $1.byteCount }
        let fixed = ends.reduce(0) { $0 + $1.byteCount }
        let layers = max(1, Int((Double(bytes - fixed) / Double(perLayer)).rounded()))
        var out = [ends[0]]
        for i in 0..<layers { out += layer(i) }
        out += ends[1...]
        return (out, layers)
    }

    /// Fills `bytes` with BF16 weights of magnitude about 2^-8..2^-4 from a fast seeded stream; a fine-tune (`delta`)
    /// nudges the base's mantissas by a few units, so task vectors are small, dense and of mixed sign.
    static func fill(_ bytes: UnsafeMutableRawBufferPointer, state: inout UInt64, base: UnsafeRawBufferPointer?) {
        let words = bytes.count / 8
        let p = bytes.baseAddress!.assumingMemoryBound(to: UInt64.self)
        var s = state
        for i in 0..<words {
            s ^= s << 13
            s ^= s >> 7
            s ^= s << 17
            if let base {
                let b = base.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
                // Add -2..+1 to each lane's low mantissa bits (stays within the lane for these magnitudes).
                p[i] = b &+ (s & 0x0003_0003_0003_0003) &- 0x0002_0002_0002_0002
            } else {
                p[i] = (s & 0x80FF_80FF_80FF_80FF) | 0x3C00_3C00_3C00_3C00
            }
        }
        state = s
    }

    static func generate(into out: URL, plan: [TensorPlan], shardSize: Int, seed: UInt64, base: (any TensorSource)?) throws {
        let writer = try CheckpointWriter(out: out, plan: plan, metadata: ["format": "pt"], shardSize: shardSize, protecting: [])
        var buffer = [UInt8](repeating: 0, count: plan.map(\.byteCount).max() ?? 0)
        var state = seed | 1
        for p in plan {
            try buffer.withUnsafeMutableBytes { b in
                let chunk = UnsafeMutableRawBufferPointer(rebasing: b[0..<p.byteCount])
                if let base {
                    try base.withRawBytes(p.name) { fill(chunk, state: &state, base: $0) }
                    base.release(p.name)
                } else {
                    fill(chunk, state: &state, base: nil)
                }
                try writer.write(p.name, rawBytes: UnsafeRawBufferPointer(chunk))
            }
        }
        try writer.finish()
    }

    /// Runs the benchmark in a fresh folder under `directory`, which is removed at the end.
    public static func run(directory: URL, bytesPerModel: Int = 1_000_000_000, sharded: Bool = false,
                           methods: [MergeMethod] = [.linear, .taskArithmetic, .ties], threads: Int? = nil, keep: Bool = false,
                           coldDigests: Bool = false, rounds: Int = 3, log: (String) -> Void = { _ in }) throws -> Figure {
        let root = directory.appendingPathComponent("basin-bench-merge-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { if !keep { try? FileManager.default.removeItem(at: root) } else { log("kept \(root.path)") } }
        // A digest cache of the bench's own (never the user's): the checkpoint writer records each input's digest as
        // it writes it, so the merges find them, as every merge after the first of the same checkpoints does.
        // --cold-digests turns it off: every merge hashes its inputs from scratch.
        let previousCache = ProcessInfo.processInfo.environment["BASIN_DIGEST_CACHE"]
        setenv("BASIN_DIGEST_CACHE", coldDigests ? "off" : root.appendingPathComponent("digest-cache.json").path, 1)
        defer { if let previousCache { setenv("BASIN_DIGEST_CACHE", previousCache, 1) } else { unsetenv("BASIN_DIGEST_CACHE") } }
        let (plan, layers) = plan(bytes: bytesPerModel)
        let modelBytes = plan.reduce(0) { $0 + $1.byteCount }
        let inputShard = sharded ? max(1, modelBytes / 4 + 1) : Int.max
        let outputShard = sharded ? max(1, modelBytes / 4 + 1) : CheckpointWriter.defaultShardSize
        let names = ["base", "ft-a", "ft-b"]
        let t0 = Benchmarks.now()
        var urls: [URL] = []
        for (i, name) in names.enumerated() {
            let url = sharded ? root.appendingPathComponent(name) : root.appendingPathComponent(name + ".safetensors")
            log("generating \(name): \(plan.count) BF16 tensors (\(layers) LLaMA-shaped layers), \(modelBytes) bytes\(sharded ? " in shards" : "")")
            try generate(into: url, plan: plan, shardSize: inputShard, seed: 0x9E37 &+ UInt64(i) &* 7919, base: i == 0 ? nil : try ModelFile.open(urls[0]))
            urls.append(url)
        }
        let generateSeconds = Benchmarks.now() - t0
        let shards = try ModelFile.open(urls[0]).files.filter { $0.pathExtension == "safetensors" }.count

        // cp of one input with the system's cp, then the same followed by fsync of the copy.
        func copy(sync: Bool) throws -> Double {
            let target = root.appendingPathComponent(sync ? "copy-synced" : "copy")
            let start = Benchmarks.now()
            let cp = Process()
            cp.executableURL = URL(fileURLWithPath: "/bin/cp")
            cp.arguments = ["-r", urls[1].path, target.path]
            try cp.run()
            cp.waitUntilExit()
            guard cp.terminationStatus == 0 else { throw MergeError(.output, file: target.path, "cp failed (status \(cp.terminationStatus))") }
            if sync {
                let s = Process()
                s.executableURL = URL(fileURLWithPath: "/bin/sync")
                s.arguments = ["-f", target.path]
                try s.run()
                s.waitUntilExit()
            }
            let seconds = Benchmarks.now() - start
            try FileManager.default.removeItem(at: target)
            return seconds
        }
        // What hashing the inputs from scratch costs (all files at once, as the merge's hasher does).
        log("hashing the inputs from scratch")
        let files = try urls.flatMap { try ModelFile.open($0).files.filter { $0.pathExtension == "safetensors" } }
        let digestCPU0 = ProcessMemory.cpuSeconds, digestStart = Benchmarks.now()
        let digestResults = ConcurrentSlots<Result<String, Error>>(count: files.count)
        DispatchQueue.concurrentPerform(iterations: files.count) { i in digestResults.set(i, Result { try FileDigest.sha256(files[i]) }) }
        for i in files.indices { _ = try digestResults.digest(i) }
        let digestSeconds = Benchmarks.now() - digestStart, digestCPU = ProcessMemory.cpuSeconds - digestCPU0
        log("copying one input with cp, then fsync")
        let copySyncSeconds = try copy(sync: true)
        // Rounds of cp then every method: the machine's load drifts (other processes), so each merge is compared with
        // the cp of its own round, and the medians are reported.
        var copyRounds: [Double] = []
        var times = [[Double]](repeating: [], count: methods.count), cpus = times, fractions = times
        var peaks = [Int?](repeating: nil, count: methods.count), befores = peaks
        var reports = [MergeReport?](repeating: nil, count: methods.count)
        // Before each timed step the dirty pages of the previous one are written out (untimed), so no step pays
        // for another's write-back: every cp and merge starts from the same state.
        func settle() {
            let s = Process()
            s.executableURL = URL(fileURLWithPath: "/bin/sync")
            s.arguments = ["-f", root.path]
            if (try? s.run()) != nil { s.waitUntilExit() }
        }
        for round in 0..<max(1, rounds) {
            log("round \(round + 1) of \(max(1, rounds)): cp of one input")
            settle()
            let cpSeconds = try copy(sync: false)
            copyRounds.append(cpSeconds)
            for (mi, method) in methods.enumerated() {
                log("round \(round + 1): merging with \(method.rawValue)")
                let text: String
                switch method {
                case .linear:
                    text = "merge_method: linear\nmodels:\n" + urls.map { "  - model: \($0.path)\n    parameters: {weight: 1.0}\n" }.joined()
                case .ties:
                    text = "merge_method: ties\nbase_model: \(urls[0].path)\nmodels:\n"
                        + urls.dropFirst().map { "  - model: \($0.path)\n    parameters: {weight: 1.0, density: 0.5}\n" }.joined()
                default:
                    text = "merge_method: \(method.rawValue)\nbase_model: \(urls[0].path)\nmodels:\n"
                        + urls.dropFirst().map { "  - model: \($0.path)\n    parameters: {weight: 1.0}\n" }.joined() + "parameters: {lambda: 0.5}\n"
                }
                let out = sharded ? root.appendingPathComponent("merged-\(method.rawValue)") : root.appendingPathComponent("merged-\(method.rawValue).safetensors")
                settle()
                ProcessMemory.resetPeak()
                let before = ProcessMemory.currentResidentBytes
                let cpu0 = ProcessMemory.cpuSeconds
                let start = Benchmarks.now()
                let recipe = try MergeRecipe.parse(text, directory: root)
                var options = MergeRunOptions()
                options.shardSize = outputShard
                if let threads { options.threads = threads }
                let report = try MergeExecutor.run(try MergePlan(recipe: recipe), out: out, options: options)
                let seconds = Benchmarks.now() - start
                times[mi].append(seconds)
                cpus[mi].append(ProcessMemory.cpuSeconds - cpu0)
                fractions[mi].append((Double(report.outputBytes) / seconds) / (Double(modelBytes) / cpSeconds))
                if let p = ProcessMemory.peakResidentBytes { peaks[mi] = max(peaks[mi] ?? 0, p) }
                if befores[mi] == nil { befores[mi] = before }
                reports[mi] = report
                try FileManager.default.removeItem(at: out)
            }
        }
        let copyFastest = copyRounds.min() ?? 0
        let figures = methods.indices.map { mi in
            let seconds = median(times[mi]), fastest = times[mi].min() ?? seconds
            return MergeFigure(method: methods[mi].rawValue, seconds: seconds, bytesPerSecond: Double(reports[mi]!.outputBytes) / seconds,
                               fractionOfCopy: median(fractions[mi]), fastestSeconds: fastest,
                               fractionOfFastestCopy: (Double(reports[mi]!.outputBytes) / fastest) / (Double(modelBytes) / copyFastest),
                               roundSeconds: times[mi], roundFractions: fractions[mi],
                               peakResidentBytes: peaks[mi], outputFiles: reports[mi]!.outputFiles.count,
                               streamedTensors: reports[mi]!.streamedTensors, hashSeconds: reports[mi]!.hashSeconds,
                               cpuSeconds: median(cpus[mi]), residentBytesBefore: befores[mi])
        }
        let copySeconds = median(copyRounds)
        return Figure(tensors: plan.count, layers: layers, bytesPerModel: modelBytes, inputShardsPerModel: shards,
                      outputShardSize: sharded ? outputShard : nil, generateSeconds: generateSeconds,
                      copySeconds: copySeconds, copyRoundSeconds: copyRounds, copyFastestSeconds: copyFastest, copyBytesPerSecond: Double(modelBytes) / copySeconds,
                      copySyncSeconds: copySyncSeconds, copySyncBytesPerSecond: Double(modelBytes) / copySyncSeconds,
                      merges: figures, threads: threads ?? MergeRunOptions().threads,
                      digestSeconds: digestSeconds, digestCPUSeconds: digestCPU, coldDigests: coldDigests, rounds: max(1, rounds))
    }
}
