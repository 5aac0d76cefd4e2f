import BasinIO
import BasinTensor
import Foundation

/// Writes a planned set of tensors as one safetensors file or as shards with an index, atomically as a
/// whole: every shard goes to a temporary file; only when all tensors were written are the shards renamed
/// into place and then the index written. On any failure (or if dropped before `finish`) nothing is left
/// behind, and an output that is one of the inputs is refused.
///
/// Layout:
/// - `out` ending in `.safetensors`, total within `shardSize`: that one file.
/// - `out` ending in `.safetensors` and larger than `shardSize`: `NAME-00001-of-0000N.safetensors` ... beside
///   it plus `NAME.safetensors.index.json`.
/// - any other `out` is a folder (created if needed): `model-00001-of-0000N.safetensors` ... plus
///   `model.safetensors.index.json` (Hugging Face's layout), even when N = 1.
public final class CheckpointWriter {
    public static let defaultShardSize = 5_000_000_000  // mergekit's and Hugging Face's 5 GB

    public let plan: [TensorPlan]
    public let metadata: [String: String]
    /// The files that will exist after `finish()` (shards, then the index if any).
    public let outputFiles: [URL]
    public let indexURL: URL?
    private let shardPlans: [[TensorPlan]]
    private let shardURLs: [URL]
    private let inputs: [URL]
    private var writers: [SafeTensorsWriter?]
    private var current = 0
    private var inShard = 0
    private var scratch: [UInt8] = []
    private var createdFolder: URL?
    private var finished = false

    public init(out: URL, plan: [TensorPlan], metadata: [String: String], shardSize: Int = CheckpointWriter.defaultShardSize,
                protecting inputs: [URL]) throws {
        self.plan = plan
        self.metadata = metadata
        self.inputs = inputs
        let total = plan.reduce(0) { $0 + $1.byteCount }
        let isFile = out.pathExtension == "safetensors"
        // Split the plan greedily: a shard takes tensors while it stays within shardSize (a larger tensor gets its own).
        var shards: [[TensorPlan]] = []
        if isFile && total <= shardSize {
            shards = [plan]
        } else {
            var currentShard: [TensorPlan] = []
            var bytes = 0
            for p in plan {
                if !currentShard.isEmpty && bytes + p.byteCount > shardSize {
                    shards.append(currentShard)
                    currentShard = []
                    bytes = 0
                }
                currentShard.append(p)
                bytes += p.byteCount
            }
            if !currentShard.isEmpty || shards.isEmpty { shards.append(currentShard) }
        }
        shardPlans = shards
        if isFile && shards.count == 1 {
            shardURLs = [out]
            indexURL = nil
        } else {
            let folder: URL, stem: String
            if isFile {
                folder = out.deletingLastPathComponent()
                stem = out.deletingPathExtension().lastPathComponent
            } else {
                folder = out
                stem = "model"
                if !FileManager.default.fileExists(atPath: folder.path) { createdFolder = folder }
                do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
                    throw BasinIOError(.writeFailed, file: folder.path, "cannot create the output folder (\(error.localizedDescription))")
                }
            }
            let n = shards.count
            shardURLs = (1...n).map { folder.appendingPathComponent(String(format: "%@-%05d-of-%05d.safetensors", stem, $0, n)) }
            indexURL = folder.appendingPathComponent(stem + ".safetensors.index.json")
            try OutputGuard.check(output: indexURL!, inputs: inputs)
        }
        outputFiles = shardURLs + (indexURL.map { [$0] } ?? [])
        for url in shardURLs { try OutputGuard.check(output: url, inputs: inputs) }
        writers = Array(repeating: nil, count: shards.count)
    }

    deinit {
        // Unfinished: the shard writers remove their temporary files as they go; remove the folder we made.
        if !finished, let createdFolder {
            writers = []
            try? FileManager.default.removeItem(at: createdFolder)
        }
    }

    private func writer() throws -> SafeTensorsWriter {
        while current < shardPlans.count && inShard == shardPlans[current].count {
            current += 1
            inShard = 0
        }
        guard current < shardPlans.count else { throw BasinIOError(.writeFailed, file: shardURLs.last!.path, "more tensors than planned") }
        if let w = writers[current] { return w }
        let w = try SafeTensorsWriter(url: shardURLs[current], plan: shardPlans[current], metadata: metadata, protecting: inputs)
        writers[current] = w
        return w
    }

    /// Writes the next planned tensor, encoding it to its planned dtype (tight loops for F16/BF16/F32).
    public func write(_ name: String, _ tensor: Tensor) throws {
        let w = try writer()
        let p = w.plan[inShard]
        guard p.name == name, p.shape == tensor.shape else {
            throw BasinIOError(.writeFailed, file: w.url.path, tensor: name, "arrived out of plan (expected '\(p.name)' \(p.shape), got \(tensor.shape))")
        }
        let n = p.byteCount
        if scratch.count < n { scratch = [UInt8](repeating: 0, count: n) }
        try scratch.withUnsafeMutableBytes { dst in
            tensor.withUnsafeBufferPointer { src in FastConvert.encode(src, as: p.dtype, into: dst.baseAddress!) }
            try w.write(name, rawBytes: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(dst)[0..<n]))
        }
        inShard += 1
    }

    /// Writes the next planned tensor from bytes already in its planned dtype.
    public func write(_ name: String, rawBytes: UnsafeRawBufferPointer) throws {
        let w = try writer()
        try w.write(name, rawBytes: rawBytes)
        inShard += 1
    }

    /// Renames every shard into place, then writes the index. If anything fails, removes what was renamed.
    public func finish() throws {
        // Shards with no tensor yet (empty plan) still get created so the layout is complete.
        for i in writers.indices where writers[i] == nil {
            writers[i] = try SafeTensorsWriter(url: shardURLs[i], plan: shardPlans[i], metadata: metadata, protecting: inputs)
        }
        var renamed: [URL] = []
        do {
            for (i, w) in writers.enumerated() {
                try w!.finish()
                renamed.append(shardURLs[i])
            }
            if let indexURL {
                var weightMap: [String: String] = [:]
                for (i, shard) in shardPlans.enumerated() {
                    for p in shard { weightMap[p.name] = shardURLs[i].lastPathComponent }
                }
                var meta: [String: Any] = metadata
                meta["total_size"] = plan.reduce(0) { $0 + $1.byteCount }
                let object: [String: Any] = ["metadata": meta, "weight_map": weightMap]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                try data.write(to: indexURL, options: .atomic)
            }
        } catch {
            for url in renamed { try? FileManager.default.removeItem(at: url) }
            throw error
        }
        writers = []
        finished = true
    }
}

/// Tight Float32 <-> F16/BF16/F32 loops on raw pointers for the streaming path (other dtypes fall back
/// to `DTypeConversion`).
public enum FastConvert {
    public static func decode(_ dtype: DType, from source: UnsafeRawPointer, count n: Int, into out: UnsafeMutablePointer<Float>) {
        guard n > 0 else { return }
        switch dtype {
        case .bf16 where Int(bitPattern: source) % 2 == 0:
            let s = source.assumingMemoryBound(to: UInt16.self)
            out.withMemoryRebound(to: UInt32.self, capacity: n) { o in
                for i in 0..<n { o[i] = UInt32(UInt16(littleEndian: s[i])) << 16 }
            }
        case .f16 where Int(bitPattern: source) % 2 == 0:
            let s = source.assumingMemoryBound(to: Float16.self)
            for i in 0..<n { out[i] = Float(s[i]) }
        case .f32:
            (UnsafeMutableRawPointer(out)).copyMemory(from: source, byteCount: n * 4)
        default:
            DTypeConversion.decode(dtype, from: source, count: n, into: out)
        }
    }

    public static func encode(_ src: UnsafeBufferPointer<Float>, as dtype: DType, into destination: UnsafeMutableRawPointer) {
        let n = src.count
        guard n > 0, let s = src.baseAddress else { return }
        switch dtype {
        case .bf16:
            let d = destination.assumingMemoryBound(to: UInt16.self)
            s.withMemoryRebound(to: UInt32.self, capacity: n) { bits in
                for i in 0..<n {
                    let b = bits[i]
                    // Round to nearest even; NaN keeps a quiet NaN payload.
                    let isNaN = (b & 0x7FFF_FFFF) > 0x7F80_0000
                    let rounded = (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16
                    d[i] = UInt16(truncatingIfNeeded: isNaN ? ((b >> 16) | 0x0040) : rounded).littleEndian
                }
            }
        case .f16:
            let d = destination.assumingMemoryBound(to: Float16.self)
            for i in 0..<n { d[i] = Float16(s[i]) }
        case .f32:
            destination.copyMemory(from: UnsafeRawPointer(s), byteCount: n * 4)
        default:
            DTypeConversion.encode(s, count: n, as: dtype, into: destination)
        }
    }

    /// A tensor decoded from a source (memory-mapped bytes, no intermediate copy).
    public static func tensor(_ source: any TensorSource, _ name: String) throws -> Tensor {
        guard let info = source.info(name) else { return try source.tensor(name) }
        return try source.withRawBytes(name) { raw in
            try Tensor(shape: info.shape) { out in
                guard raw.count >= info.elementCount * info.dtype.byteSize else {
                    throw BasinIOError(.sizeMismatch, file: source.displayPath, tensor: name, "has fewer bytes than its shape needs")
                }
                if info.elementCount > 0, let base = raw.baseAddress { decode(info.dtype, from: base, count: info.elementCount, into: out.baseAddress!) }
            }
        }
    }
}
