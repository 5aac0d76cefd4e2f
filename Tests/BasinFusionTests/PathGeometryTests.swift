import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

final class PathGeometryTests: XCTestCase {
    func point(_ values: [Float]) -> ParameterSet {
        ParameterSet([("w", Tensor(shape: [values.count - 1], storage: Array(values.dropLast()))),
                      ("b", Tensor(shape: [1], storage: [values.last!]))])
    }

    func values(_ p: ParameterSet) -> [Float] { p["w"]!.storage + p["b"]!.storage }

    func testSegmentAndChain() throws {
        let a = point([0, 0, 1]), b = point([2, 4, 3]), c = point([2, 0, 3])
        let seg = try ModelPath.linear(a, b)
        XCTAssertEqual(values(seg.parameters(at: 0.25)), [0.5, 1, 1.5])
        XCTAssertEqual(seg.length(), (4.0 + 16 + 4).squareRoot(), accuracy: 1e-6)
        let chain = try ModelPath.chain([a, b, c])
        XCTAssertEqual(values(chain.parameters(at: 0.5)), values(b))
        XCTAssertEqual(values(chain.parameters(at: 0.75)), [2, 2, 3])
        XCTAssertEqual(values(chain.parameters(at: 1)), values(c))
        XCTAssertEqual(chain.length(), 24.0.squareRoot() + 4, accuracy: 1e-6)
        XCTAssertThrowsError(try ModelPath.linear(a, point([1, 2])))
    }

    func testPolychainKnotsAndEq3() throws {
        let a = point([0, 0, 0]), b = point([4, 0, 0]), theta = point([2, 2, 0])
        let p = try ModelPath.withBends(.polychain, from: a, to: b, bends: [theta])
        // Eq. 3: 2 (t theta + (0.5 - t) w_A) for t <= 0.5, 2 ((t - 0.5) w_B + (1 - t) theta) after.
        XCTAssertEqual(values(p.parameters(at: 0.25)), [1, 1, 0])
        XCTAssertEqual(values(p.parameters(at: 0.5)), values(theta))
        XCTAssertEqual(values(p.parameters(at: 0.75)), [3, 1, 0])
        XCTAssertEqual(p.length(), 2 * 8.0.squareRoot(), accuracy: 1e-6)
        let three = try ModelPath.initialised(.polychain, from: a, to: b, bends: 3)
        XCTAssertEqual(three.bends.count, 3)
        XCTAssertEqual(values(three.bends[1]), [2, 0, 0])
        XCTAssertEqual(three.weights(at: 0.375), [0, 0.5, 0.5, 0, 0])
    }

    func testBezierBernsteinWeights() throws {
        let a = point([0, 0, 0]), b = point([2, 0, 0]), theta = point([1, 2, 0])
        let q = try ModelPath.withBends(.bezier, from: a, to: b, bends: [theta])
        for t in [0.0, 0.2, 0.5, 0.9, 1] {
            // Eq. 6: (1 - t)^2 w_A + 2 t (1 - t) theta + t^2 w_B.
            let w = q.weights(at: t)
            XCTAssertEqual(w[0], (1 - t) * (1 - t), accuracy: 1e-12)
            XCTAssertEqual(w[1], 2 * t * (1 - t), accuracy: 1e-12)
            XCTAssertEqual(w[2], t * t, accuracy: 1e-12)
        }
        let cubic = try ModelPath.withBends(.bezier, from: a, to: b, bends: [theta, theta])
        XCTAssertEqual(cubic.weights(at: 0.3).reduce(0, +), 1, accuracy: 1e-12)
        XCTAssertEqual(cubic.weights(at: 0.5), [0.125, 0.375, 0.375, 0.125])
        // The quadratic's length: integral of |phi'(t)| with phi' = (2, 4 - 8t), checked numerically.
        var exact = 0.0
        let steps = 100_000
        for s in 0..<steps {
            let t = (Double(s) + 0.5) / Double(steps)
            exact += (4 + (4 - 8 * t) * (4 - 8 * t)).squareRoot() / Double(steps)
        }
        XCTAssertEqual(q.length(), exact, accuracy: 1e-5)
        // A quadratic with its bend at the midpoint is the segment.
        let straight = try ModelPath.initialised(.bezier, from: a, to: b, bends: 1)
        XCTAssertEqual(values(straight.parameters(at: 0.3)), [0.6, 0, 0])
    }

    func testMetricsSummaryAndBarriers() {
        let pts = [PathPoint(t: 0, loss: 1, accuracy: 0.9), PathPoint(t: 0.5, loss: 3, accuracy: 0.5),
                   PathPoint(t: 1, loss: 2, accuracy: 0.8)]
        let m = PathMetrics(type: .linear, data: "d", samples: 10, points: pts)
        XCTAssertEqual(m.barrier.loss, 1.5, accuracy: 1e-12)
        XCTAssertEqual(m.barrier.lossAt, 0.5)
        XCTAssertEqual(m.barrier.accuracy, 0.35, accuracy: 1e-12)
        XCTAssertEqual(m.barrier.error, 0.35, accuracy: 1e-12)
        XCTAssertEqual(m.meanBarrier.loss, 1.5, accuracy: 1e-12)
        XCTAssertEqual(m.meanBarrier.error, 0.5 - 0.15, accuracy: 1e-12)
        let integral: Double = 0.25 * 4 + 0.25 * 5
        XCTAssertEqual(m.lossSummary.integral, integral, accuracy: 1e-12)
        XCTAssertEqual(m.lossSummary.mean, 2, accuracy: 1e-12)
        XCTAssertEqual(m.lossSummary.min, 1)
        XCTAssertEqual(m.accuracySummary.min, 0.5)
        // A path below its endpoints has a zero Eq. 1 barrier (t = 0 counts).
        let low = PathMetrics(type: .bezier, data: "d", samples: 1,
                              points: [PathPoint(t: 0, loss: 1, accuracy: 1), PathPoint(t: 1, loss: 1, accuracy: 1)])
        XCTAssertEqual(low.barrier.loss, 0)
    }
}
