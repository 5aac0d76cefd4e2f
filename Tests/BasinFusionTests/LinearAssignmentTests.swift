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
        XCTAssertEqual(results, results.map { r in LAPBenchResult(n: r.n, seconds: r.seconds, total: r.total) })
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
}
