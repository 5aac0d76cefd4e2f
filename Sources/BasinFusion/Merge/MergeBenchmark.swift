import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// `basin bench merge`: two synthetic sharded BF16 checkpoints, a plain copy of their bytes, and a streaming
/// 50/50 linear merge of them, with times, throughputs and peak resident memory.
public enum MergeBenchmark {
    public struct Figure: Codable, Sendable {
        public var tensors: Int
        public var bytesPerModel: Int
        public var inputShardsPerModel: Int
        public var outputFiles: Int
        public var generateSeconds: Double
        /// Seconds to read both models' bytes from their memory maps and write them to one file (synced).
        public var copySeconds: Double
        public var copyBytesPerSecond: Double
        /// Seconds of the tensor-by-tensor merge (decode, combine, encode, write, sync), input digests excluded.
        public var mergeSeconds: Double
        /// Input bytes (both models) per second of merging.
        public var mergeBytesPerSecond: Double
        public var mergeFractionOfCopy: Double
        /// Seconds spent hashing the inputs (SHA-256) for the output's metadata, done before merging.
        public var hashSeconds: Double
        public var peakResidentBytes: Int?
        public var peakResidentBytesBeforeMerge: Int?
    }

    /// Fills `bytes` with BF16 values of magnitude about 2^-8..2^-4 (a weight-like range) from a fast seeded stream.
    static func fillBF16(_ bytes: UnsafeMutableRawBufferPointer, state: inout UInt64) {
        let words = bytes.count / 8
        let p = bytes.baseAddress!.assumingMemoryBound(to: UInt64.self)
        var s = state
        for i in 0..<words {
            // xorshift64
            s ^= s << 13
            s ^= s >> 7
            s ^= s << 17
            // Four BF16 lanes: keep sign and mantissa bits, force exponent to 0x3B..0x3D.
            p[i] = (s & 0x80FF_80FF_80FF_80FF) | 0x3C00_3C00_3C00_3C00
        }
        state = s
    }

    /// Writes one synthetic model: `tensors` weights of [rows, cols] and a bias for each, BF16, sharded.
    static func generate(into folder: URL, tensors: Int, rows: Int, cols: Int, shardSize: Int, seed: UInt64) throws {
        var plan: [TensorPlan] = []
        for i in 0..<tensors {
            plan.append(TensorPlan(name: "layers.\(i).weight", dtype: .bf16, shape: [rows, cols]))
            plan.append(TensorPlan(name: "layers.\(i).bias", dtype: .bf16, shape: [rows]))
        }
        let writer = try CheckpointWriter(out: folder, plan: plan, metadata: ["format": "pt"], shardSize: shardSize, protecting: [])
        var buffer = [UInt8](repeating: 0, count: rows * cols * 2)
        var state = seed | 1
        for p in plan {
            try buffer.withUnsafeMutableBytes { b in
                let chunk = UnsafeMutableRawBufferPointer(rebasing: b[0..<p.byteCount])
                fillBF16(chunk, state: &state)
                try writer.write(p.name, rawBytes: UnsafeRawBufferPointer(chunk))
            }
        }
        try writer.finish()
    }

    /// Runs the benchmark in a fresh folder under `directory`, which is removed at the end.
    public static func run(directory: URL, bytesPerModel: Int = 2_200_000_000, rows: Int = 2048, cols: Int = 2048,
                           inputShardSize: Int = 500_000_000, outputShardSize: Int = 1_000_000_000,
                           log: (String) -> Void = { _ in }) throws -> Figure {
        let root = directory.appendingPathComponent("basin-bench-merge-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let perTensor = rows * cols * 2 + rows * 2
        let tensors = max(1, (bytesPerModel + perTensor - 1) / perTensor)
        let t0 = Benchmarks.now()
        let folders = [root.appendingPathComponent("a"), root.appendingPathComponent("b")]
        for (i, f) in folders.enumerated() {
            log("generating \(f.lastPathComponent): \(tensors * 2) BF16 tensors, \(tensors * perTensor) bytes")
            try generate(into: f, tensors: tensors, rows: rows, cols: cols, shardSize: inputShardSize, seed: 0x9E37 &+ UInt64(i) &* 7919)
        }
        let generateSeconds = Benchmarks.now() - t0
        let models = try folders.map { try ModelFile.open($0) }
        let inputShards = models[0].files.count - 1

        // Plain copy of the same bytes: mmap -> write, tensor by tensor, synced.
        log("copying")
        var copyPlan: [TensorPlan] = []
        for (m, source) in models.enumerated() {
            for n in source.names { copyPlan.append(TensorPlan(name: "m\(m).\(n)", dtype: .bf16, shape: source.info(n)!.shape)) }
        }
        let copyURL = root.appendingPathComponent("copy.safetensors")
        let c0 = Benchmarks.now()
        do {
            let writer = try CheckpointWriter(out: copyURL, plan: copyPlan, metadata: [:], shardSize: Int.max, protecting: [])
            for (m, source) in models.enumerated() {
                for n in source.names {
                    try source.withRawBytes(n) { try writer.write("m\(m).\(n)", rawBytes: $0) }
                    source.release(n)
                }
            }
            try writer.finish()
        }
        let copySeconds = Benchmarks.now() - c0
        try FileManager.default.removeItem(at: copyURL)
        let inputBytes = copyPlan.reduce(0) { $0 + $1.byteCount }
        let peakBefore = ProcessMemory.peakResidentBytes

        log("merging")
        let recipe = MergeRecipe(method: .linear, models: folders.map { .init(model: $0.path, parameters: ["weight": .scalar(0.5)]) },
                                 dtype: .bf16, directory: root)
        let plan = try MergePlan(recipe: recipe, models: models, base: nil)
        let report = try MergeExecutor.run(plan, out: root.appendingPathComponent("merged"), shardSize: outputShardSize, hashInputs: true)
        let peak = ProcessMemory.peakResidentBytes
        let copyRate = Double(inputBytes) / copySeconds
        let mergeRate = Double(report.inputBytes) / report.seconds
        return Figure(tensors: tensors * 2, bytesPerModel: inputBytes / 2, inputShardsPerModel: inputShards,
                      outputFiles: report.outputFiles.count, generateSeconds: generateSeconds,
                      copySeconds: copySeconds, copyBytesPerSecond: copyRate, mergeSeconds: report.seconds,
                      mergeBytesPerSecond: mergeRate, mergeFractionOfCopy: mergeRate / copyRate, hashSeconds: report.hashSeconds,
                      peakResidentBytes: peak, peakResidentBytesBeforeMerge: peakBefore)
    }
}
