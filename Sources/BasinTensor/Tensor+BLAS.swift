import CBLAS

/// Matrix products on OpenBLAS. This module is the only importer of CBLAS; everything above it
/// multiplies matrices through these functions.
public enum BLAS {
    /// Number of threads OpenBLAS uses. It defaults to every core; set it to share the machine.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
    }

    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(Swift.max(1, n)))
    }

    /// C = alpha * op(A) op(B) + beta * C on raw row-major buffers.
    /// op(A) is m x k, op(B) is k x n, C is m x n; lda/ldb/ldc are row strides.
    @inlinable
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Double-precision C = alpha * op(A) op(B) + beta * C, row-major.
    @inlinable
    public static func dgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
                             a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                             beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        if m == 0 || n == 0 { return }
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Solves the symmetric positive definite system A X = B in place (LAPACK sposv, Cholesky).
    /// `a` is n x n (symmetric, so row/column-major is the same), `b` is n x nrhs row-major and is
    /// overwritten with X. Returns LAPACK's `info` (0 on success, > 0 when A is not positive definite).
    public static func solveSPD(n: Int, nrhs: Int, a: inout [Float], b: inout [Float]) -> Int {
        solveSPD(n: n, nrhs: nrhs, a: &a, b: &b, lapack: sposv_)
    }

    /// Double-precision version of `solveSPD` (LAPACK dposv).
    public static func solveSPD(n: Int, nrhs: Int, a: inout [Double], b: inout [Double]) -> Int {
        solveSPD(n: n, nrhs: nrhs, a: &a, b: &b, lapack: dposv_)
    }

    private typealias POSV<T> = (UnsafePointer<CChar>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?, UnsafeMutablePointer<T>?,
                                 UnsafePointer<Int32>?, UnsafeMutablePointer<T>?, UnsafePointer<Int32>?, UnsafeMutablePointer<Int32>?) -> Void

    private static func solveSPD<T: Numeric>(n: Int, nrhs: Int, a: inout [T], b: inout [T], lapack: POSV<T>) -> Int {
        // LAPACK is column-major: transpose the row-major right-hand sides in and the solution out.
        var bc = [T](repeating: 0, count: n * nrhs)
        for i in 0..<n { for j in 0..<nrhs { bc[j * n + i] = b[i * nrhs + j] } }
        var uplo = CChar(UInt8(ascii: "U"))
        var nn = Int32(n), nr = Int32(nrhs), lda = Int32(Swift.max(1, n)), ldb = Int32(Swift.max(1, n)), info: Int32 = 0
        lapack(&uplo, &nn, &nr, &a, &lda, &bc, &ldb, &info)
        for i in 0..<n { for j in 0..<nrhs { b[i * nrhs + j] = bc[j * n + i] } }
        return Int(info)
    }
}

extension Tensor {
    /// Matrix product of rank-2 views: op(self) x op(other), where op transposes when asked.
    /// Tensors of higher rank are viewed as [rows, columns].
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) -> Tensor {
        let (ar, ac) = (rows, columns)
        let (br, bc) = (other.rows, other.columns)
        let m = transposeSelf ? ac : ar
        let k = transposeSelf ? ar : ac
        let k2 = transposeOther ? bc : br
        let n = transposeOther ? br : bc
        precondition(k == k2, "matmul: inner dimensions \(k) and \(k2) differ (\(shape) x \(other.shape))")
        var out = Tensor.zeros([m, n])
        storage.withUnsafeBufferPointer { a in
            other.storage.withUnsafeBufferPointer { b in
                out.storage.withUnsafeMutableBufferPointer { c in
                    BLAS.sgemm(transA: transposeSelf, transB: transposeOther, m: m, n: n, k: k, alpha: 1,
                               a: a.baseAddress!, lda: ac, b: b.baseAddress!, ldb: bc, beta: 0,
                               c: c.baseAddress!, ldc: n)
                }
            }
        }
        return out
    }

    /// The transpose of a rank-2 tensor.
    public func transposed() -> Tensor {
        let (r, c) = (rows, columns)
        return Tensor(shape: [c, r]) { out in
            storage.withUnsafeBufferPointer { a in
                // Blocked to stay in cache on large matrices.
                let block = 32
                var i0 = 0
                while i0 < r {
                    var j0 = 0
                    while j0 < c {
                        for i in i0..<Swift.min(i0 + block, r) {
                            for j in j0..<Swift.min(j0 + block, c) { out[j * r + i] = a[i * c + j] }
                        }
                        j0 += block
                    }
                    i0 += block
                }
            }
        }
    }
}
