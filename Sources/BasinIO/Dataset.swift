import BasinTensor
import Foundation

/// A labelled data set: inputs `x` [N, ...] (Float32) and class labels `y` [N].
public struct Dataset: Sendable {
    public let x: Tensor
    public let y: [Int32]
    public let name: String

    public var count: Int { y.count }
    /// Shape of one sample (x's shape without the first axis).
    public var sampleShape: [Int] { Array(x.shape.dropFirst()) }
    public var classCount: Int { Int(y.max() ?? -1) + 1 }

    public init(x: Tensor, y: [Int32], name: String = "data") {
        precondition(x.rows == y.count, "x has \(x.rows) rows for \(y.count) labels")
        self.x = x
        self.y = y
        self.name = name
    }

    /// Loads a safetensors data set with a float tensor `x` [N, ...] and an integer tensor `y` [N].
    public init(url: URL) throws {
        let file = try SafeTensorsFile(url: url)
        let path = url.path
        guard let xi = file.info("x") else {
            throw BasinIOError(.badDataset, file: path, tensor: "x", "a data set needs a float tensor 'x' [N, ...] (the file holds: \(file.names.joined(separator: ", ")))")
        }
        guard let yi = file.info("y") else {
            throw BasinIOError(.badDataset, file: path, tensor: "y", "a data set needs an integer label tensor 'y' [N] (the file holds: \(file.names.joined(separator: ", ")))")
        }
        guard xi.dtype.isFloatingPoint else {
            throw BasinIOError(.badDataset, file: path, tensor: "x", "is \(xi.dtype.rawValue); inputs must be F32, F16, BF16 or F64")
        }
        guard xi.shape.count >= 2 else {
            throw BasinIOError(.badDataset, file: path, tensor: "x", "has shape \(xi.shape); expected [N, features...]")
        }
        guard yi.shape.count == 1, yi.shape[0] == xi.shape[0] else {
            throw BasinIOError(.badDataset, file: path, tensor: "y", "has shape \(yi.shape); expected [\(xi.shape[0])] to match x's \(xi.shape[0]) rows")
        }
        let labels = try file.integers("y")
        if let bad = labels.firstIndex(where: { $0 < 0 || $0 > Int(Int32.max) }) {
            throw BasinIOError(.badDataset, file: path, tensor: "y", "label \(labels[bad]) at row \(bad) is not a class index (0, 1, ...)")
        }
        self.init(x: try file.tensor("x"), y: labels.map { Int32($0) }, name: url.deletingPathExtension().lastPathComponent)
    }

    public init(path: String) throws { try self.init(url: URL(fileURLWithPath: path)) }

    /// Rows `range` as a data set.
    public func slice(_ range: Range<Int>) -> Dataset {
        Dataset(x: x.rows(range), y: Array(y[range]), name: name)
    }

    /// Rows at `indices`, in that order.
    public func subset(_ indices: [Int]) -> Dataset {
        Dataset(x: x.gatherRows(indices), y: indices.map { y[$0] }, name: name)
    }

    /// Writes the data set as safetensors (x as F32, y as I64, as PyTorch saves labels).
    public func write(to url: URL) throws {
        let yTensor = Tensor(shape: [count], storage: y.map(Float.init))
        try SafeTensorsWriter.write([("x", x), ("y", yTensor)], to: url, dtype: { $0 == "y" ? .i64 : .f32 })
    }
}
