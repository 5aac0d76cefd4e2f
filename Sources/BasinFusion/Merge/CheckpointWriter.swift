import BasinIO
import BasinTensor
import Foundation

/// Writes a planned set of tensors as one safetensors file or as shards with an index, atomically as a
/// whole: every shard goes to a temporary file; only when all tensors were written are the shards renamed
/// into place, then the extra files (config.json, tokenizer) and the index. On any failure (or if dropped before
/// `finish`) nothing is left behind, and an output that is one of the inputs is refused.
///
/// Layout:
/// - `out` ending in `.safetensors`, total within `shardSize`: that one file.
/// - `out` ending in `.safetensors` and larger than `shardSize`: `NAME-00001-of-0000N.safetensors` ... beside
///   it plus `NAME.safetensors.index.json`.
/// - any other `out` is a folder (created if needed), laid out as Hugging Face's `save_pretrained` does:
///   `model.safetensors` when it fits in one shard, else `model-00001-of-0000N.safetensors` ... plus
///   `model.safetensors.index.json`; `extraFiles` (e.g. config.json) go beside them.
public final class CheckpointWriter {
    public static let defaultShardSize = 5_000_000_000  // mergekit's and Hugging Face's 5 GB

    public let plan: [TensorPlan]
    public private(set) var metadata: [String: String]
    /// The files that will exist after `finish()` (shards, extra files, then the index if any).
    public let outputFiles: [URL]
    public let indexURL: URL?
    /// The folder written into, when `out` is a folder.
    public let folder: URL?
    private let shardPlans: [[TensorPlan]]
    private let shardURLs: [URL]
    private let extraFiles: [(name: String, data: Data)]
    private let inputs: [URL]
    private var writers: [SafeTensorsWriter?]
    private var current = 0
    private var inShard = 0
    private var scratch: [UInt8] = []
    private var createdFolder: URL?
    private var finished = false
    private var metadataReplaced = false
    /// Passed to every shard writer: refuse NaN/Inf (docs/reliability.md) unless the merge allows them.
    private let checkFinite: Bool
    /// The folder this run made and the files already renamed into place, removed if a signal arrives before
    /// `finish` is done (docs/reliability.md).
    private var cleanup: [CleanupRegistry.Token?] = []
    /// Which shard holds each tensor.
    private let shardOf: [String: Int]
    private let lock = NSLock()
    /// SHA-256 of each shard written in order (header, then every tensor as it is written), recorded in the digest
    /// cache when the shard is finished, so a later merge of this output never hashes it. Nil for shards written by
    /// range (the streaming merge's threads write out of order) or whose header was rewritten.
    private var digests: [FileDigest.Running?]
    private let recordDigests = DigestCache.shared.url != nil

    /// Whether `out` names a folder output (anything not ending in `.safetensors`).
    public static func isFolder(_ out: URL) -> Bool { out.pathExtension != "safetensors" }

    /// The shards a plan splits into: a shard takes tensors while it stays within `shardSize` (a larger tensor gets
    /// its own), as mergekit's writer does.
    public static func split(_ plan: [TensorPlan], shardSize: Int) -> [[TensorPlan]] {
        var shards: [[TensorPlan]] = []
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
        return shards
    }

    /// The files an output would consist of (shards, then the index if any), without creating anything.
    public static func layout(out: URL, plan: [TensorPlan], shardSize: Int) -> (shards: [URL], index: URL?) {
        let shards = split(plan, shardSize: shardSize)
        let isFile = !isFolder(out)
        if shards.count == 1 {
            return ([isFile ? out : out.appendingPathComponent(HuggingFaceModel.singleFileName)], nil)
        }
        let folder = isFile ? out.deletingLastPathComponent() : out
        let stem = isFile ? out.deletingPathExtension().lastPathComponent : "model"
        let n = shards.count
        return ((1...n).map { folder.appendingPathComponent(String(format: "%@-%05d-of-%05d.safetensors", stem, $0, n)) },
                folder.appendingPathComponent(stem + ".safetensors.index.json"))
    }

    public init(out: URL, plan: [TensorPlan], metadata: [String: String], shardSize: Int = CheckpointWriter.defaultShardSize,
                protecting inputs: [URL], extraFiles: [(name: String, data: Data)] = [], checkFinite: Bool = true) throws {
        self.checkFinite = checkFinite
        self.plan = plan
        self.metadata = metadata
        self.inputs = inputs
        let isFile = !Self.isFolder(out)
        guard extraFiles.isEmpty || !isFile else {
            throw BasinIOError(.invalidArgument, file: out.path, "config and tokenizer files need a folder output, not a .safetensors file")
        }
        self.extraFiles = extraFiles
        shardPlans = Self.split(plan, shardSize: shardSize)
        let (urls, index) = Self.layout(out: out, plan: plan, shardSize: shardSize)
        shardURLs = urls
        indexURL = index
        folder = isFile ? nil : out
        if !isFile {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: out.path, isDirectory: &isDirectory) {
                guard isDirectory.boolValue else { throw BasinIOError(.writeFailed, file: out.path, "exists and is not a folder") }
                // Weight files of an earlier, differently sharded output would be read along with ours: refuse.
                let ours = Set((urls + (index.map { [$0] } ?? [])).map(\.lastPathComponent))
                let entries = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
                if let stale = entries.sorted().first(where: { ($0.hasSuffix(".safetensors") || $0.hasSuffix(".safetensors.index.json")) && !ours.contains($0) }) {
                    throw BasinIOError(.writeFailed, file: out.appendingPathComponent(stale).path,
                                       "is a weight file this merge would not replace, so the folder would mix two models; remove it or choose another folder")
                }
            } else {
                createdFolder = out
                cleanup.append(CleanupRegistry.register(directory: out.path))
            }
            do { try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true) } catch {
                throw BasinIOError(.writeFailed, file: out.path, "cannot create the output folder (\(error.localizedDescription))")
            }
        }
        let extras = extraFiles.map { out.appendingPathComponent($0.name) }
        outputFiles = shardURLs + extras + (indexURL.map { [$0] } ?? [])
        writers = Array(repeating: nil, count: shardPlans.count)
        digests = Array(repeating: nil, count: shardPlans.count)
        var shardOf: [String: Int] = [:]
        for (i, shard) in shardPlans.enumerated() { for p in shard { shardOf[p.name] = i } }
        self.shardOf = shardOf
        do {
            for url in outputFiles { try OutputGuard.check(output: url, inputs: inputs) }
        } catch {
            removeCreatedFolder()
            throw error
        }
    }

    deinit {
        // Unfinished: the shard writers remove their temporary files as they go; remove the folder we made.
        if !finished { removeCreatedFolder() }
    }

    /// Gives up an unfinished output now: the shard writers' temporary files and the folder this writer made go at
    /// once, not whenever the last reference is dropped (which may be on another thread, after the error is shown).
    public func discard() {
        if !finished { removeCreatedFolder() }
    }

    private func removeCreatedFolder() {
        writers = []
        if let createdFolder { try? FileManager.default.removeItem(at: createdFolder) }
        cleanup.forEach(CleanupRegistry.unregister)
        cleanup = []
    }

    private func writer() throws -> SafeTensorsWriter {
        while current < shardPlans.count && inShard == shardPlans[current].count {
            current += 1
            inShard = 0
        }
        guard current < shardPlans.count else { throw BasinIOError(.writeFailed, file: shardURLs.last!.path, "more tensors than planned") }
        if let w = writers[current] { return w }
        let w = try SafeTensorsWriter(url: shardURLs[current], plan: shardPlans[current], metadata: metadata, protecting: inputs, checkFinite: checkFinite)
        writers[current] = w
        if recordDigests && !metadataReplaced && shardPlans[current].reduce(0, { $0 + $1.byteCount }) >= DigestCache.shared.minimumSize,
           let header = try? SafeTensorsWriter.header(plan: shardPlans[current], metadata: metadata) {
            // The file starts with the header's length (8 bytes, little-endian) and the header, as the writer wrote them.
            var running = FileDigest.Running()
            var length = UInt64(header.count).littleEndian
            withUnsafeBytes(of: &length) { running.update($0) }
            header.withUnsafeBytes { running.update($0) }
            digests[current] = running
        }
        return w
    }

    /// The plan entry the next `write` must deliver.
    public var nextPlanned: TensorPlan? {
        var c = current, s = inShard
        while c < shardPlans.count && s == shardPlans[c].count {
            c += 1
            s = 0
        }
        return c < shardPlans.count ? shardPlans[c][s] : nil
    }

    /// Writes the next planned tensor, encoding it to its planned dtype.
    public func write(_ name: String, _ tensor: Tensor) throws {
        let w = try writer()
        let p = w.plan[inShard]
        guard p.name == name, p.shape == tensor.shape else {
            throw BasinIOError(.writeFailed, file: w.url.path, tensor: name, "arrived out of plan (expected '\(p.name)' \(p.shape), got \(tensor.shape))")
        }
        let n = p.byteCount
        if scratch.count < n { scratch = [UInt8](repeating: 0, count: n) }
        try scratch.withUnsafeMutableBytes { dst in
            tensor.withUnsafeBufferPointer { src in
                if let s = src.baseAddress { DTypeConversion.encode(s, count: src.count, as: p.dtype, into: dst.baseAddress!) }
            }
            let bytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(dst)[0..<n])
            try w.write(name, rawBytes: bytes)
            digests[current]?.update(bytes)
        }
        inShard += 1
    }

    /// Writes the next planned tensor from bytes already in its planned dtype.
    public func write(_ name: String, rawBytes: UnsafeRawBufferPointer) throws {
        let w = try writer()
        try w.write(name, rawBytes: rawBytes)
        digests[current]?.update(rawBytes)
        inShard += 1
    }

    /// Replaces the metadata of every shard (and the index) before `finish`. Values must not make any header longer
    /// than the first one: start with placeholders of the final length.
    public func replaceMetadata(_ metadata: [String: String]) throws {
        self.metadata = metadata
        for w in writers.compactMap({ $0 }) { try w.replaceMetadata(metadata) }
        metadataReplaced = true
        digests = digests.map { _ in nil }
    }

    /// Writes part of a tensor (bytes in its planned dtype) at `offset` within its data, from any thread and in any
    /// order; `finish` checks every tensor was written in full.
    public func write(_ name: String, bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        guard let i = shardOf[name] else {
            throw BasinIOError(.writeFailed, file: shardURLs[0].path, tensor: name, "is not planned for this output")
        }
        lock.lock()
        // Written out of order: this shard's digest cannot be computed as it goes.
        digests[i] = nil
        let w: SafeTensorsWriter
        do {
            if let existing = writers[i] {
                w = existing
            } else {
                w = try SafeTensorsWriter(url: shardURLs[i], plan: shardPlans[i], metadata: metadata, protecting: inputs, checkFinite: checkFinite)
                writers[i] = w
            }
        } catch {
            lock.unlock()
            throw error
        }
        lock.unlock()
        try w.write(name, bytes: bytes, at: offset)
    }

    /// Renames every shard into place, then writes the extra files and the index. If anything fails, removes what was
    /// renamed (and the folder, if this writer made it).
    public func finish(durable: Bool = true) throws {
        // Shards with no tensor yet (empty plan) still get created so the layout is complete.
        for i in writers.indices where writers[i] == nil {
            writers[i] = try SafeTensorsWriter(url: shardURLs[i], plan: shardPlans[i], metadata: metadata, protecting: inputs, checkFinite: checkFinite)
        }
        var renamed: [URL] = []
        do {
            let more = folder != nil || indexURL != nil
            for (i, w) in writers.enumerated() {
                try w!.finish(durable: durable)
                renamed.append(shardURLs[i])
                if more { cleanup.append(CleanupRegistry.register(file: shardURLs[i].path)) }
            }
            if let folder {
                for extra in extraFiles {
                    let url = folder.appendingPathComponent(extra.name)
                    try AtomicFile.write(extra.data, to: url)
                    renamed.append(url)
                    cleanup.append(CleanupRegistry.register(file: url.path))
                }
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
                try AtomicFile.write(data, to: indexURL)
                renamed.append(indexURL)
            }
        } catch {
            for url in renamed { try? FileManager.default.removeItem(at: url) }
            throw error
        }
        writers = []
        finished = true
        cleanup.forEach(CleanupRegistry.unregister)
        cleanup = []
        for (i, digest) in digests.enumerated() {
            if let digest { DigestCache.shared.record(shardURLs[i], digest: digest.hex()) }
        }
    }
}
