/// A dense Float32 tensor: a shape and row-major storage.
///
/// Storage is a Swift array, so tensors are values with copy-on-write and are `Sendable`.
/// Hot loops reach the storage through `withUnsafe...` accessors; all matrix products go
/// through OpenBLAS (see `Tensor+BLAS.swift`).
public struct Tensor: Sendable, Equatable {
    public private(set) var shape: [Int]
    public var storage: [Float]

    public var count: Int { storage.count }
    public var rank: Int { shape.count }

    public init(shape: [Int], storage: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(Tensor.elementCount(shape) == storage.count,
                     "shape \(shape) needs \(Tensor.elementCount(shape)) elements, got \(storage.count)")
        self.shape = shape
        self.storage = storage
    }

    public init(shape: [Int], repeating value: Float = 0) {
        self.init(shape: shape, storage: [Float](repeating: value, count: Tensor.elementCount(shape)))
    }

    public static func zeros(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 0) }

    public static func zeros(like other: Tensor) -> Tensor { Tensor(shape: other.shape, repeating: 0) }

    /// A tensor whose storage is filled by `body`, which receives an uninitialised buffer of the right size
    /// and must write every element.
    public init(shape: [Int], unsafeUninitialized body: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        let n = Tensor.elementCount(shape)
        self.shape = shape
        self.storage = try [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            try body(buffer)
            initialized = n
        }
    }

    public static func elementCount(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    /// Same storage, new shape with the same number of elements.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, storage: storage)
    }

    public mutating func reshape(_ newShape: [Int]) {
        precondition(Tensor.elementCount(newShape) == storage.count, "cannot reshape \(shape) to \(newShape)")
        shape = newShape
    }

    /// Rows of a rank-2 (or higher, flattened after the first axis) tensor.
    public var rows: Int { shape.first ?? 1 }
    /// Elements per row: product of every axis after the first.
    public var columns: Int { shape.count <= 1 ? (shape.first.map { _ in 1 } ?? 1) : shape.dropFirst().reduce(1, *) }

    public subscript(index: Int) -> Float {
        get { storage[index] }
        set { storage[index] = newValue }
    }

    public subscript(row: Int, column: Int) -> Float {
        get { storage[row * columns + column] }
        set { storage[row * columns + column] = newValue }
    }

    /// Rows `range` of the tensor (first axis), copied.
    public func rows(_ range: Range<Int>) -> Tensor {
        let c = columns
        var s = shape
        s[0] = range.count
        return Tensor(shape: s, storage: Array(storage[(range.lowerBound * c)..<(range.upperBound * c)]))
    }

    /// Rows at the given indices (first axis), copied in that order.
    public func gatherRows(_ indices: [Int]) -> Tensor {
        let c = columns
        var s = shape
        s[0] = indices.count
        return Tensor(shape: s) { out in
            storage.withUnsafeBufferPointer { src in
                for (k, i) in indices.enumerated() {
                    precondition(i >= 0 && i < rows, "row \(i) out of range 0..<\(rows)")
                    (out.baseAddress! + k * c).update(from: src.baseAddress! + i * c, count: c)
                }
            }
        }
    }

    @inlinable
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try storage.withUnsafeBufferPointer(body)
    }

    @inlinable
    public mutating func withUnsafeMutableBufferPointer<R>(_ body: (inout UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try storage.withUnsafeMutableBufferPointer(body)
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = storage.prefix(6).map { String($0) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(preview)\(storage.count > 6 ? ", ..." : "")])"
    }
}
