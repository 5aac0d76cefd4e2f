import BasinIO
import BasinTensor
import Foundation

/// How to find a model's architecture: an architecture file or ONNX graph (`file`), the graph of a model that is
/// itself an `.onnx` file, or an MLP inferred from the tensor names with an activation.
public struct ArchitectureChoice: Sendable {
    public var activation: Activation
    public var file: URL?

    public init(activation: Activation = .relu, file: URL? = nil) {
        self.activation = activation
        self.file = file
    }

    public func architecture(for source: any TensorSource) throws -> Architecture {
        if let file {
            if file.pathExtension.lowercased() == "onnx" { return try ONNXArchitecture.load(file, weights: source) }
            return try ArchitectureFile.load(file)
        }
        if let graph = source as? ONNXModel { return try ONNXArchitecture.architecture(from: graph) }
        // A Hugging Face folder says what it is in config.json.
        if let model = source as? HuggingFaceModel { return try TransformerArchitecture(model: model).architecture }
        return try Architecture.inferMLP(from: source, activation: activation)
    }
}

/// A model file opened, its parameters widened to Float32, its architecture found and checked.
public struct LoadedModel: Sendable {
    public let source: any TensorSource
    public let params: ParameterSet
    public let network: Network
    /// Output width (number of classes).
    public let outputs: Int

    public var architecture: Architecture { network.architecture }
    public var url: URL { source.files.first! }
    public var path: String { source.displayPath }
    /// Each tensor's stored dtype, to write merges and aligned models back in the same dtypes (int64
    /// buffers such as num_batches_tracked stay int64).
    public var dtypes: [String: DType] {
        Dictionary(uniqueKeysWithValues: source.names.compactMap { n in source.info(n).map { (n, $0.dtype) } })
    }

    public init(path: String, architecture choice: ArchitectureChoice = ArchitectureChoice()) throws {
        try self.init(source: ModelFile.open(path), architecture: choice)
    }

    public init(source: any TensorSource, architecture choice: ArchitectureChoice = ArchitectureChoice()) throws {
        try self.init(source: source, architecture: choice.architecture(for: source))
    }

    public init(source: any TensorSource, architecture: Architecture) throws {
        self.source = source
        var architecture = architecture
        var slots: [String: ParameterSlot] = [:]
        for slot in architecture.parameterSlots where slots[slot.name] == nil { slots[slot.name] = slot }
        for name in source.names {
            if let info = source.info(name), !info.dtype.isFloatingPoint, let slot = slots[name], !slot.integer {
                throw BasinIOError(.unsupportedDType, file: source.displayPath, tensor: name,
                                   "is \(info.dtype.rawValue); parameters must be F32, F16, BF16 or F64")
            }
        }
        let params = try ParameterSet(source: source)
        self.params = params
        outputs = try architecture.validate(params, source: source.displayPath)
        if architecture.inputShape == nil {
            architecture.inputShape = architecture.resolvedInputShape(shapeOf: { params[$0]?.shape })
        }
        network = Network(architecture)
    }

    /// Rows per evaluation batch: up to 1024, fewer when one row's logits are large (a language model's
    /// positions x vocabulary), so a batch's logits stay within about 32 MB.
    public static func evaluationBatch(outputs: Int, data: Dataset) -> Int {
        let perRow = 4 * max(1, outputs) * max(1, data.labelsPerRow)
        return max(1, min(1024, (32 << 20) / perRow))
    }

    /// Evaluates on a data set after checking the data fits the model.
    public func evaluate(on data: Dataset, params override: ParameterSet? = nil) throws -> Metrics {
        try LoadedModel.check(data, fits: self)
        return network.evaluate(override ?? params, on: data, batchSize: LoadedModel.evaluationBatch(outputs: outputs, data: data))
    }

    /// Checks that the data's samples fit the model's input (reshaped to the declared input shape when they
    /// hold as many values) and its labels its output.
    public static func check(_ data: Dataset, fits model: LoadedModel) throws {
        try check(data, fits: model.architecture, params: model.params, outputs: model.outputs, name: model.path)
    }

    /// `check` for an architecture and parameters not loaded from a file (`name` stands for the model).
    public static func check(_ data: Dataset, fits arch: Architecture, params: ParameterSet, outputs: Int, name: String) throws {
        struct Model { let params: ParameterSet; let outputs: Int; let path: String }
        let model = Model(params: params, outputs: outputs, path: name)
        let sample = data.sampleShape
        var input: SampleShape = sample
        if let declared = arch.inputShape {
            if let known = Shapes.known(declared) {
                if known != sample {
                    // nil: the declared shape's product overflows (an architecture file's input_shape of 10^8 x 10^8 x 10^8).
                    let have = sample.reduce(1, *), want = Shapes.count(known).map(String.init) ?? "more than 2^63"
                    guard String(have) == want else {
                        if known.count == 1 && sample.count == 1 {
                            throw NetworkError(.dataMismatch, "data set '\(data.name)' has \(have) features per sample but \(model.path) takes \(want)")
                        }
                        throw NetworkError(.dataMismatch, "data set '\(data.name)' has samples of shape \(sample) (\(have) values) but \(model.path) takes \(known) (\(want) values)")
                    }
                    input = known
                }
            } else {
                guard declared.count == sample.count, zip(declared, sample).allSatisfy({ $0 == nil || $0 == $1 }) else {
                    throw NetworkError(.dataMismatch, "data set '\(data.name)' has samples of shape \(sample) but \(model.path) takes \(Shapes.describe(declared))")
                }
            }
        }
        let shapes: [SampleShape?]
        do {
            shapes = try arch.inferShapes(shapeOf: { model.params[$0]?.shape }, input: input, source: model.path)
        } catch let e as NetworkError {
            throw NetworkError(.dataMismatch, file: model.path, node: e.node, tensor: e.tensor,
                               "data set '\(data.name)' (samples of shape \(sample)) does not fit: \(e.problem)")
        }
        if let logits = shapes[arch.output] {
            let positions = Array(logits.dropLast())
            guard positions.count == data.labelShape.count,
                  zip(positions, data.labelShape).allSatisfy({ $0 == nil || $0 == $1 }) else {
                throw NetworkError(.dataMismatch, "data set '\(data.name)' has labels of shape [N] + \(data.labelShape) but \(model.path) gives logits of shape [N] + \(Shapes.describe(logits))")
            }
        }
        if let maxLabel = data.y.max(), Int(maxLabel) >= model.outputs {
            throw NetworkError(.dataMismatch, "data set '\(data.name)' has label \(maxLabel) but \(model.path) has only \(model.outputs) outputs")
        }
        // Token ids index an embedding's rows: each must be one of them.
        for node in arch.nodes where node.inputs.contains(Architecture.inputIndex) {
            guard let embedding = node.op as? Embedding, let rows = model.params[embedding.weight]?.shape.first else { continue }
            if let bad = Embedding.firstInvalidID(data.x, vocabulary: rows) {
                let width = max(1, data.x.columns)
                throw NetworkError(.dataMismatch, file: model.path, node: node.name, tensor: embedding.weight,
                                   "data set '\(data.name)' has token id \(bad.value) at row \(bad.index / width), position \(bad.index % width); the embedding has \(rows) rows (ids 0..<\(rows))")
            }
        }
    }
}
