import BasinIO
import BasinTensor
import Foundation

/// Named parameter tensors in a fixed order (the order of the file they came from).
/// Paths, soups and merges are arithmetic on parameter sets.
public struct ParameterSet: Sendable, Equatable {
    public private(set) var names: [String]
    public private(set) var tensors: [String: Tensor]

    public init() {
        names = []
        tensors = [:]
    }

    public init(_ pairs: [(String, Tensor)]) {
        self.init()
        for (n, t) in pairs { self[n] = t }
    }

    /// Loads every tensor of a source as Float32 (F16/BF16/F64 widened).
    /// Reads every tensor (widened to Float32) and releases its mapped pages as soon as it is read, so loading
    /// holds about one float32 copy of the model rather than the copy plus the file's resident pages.
    public init(source: any TensorSource) throws {
        var pairs: [(String, Tensor)] = []
        for name in source.names {
            pairs.append((name, try source.tensor(name)))
            source.release(name)
        }
        self.init(pairs)
    }

    public var count: Int { names.count }
    public var isEmpty: Bool { names.isEmpty }
    /// Total number of scalar parameters.
    public var scalarCount: Int { names.reduce(0) { $0 + (tensors[$1]?.count ?? 0) } }

    public subscript(name: String) -> Tensor? {
        get { tensors[name] }
        set {
            if let newValue {
                if tensors[name] == nil { names.append(name) }
                tensors[name] = newValue
            } else if tensors[name] != nil {
                tensors[name] = nil
                names.removeAll { $0 == name }
            }
        }
    }

    /// Throws unless this set has the same names and shapes as `other`.
    public func checkCompatible(with other: ParameterSet, _ label: String = "models") throws {
        for n in names {
            guard let o = other.tensors[n] else {
                throw NetworkError(.incompatibleModels, file: label, tensor: n, "is missing from one of the models")
            }
            guard o.shape == tensors[n]!.shape else {
                throw NetworkError(.incompatibleModels, file: label, tensor: n, "has shape \(tensors[n]!.shape) in one model and \(o.shape) in the other")
            }
        }
        if let extra = other.names.first(where: { tensors[$0] == nil }) {
            throw NetworkError(.incompatibleModels, file: label, tensor: extra, "is missing from one of the models")
        }
    }

    /// sum_i c_i p_i, tensor by tensor (BLAS axpy), in the first set's name order.
    public static func combination(_ terms: [(ParameterSet, Float)]) -> ParameterSet {
        precondition(!terms.isEmpty, "combination of no parameter sets")
        var out = ParameterSet()
        for n in terms[0].0.names {
            out[n] = Tensor.combination(terms.map { ($0.0.tensors[n]!, $0.1) })
        }
        return out
    }

    public static func lerp(_ a: ParameterSet, _ b: ParameterSet, _ t: Float) -> ParameterSet {
        combination([(a, 1 - t), (b, t)])
    }

    /// Applies `f` to every tensor.
    public func mapTensors(_ f: (String, Tensor) throws -> Tensor) rethrows -> ParameterSet {
        var out = ParameterSet()
        for n in names { out[n] = try f(n, tensors[n]!) }
        return out
    }

    /// Sum over tensors of <self, other>.
    public func dot(_ other: ParameterSet) -> Double {
        names.reduce(0) { $0 + tensors[$1]!.dot(other.tensors[$1]!) }
    }

    public var norm: Double { dot(self).squareRoot() }

    public static func - (a: ParameterSet, b: ParameterSet) -> ParameterSet { combination([(a, 1), (b, -1)]) }
    public static func + (a: ParameterSet, b: ParameterSet) -> ParameterSet { combination([(a, 1), (b, 1)]) }

    /// In order: (name, tensor).
    public var pairs: [(String, Tensor)] { names.map { ($0, tensors[$0]!) } }

    /// Writes the set as safetensors (atomically), each tensor in `dtype(name)`.
    public func write(to url: URL, dtype: (String) -> DType = { _ in .f32 }, metadata: [String: String] = [:],
                      protecting inputs: [URL] = []) throws {
        try SafeTensorsWriter.write(pairs, to: url, dtype: dtype, metadata: metadata, protecting: inputs)
    }
}
