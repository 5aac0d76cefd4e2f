import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// The readers that take files from users, each as a function of raw bytes that must either succeed or throw
/// a typed error — never trap, hang or run away with memory. libFuzzer drives them (`basin-fuzz`, built
/// with -sanitize=fuzzer by .ci/run); the committed corpus (Tests/FuzzCorpus) is replayed by the tests.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// A safetensors file: header, every tensor decoded, integer and double views.
    case safetensors
    /// A sharded checkpoint's `*.safetensors.index.json`.
    case index
    /// A data set file (x and y).
    case data
    /// A merge recipe (YAML).
    case recipe
    /// An architecture file (JSON).
    case arch
    /// An ONNX model (protobuf): graph, attributes, initializers served as tensors, and the graph converted to
    /// an architecture.
    case onnx
    /// A Hugging Face `config.json` (GPT-2 / LLaMA family) and the transformer graph built from it.
    case config

    /// Runs one input. Errors are the expected outcome for hostile bytes and are swallowed; anything else
    /// (a trap) is what the fuzzer looks for.
    public func run(_ bytes: UnsafeRawBufferPointer) {
        let name = URL(fileURLWithPath: "/fuzz/input")
        switch self {
        case .safetensors:
            guard let file = try? SafeTensorsFile(bytes: bytes, url: name) else { return }
            _ = file.metadata
            for n in file.names {
                guard let info = file.info(n), info.elementCount <= 1 << 20 else { continue }
                _ = try? file.tensor(n)
                if info.dtype.isFloatingPoint {
                    _ = try? file.withRawBytes(n) { NonFinite.count($0, dtype: info.dtype) }
                } else {
                    _ = try? file.integers(n)
                }
                _ = try? file.doubles(n)
            }
        case .index:
            guard let index = try? ShardedCheckpoint.parseIndex(Data(bytes), file: name.path) else { return }
            for shard in index.weightMap.values {
                // What the reader does with a shard path: it must stay inside the index's folder.
                let url = name.deletingLastPathComponent().appendingPathComponent(shard).standardizedFileURL
                precondition(url.path.hasPrefix(name.deletingLastPathComponent().path + "/"), "shard \(shard) escapes the folder")
            }
        case .data:
            guard let file = try? SafeTensorsFile(bytes: bytes, url: name), file.info("x").map({ $0.elementCount <= 1 << 20 }) ?? true,
                  let data = try? Dataset(file: file) else { return }
            _ = data.classCount
            _ = data.slice(0..<min(1, data.count))
        case .recipe:
            guard let text = String(validating: bytes, as: UTF8.self) else { return }
            _ = try? MergeRecipe.parse(text, directory: URL(fileURLWithPath: "/fuzz"), file: name.path)
        case .arch:
            guard let file = try? JSONDecoder().decode(ArchitectureFile.self, from: Data(bytes)) else { return }
            _ = try? file.architecture(path: name.path)
        case .onnx:
            guard let model = try? ONNXModel(bytes: Data(bytes), url: name) else { return }
            for n in model.names {
                guard let info = model.info(n), info.elementCount <= 1 << 20 else { continue }
                _ = try? model.tensor(n)
            }
            _ = try? ONNXArchitecture.architecture(from: model)
        case .config:
            guard let config = try? TransformerConfig(data: Data(bytes), file: name.path) else { return }
            let built = TransformerArchitecture(config: config)
            _ = built.architecture.nodes.count
        }
    }
}
