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
                precondition(url.path.hasPathPrefix(name.deletingLastPathComponent().path + "/"), "shard \(shard) escapes the folder")
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
            guard let file = try? JSONDecoder().decode(ArchitectureFile.self, from: Data(bytes)),
                  let arch = try? file.architecture(path: name.path) else { return }
            // The memory plan (checked arithmetic, nothing allocated) must answer for any graph; one small enough
            // is then initialised for real, and the plan must have counted exactly what was allocated.
            guard let plan = try? arch.plan(source: name.path),
                  (try? plan.requireMemory(batch: 1, training: true, available: 1 << 24)) != nil else { return }
            var g = SeededGenerator(seed: 0)
            guard let params = try? arch.initialParameters(generator: &g, source: name.path) else { return }
            precondition(params.scalarCount == plan.parameterCount,
                         "the plan counted \(plan.parameterCount) parameter values, initialisation made \(params.scalarCount)")
        case .onnx:
            guard let model = try? ONNXModel(bytes: Data(bytes), url: name) else { return }
            for n in model.names {
                guard let info = model.info(n), info.elementCount <= 1 << 20 else { continue }
                _ = try? model.tensor(n)
            }
            guard let arch = try? ONNXArchitecture.architecture(from: model) else { return }
            // Shapes from the graph's declared sizes and initializers: checked arithmetic, never a trap.
            _ = try? arch.plan(shapeOf: { model.info($0)?.shape }, source: name.path)
            _ = try? arch.inferShapes(shapeOf: { model.info($0)?.shape }, source: name.path)
        case .config:
            guard let config = try? TransformerConfig(data: Data(bytes), file: name.path) else { return }
            let built = TransformerArchitecture(config: config)
            _ = built.architecture.nodes.count
        }
    }
}
