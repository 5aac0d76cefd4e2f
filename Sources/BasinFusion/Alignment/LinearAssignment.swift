import Foundation

/// Exact linear assignment: match every row of a rectangular `rows x columns` cost matrix to its own
/// column so that the total cost is minimal (or maximal).
///
/// No maintained Swift library provides an exact linear assignment solver, so it is written here.
/// The algorithm is Jonker & Volgenant's shortest augmenting path method (LAPJV; R. Jonker and
/// A. Volgenant, "A shortest augmenting path algorithm for dense and sparse linear assignment
/// problems", Computing 38, 1987), in the rectangular form described by D. F. Crouse, "On implementing
/// 2D rectangular assignment algorithms", IEEE TAES 52(4), 2016 (the method behind SciPy's
/// `linear_sum_assignment`):
///
/// * square instances with finite costs are initialised by JV's column reduction (or a row reduction when
///   many columns share their minimum), reduction transfer and two passes of augmenting row reduction
///   with tie-breaking, which assign most rows cheaply, ties or not (see `initialise`);
/// * every row still free is then assigned by a Dijkstra search for the shortest augmenting path on
///   reduced costs `c[i][j] - u[i] - v[j]` (column potentials `v` kept explicitly, row potentials
///   implied by the current assignment), collecting all columns at the current minimum distance at
///   once so that ties are cheap.
///
/// Rectangular instances (`rows < columns`) start from zero potentials, so unassigned columns keep
/// potential zero and the result is optimal for the rectangular problem. `rows > columns` is solved
/// on the transpose; then the rows left over get column `-1`.
///
/// Costs: NaN is rejected. When minimising, `+infinity` marks a forbidden pair and `-infinity` is
/// rejected; when maximising it is the other way round. If no assignment avoids the forbidden pairs,
/// `solve` throws `.infeasible`.
public enum LinearAssignment {
    /// An optimal assignment.
    public struct Assignment: Sendable, Equatable, Codable {
        /// The column assigned to each row (`-1` only for rows left over when rows > columns).
        public var columnForRow: [Int]
        /// The sum of the assigned costs, in the caller's sign.
        public var total: Double

        public init(columnForRow: [Int], total: Double) {
            self.columnForRow = columnForRow
            self.total = total
        }

        /// The row assigned to each of `columns` columns, `-1` for unassigned columns.
        public func rowForColumn(columns: Int) -> [Int] {
            var result = [Int](repeating: -1, count: columns)
            for (i, j) in columnForRow.enumerated() where j >= 0 { result[j] = i }
            return result
        }
    }

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        /// The buffer does not hold `rows * columns` numbers, or a dimension is negative.
        case shapeMismatch(rows: Int, columns: Int, count: Int)
        /// NaN, or the infinity that would be preferred rather than forbidden (`-inf` when minimising,
        /// `+inf` when maximising).
        case invalidCost(row: Int, column: Int, value: Double)
        /// Every complete assignment uses a forbidden (infinite) pair.
        case infeasible

        public var description: String {
            switch self {
            case let .shapeMismatch(r, c, n):
                return "linear assignment: a \(r) x \(c) cost matrix needs \(max(0, r) * max(0, c)) entries, got \(n)"
            case let .invalidCost(r, c, v):
                return "linear assignment: invalid cost \(v) at row \(r), column \(c) (NaN, or an infinity that would be preferred)"
            case .infeasible:
                return "linear assignment: infeasible, every complete assignment uses a forbidden (infinite) cost"
            }
        }
    }

    /// Solves the assignment problem for a row-major `rows x columns` cost matrix.
    public static func solve(cost: [Double], rows: Int, columns: Int, maximize: Bool = false) throws -> Assignment {
        try cost.withUnsafeBufferPointer { try solve(cost: $0, rows: rows, columns: columns, maximize: maximize) }
    }

    /// Solves the assignment problem for a row-major `rows x columns` cost matrix.
    public static func solve(cost: UnsafeBufferPointer<Double>, rows: Int, columns: Int,
                             maximize: Bool = false) throws -> Assignment {
        try solveGeneric(cost: cost, rows: rows, columns: columns, maximize: maximize)
    }

    /// Solves the assignment problem for a row-major `rows x columns` float32 cost matrix: exactly the problem
    /// of the float64 values the costs represent (reduced costs and totals are float64), reading half the
    /// memory (weight matching's similarities are float32).
    public static func solve(cost: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
                             maximize: Bool = false) throws -> Assignment {
        try solveGeneric(cost: cost, rows: rows, columns: columns, maximize: maximize)
    }

    static func solveGeneric<C: AssignmentCost>(cost: UnsafeBufferPointer<C>, rows: Int, columns: Int,
                                                maximize: Bool) throws -> Assignment {
        guard rows >= 0, columns >= 0, cost.count == rows * columns else {
            throw Error.shapeMismatch(rows: rows, columns: columns, count: cost.count)
        }
        if rows == 0 { return Assignment(columnForRow: [], total: 0) }
        if columns == 0 { return Assignment(columnForRow: [Int](repeating: -1, count: rows), total: 0) }

        // Validate, and make a minimisation problem with at least as many columns as rows.
        let forbidden = maximize ? -Double.infinity : Double.infinity
        let allFinite = isAllFinite(cost)
        if !allFinite {
            for k in 0..<cost.count {
                let value = cost[k].asDouble
                if value.isFinite || value == forbidden { continue }
                throw Error.invalidCost(row: k / columns, column: k % columns, value: value)
            }
        }
        let transpose = rows > columns
        let (n, m) = transpose ? (columns, rows) : (rows, columns)
        var assigned: [Int]
        if !transpose && !maximize {
            assigned = try minimise(cost.baseAddress!, n: n, m: m, allFinite: allFinite).columns
        } else {
            // Negation and transposition are exact, in either precision.
            let work = UnsafeMutablePointer<C>.allocate(capacity: n * m)
            defer { work.deallocate() }
            if transpose {
                for i in 0..<rows {
                    for j in 0..<columns { work[j * m + i] = maximize ? -cost[i * columns + j] : cost[i * columns + j] }
                }
            } else {
                for k in 0..<(n * m) { work[k] = -cost[k] }
            }
            assigned = try minimise(UnsafePointer(work), n: n, m: m, allFinite: allFinite).columns
        }
        var columnForRow: [Int]
        if transpose {
            columnForRow = [Int](repeating: -1, count: rows)
            for (j, i) in assigned.enumerated() { columnForRow[i] = j }
        } else {
            columnForRow = assigned
        }
        var total = 0.0
        for (i, j) in columnForRow.enumerated() where j >= 0 { total += cost[i * columns + j].asDouble }
        return Assignment(columnForRow: columnForRow, total: total)
    }

    /// Whether every entry is finite, in one vectorised pass (`x - x` is 0 for finite x and NaN otherwise).
    static func isAllFinite<C: AssignmentCost>(_ values: UnsafeBufferPointer<C>) -> Bool {
        guard let base = values.baseAddress else { return true }
        let count = values.count
        var a = SIMD4<Double>(repeating: 0), b = a
        var k = 0
        while k + 8 <= count {
            let p = C.load4(base + k), q = C.load4(base + k + 4)
            a += p - p
            b += q - q
            k += 8
        }
        var tail = 0.0
        while k < count {
            tail += base[k].asDouble - base[k].asDouble
            k += 1
        }
        return (a + b).sum() + tail == 0
    }

    // MARK: - The solver

    /// Minimises over a row-major `n x m` matrix with `n <= m`, whose entries are finite or `+inf`.
    /// Returns the column of each row and the column potentials `v`, a dual certificate of optimality: with
    /// `u[i] = c[i][x[i]] - v[x[i]]`, every `c[i][j] - u[i] - v[j] >= 0` (up to rounding), and when n < m
    /// also `v[j] <= 0`, with `v[j] = 0` for the columns left unassigned.
    static func minimise<C: AssignmentCost>(_ c: UnsafePointer<C>, n: Int, m: Int,
                                            allFinite: Bool) throws -> (columns: [Int], potentials: [Double]) {
        precondition(n <= m)
        let x = UnsafeMutablePointer<Int>.allocate(capacity: n)      // column of each row, -1 if free
        let y = UnsafeMutablePointer<Int>.allocate(capacity: m)      // row of each column, -1 if free
        let v = UnsafeMutablePointer<Double>.allocate(capacity: m)   // column potentials
        let d = UnsafeMutablePointer<Double>.allocate(capacity: m)   // tentative distances (-inf: taken out)
        let dist = UnsafeMutablePointer<Double>.allocate(capacity: m) // distances of the columns taken out
        let pred = UnsafeMutablePointer<Int>.allocate(capacity: m)   // predecessor row on the path
        let done = UnsafeMutablePointer<Int>.allocate(capacity: m)   // columns taken out, in order
        let free = UnsafeMutablePointer<Int>.allocate(capacity: n)
        defer {
            x.deallocate(); y.deallocate(); v.deallocate(); d.deallocate(); dist.deallocate()
            pred.deallocate(); done.deallocate(); free.deallocate()
        }
        x.initialize(repeating: -1, count: n)
        y.initialize(repeating: -1, count: m)
        v.initialize(repeating: 0, count: m)

        var freeCount: Int
        if n == m && n > 1 && allFinite {
            freeCount = initialise(c, n: n, x: x, y: y, v: v, free: free, scratchIndex: pred)
        } else {
            for i in 0..<n { free[i] = i }
            freeCount = n
        }

        // The shortest augmenting path from each free row: Dijkstra on reduced costs over contiguous arrays.
        // d[j] is the tentative distance of a column still to do and -infinity once the column is taken out
        // (its distance then kept in dist[j]), so a single vectorised comparison `reduced < d[j]` both finds
        // shorter paths and skips the columns done. done[0..<doneCount] lists the columns taken out, in order;
        // done[scanned..<doneCount] are at the current minimum distance and still to scan.
        let rawV = UnsafeRawPointer(v), rawD = UnsafeRawPointer(d)
        for f in 0..<freeCount {
            let row = free[f]
            let crow = c + row * m
            for j in 0..<m { d[j] = crow[j].asDouble - v[j] }
            pred.update(repeating: row, count: m)
            var doneCount = 0, scanned = 0
            var minDistance = 0.0
            var end = -1
            search: while true {
                if scanned == doneCount {
                    // The minimum distance among the columns to do, then every column at it (ties at once).
                    var low = SIMD4<Double>(repeating: .infinity)
                    var j = 0
                    while j + 4 <= m {
                        let h = rawD.loadUnaligned(fromByteOffset: j * 8, as: SIMD4<Double>.self)
                        low = pointwiseMin(low, h.replacing(with: .infinity, where: h .== -.infinity))
                        j += 4
                    }
                    minDistance = low.min()
                    while j < m {
                        if d[j] < minDistance && d[j] != -.infinity { minDistance = d[j] }
                        j += 1
                    }
                    if minDistance == .infinity { throw Error.infeasible }
                    for j in 0..<m where d[j] == minDistance {
                        if y[j] < 0 {
                            end = j
                            break search
                        }
                        dist[j] = minDistance
                        d[j] = -.infinity
                        done[doneCount] = j
                        doneCount += 1
                    }
                }
                // Scan one column at the minimum distance: relax the columns to do through its row, four at
                // a time; the lanes where a path got shorter are handled one by one.
                let j1 = done[scanned]
                scanned += 1
                let i = y[j1]
                let ci = c + i * m
                let u1 = ci[j1].asDouble - v[j1] - minDistance
                let u4 = SIMD4<Double>(repeating: u1)
                var j = 0
                while j < m {
                    var r = SIMD4<Double>(repeating: .infinity)
                    var width = 1
                    if j + 4 <= m {
                        r = C.load4(ci + j) - rawV.loadUnaligned(fromByteOffset: j * 8, as: SIMD4<Double>.self) - u4
                        width = 4
                        if !any(r .< rawD.loadUnaligned(fromByteOffset: j * 8, as: SIMD4<Double>.self)) {
                            j += 4
                            continue
                        }
                    } else {
                        r[0] = ci[j].asDouble - v[j] - u1
                    }
                    for t in 0..<width {
                        let jj = j + t
                        let reduced = r[t]
                        guard reduced < d[jj] else { continue }
                        pred[jj] = i
                        if reduced == minDistance {
                            if y[jj] < 0 {
                                end = jj
                                break search
                            }
                            dist[jj] = minDistance
                            d[jj] = -.infinity
                            done[doneCount] = jj
                            doneCount += 1
                        } else {
                            d[jj] = reduced
                        }
                    }
                    j += width
                }
            }
            // Update the potentials of the columns taken out (those at the final minimum gain nothing), then
            // flip the path.
            for k in 0..<doneCount {
                let j = done[k]
                v[j] += dist[j] - minDistance
            }
            var j = end
            while true {
                let i = pred[j]
                y[j] = i
                let previous = x[i]
                x[i] = j
                j = previous
                if i == row { break }
            }
        }
        return (Array(UnsafeBufferPointer(start: x, count: n)), Array(UnsafeBufferPointer(start: v, count: m)))
    }

    /// The setup for square, finite instances: a partial assignment in which each assigned row's column has
    /// the minimal reduced cost `c[i][j] - v[j]` of its row (so the shortest augmenting paths may start from
    /// it). Writes the free rows to `free` and returns how many there are.
    ///
    /// 1. Column reduction (JV): `v[j] = min_i c[i][j]`, each column offered to the row that attains it.
    ///    A column whose minimum is attained by many rows (a constant column, such as the zero similarities
    ///    of a dead unit) is then free for every row: the rows fight over such columns and the potentials
    ///    they leave make the augmenting paths long (measured on 4096 x 4096 correlation costs with 10% dead
    ///    units: 2.3 s instead of 0.1 s without them). So when more than 1 in 64 columns have their minimum
    ///    in at least n/8 rows, the setup starts from zero potentials with every row free instead (a row
    ///    reduction: each row's first bid is its cheapest column), which is slower on uniform random costs
    ///    (1.2 s instead of 0.5 s at n = 4096) but not fooled by constant columns (0.13 s).
    /// 2. Reduction transfer (JV, after a column reduction): a row given one column hands its slack to it.
    /// 3. Augmenting row reduction (JV), two passes: a free row takes its cheapest column, lowering its
    ///    potential to the row's second-cheapest reduced cost when it is strictly cheaper, and the row that
    ///    held it bids next. With ties JV's version displaces a row holding one of the cheapest columns, and
    ///    on integer costs rows displace each other for the whole budget (4096 x 4096 costs in 0..<100:
    ///    3,000 rows left for the augmentation). Here a tied row first takes a free column among its
    ///    cheapest, and a scan stops at the first free column at the smallest possible reduced cost (nothing
    ///    is cheaper), which turns the pass into a greedy matching on zero reduced costs (37 rows left).
    ///    The reduction is capped: late steps displace rows back and forth for little gain (measured: on 512
    ///    x 512 weight-similarity matrices an uncapped reduction runs ~66 n steps and costs 3-4x the capped
    ///    solve), and the shortest augmenting paths finish the few rows left over faster.
    static func initialise<C: AssignmentCost>(_ c: UnsafePointer<C>, n: Int, x: UnsafeMutablePointer<Int>,
                           y: UnsafeMutablePointer<Int>, v: UnsafeMutablePointer<Double>,
                           free: UnsafeMutablePointer<Int>, scratchIndex: UnsafeMutablePointer<Int>) -> Int {
        // Column reduction: v[j] = min_i c[i][j], computed row by row to stream the matrix; counts[j] is the
        // number of further rows attaining it.
        let argmin = scratchIndex
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: n)
        defer { counts.deallocate() }
        for j in 0..<n { v[j] = c[j].asDouble; argmin[j] = 0; counts[j] = 0 }
        for i in 1..<n {
            let ci = c + i * n
            for j in 0..<n {
                let h = ci[j].asDouble, vj = v[j]
                if h < vj {
                    v[j] = h
                    argmin[j] = i
                    counts[j] = 0
                } else {
                    counts[j] += h == vj ? 1 : 0
                }
            }
        }
        var sharedColumns = 0
        for j in 0..<n where counts[j] * 8 >= n { sharedColumns += 1 }

        // `lower` bounds every reduced cost from below while the setup runs (potentials only decrease).
        var freeCount = 0
        let lower: Double
        if sharedColumns * 64 > n {
            var smallest = Double.infinity
            for j in 0..<n {
                smallest = min(smallest, v[j])
                v[j] = 0
            }
            lower = smallest
            for i in 0..<n { free[i] = i }
            freeCount = n
        } else {
            lower = 0
            let matches = counts
            for i in 0..<n { matches[i] = 0 }
            for j in stride(from: n - 1, through: 0, by: -1) {
                let i = argmin[j]
                matches[i] += 1
                if matches[i] == 1 {
                    x[i] = j
                    y[j] = i
                }
            }
            // Reduction transfer: a row matched once hands its slack to its column.
            for i in 0..<n {
                if matches[i] == 0 {
                    free[freeCount] = i
                    freeCount += 1
                } else if matches[i] == 1 {
                    let j1 = x[i]
                    let ci = c + i * n
                    var slack = Double.infinity
                    for j in 0..<n where j != j1 {
                        let h = ci[j].asDouble - v[j]
                        if h < slack { slack = h }
                    }
                    v[j1] -= slack
                }
            }
        }

        // Augmenting row reduction with tie-breaking, two passes.
        var budget = 3 * n + 1024
        for _ in 0..<2 {
            var k = 0
            let queued = freeCount
            freeCount = 0
            while k < queued {
                let i = free[k]
                k += 1
                budget -= 1
                if budget < 0 {
                    // Out of budget: leave this and the remaining rows free for the augmentation.
                    free[freeCount] = i
                    freeCount += 1
                    continue
                }
                // The cheapest reduced cost `umin` (first at j1, last at j2 when tied), the next larger one
                // `unext`, and a free column among the cheapest, if any.
                let ci = c + i * n
                var umin = ci[0].asDouble - v[0], unext = Double.infinity
                var j1 = 0, j2 = 0, jfree = y[0] < 0 ? 0 : -1
                var tie = false
                if jfree < 0 || umin > lower {
                    for j in 1..<n {
                        let h = ci[j].asDouble - v[j]
                        if h < unext {
                            if h > umin {
                                unext = h
                            } else if h < umin {
                                unext = umin
                                umin = h
                                j1 = j
                                j2 = j
                                tie = false
                                jfree = y[j] < 0 ? j : -1
                                if jfree >= 0 && h == lower { break }
                            } else {
                                tie = true
                                j2 = j
                                if jfree < 0 && y[j] < 0 {
                                    jfree = j
                                    if h == lower { break }
                                }
                            }
                        }
                    }
                }
                if jfree >= 0 && (tie || umin == lower) {
                    // A free column among the cheapest: take it as it is.
                    x[i] = jfree
                    y[jfree] = i
                } else if tie {
                    // Every cheapest column is held: take one (no potential changes) and leave its row to the
                    // next pass.
                    let i0 = y[j2]
                    x[i] = j2
                    y[j2] = i
                    x[i0] = -1
                    free[freeCount] = i0
                    freeCount += 1
                } else {
                    // Strictly cheapest: lower its potential to the second-cheapest reduced cost and let the
                    // row that held it bid next.
                    v[j1] -= unext - umin
                    let i0 = y[j1]
                    x[i] = j1
                    y[j1] = i
                    if i0 >= 0 {
                        x[i0] = -1
                        k -= 1
                        free[k] = i0
                    }
                }
            }
        }
        return freeCount
    }
}

/// The element types of a cost matrix: read as float64, four at a time for the vectorised loops.
protocol AssignmentCost: BinaryFloatingPoint {
    var asDouble: Double { get }
    static func load4(_ p: UnsafePointer<Self>) -> SIMD4<Double>
}

extension Double: AssignmentCost {
    @inline(__always) var asDouble: Double { self }
    @inline(__always) static func load4(_ p: UnsafePointer<Double>) -> SIMD4<Double> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Double>.self)
    }
}

extension Float: AssignmentCost {
    @inline(__always) var asDouble: Double { Double(self) }
    @inline(__always) static func load4(_ p: UnsafePointer<Float>) -> SIMD4<Double> {
        SIMD4<Double>(UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self))
    }
}
