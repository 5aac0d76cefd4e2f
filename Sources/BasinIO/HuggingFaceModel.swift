import BasinTensor
import Foundation

/// A Hugging Face model directory, as `save_pretrained(safe_serialization=True)` writes it: `config.json` plus
/// either `model.safetensors` or `model.safetensors.index.json` with its shards. It serves the tensors like the
/// file or index it wraps and keeps `config.json` for callers (the merge writes it to its output; a transformer
/// loader reads the architecture from it).
public final class HuggingFaceModel: TensorSource {
    public static let configName = "config.json"
    public static let singleFileName = "model.safetensors"
    public static let indexName = "model.safetensors.index.json"
    /// Files `mergekit` copies as "the tokenizer" (and Basin with it, from the model `tokenizer_source` names).
    public static let tokenizerFiles = ["tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer.model",
                                       "added_tokens.json", "merges.txt", "vocab.json", "chat_template.jinja", "generation_config.json",
                                       "chat_template.json", "video_preprocessor_config.json"]

    public let directory: URL
    /// The safetensors file or sharded checkpoint holding the weights.
    public let weights: any TensorSource
    /// The bytes of `config.json`, as read when the model was opened.
    public let configData: Data

    public var configURL: URL { directory.appendingPathComponent(Self.configName) }
    public var displayPath: String { directory.path }
    public var names: [String] { weights.names }
    public var metadata: [String: String] { weights.metadata }
    public var files: [URL] { [configURL] + weights.files }

    /// True when `url` is a folder holding `config.json` and a safetensors weight file or index.
    public static func isModelDirectory(_ url: URL) -> Bool {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else { return false }
        let fm = FileManager.default
        return fm.fileExists(atPath: url.appendingPathComponent(configName).path)
            && (fm.fileExists(atPath: url.appendingPathComponent(singleFileName).path)
                || fm.fileExists(atPath: url.appendingPathComponent(indexName).path))
    }

    public init(directory: URL) throws {
        self.directory = directory
        let config = directory.appendingPathComponent(Self.configName)
        // FileCheck.read: a FIFO or device named config.json is refused (it would block), and so is a huge one.
        if case .missing = Platform.fileKind(config.path) {
            throw BasinIOError(.unreadable, file: config.path, "cannot be read: a Hugging Face model folder needs config.json")
        }
        configData = try FileCheck.read(config)
        guard (try? JSONSerialization.jsonObject(with: configData)) is [String: Any] else {
            throw BasinIOError(.badJSON, file: config.path, "is not a JSON object")
        }
        let fm = FileManager.default
        let index = directory.appendingPathComponent(Self.indexName)
        let single = directory.appendingPathComponent(Self.singleFileName)
        if fm.fileExists(atPath: index.path) {
            weights = try ShardedCheckpoint(indexURL: index)
        } else if fm.fileExists(atPath: single.path) {
            weights = try SafeTensorsFile(url: single)
        } else {
            let pickles = ["pytorch_model.bin", "pytorch_model.bin.index.json"].filter { fm.fileExists(atPath: directory.appendingPathComponent($0).path) }
            let hint = pickles.isEmpty ? "" : " (it has \(pickles.joined(separator: ", ")): PyTorch pickles are not read; convert them with safetensors' convert script)"
            throw BasinIOError(.unreadable, file: directory.path, "has config.json but neither \(Self.singleFileName) nor \(Self.indexName)\(hint)")
        }
    }

    /// `config.json` parsed (a fresh dictionary each call).
    public func config() -> [String: Any] {
        ((try? JSONSerialization.jsonObject(with: configData)) as? [String: Any]) ?? [:]
    }

    /// `config.json`'s `architectures[0]` (e.g. "LlamaForCausalLM"), if present.
    public var architecture: String? { (config()["architectures"] as? [String])?.first }

    /// The number of transformer layers `config.json` declares (num_hidden_layers, n_layer or num_layers).
    public var declaredLayerCount: Int? {
        let c = config()
        for key in ["num_hidden_layers", "n_layer", "num_layers"] {
            if let n = c[key] as? Int { return n }
        }
        return nil
    }

    /// The tokenizer files present in the folder.
    public var tokenizerFileURLs: [URL] {
        Self.tokenizerFiles.map { directory.appendingPathComponent($0) }.filter { FileManager.default.fileExists(atPath: $0.path) }
    }

    public func info(_ name: String) -> TensorInfo? { weights.info(name) }
    public func tensor(_ name: String) throws -> Tensor { try weights.tensor(name) }
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try weights.withRawBytes(name, body)
    }
    public func release(_ name: String) { weights.release(name) }
    public func release(_ name: String, bytes: Range<Int>) { weights.release(name, bytes: bytes) }
}
