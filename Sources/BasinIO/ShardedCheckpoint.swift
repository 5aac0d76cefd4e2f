import BasinTensor
import Foundation

/// A checkpoint split over several safetensors files, read through its `*.safetensors.index.json`
/// (`{"metadata": {...}, "weight_map": {"tensor name": "shard file name", ...}}`) as one model.
public final class ShardedCheckpoint: TensorSource, Sendable {
    public let indexURL: URL
    public let names: [String]
    public let metadata: [String: String]
    public let shards: [SafeTensorsFile]
    private let shardOf: [String: Int]

    public var displayPath: String { indexURL.path }
    public var files: [URL] { [indexURL] + shards.map(\.url) }

    /// An index's contents: its metadata and which shard (a path relative to the index's folder) holds each tensor.
    public struct Index: Sendable, Equatable {
        public var metadata: [String: String]
        public var weightMap: [String: String]
    }

    /// Parses index JSON. Every shard path must stay inside the index's folder: no absolute paths, no `..`.
    public static func parseIndex(_ data: Data, file: String) throws -> Index {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw BasinIOError(.badIndex, file: file, "is not a JSON object (expected {\"metadata\": ..., \"weight_map\": ...})")
        }
        guard let weightMap = object["weight_map"] as? [String: Any] else {
            throw BasinIOError(.badIndex, file: file, "has no \"weight_map\" object mapping tensor names to shard files")
        }
        var meta: [String: String] = [:]
        if let m = object["metadata"] as? [String: Any] {
            for (k, v) in m { meta[k] = (v as? String) ?? "\(v)" }
        }
        var assigned: [String: String] = [:]
        for (name, value) in weightMap {
            guard let shard = value as? String else {
                throw BasinIOError(.badIndex, file: file, tensor: name, "weight_map entry is not a file name")
            }
            // On bytes, as the file system sees the path: Swift compares Strings by grapheme cluster, so a
            // combining mark after a slash ("../\u{301}x") hid the slash from `split` and `hasPrefix` and let the
            // shard escape the folder.
            let slash = UInt8(ascii: "/")
            let parts = shard.utf8.split(separator: slash, omittingEmptySubsequences: false)
            let dot = UInt8(ascii: ".")
            guard !shard.isEmpty, !shard.isAbsolutePath, !shard.utf8.contains(0),
                  !parts.contains(where: { $0.isEmpty || $0.elementsEqual([dot]) || $0.elementsEqual([dot, dot]) }) else {
                throw BasinIOError(.shardOutsideFolder, file: file, tensor: name,
                                   "shard \"\(shard)\" must be a file name (or relative path) inside the index's folder: no absolute paths, no '..'")
            }
            assigned[name] = shard
        }
        return Index(metadata: meta, weightMap: assigned)
    }

    public init(indexURL: URL) throws {
        self.indexURL = indexURL
        let file = indexURL.path
        let index = try ShardedCheckpoint.parseIndex(FileCheck.read(indexURL), file: file)
        let meta = index.metadata
        let assigned = index.weightMap
        let folder = indexURL.deletingLastPathComponent()
        var shardFiles: [String] = []
        var shardIndexByFile: [String: Int] = [:]
        for shard in assigned.values.sorted() where shardIndexByFile[shard] == nil {
            shardIndexByFile[shard] = shardFiles.count
            shardFiles.append(shard)
        }
        shardFiles.sort()
        var opened: [SafeTensorsFile] = []
        for shard in shardFiles {
            let url = folder.appendingPathComponent(shard)
            guard Platform.fileKind(url.path) != .missing else {
                let example = assigned.filter { $0.value == shard }.keys.min()
                throw BasinIOError(.missingShard, file: file, tensor: example,
                                   "shard \"\(shard)\" named in weight_map does not exist at \(url.path)")
            }
            opened.append(try SafeTensorsFile(url: url))
        }
        shards = opened
        var shardOf: [String: Int] = [:]
        for (i, shard) in opened.enumerated() {
            for name in shard.names {
                if let other = shardOf[name] {
                    throw BasinIOError(.duplicateTensor, file: file, tensor: name,
                                       "is stored in both \(opened[other].url.lastPathComponent) and \(shard.url.lastPathComponent)")
                }
                shardOf[name] = i
            }
        }
        for (name, shard) in assigned.sorted(by: { $0.key < $1.key }) {
            guard let i = shardOf[name], opened[i].url.lastPathComponent == (shard as NSString).lastPathComponent else {
                throw BasinIOError(.shardMissingTensor, file: file, tensor: name,
                                   "weight_map puts it in \"\(shard)\", which does not hold it")
            }
        }
        self.shardOf = shardOf
        // Storage order: shard by shard, each in its own storage order.
        names = opened.flatMap(\.names)
        metadata = meta
    }

    public func info(_ name: String) -> TensorInfo? {
        shardOf[name].flatMap { shards[$0].info(name) }
    }

    public func tensor(_ name: String) throws -> Tensor {
        guard let i = shardOf[name] else { throw missing(name) }
        return try shards[i].tensor(name)
    }

    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard let i = shardOf[name] else { throw missing(name) }
        return try shards[i].withRawBytes(name, body)
    }

    public func release(_ name: String) {
        if let i = shardOf[name] { shards[i].release(name) }
    }

    public func release(_ name: String, bytes: Range<Int>) {
        if let i = shardOf[name] { shards[i].release(name, bytes: bytes) }
    }
}

/// Opens a model file: a `.safetensors` file, a `*.safetensors.index.json`, an `.onnx` graph (its initializers are
/// the weights), a Hugging Face model folder (`config.json` + `model.safetensors` or its index), or another folder
/// holding exactly one index (or exactly one safetensors file).
public enum ModelFile {
    public static func open(_ path: String) throws -> any TensorSource {
        try open(URL(fileURLWithPath: path))
    }

    public static func open(_ url: URL) throws -> any TensorSource {
        try FileCheck.input(url.path, folderAllowed: true)
        if case .directory = Platform.fileKind(url.path) {
            if HuggingFaceModel.isModelDirectory(url) { return try HuggingFaceModel(directory: url) }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
            let indexes = entries.filter { $0.hasSuffix(".index.json") }
            if indexes.count == 1 { return try ShardedCheckpoint(indexURL: url.appendingPathComponent(indexes[0])) }
            let files = entries.filter { $0.hasSuffix(".safetensors") }
            if indexes.isEmpty, files.count == 1 { return try SafeTensorsFile(url: url.appendingPathComponent(files[0])) }
            // config.json without weights Basin reads: a Hugging Face folder's own error says what is there instead
            // (pytorch_model.bin, with the hint to convert it), not "0 index files and 0 safetensors files".
            if indexes.isEmpty, files.isEmpty, entries.contains(HuggingFaceModel.configName) { return try HuggingFaceModel(directory: url) }
            throw BasinIOError(.unreadable, file: url.path,
                               "is a folder with \(indexes.count) index files and \(files.count) safetensors files; name the file to open")
        }
        if url.lastPathComponent.hasSuffix(".json") { return try ShardedCheckpoint(indexURL: url) }
        if url.pathExtension.lowercased() == "onnx" { return try ONNXModel(url: url) }
        return try SafeTensorsFile(url: url)
    }
}
