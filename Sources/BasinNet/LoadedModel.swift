import BasinIO
import BasinTensor
import Foundation

/// How to find a model's architecture: inferred MLP with an activation, or an architecture file.
public struct ArchitectureChoice: Sendable {
    public var activation: Activation
    public var file: URL?

    public init(activation: Activation = .relu, file: URL? = nil) {
        self.activation = activation
        self.file = file
    }

    public func architecture(for source: any TensorSource) throws -> Architecture {
        if let file { return try ArchitectureFile.load(file) }
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
    /// Each tensor's stored dtype, to write merges and aligned models back in the same dtypes.
    public var dtypes: [String: DType] {
        Dictionary(uniqueKeysWithValues: source.names.compactMap { n in source.info(n).map { (n, $0.dtype) } })
    }

    public init(path: String, architecture choice: ArchitectureChoice = ArchitectureChoice()) throws {
        try self.init(source: ModelFile.open(path), architecture: choice)
    }

    public init(source: any TensorSource, architecture choice: ArchitectureChoice = ArchitectureChoice()) throws {
        self.source = source
        let architecture = try choice.architecture(for: source)
        for name in source.names {
            if let info = source.info(name), !info.dtype.isFloatingPoint, architecture.parameterNames.contains(name) {
                throw BasinIOError(.unsupportedDType, file: source.displayPath, tensor: name,
                                   "is \(info.dtype.rawValue); parameters must be F32, F16, BF16 or F64")
            }
        }
        params = try ParameterSet(source: source)
        outputs = try architecture.validate(params, source: source.displayPath)
        network = Network(architecture)
    }

    /// Evaluates on a data set after checking the data fits the model.
    public func evaluate(on data: Dataset, params override: ParameterSet? = nil) throws -> Metrics {
        try LoadedModel.check(data, fits: self)
        return network.evaluate(override ?? params, on: data)
    }

    public static func check(_ data: Dataset, fits model: LoadedModel) throws {
        if let first = model.architecture.linearNodes.first, case let .linear(w, _) = model.architecture.nodes[first].op,
           let weight = model.params[w], model.architecture.nodes[first].inputs == [Architecture.inputIndex] {
            let features = data.x.columns
            guard weight.shape[1] == features else {
                throw NetworkError("data set '\(data.name)' has \(features) features per sample but \(model.path) takes \(weight.shape[1]) (tensor '\(w)')")
            }
        }
        if let maxLabel = data.y.max(), Int(maxLabel) >= model.outputs {
            throw NetworkError("data set '\(data.name)' has label \(maxLabel) but \(model.path) has only \(model.outputs) outputs")
        }
    }
}
