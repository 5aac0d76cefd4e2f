import XCTest
@testable import BasinFusion
import BasinIO
import BasinTestSupport
import BasinTensor

final class LinearAssignmentTests: XCTestCase {
    /// The best total over every injective map of rows into columns (rows <= columns), by enumeration.
    private func bruteForce(_ cost: [Double], rows: Int, columns: Int, maximize: Bool) -> Double? {
        var best: Double? = nil
        var used = [Bool](repeating: false, count: columns)
        func recurse(_ i: Int, _ sum: Double) {
            if i == rows {
                if sum.isFinite, best == nil || (maximize ? sum > best! : sum < best!) { best = sum }
                return
            }
            for j in 0..<columns where !used[j] {
                used[j] = true
                recurse(i + 1, sum + cost[i * columns + j])
                used[j] = false
            }
        }
        recurse(0, 0)
        return best
    }

    /// Checks that the assignment is injective, in range, complete, and that its total is its recomputed sum.
    private func checkValid(_ a: LinearAssignment.Assignment, _ cost: [Double], rows: Int, columns: Int,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.columnForRow.count, rows, file: file, line: line)
        var seen = Set<Int>()
        var sum = 0.0
        for (i, j) in a.columnForRow.enumerated() {
            if rows > columns && j == -1 { continue }
            XCTAssertTrue((0..<columns).contains(j), "row \(i) -> column \(j)", file: file, line: line)
            guard (0..<columns).contains(j) else { return }
            XCTAssertTrue(seen.insert(j).inserted, "column \(j) used twice", file: file, line: line)
            sum += cost[i * columns + j]
        }
        XCTAssertEqual(seen.count, min(rows, columns), file: file, line: line)
        XCTAssertEqual(sum, a.total, accuracy: 1e-12 * max(1, abs(sum)), file: file, line: line)
    }

    func testBruteForceSmallRandomInstances() throws {
        var generator = SeededGenerator(seed: 42)
        for trial in 0..<600 {
            let rows = Int.random(in: 1...6, using: &generator)
            let columns = rows + Int.random(in: 0...2, using: &generator)
            let kind = trial % 4
            let cost: [Double] = (0..<(rows * columns)).map { _ in
                switch kind {
                case 0: return generator.nextUnit()
                case 1: return Double(Int.random(in: 0...3, using: &generator))         // many ties
                case 2: return (generator.nextUnit() - 0.5) * 200                   // negative
                default: return Double(Int.random(in: -2...2, using: &generator)) * 0.25 // ties and negative
                }
            }
            for maximize in [false, true] {
                let a = try LinearAssignment.solve(cost: cost, rows: rows, columns: columns, maximize: maximize)
                checkValid(a, cost, rows: rows, columns: columns)
                let expected = bruteForce(cost, rows: rows, columns: columns, maximize: maximize)!
                XCTAssertEqual(a.total, expected, accuracy: 1e-9 * max(1, abs(expected)),
                               "trial \(trial) \(rows)x\(columns) maximize \(maximize)")
            }
        }
    }

    func testSevenBySevenAndWide() throws {
        var generator = SeededGenerator(seed: 7)
        for (rows, columns) in [(7, 7), (5, 8), (3, 9), (1, 6), (2, 2)] {
            for _ in 0..<5 {
                let cost = (0..<(rows * columns)).map { _ in generator.nextUnit() * 10 - 3 }
                for maximize in [false, true] {
                    let a = try LinearAssignment.solve(cost: cost, rows: rows, columns: columns, maximize: maximize)
                    checkValid(a, cost, rows: rows, columns: columns)
                    let expected = bruteForce(cost, rows: rows, columns: columns, maximize: maximize)!
                    XCTAssertEqual(a.total, expected, accuracy: 1e-9 * max(1, abs(expected)))
                }
            }
        }
    }

    func testTallMatricesSolveTheTranspose() throws {
        var generator = SeededGenerator(seed: 3)
        for _ in 0..<50 {
            let (rows, columns) = (Int.random(in: 3...6, using: &generator), Int.random(in: 1...2, using: &generator))
            let cost = (0..<(rows * columns)).map { _ in generator.nextUnit() }
            var transposed = [Double](repeating: 0, count: cost.count)
            for i in 0..<rows { for j in 0..<columns { transposed[j * rows + i] = cost[i * columns + j] } }
            let a = try LinearAssignment.solve(cost: cost, rows: rows, columns: columns)
            checkValid(a, cost, rows: rows, columns: columns)
            XCTAssertEqual(a.columnForRow.filter { $0 == -1 }.count, rows - columns)
            let expected = bruteForce(transposed, rows: columns, columns: rows, maximize: false)!
            XCTAssertEqual(a.total, expected, accuracy: 1e-12)
        }
    }

    func testForbiddenPairs() throws {
        let inf = Double.infinity
        // The diagonal is cheap but forbidden off it only where marked.
        let cost: [Double] = [inf, 1, 5,
                              2, inf, 1,
                              1, 3, inf]
        let a = try LinearAssignment.solve(cost: cost, rows: 3, columns: 3)
        checkValid(a, cost, rows: 3, columns: 3)
        XCTAssertEqual(a.total, 3) // 0->1, 1->2, 2->0
        // Maximising forbids -inf instead.
        let b = try LinearAssignment.solve(cost: cost.map { $0 == inf ? -inf : -$0 }, rows: 3, columns: 3, maximize: true)
        XCTAssertEqual(b.total, -3)
        XCTAssertEqual(b.columnForRow, a.columnForRow)

        // Random instances with forbidden entries against brute force (square and rectangular).
        var generator = SeededGenerator(seed: 11)
        var feasible = 0, infeasible = 0
        for _ in 0..<300 {
            let rows = Int.random(in: 1...5, using: &generator)
            let columns = rows + Int.random(in: 0...2, using: &generator)
            let cost = (0..<(rows * columns)).map { _ in
                generator.nextUnit() < 0.35 ? inf : generator.nextUnit()
            }
            if let expected = bruteForce(cost, rows: rows, columns: columns, maximize: false) {
                let a = try LinearAssignment.solve(cost: cost, rows: rows, columns: columns)
                checkValid(a, cost, rows: rows, columns: columns)
                XCTAssertEqual(a.total, expected, accuracy: 1e-12)
                feasible += 1
            } else {
                XCTAssertThrowsError(try LinearAssignment.solve(cost: cost, rows: rows, columns: columns)) {
                    XCTAssertEqual($0 as? LinearAssignment.Error, .infeasible)
                }
                infeasible += 1
            }
        }
        XCTAssertGreaterThan(feasible, 50)
        XCTAssertGreaterThan(infeasible, 10)
    }

    func testInvalidInput() {
        XCTAssertThrowsError(try LinearAssignment.solve(cost: [1, .nan, 2, 3], rows: 2, columns: 2)) {
            guard case let .invalidCost(r, c, v)? = $0 as? LinearAssignment.Error else { return XCTFail("\($0)") }
            XCTAssertEqual(r, 0); XCTAssertEqual(c, 1); XCTAssertTrue(v.isNaN)
        }
        XCTAssertThrowsError(try LinearAssignment.solve(cost: [1, 2, -.infinity, 3], rows: 2, columns: 2)) {
            XCTAssertEqual($0 as? LinearAssignment.Error, .invalidCost(row: 1, column: 0, value: -.infinity))
        }
        XCTAssertThrowsError(try LinearAssignment.solve(cost: [1, 2, .infinity, 3], rows: 2, columns: 2, maximize: true)) {
            XCTAssertEqual($0 as? LinearAssignment.Error, .invalidCost(row: 1, column: 0, value: .infinity))
        }
        XCTAssertThrowsError(try LinearAssignment.solve(cost: [1, 2, 3], rows: 2, columns: 2)) {
            XCTAssertEqual($0 as? LinearAssignment.Error, .shapeMismatch(rows: 2, columns: 2, count: 3))
        }
        XCTAssertThrowsError(try LinearAssignment.solve(cost: [.infinity, .infinity, 1, 2], rows: 2, columns: 2)) {
            XCTAssertEqual($0 as? LinearAssignment.Error, .infeasible)
        }
        XCTAssertFalse(LinearAssignment.Error.infeasible.description.isEmpty)
    }

    func testEmptyAndTrivial() throws {
        let empty = try LinearAssignment.solve(cost: [], rows: 0, columns: 5)
        XCTAssertEqual(empty.columnForRow, [])
        XCTAssertEqual(empty.total, 0)
        let noColumns = try LinearAssignment.solve(cost: [], rows: 2, columns: 0)
        XCTAssertEqual(noColumns.columnForRow, [-1, -1])
        let one = try LinearAssignment.solve(cost: [-4], rows: 1, columns: 1)
        XCTAssertEqual(one.columnForRow, [0])
        XCTAssertEqual(one.total, -4)
        let row = try LinearAssignment.solve(cost: [3, 1, 2], rows: 1, columns: 3, maximize: true)
        XCTAssertEqual(row.columnForRow, [0])
        XCTAssertEqual(row.rowForColumn(columns: 3), [0, -1, -1])
    }

    func testMediumInstancesAgreeWithPureAugmentation() throws {
        // The JV initialisation (square, finite) must not change the optimum: compare with the same
        // matrix padded by one expensive column, which takes the pure augmenting path route.
        var generator = SeededGenerator(seed: 5)
        for n in [10, 50, 120] {
            for ties in [false, true] {
                let cost = (0..<(n * n)).map { _ in ties ? Double(Int.random(in: 0..<4, using: &generator)) : generator.nextUnit() }
                var padded = [Double]()
                for i in 0..<n { padded += cost[(i * n)..<(i * n + n)]; padded.append(1e9) }
                let a = try LinearAssignment.solve(cost: cost, rows: n, columns: n)
                let b = try LinearAssignment.solve(cost: padded, rows: n, columns: n + 1)
                checkValid(a, cost, rows: n, columns: n)
                XCTAssertFalse(b.columnForRow.contains(n))
                XCTAssertEqual(a.total, b.total, accuracy: 1e-9 * max(1, abs(a.total)))
            }
        }
    }

    func testBenchmarkRunsOnSmallSizes() {
        let results = LinearAssignment.benchmark(sizes: [8, 32], seed: 1)
        XCTAssertEqual(results.map(\.n), [8, 32])
        XCTAssertTrue(results.allSatisfy { $0.seconds >= 0 && $0.total > 0 })
        XCTAssertEqual(results, results.map { r in LAPBenchResult(n: r.n, seconds: r.seconds, cpuSeconds: r.cpuSeconds, total: r.total) })
    }

    func testFixturesMatchSciPy() throws {
        let expected = try XCTUnwrap(Fixtures.json("lap/expected.json") as? [[String: Any]])
        XCTAssertEqual(expected.count, 6)
        for entry in expected {
            let name = try XCTUnwrap(entry["file"] as? String)
            let file = try SafeTensorsFile(url: Fixtures.url("lap/" + name))
            let shape = try XCTUnwrap(file.info("cost")?.shape)
            XCTAssertEqual(shape.count, 2)
            let cost = try file.doubles("cost")
            for maximize in [false, true] {
                let want = try XCTUnwrap(entry[maximize ? "maximize_total" : "minimize_total"] as? Double)
                let a = try LinearAssignment.solve(cost: cost, rows: shape[0], columns: shape[1], maximize: maximize)
                checkValid(a, cost, rows: shape[0], columns: shape[1])
                XCTAssertEqual(a.total, want, accuracy: 1e-9 * max(abs(want), 1e-300), "\(name) maximize \(maximize)")
            }
        }
    }

    // MARK: - Dual certificates

    /// Checks the solver's dual certificate for a minimisation with rows <= columns: the assignment is a
    /// matching, every reduced cost c[i][j] - u[i] - v[j] is >= 0 with u[i] = c[i][x[i]] - v[x[i]], and for
    /// rectangular problems v <= 0 with v = 0 on the unassigned columns. Then sum(u) + sum(v) is a lower bound
    /// on every assignment's cost (weak duality) and equals this one's, so it is optimal, whatever the solver
    /// did to get there.
    private func checkCertificate(_ cost: [Double], rows n: Int, columns m: Int, _ label: String,
                                  file: StaticString = #filePath, line: UInt = #line) throws {
        let (x, v) = try cost.withUnsafeBufferPointer {
            try LinearAssignment.minimise($0.baseAddress!, n: n, m: m, allFinite: true)
        }
        XCTAssertEqual(x.count, n, label, file: file, line: line)
        XCTAssertEqual(Set(x).count, n, "\(label): a column used twice", file: file, line: line)
        XCTAssertTrue(x.allSatisfy { (0..<m).contains($0) }, label, file: file, line: line)
        let scale = max(1, cost.map(abs).max() ?? 1, v.map(abs).max() ?? 1)
        let tolerance = 1e-12 * scale
        var worst = 0.0
        for i in 0..<n {
            let u = cost[i * m + x[i]] - v[x[i]]
            for j in 0..<m { worst = min(worst, cost[i * m + j] - u - v[j]) }
        }
        XCTAssertGreaterThanOrEqual(worst, -tolerance, "\(label): negative reduced cost", file: file, line: line)
        if n < m {
            let used = Set(x)
            for j in 0..<m {
                XCTAssertLessThanOrEqual(v[j], tolerance, "\(label): positive column potential", file: file, line: line)
                if !used.contains(j) { XCTAssertEqual(v[j], 0, accuracy: tolerance, "\(label): free column \(j)", file: file, line: line) }
            }
        }
        // The public entry point agrees.
        let a = try LinearAssignment.solve(cost: cost, rows: n, columns: m)
        XCTAssertEqual(a.total, zip(0..<n, x).reduce(0) { $0 + cost[$1.0 * m + $1.1] }, accuracy: 1e-9 * scale, label,
                       file: file, line: line)
    }

    /// Random instances of every shape the setup phase treats differently: no ties, integer ties of every
    /// density (column reduction or row reduction start), constant rows and columns (dead units), a constant
    /// matrix, negative costs and rectangular matrices (no setup).
    func testDualCertificatesOnRandomInstances() throws {
        var g = SeededGenerator(seed: 2024)
        var count = 0
        for n in [2, 3, 17, 64, 150, 301] {
            for kind in 0..<8 {
                let m = kind == 7 ? n + Int.random(in: 1...n, using: &g) : n
                var cost = [Double](repeating: 0, count: n * m)
                for k in cost.indices {
                    switch kind {
                    case 0: cost[k] = g.nextUnit()
                    case 1: cost[k] = Double(Int.random(in: 0..<2, using: &g))
                    case 2: cost[k] = Double(Int.random(in: 0..<10, using: &g))
                    case 3: cost[k] = Double(Int.random(in: 0..<(n * n), using: &g))
                    case 4: cost[k] = g.nextUnit() * 2 - 1
                    case 5: cost[k] = 3
                    default: cost[k] = (g.nextUnit() - 0.5) * 1e3
                    }
                }
                if kind == 4 || kind == 6 {
                    // Constant columns and rows, as dead units give a similarity matrix.
                    for j in 0..<m where g.nextUnit() < 0.2 { for i in 0..<n { cost[i * m + j] = 0 } }
                    for i in 0..<n where g.nextUnit() < 0.2 { for j in 0..<m { cost[i * m + j] = 0 } }
                }
                try checkCertificate(cost, rows: n, columns: m, "n \(n) x \(m), kind \(kind)")
                count += 1
            }
        }
        XCTAssertEqual(count, 48)
    }

    /// Float32 costs are the same problem as their float64 values: the same optimum, a valid certificate.
    func testFloatCostsSolveTheSameProblem() throws {
        var g = SeededGenerator(seed: 77)
        for (n, m) in [(1, 1), (2, 2), (7, 7), (50, 50), (120, 120), (31, 45), (9, 4)] {
            for kind in 0..<3 {
                let floats: [Float] = (0..<(n * m)).map { _ in
                    switch kind {
                    case 0: return Float(g.nextUnit())
                    case 1: return Float(Int.random(in: 0..<5, using: &g))
                    default: return g.nextUnit() < 0.2 ? 0 : Float(g.normal())
                    }
                }
                let doubles = floats.map(Double.init)
                for maximize in [false, true] {
                    let a = try floats.withUnsafeBufferPointer { try LinearAssignment.solve(cost: $0, rows: n, columns: m, maximize: maximize) }
                    let b = try LinearAssignment.solve(cost: doubles, rows: n, columns: m, maximize: maximize)
                    checkValid(a, doubles, rows: n, columns: m)
                    XCTAssertEqual(a.total, b.total, accuracy: 1e-12 * max(1, abs(b.total)), "\(n)x\(m) kind \(kind) maximize \(maximize)")
                }
                if n <= m && n > 0 {
                    let (x, v) = try floats.withUnsafeBufferPointer { try LinearAssignment.minimise($0.baseAddress!, n: n, m: m, allFinite: true) }
                    var worst = 0.0
                    for i in 0..<n {
                        let u = doubles[i * m + x[i]] - v[x[i]]
                        for j in 0..<m { worst = min(worst, doubles[i * m + j] - u - v[j]) }
                    }
                    XCTAssertGreaterThanOrEqual(worst, -1e-9, "\(n)x\(m) kind \(kind)")
                }
            }
        }
        XCTAssertThrowsError(try [Float(1), .nan, 2, 3].withUnsafeBufferPointer { try LinearAssignment.solve(cost: $0, rows: 2, columns: 2) }) {
            guard case let .invalidCost(r, c, _)? = $0 as? LinearAssignment.Error else { return XCTFail("\($0)") }
            XCTAssertEqual(r, 0)
            XCTAssertEqual(c, 1)
        }
    }

    /// The benchmark's matrices (the same generator as scripts/alignment_reference.py): the optimum equals
    /// SciPy's on each kind, and the certificate holds.
    func testBenchmarkKindsMatchSciPy() throws {
        let fixture = try XCTUnwrap(Fixtures.json("lap/bench-kinds-scipy.json") as? [String: Any])
        let sizes = try XCTUnwrap(fixture["sizes"] as? [Int])
        let totals = try XCTUnwrap(fixture["totals"] as? [String: [Double]])
        for kind in LAPCostKind.allCases {
            let want = try XCTUnwrap(totals[kind.rawValue])
            var g = SeededGenerator(seed: 0)
            for (k, n) in sizes.enumerated() {
                let cost = LinearAssignment.benchmarkCosts(kind, n: n, generator: &g)
                let a = try LinearAssignment.solve(cost: cost, rows: n, columns: n)
                XCTAssertEqual(a.total, want[k], accuracy: 1e-9 * max(1, abs(want[k])), "\(kind) n \(n)")
                try checkCertificate(cost, rows: n, columns: n, "\(kind) n \(n)")
            }
        }
        let results = LinearAssignment.benchmark(kind: .correlation, sizes: sizes, seed: 0, repeats: 2)
        XCTAssertEqual(results.map(\.n), sizes)
        for (r, want) in zip(results, try XCTUnwrap(totals["correlation"])) {
            XCTAssertEqual(r.total, want, accuracy: 1e-9 * max(1, abs(want)))
            XCTAssertGreaterThanOrEqual(r.cpuSeconds, 0)
        }
    }
}
