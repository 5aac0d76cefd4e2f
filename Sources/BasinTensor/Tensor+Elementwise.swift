import CBLAS

// Elementwise operations and reductions. Vector kernels that BLAS provides (axpy, scal, dot, nrm2)
// go through it; the rest are simple loops over contiguous storage that the compiler vectorises.

extension Tensor {
    private func checkSameShape(_ other: Tensor, _ op: String) {
        precondition(shape == other.shape, "\(op): shapes \(shape) and \(other.shape) differ")
    }

    /// self += alpha * x  (BLAS saxpy).
    public mutating func addScaled(_ x: Tensor, _ alpha: Float) {
        checkSameShape(x, "addScaled")
        let n = Int32(count)
        x.storage.withUnsafeBufferPointer { xs in
            storage.withUnsafeMutableBufferPointer { ys in
                cblas_saxpy(n, alpha, xs.baseAddress, 1, ys.baseAddress, 1)
            }
        }
    }

    /// self *= alpha  (BLAS sscal).
    public mutating func scale(by alpha: Float) {
        let n = Int32(count)
        storage.withUnsafeMutableBufferPointer { ys in cblas_sscal(n, alpha, ys.baseAddress, 1) }
    }

    public func scaled(by alpha: Float) -> Tensor {
        var r = self
        r.scale(by: alpha)
        return r
    }

    /// Sum of elementwise products, accumulated in double precision (BLAS dsdot).
    public func dot(_ other: Tensor) -> Double {
        checkSameShape(other, "dot")
        return storage.withUnsafeBufferPointer { a in
            other.storage.withUnsafeBufferPointer { b in
                cblas_dsdot(Int32(count), a.baseAddress, 1, b.baseAddress, 1)
            }
        }
    }

    /// Euclidean norm of all elements.
    public var norm: Double {
        dot(self).squareRoot()
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor {
        var r = a
        r.addScaled(b, 1)
        return r
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        var r = a
        r.addScaled(b, -1)
        return r
    }

    public static func * (a: Tensor, s: Float) -> Tensor { a.scaled(by: s) }
    public static func * (s: Float, a: Tensor) -> Tensor { a.scaled(by: s) }

    /// Elementwise product.
    public func hadamard(_ other: Tensor) -> Tensor {
        checkSameShape(other, "hadamard")
        return Tensor(shape: shape) { out in
            storage.withUnsafeBufferPointer { a in
                other.storage.withUnsafeBufferPointer { b in
                    for i in 0..<out.count { out[i] = a[i] * b[i] }
                }
            }
        }
    }

    /// (1 - t) a + t b.
    public static func lerp(_ a: Tensor, _ b: Tensor, _ t: Float) -> Tensor {
        combination([(a, 1 - t), (b, t)])
    }

    /// sum_i c_i x_i over tensors of one shape. The first term seeds the output; the rest are saxpy.
    public static func combination(_ terms: [(Tensor, Float)]) -> Tensor {
        precondition(!terms.isEmpty, "combination of no tensors")
        var r = terms[0].0.scaled(by: terms[0].1)
        for (x, c) in terms.dropFirst() where c != 0 { r.addScaled(x, c) }
        return r
    }

    /// Applies `f` to every element.
    public func map(_ f: (Float) -> Float) -> Tensor {
        Tensor(shape: shape) { out in
            storage.withUnsafeBufferPointer { a in
                for i in 0..<out.count { out[i] = f(a[i]) }
            }
        }
    }

    public func sum() -> Double {
        storage.withUnsafeBufferPointer { a in
            var s: Double = 0
            for v in a { s += Double(v) }
            return s
        }
    }

    public func mean() -> Double { count == 0 ? 0 : sum() / Double(count) }

    public func max() -> Float? { storage.max() }
    public func min() -> Float? { storage.min() }

    public var maxAbs: Float {
        storage.withUnsafeBufferPointer { a in
            var m: Float = 0
            for v in a { m = Swift.max(m, Swift.abs(v)) }
            return m
        }
    }

    /// Index of the largest element in each row (first on ties, as torch.argmax does on CPU).
    public func argmaxRows() -> [Int] {
        let c = columns
        precondition(c > 0, "argmax of empty rows")
        return storage.withUnsafeBufferPointer { a in
            (0..<rows).map { r in
                var best = 0
                var bestValue = a[r * c]
                for j in 1..<c where a[r * c + j] > bestValue {
                    bestValue = a[r * c + j]
                    best = j
                }
                return best
            }
        }
    }

    /// Adds `bias` (length = columns) to every row.
    public mutating func addRowVector(_ bias: Tensor) {
        let c = columns
        precondition(bias.count == c, "bias of \(bias.count) for rows of \(c)")
        let r = rows
        bias.storage.withUnsafeBufferPointer { b in
            storage.withUnsafeMutableBufferPointer { y in
                for i in 0..<r {
                    let row = y.baseAddress! + i * c
                    for j in 0..<c { row[j] += b[j] }
                }
            }
        }
    }

    /// Column sums of a rank-2 tensor: a [columns] tensor.
    public func sumRows() -> Tensor {
        let c = columns
        let r = rows
        var out = [Float](repeating: 0, count: c)
        storage.withUnsafeBufferPointer { a in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<r {
                    let row = a.baseAddress! + i * c
                    for j in 0..<c { o[j] += row[j] }
                }
            }
        }
        return Tensor(shape: [c], storage: out)
    }

    /// Largest absolute elementwise difference.
    public func maxAbsDifference(_ other: Tensor) -> Float {
        checkSameShape(other, "maxAbsDifference")
        return storage.withUnsafeBufferPointer { a in
            other.storage.withUnsafeBufferPointer { b in
                var m: Float = 0
                for i in 0..<a.count { m = Swift.max(m, Swift.abs(a[i] - b[i])) }
                return m
            }
        }
    }
}
