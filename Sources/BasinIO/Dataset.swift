import BasinTensor
import Foundation

/// A labelled data set: inputs `x` [N, ...] (Float32) and integer labels, one per sample ([N], class
/// indices) or one per position ([N, L], token labels where -100 marks a position that is not scored).
///
/// Files: safetensors with a float tensor `x` and integer labels `y` [N], or token data with integer
/// `input_ids` [N, L] and `labels` [N, L] (Hugging Face's names). Token ids are held as Float32 in `x`
/// (exact: ids must be below 2^24), so every model takes one input tensor; an embedding op reads them back
/// as integers.
public struct Dataset: Sendable {
    public let x: Tensor
    /// Labels, row-major: `count` x `labelsPerRow` entries.
    public let y: [Int32]
    /// One row's label shape: [] for class labels [N], [L] for token labels [N, L].
    public let labelShape: [Int]
    public let name: String
    /// Whether `x` holds token ids (read from `input_ids`).
    public let isTokens: Bool

    /// Number of samples (rows).
    public var count: Int { x.rows }
    public var labelsPerRow: Int { labelShape.reduce(1, *) }
    /// Shape of one sample (x's shape without the first axis).
    public var sampleShape: [Int] { Array(x.shape.dropFirst()) }
    public var classCount: Int { Int(y.max() ?? -1) + 1 }

    /// Class labels, one per row.
    public init(x: Tensor, y: [Int32], name: String = "data") {
        precondition(x.rows == y.count, "x has \(x.rows) rows for \(y.count) labels")
        self.init(x: x, labels: y, labelShape: [], name: name)
    }

    /// Labels of shape [N] + `labelShape`, flattened row-major.
    public init(x: Tensor, labels: [Int32], labelShape: [Int], name: String = "data", isTokens: Bool = false) {
        precondition(x.rows * labelShape.reduce(1, *) == labels.count,
                     "x has \(x.rows) rows for \(labels.count) labels of per-row shape \(labelShape)")
        self.x = x
        self.y = labels
        self.labelShape = labelShape
        self.name = name
        self.isTokens = isTokens
    }

    /// Loads a safetensors data set: `x` [N, ...] float and `y` [N] integer, or `input_ids` [N, L] and
    /// `labels` [N, L] integer (-100 = not scored).
    public init(url: URL) throws {
        try self.init(file: try SafeTensorsFile(url: url))
    }

    /// A data set from an opened safetensors file (checked: names, dtypes, shapes, label values, at least one row).
    public init(file: SafeTensorsFile) throws {
        let url = file.url
        let path = url.path
        let held = file.names.joined(separator: ", ")
        let inputName = file.info("x") != nil ? "x" : file.info("input_ids") != nil ? "input_ids" : nil
        let labelName = file.info("y") != nil ? "y" : file.info("labels") != nil ? "labels" : nil
        guard let inputName, let xi = file.info(inputName) else {
            throw BasinIOError(.badDataset, file: path, tensor: "x", "a data set needs a float tensor 'x' [N, ...] or integer token ids 'input_ids' [N, L] (the file holds: \(held))")
        }
        guard let labelName, let yi = file.info(labelName) else {
            throw BasinIOError(.badDataset, file: path, tensor: inputName == "x" ? "y" : "labels",
                               "a data set needs integer labels 'y' [N] or token labels 'labels' [N, L] (the file holds: \(held))")
        }
        let tokens = inputName == "input_ids"
        let x: Tensor
        if tokens {
            guard !xi.dtype.isFloatingPoint else {
                throw BasinIOError(.badDataset, file: path, tensor: inputName, "is \(xi.dtype.rawValue); token ids must be integers (I64, I32, ...)")
            }
            guard xi.shape.count == 2 else {
                throw BasinIOError(.badDataset, file: path, tensor: inputName, "has shape \(xi.shape); expected [N, L]")
            }
            let ids = try file.integers(inputName)
            if let bad = ids.firstIndex(where: { $0 < 0 || $0 >= 1 << 24 }) {
                throw BasinIOError(.badDataset, file: path, tensor: inputName,
                                   "id \(ids[bad]) at position \(bad) is not a token id in 0 ..< 2^24 (ids are held as exact Float32)")
            }
            x = Tensor(shape: xi.shape, storage: ids.map { Float($0) })
        } else {
            guard xi.dtype.isFloatingPoint else {
                throw BasinIOError(.badDataset, file: path, tensor: "x", "is \(xi.dtype.rawValue); inputs must be F32, F16, BF16 or F64")
            }
            guard xi.shape.count >= 2 else {
                throw BasinIOError(.badDataset, file: path, tensor: "x", "has shape \(xi.shape); expected [N, features...]")
            }
            guard xi.shape[0] == 0 || !xi.shape.dropFirst().contains(0) else {
                throw BasinIOError(.badDataset, file: path, tensor: "x", "has shape \(xi.shape): samples with no features")
            }
            x = try file.tensor("x")
            // NaN or ±Inf features (or F64 values beyond Float32) give NaN losses and models: refused by
            // name here, before any command evaluates or trains on them.
            let (count, first) = x.withUnsafeBufferPointer { v -> (Int, Int?) in
                var n = 0, first: Int?
                for i in 0..<v.count where !v[i].isFinite {
                    n += 1
                    if first == nil { first = i }
                }
                return (n, first)
            }
            if let first {
                let width = max(1, xi.shape.dropFirst().reduce(1, *))
                throw BasinIOError(.nonFiniteValues, file: path, tensor: "x",
                                   "holds \(count) NaN or infinite value\(count == 1 ? "" : "s") (the first at row \(first / width), value \(first % width) of the row); features must be finite numbers")
            }
        }
        let rows = xi.shape[0]
        guard rows > 0 else {
            throw BasinIOError(.emptyDataset, file: path, tensor: inputName, "has no rows (shape \(xi.shape)); a data set needs at least one sample")
        }
        guard yi.shape.count == 1 || yi.shape.count == 2, yi.shape[0] == rows else {
            throw BasinIOError(.badDataset, file: path, tensor: labelName,
                               "has shape \(yi.shape); expected [\(rows)] (a class per row) or [\(rows), L] (a label per position) to match \(inputName)'s \(rows) rows")
        }
        let labels = try file.integers(labelName)
        let perPosition = yi.shape.count == 2
        if let bad = labels.firstIndex(where: { ($0 < 0 && !(perPosition && $0 == Int(Dataset.ignored))) || $0 > Int(Int32.max) }) {
            let row = bad / max(1, perPosition ? yi.shape[1] : 1)
            throw BasinIOError(.badDataset, file: path, tensor: labelName,
                               "label \(labels[bad]) at row \(row) is not a class index (0, 1, ...)" + (perPosition ? " or -100 (not scored)" : ""))
        }
        self.init(x: x, labels: labels.map { Int32($0) }, labelShape: perPosition ? [yi.shape[1]] : [],
                  name: url.deletingPathExtension().lastPathComponent, isTokens: tokens)
    }

    /// The label that marks a position not scored.
    public static let ignored: Int32 = -100

    public init(path: String) throws { try self.init(url: URL(fileURLWithPath: path)) }

    /// The labels of rows `range`, flattened.
    public func labels(_ range: Range<Int>) -> ArraySlice<Int32> {
        let k = labelsPerRow
        return y[(range.lowerBound * k)..<(range.upperBound * k)]
    }

    /// The labels of the rows at `indices`, in that order, flattened.
    public func labels(at indices: [Int]) -> ArraySlice<Int32> {
        let k = labelsPerRow
        if k == 1 { return ArraySlice(indices.map { y[$0] }) }
        var out: [Int32] = []
        out.reserveCapacity(indices.count * k)
        for i in indices { out += y[(i * k)..<((i + 1) * k)] }
        return ArraySlice(out)
    }

    /// Rows `range` as a data set.
    public func slice(_ range: Range<Int>) -> Dataset {
        Dataset(x: x.rows(range), labels: Array(labels(range)), labelShape: labelShape, name: name, isTokens: isTokens)
    }

    /// Rows at `indices`, in that order.
    public func subset(_ indices: [Int]) -> Dataset {
        Dataset(x: x.gatherRows(indices), labels: Array(labels(at: indices)), labelShape: labelShape, name: name, isTokens: isTokens)
    }

    /// Writes the data set as safetensors: x as F32 and y as I64 (as PyTorch saves labels), or for token
    /// data input_ids and labels as I64.
    public func write(to url: URL) throws {
        try writer(to: url).finish()
    }

    /// A writer holding this data set, to finish alone or with others as one (`SafeTensorsWriter.finish`, so
    /// `basin split` writes both parts or neither). Data is written as it is: NaN features are not refused.
    public func writer(to url: URL, protecting inputs: [URL] = []) throws -> SafeTensorsWriter {
        let labelTensor = Tensor(shape: [count] + labelShape, storage: y.map(Float.init))
        let tensors = isTokens ? [("input_ids", x), ("labels", labelTensor)] : [("x", x), (labelShape.isEmpty ? "y" : "labels", labelTensor)]
        let plan = tensors.map { TensorPlan(name: $0.0, dtype: $0.0 == "x" ? .f32 : .i64, shape: $0.1.shape) }
        let w = try SafeTensorsWriter(url: url, plan: plan, protecting: inputs, checkFinite: false)
        for (name, t) in tensors { try w.write(name, t) }
        return w
    }
}
