import BasinIO
import BasinNet
import Foundation

/// Loss and accuracy of the soups of three models over the simplex of mixing coefficients (the soup
/// triangle), on a grid of step 1 / resolution.
///
/// Row r (0 ... n) holds the third model's coefficient c2 = (n - r) / n (the top row is the third model
/// alone), column c the second's, c1 = c / n; the first model gets c0 = 1 - c1 - c2. Cells with c0 < 0 lie
/// outside the triangle and hold NaN.
public struct SoupSimplex: Sendable {
    public var resolution: Int
    /// The data set's name.
    public var data: String
    /// `loss[row][column]`, (n + 1) x (n + 1).
    public var loss: [[Double]]
    public var accuracy: [[Double]]

    /// The coefficients (c0, c1, c2) of a cell, or nil outside the triangle.
    public static func coefficients(row r: Int, column c: Int, resolution n: Int) -> [Double]? {
        let c2 = Double(n - r) / Double(n)
        let c1 = Double(c) / Double(n)
        let c0 = 1 - c1 - c2
        guard c0 >= -1e-9 else { return nil }
        return [max(0, c0), c1, c2]
    }

    /// The cell nearest to coefficients (c0, c1, c2) (normalised by their sum; all zero gives the first model's corner).
    public static func cell(for coefficients: [Double], resolution n: Int) -> (row: Int, column: Int) {
        let total = coefficients.reduce(0, +)
        let c1 = total > 0 ? coefficients[1] / total : 0, c2 = total > 0 ? coefficients[2] / total : 0
        return (Int(((1 - c2) * Double(n)).rounded()), Int((c1 * Double(n)).rounded()))
    }

    /// A grid of NaN (nothing computed).
    public static func empty(resolution n: Int, data: String = "") -> SoupSimplex {
        let nan = Array(repeating: Array(repeating: Double.nan, count: n + 1), count: n + 1)
        return SoupSimplex(resolution: n, data: data, loss: nan, accuracy: nan)
    }

    /// Merges and evaluates the soup of every cell inside the triangle, row by row from the top; `merge` builds
    /// the soup for coefficients (c0, c1, c2) (any merge method). `progress(rowsDone, rows)` follows each row.
    /// Returns nil when `cancel` is set (checked between rows); errors from `merge` propagate.
    public static func compute(resolution n: Int = 16, network: Network, data: Dataset, cancel: CancellationFlag? = nil,
                               progress: (_ done: Int, _ total: Int) -> Void = { _, _ in },
                               merge: ([Double]) throws -> ParameterSet) throws -> SoupSimplex? {
        guard n >= 1 else { throw AnalysisError(.invalidArgument, "a soup simplex needs a resolution of at least 1 (got \(n))") }
        var out = empty(resolution: n, data: data.name)
        for r in 0...n {
            if cancel?.isCancelled == true { return nil }
            for c in 0...n {
                guard let w = coefficients(row: r, column: c, resolution: n) else { continue }
                let m = network.evaluate(try merge(w), on: data)
                out.loss[r][c] = m.loss
                out.accuracy[r][c] = m.accuracy
            }
            progress(r + 1, n + 1)
        }
        return out
    }
}
