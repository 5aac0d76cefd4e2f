import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// What a streaming merge did.
public struct MergeReport: Sendable, Codable {
    public var tensors: Int
    public var inputBytes: Int
    public var outputBytes: Int
    /// Wall time of the whole run (merge, write, sync, digests).
    public var seconds: Double
    /// CPU seconds spent hashing the inputs (overlapped with the merge).
    public var hashSeconds: Double
    public var outputFiles: [String]
    /// Tensors merged by the chunked streaming kernels (the rest were decoded whole).
    public var streamedTensors: Int
}

/// How to run a plan.
public struct MergeRunOptions: Sendable {
    public var shardSize: Int = CheckpointWriter.defaultShardSize
    /// Record each input's SHA-256 in the output's metadata (hashed on a background thread while merging).
    public var hashInputs = true
    /// Merge inputs holding NaN or infinite values instead of refusing them.
    public var allowNonFinite = false
    /// Folder outputs: copy the tokenizer files of `tokenizer_source` (else the donor model), as mergekit does.
    public var copyTokenizer = true
    /// Folder outputs: write mergekit's `mergekit_config.yml` and `README.md` model card beside the weights (ModelCard).
    /// `basin merge` turns it on, as mergekit-yaml's `write_model_card` default; off for library callers.
    public var writeModelCard = false
    /// Threads computing (and writing) each tensor.
    public var threads = max(1, min(4, ProcessInfo.processInfo.activeProcessorCount))
    /// Flush the output to disk before renaming it into place (fsync). Off by default, as for `cp`, mergekit and
    /// `save_pretrained`: the output is complete and atomic either way; only a crash of the machine right after the
    /// merge could then lose it.
    public var sync = false
    public var extraMetadata: [String: String] = [:]
    public init() {}
}

/// Runs a plan tensor by tensor into a safetensors file, a sharded file or a Hugging Face folder. Each tensor is split
/// across threads that read, merge and write their ranges themselves (pwrite into the output file), so reading,
/// computing and writing overlap on every core; the inputs are hashed on another thread meanwhile. Input pages are
/// released as they are consumed, so memory stays flat whatever the model's size (tensors of methods without a
/// streaming kernel are decoded whole).
public enum MergeExecutor {
    public static func run(_ plan: MergePlan, out: URL, shardSize: Int = CheckpointWriter.defaultShardSize,
                           hashInputs: Bool = true, extraMetadata: [String: String] = [:],
                           progress: ((Int, Int) -> Void)? = nil) throws -> MergeReport {
        var options = MergeRunOptions()
        options.shardSize = shardSize
        options.hashInputs = hashInputs
        options.extraMetadata = extraMetadata
        return try run(plan, out: out, options: options, progress: progress)
    }

    public static func run(_ plan: MergePlan, out: URL, options: MergeRunOptions, progress: ((Int, Int) -> Void)? = nil) throws -> MergeReport {
        guard !plan.recipe.method.needsData else {
            throw MergeError(.methodFailed, file: plan.recipe.file, key: "merge_method",
                             "\(plan.recipe.method.rawValue) needs data and a network: it runs in memory (MergeExport.dataAwareMerge), not streamed")
        }
        let start = Benchmarks.now()
        let extras = try extraFiles(plan, out: out, options: options)
        var meta = plan.metadata()
        meta.merge(options.extraMetadata) { _, new in new }
        // Digests are computed while merging; the header starts with placeholders of the same length.
        let hasher = options.hashInputs ? InputHasher(plan) : nil
        if let hasher { meta[InputHasher.metadataKey] = hasher.placeholder }
        let writer: CheckpointWriter
        do {
            writer = try CheckpointWriter(out: out, plan: plan.tensorPlans, metadata: meta, shardSize: options.shardSize,
                                          protecting: plan.inputFiles, extraFiles: extras, checkFinite: !options.allowNonFinite)
        } catch let e as BasinIOError {
            throw MergeError(.output, file: e.file, e.problem)
        }
        hasher?.start()
        var inputBytes = 0, streamed = 0
        do {
            for (i, entry) in plan.entries.enumerated() {
                inputBytes += plan.inputBytes(entry)
                try compute(entry, plan: plan, options: options, writer: writer, streamed: &streamed)
                for s in entry.allSources { plan.sources[s.model].release(s.tensor) }
                progress?(i + 1, plan.entries.count)
            }
            if let hasher {
                meta[InputHasher.metadataKey] = try hasher.wait()
                try writer.replaceMetadata(meta)
            }
            try writer.finish(durable: options.sync)
        } catch {
            hasher?.cancel()
            writer.discard()
            if let e = error as? BasinIOError, e.kind == .writeFailed { throw MergeError(.output, file: e.file, tensor: e.tensor, e.problem) }
            throw error
        }
        return MergeReport(tensors: plan.entries.count, inputBytes: inputBytes, outputBytes: plan.outputBytes,
                           seconds: Benchmarks.now() - start, hashSeconds: hasher?.seconds ?? 0,
                           outputFiles: writer.outputFiles.map(\.path), streamedTensors: streamed)
    }

    /// Peak resident memory a run will need, estimated from the largest tensor: its output buffer and the queue of
    /// buffers waiting to be written, its input pages (mapped until released), and either the streaming kernels'
    /// chunk buffers or, for methods decoded whole, Float32 copies of every input, the base, the task vectors and
    /// the result.
    public static func estimatedPeakBytes(_ plan: MergePlan, options: MergeRunOptions) -> Int {
        // Per thread: Float32 chunk buffers (counted per source below) and the encoded output gathered before writing.
        let chunkBytes = options.threads * StreamingKernels.chunk * 4
        let outputBytes = options.threads * StreamingKernels.Job.OutputStream.capacity * 8
        var worst = 0, largestOutput = 0
        for e in plan.entries {
            let n = Tensor.elementCount(e.shape)
            let outBytes = n * e.outputDType.byteSize
            largestOutput = max(largestOutput, outBytes)
            let k = e.allSources.count
            var work: Int
            if !e.isFloatingPoint {
                work = 0
            } else if StreamingKernels.canStream(e, method: plan.recipe.method) {
                // Histograms of the TIES threshold passes, counted four ways: up to 4 x (128 KB + 16 x 256 KB) per model and thread.
                work = chunkBytes * (k + 6) + (plan.recipe.method == .ties ? options.threads * e.inputs.count * (72 << 18) : 0)
            } else {
                work = n * 4 * (k + 2 + (plan.recipe.method.isTaskArithmeticFamily ? e.inputs.count + 3 : 1))
            }
            // Streamed tensors let go of their input pages as they go; whole-tensor ones hold them until done.
            let pages = StreamingKernels.canStream(e, method: plan.recipe.method) ? options.threads * (StreamingKernels.Job.releaseStride * 8) : plan.inputBytes(e)
            // Streamed tensors go to the file range by range; whole-tensor ones are encoded into one buffer first.
            worst = max(worst, work + pages + (StreamingKernels.canStream(e, method: plan.recipe.method) ? 0 : outBytes))
        }
        _ = largestOutput
        let baseline = 40 << 20  // the process itself: code, Foundation, headers, plan
        return baseline + outputBytes + worst
    }

    /// Computes one output tensor and writes it, encoded in its output dtype.
    static func compute(_ e: MergePlan.Entry, plan: MergePlan, options: MergeRunOptions, writer: CheckpointWriter, streamed: inout Int) throws {
        if !e.isFloatingPoint {
            let s = e.base ?? e.inputs[0]
            try plan.sources[s.model].withRawBytes(s.tensor) { try writer.write(e.name, bytes: $0, at: 0) }
            return
        }
        if try StreamingKernels.run(e, plan: plan, writer: writer, threads: options.threads, allowNonFinite: options.allowNonFinite) {
            streamed += 1
            return
        }
        let inputs = try e.inputs.map { try load($0, plan: plan, allowNonFinite: options.allowNonFinite) }
        let base = try e.base.map { try load($0, plan: plan, allowNonFinite: options.allowNonFinite) }
        let merged = try TensorMerge.merge(plan.recipe.method, name: e.name, inputs: inputs, base: base, parameters: e.parameters)
        let bytes = merged.encoded(as: e.outputDType)
        try bytes.withUnsafeBytes { raw in
            // The writer's own check is skipped by range writes: refuse NaN/Inf here (an overflow, F16's range, a
            // degenerate nuslerp) unless allowed.
            if !options.allowNonFinite, let p = raw.baseAddress {
                let bad = StreamingKernels.nonFiniteCount(p, count: raw.count / e.outputDType.byteSize, dtype: e.outputDType)
                if bad > 0 {
                    throw MergeError(.nonFinite, tensor: e.name,
                                     "merges into \(bad) NaN or infinite value\(bad == 1 ? "" : "s") (\(e.outputDType.rawValue)) from finite inputs; refusing to write them (pass --allow-nonfinite to write anyway)")
                }
            }
            try writer.write(e.name, bytes: raw, at: 0)
        }
    }

    static func load(_ s: MergePlan.Source, plan: MergePlan, allowNonFinite: Bool) throws -> Tensor {
        let t = try plan.sources[s.model].tensor(s.tensor)
        if !allowNonFinite {
            let bad = t.withUnsafeBufferPointer { DTypeConversion.nonFiniteCount($0.baseAddress!, count: $0.count) }
            if bad > 0 { throw nonFinite(plan, s, bad) }
        }
        return t
    }

    static func nonFinite(_ plan: MergePlan, _ s: MergePlan.Source, _ count: Int) -> MergeError {
        MergeError(.nonFinite, file: plan.sources[s.model].displayPath, tensor: s.tensor,
                   "holds \(count) NaN or infinite value\(count == 1 ? "" : "s"); refusing to merge them (pass --allow-nonfinite to merge anyway)")
    }

    // MARK: Hugging Face folder outputs

    /// Everything a folder output gets beside the weights: the donor's files, then the model card if asked for.
    static func extraFiles(_ plan: MergePlan, out: URL, options: MergeRunOptions) throws -> [(name: String, data: Data)] {
        let card = options.writeModelCard && CheckpointWriter.isFolder(out) ? ModelCard.files(plan.recipe, out: out) : []
        return try donorFiles(plan, out: out, copyTokenizer: options.copyTokenizer) + card
    }

    /// config.json (the donor's, with the output dtype and layer count) and the tokenizer files, for folder outputs.
    static func donorFiles(_ plan: MergePlan, out: URL, copyTokenizer: Bool) throws -> [(name: String, data: Data)] {
        guard CheckpointWriter.isFolder(out) else {
            // tokenizer_source asks for a tokenizer a .safetensors file cannot hold (base as much as a named model).
            if plan.recipe.tokenizerSource != nil {
                throw MergeError(.output, file: out.path, key: "tokenizer_source", "tokenizer files need a folder output, not a .safetensors file")
            }
            return []
        }
        var files: [(name: String, data: Data)] = []
        let donor = plan.donor.flatMap { plan.sources[$0] as? HuggingFaceModel }
        // A base (or first model) named by its .safetensors file has no config.json; the folder output then takes
        // the first Hugging Face folder's among the inputs (they share the architecture), so it is still a model
        // folder. The tokenizer still comes only from the donor (tokenizer_source: base means the base's).
        if let configDonor = donor ?? plan.sources.lazy.compactMap({ $0 as? HuggingFaceModel }).first {
            var config = configDonor.config()
            if let d = plan.recipe.outputDType {
                let name = MergeRecipe.mergekitName(d)
                if config["torch_dtype"] != nil { config["torch_dtype"] = name }
                config["dtype"] = name
            }
            if let layers = plan.outputLayerCount {
                let key = ["num_hidden_layers", "n_layer", "num_layers"].first { config[$0] != nil } ?? "num_hidden_layers"
                config[key] = layers
            }
            // As save_pretrained writes it (floats stay floats: Foundation's writer made 0.0 and 10000.0 integers).
            files.append((HuggingFaceModel.configName, ConfigJSON.encode(config)))
        }
        var tokenizerModel: HuggingFaceModel?
        switch plan.recipe.tokenizerSource {
        case .base?, nil:
            tokenizerModel = copyTokenizer || plan.recipe.tokenizerSource != nil ? donor : nil
        case let .model(path)?:
            let url = try plan.recipe.locate(path, key: "tokenizer_source")
            guard HuggingFaceModel.isModelDirectory(url) || FileManager.default.fileExists(atPath: url.appendingPathComponent("tokenizer_config.json").path) else {
                throw MergeError(.missingModel, file: plan.recipe.file, key: "tokenizer_source", "'\(path)' is not a model folder with tokenizer files")
            }
            let found = HuggingFaceModel.tokenizerFiles.filter { FileManager.default.fileExists(atPath: url.appendingPathComponent($0).path) }
            guard !found.isEmpty else { throw MergeError(.missingModel, file: plan.recipe.file, key: "tokenizer_source", "'\(path)' holds no tokenizer files") }
            try checkSharedVocabulary(plan, source: url)
            for f in found { files.append((f, try FileCheck.read(url.appendingPathComponent(f)))) }
            return files
        }
        if let tokenizerModel {
            let found = tokenizerModel.tokenizerFileURLs
            if found.isEmpty && plan.recipe.tokenizerSource == .base {
                throw MergeError(.missingModel, file: plan.recipe.file, key: "tokenizer_source", "the base model \(tokenizerModel.displayPath) holds no tokenizer files")
            }
            if plan.recipe.tokenizerSource == .base { try checkSharedVocabulary(plan, source: tokenizerModel.directory) }
            // FileCheck.read: a FIFO or device among the tokenizer files is refused by name instead of blocking.
            for url in found { files.append((url.lastPathComponent, try FileCheck.read(url))) }
        } else if plan.recipe.tokenizerSource == .base {
            throw MergeError(.missingModel, file: plan.recipe.file, key: "tokenizer_source", "the base model is not a Hugging Face folder, so it has no tokenizer to copy")
        }
        return files
    }

    // MARK: tokenizer_source

    /// `tokenizer_source` copies one model's tokenizer; mergekit also permutes every model's embedding and LM-head
    /// rows into that tokenizer's numbering (its `union` path and its model/base path alike). Basin copies only, so a
    /// model whose own tokenizer numbers the tokens differently would be merged row by row with the wrong tokens,
    /// silently: that is refused, naming both models and a token whose id differs. Models without tokenizer files
    /// are taken to share the source's numbering, as mergekit assumes.
    static func checkSharedVocabulary(_ plan: MergePlan, source: URL) throws {
        guard let reference = try vocabulary(source) else { return }
        let sourcePath = source.resolvingSymlinksInPath().standardizedFileURL.path
        for (label, s) in zip(plan.labels, plan.sources) {
            guard let hf = s as? HuggingFaceModel, hf.directory.resolvingSymlinksInPath().standardizedFileURL.path != sourcePath,
                  let theirs = try vocabulary(hf.directory), theirs != reference else { continue }
            let example: String
            if let (token, id) = reference.sorted(by: { $0.value < $1.value }).first(where: { theirs[$0.key] != $0.value }) {
                example = "token \(quoted(token)) is id \(id) there but \(theirs[token].map { "id \($0)" } ?? "absent") in '\(label)'"
            } else {
                example = "'\(label)' has \(theirs.count) tokens, \(reference.count) there"
            }
            throw MergeError(.incompatibleModels, file: plan.recipe.file, key: "tokenizer_source",
                             "the tokenizer of '\(label)' numbers its tokens differently from \(source.path)'s (\(example)); mergekit would permute the embedding rows into one vocabulary, which Basin does not do: merge models that share a tokenizer")
        }
    }

    /// The token -> id map of a model folder's tokenizer: tokenizer.json's `model.vocab` (a mapping for BPE and
    /// WordPiece, a list of [piece, score] for Unigram) with its `added_tokens`, else vocab.json with
    /// added_tokens.json. nil when the folder has neither, or when they hold no vocabulary Basin can read.
    static func vocabulary(_ folder: URL) throws -> [String: Int]? {
        func ids(_ object: Any?) -> [String: Int] {
            guard let d = object as? [String: Any] else { return [:] }
            var out: [String: Int] = [:]
            for (k, v) in d { if let n = v as? NSNumber { out[k] = n.intValue } }
            return out
        }
        let fm = FileManager.default
        let tokenizer = folder.appendingPathComponent("tokenizer.json")
        if fm.fileExists(atPath: tokenizer.path) {
            guard let root = try? JSONSerialization.jsonObject(with: FileCheck.read(tokenizer)) as? [String: Any] else { return nil }
            var map: [String: Int] = [:]
            let model = root["model"] as? [String: Any]
            if let list = model?["vocab"] as? [Any] {
                for (i, entry) in list.enumerated() { if let piece = (entry as? [Any])?.first as? String { map[piece] = i } }
            } else {
                map = ids(model?["vocab"])
            }
            for case let token as [String: Any] in root["added_tokens"] as? [Any] ?? [] {
                if let content = token["content"] as? String, let id = token["id"] as? NSNumber { map[content] = id.intValue }
            }
            return map.isEmpty ? nil : map
        }
        let vocab = folder.appendingPathComponent("vocab.json")
        guard fm.fileExists(atPath: vocab.path) else { return nil }
        var map = ids(try? JSONSerialization.jsonObject(with: FileCheck.read(vocab)))
        let added = folder.appendingPathComponent("added_tokens.json")
        if fm.fileExists(atPath: added.path) {
            map.merge(ids(try? JSONSerialization.jsonObject(with: FileCheck.read(added)))) { _, new in new }
        }
        return map.isEmpty ? nil : map
    }

    static func quoted(_ token: String) -> String {
        let shown = token.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? String(format: "\\u{%x}", $0.value) : String($0) }.joined()
        return "'" + (shown.count > 40 ? String(shown.prefix(40)) + "…" : shown) + "'"
    }
}

/// SHA-256 of every input on a background thread (the files are in the page cache once the merge has read them).
final class InputHasher: @unchecked Sendable {
    static let metadataKey = "basin.inputs_sha256"
    private let jobs: [(label: String, source: any TensorSource)]
    private let condition = NSCondition()
    private var result: Result<String, Error>?
    private var cancelled = false
    private(set) var seconds = 0.0

    init(_ plan: MergePlan) {
        jobs = zip(plan.labels, plan.sources).filter { !$0.1.files.isEmpty }.map { ($0.0, $0.1) }
    }

    /// A JSON object of the same length as the final one, to reserve room in the headers.
    var placeholder: String { Self.encode(Dictionary(jobs.map { ($0.label, String(repeating: "0", count: 64)) }, uniquingKeysWith: { a, _ in a })) }

    static func encode(_ digests: [String: String]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: digests, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    func start() {
        let t = Thread { [self] in
            let t0 = Benchmarks.now()
            var digests: [String: String] = [:]
            do {
                // Every input file (each shard) hashed on its own thread, as many at once as there are cores: one
                // thread hashing several GB in turn was the merge's critical path.
                let files = jobs.flatMap { $0.source.files.filter { $0.pathExtension == "safetensors" } }
                let fileDigests = ConcurrentSlots<Result<String, Error>>(count: files.count)
                let list = files
                DispatchQueue.concurrentPerform(iterations: list.count) { i in
                    condition.lock()
                    let stop = cancelled
                    condition.unlock()
                    if stop { return }
                    fileDigests.set(i, Result { try DigestCache.shared.sha256(list[i]) })
                }
                condition.lock()
                let stop = cancelled
                condition.unlock()
                if !stop {
                    var byPath: [String: String] = [:]
                    for (i, f) in files.enumerated() { byPath[f.path] = try fileDigests.digest(i) }
                    for job in jobs {
                        digests[job.label] = try FileDigest.sha256(of: job.source, fileDigest: { url in
                            if let d = byPath[url.path] { return d }
                            return try DigestCache.shared.sha256(url)
                        })
                    }
                }
                finish(.success(Self.encode(digests)), t0)
            } catch {
                finish(.failure(error), t0)
            }
        }
        t.name = "basin-merge-hash"
        t.start()
    }

    private func finish(_ r: Result<String, Error>, _ t0: Double) {
        condition.lock()
        seconds = Benchmarks.now() - t0
        result = r
        condition.broadcast()
        condition.unlock()
    }

    func wait() throws -> String {
        condition.lock()
        while result == nil { condition.wait() }
        let r = result!
        condition.unlock()
        return try r.get()
    }

    func cancel() {
        condition.lock()
        cancelled = true
        while result == nil { condition.wait() }
        condition.unlock()
    }
}

/// SHA-256 digests of files remembered between runs, so merging the same checkpoints again (the hand-tuning loop)
/// never hashes gigabytes again. An entry is keyed by the file's device and inode and holds its size, modification
/// and status-change times in nanoseconds (as git's index remembers file states): writing the file in place, or
/// replacing it, changes one of them and the file is hashed again. Files Basin writes in order (the checkpoint
/// writer sees every byte) are recorded as they are finished, so they are never hashed at all.
///
/// Stored in `$BASIN_DIGEST_CACHE`, else `$XDG_CACHE_HOME/basin/sha256.json`, else `~/.cache/basin/sha256.json`
/// (`BASIN_DIGEST_CACHE=off` turns it off); nothing is ever written beside the inputs. A cache that cannot be read,
/// is not JSON, or holds entries of the wrong form is ignored entry by entry and rewritten on the next store; a cache
/// that cannot be written is simply not kept.
final class DigestCache: @unchecked Sendable {
    /// The cache the environment names (looked up at each use, so a program may set it before merging).
    static let shared = DigestCache(url: nil, fromEnvironment: true)
    private let lock = NSLock()
    private let fixed: URL?
    private let fromEnvironment: Bool
    /// Smaller files are hashed every time (a few milliseconds) and never stored, so the cache holds only
    /// checkpoints and stays small (tests writing thousands of tiny files leave nothing in it).
    let minimumSize: Int

    init(url: URL?, fromEnvironment: Bool = false, minimumSize: Int = 16 << 20) {
        fixed = url
        self.fromEnvironment = fromEnvironment
        self.minimumSize = minimumSize
    }

    var url: URL? { fromEnvironment ? Self.defaultLocation() : fixed }

    static func defaultLocation() -> URL? {
        let env = ProcessInfo.processInfo.environment
        if let p = env["BASIN_DIGEST_CACHE"] { return p == "off" || p.isEmpty ? nil : URL(fileURLWithPath: p) }
        if let x = env["XDG_CACHE_HOME"], !x.isEmpty { return URL(fileURLWithPath: x).appendingPathComponent("basin/sha256.json") }
        guard let home = env["HOME"], !home.isEmpty else { return nil }
        return URL(fileURLWithPath: home).appendingPathComponent(".cache/basin/sha256.json")
    }

    /// The file's identity (device, inode) and state (size, modification and status-change times in ns).
    static func stamp(_ file: URL) -> (key: String, state: String, size: Int)? {
        var st = stat()
        guard stat(file.path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        let ctime = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
        return ("\(st.st_dev):\(st.st_ino)", "\(st.st_size):\(mtime):\(ctime)", Int(st.st_size))
    }

    static func isDigest(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The remembered digest of `file`, if its state is unchanged since it was recorded.
    func cached(_ file: URL) -> String? {
        guard url != nil, let stamp = Self.stamp(file), stamp.size >= minimumSize else { return nil }
        lock.lock()
        let known = load()[stamp.key]
        lock.unlock()
        guard let known, known["state"] == stamp.state, let digest = known["sha256"], Self.isDigest(digest) else { return nil }
        return digest
    }

    func sha256(_ file: URL) throws -> String {
        if let digest = cached(file) { return digest }
        guard url != nil, let before = Self.stamp(file), before.size >= minimumSize else { return try FileDigest.sha256(file) }
        let digest = try FileDigest.sha256(file)
        // Remembered only if the file did not change while it was hashed.
        if let after = Self.stamp(file), after.key == before.key, after.state == before.state { store(file, digest: digest, stamp: after) }
        return digest
    }

    /// Records the digest of a file this process has just written in full (its current state).
    func record(_ file: URL, digest: String) {
        guard url != nil, let stamp = Self.stamp(file), stamp.size >= minimumSize else { return }
        store(file, digest: digest, stamp: stamp)
    }

    private func store(_ file: URL, digest: String, stamp: (key: String, state: String, size: Int)) {
        guard let url else { return }
        lock.lock()
        defer { lock.unlock() }
        var all = load()
        all[stamp.key] = ["state": stamp.state, "sha256": digest, "path": file.path]
        if all.count > 1_000 {
            // Forget files that are gone or have changed since.
            all = all.filter { key, entry in entry["path"].flatMap { Self.stamp(URL(fileURLWithPath: $0)) }.map { $0.key == key && $0.state == entry["state"] } ?? false }
        }
        if let data = try? JSONSerialization.data(withJSONObject: all, options: [.sortedKeys]) {
            try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? data.write(to: url, options: .atomic)
        }
    }

    /// The entries of the cache file; anything unreadable or of the wrong form is left out (and so rebuilt).
    private func load() -> [String: [String: String]] {
        // A regular file of sane size only (a FIFO or device put there must not block or flood the merge).
        var st = stat()
        guard let url, stat(url.path, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size < 64 << 20,
              let data = try? Data(contentsOf: url),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
        var entries: [String: [String: String]] = [:]
        for (key, value) in object {
            guard let entry = value as? [String: String], entry["state"] != nil, let d = entry["sha256"], Self.isDigest(d) else { continue }
            entries[key] = entry
        }
        return entries
    }
}

/// The digest cache for tests (a private location).
package struct DigestCacheProbe {
    let cache: DigestCache
    package init(url: URL, minimumSize: Int = 0) { cache = DigestCache(url: url, minimumSize: minimumSize) }
    package func record(_ file: URL, digest: String) { cache.record(file, digest: digest) }
    package func sha256(_ file: URL) throws -> String { try cache.sha256(file) }
    package func cached(_ file: URL) -> String? { cache.cached(file) }
}
