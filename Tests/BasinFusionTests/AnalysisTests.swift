import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// The analysis APIs the explorer's landscape, soup triangle and barrier matrix are built on.
final class AnalysisTests: XCTestCase {
    static let samples = Fixtures.repositoryRoot.appendingPathComponent("SampleModels")

    func seeds(_ ids: [Int]) throws -> [LoadedModel] {
        try ids.map { try LoadedModel(path: Self.samples.appendingPathComponent("seeds/mlp-seed\($0).safetensors").path) }
    }

    func testPlaneThroughThreePoints() throws {
        let m = try seeds([0, 1, 2]).map(\.params)
        let plane = try WeightPlane.through(m[0], m[1], m[2])
        XCTAssertEqual(plane.u.norm, 1, accuracy: 1e-4)
        XCTAssertEqual(plane.v.norm, 1, accuracy: 1e-4)
        XCTAssertEqual(plane.u.dot(plane.v), 0, accuracy: 1e-4)
        // Each point lies on the plane at its anchor: projecting gives the anchor, and the anchor gives the point back.
        for (p, anchor) in zip(m, plane.anchors) {
            let c = plane.project(p)
            XCTAssertEqual(c.x, anchor.x, accuracy: 1e-3 * max(1, abs(anchor.x)))
            XCTAssertEqual(c.y, anchor.y, accuracy: 1e-3 * max(1, abs(anchor.y)))
            XCTAssertLessThan((plane.point(x: anchor.x, y: anchor.y) - p).norm, 1e-3 * p.norm)
        }
        XCTAssertEqual(plane.anchors[0], PlaneCoordinates(x: 0, y: 0))
        XCTAssertEqual(plane.anchors[2].y, 0)
        // The ranges hold every anchor with a 20% margin.
        let xs = plane.anchors.map(\.x)
        XCTAssertEqual(plane.xRange.lowerBound, xs.min()! - 0.2 * (xs.max()! - xs.min()!), accuracy: 1e-9)

        XCTAssertThrowsError(try WeightPlane.through(m[0], m[1], m[0])) { XCTAssertEqual(($0 as? AnalysisError)?.kind, .coincidentPoints) }
        for on in [ParameterSet.lerp(m[0], m[2], 0.3), m[0]] {
            XCTAssertThrowsError(try WeightPlane.through(m[0], on, m[2])) { XCTAssertEqual(($0 as? AnalysisError)?.kind, .collinearPoints) }
        }
    }

    func testLossLandscapeRowsAndCancellation() throws {
        let models = try seeds([0, 1, 2])
        let data = try Dataset(url: Self.samples.appendingPathComponent("data/digits-test.safetensors"))
        let plane = try WeightPlane.through(models[0].params, models[1].params, models[2].params)
        var rows: [Int] = []
        var points: [[Int]] = []
        let land = try XCTUnwrap(LossLandscape.compute(plane: plane, network: models[0].network, data: data, resolution: 5,
                                                       onPoint: { points.append([$0, $1]) }) { r, m in
            rows.append(r)
            XCTAssertEqual(m.count, 5)
            XCTAssertEqual(points.last, [(r + 1) * 5, 25], "a row ends after its last point")
        })
        XCTAssertEqual(rows, [0, 1, 2, 3, 4])
        XCTAssertEqual(points, (1...25).map { [$0, 25] }, "progress moves per grid point")
        XCTAssertEqual(land.loss.count, 5)
        XCTAssertEqual(land.xs.first, plane.xRange.lowerBound)
        XCTAssertEqual(land.ys.first, plane.yRange.upperBound, "row 0 is the top")
        let direct = models[0].network.evaluate(plane.point(x: land.xs[3], y: land.ys[1]), on: data)
        XCTAssertEqual(land.loss[1][3], direct.loss)
        XCTAssertEqual(land.accuracy[1][3], direct.accuracy)

        let flag = CancellationFlag()
        var computed = 0
        let cancelled = try LossLandscape.compute(plane: plane, network: models[0].network, data: data, resolution: 5, cancel: flag) { _, _ in
            computed += 1
            flag.cancel()
        }
        XCTAssertNil(cancelled)
        XCTAssertEqual(computed, 1, "stops before the next row")
        XCTAssertThrowsError(try LossLandscape.compute(plane: plane, network: models[0].network, data: data, resolution: 1)) {
            XCTAssertEqual(($0 as? AnalysisError)?.kind, .invalidArgument)
        }
    }

    func testSoupSimplexCornersAndOutside() throws {
        let models = try seeds([0, 1, 2])
        let p = models.map(\.params)
        let data = try Dataset(url: Self.samples.appendingPathComponent("data/digits-test.safetensors"))
        var progress: [Int] = []
        let s = try XCTUnwrap(SoupSimplex.compute(resolution: 4, network: models[0].network, data: data, progress: { done, total in
            progress.append(done)
            XCTAssertEqual(total, 5)
        }) { w in try ParameterMerge.weightedAverage(p, lambdas: w.map(Float.init)) })
        XCTAssertEqual(progress, [1, 2, 3, 4, 5])
        XCTAssertEqual(s.loss.count, 5)
        // Corners: the first model bottom-left, the second bottom-right, the third at the top.
        for (i, cell) in [(0, (4, 0)), (1, (4, 4)), (2, (0, 0))] {
            XCTAssertEqual(s.loss[cell.0][cell.1], models[0].network.evaluate(p[i], on: data).loss, accuracy: 1e-6, "model \(i)")
        }
        XCTAssertTrue(s.loss[0][4].isNaN, "outside the triangle")
        XCTAssertEqual(SoupSimplex.coefficients(row: 2, column: 1, resolution: 4), [0.25, 0.25, 0.5])
        XCTAssertNil(SoupSimplex.coefficients(row: 1, column: 3, resolution: 4))
        XCTAssertTrue(SoupSimplex.cell(for: [0.25, 0.25, 0.5], resolution: 4) == (2, 1))
        XCTAssertTrue(SoupSimplex.cell(for: [1, 1, 2], resolution: 4) == (2, 1), "coefficients are normalised")

        let flag = CancellationFlag()
        flag.cancel()
        XCTAssertNil(try SoupSimplex.compute(resolution: 4, network: models[0].network, data: data, cancel: flag) { _ in p[0] })
        struct Refused: Error {}
        XCTAssertThrowsError(try SoupSimplex.compute(resolution: 2, network: models[0].network, data: data) { _ in throw Refused() })
    }

    func testBarrierMatrixMatchesTheReference() throws {
        let a = try LoadedModel(path: Fixtures.mlpSeed0.path), b = try LoadedModel(path: Fixtures.mlpSeed1.path)
        let test = try Dataset(url: Fixtures.digitsTest), train = try Dataset(url: Fixtures.digitsTrain)
        let expected = try XCTUnwrap(Fixtures.json("mlp-pair/expected.json") as? [String: Any])
        var steps: [Int] = []
        let m = try XCTUnwrap(BarrierMatrix.compute(models: [a.params, b.params], network: a.network, datasets: [test, train],
                                                    points: 21) { done, total in
            steps.append(done)
            XCTAssertEqual(total, 1)
        })
        XCTAssertEqual(steps, [1])
        XCTAssertEqual(m.data, [test.name, train.name])
        let loss = m.lossBarriers(data: 0)
        XCTAssertTrue(loss[0][0].isNaN && loss[1][1].isNaN)
        XCTAssertEqual(loss[0][1], loss[1][0])
        XCTAssertEqual(loss[0][1], try XCTUnwrap(expected["linear_test_barrier"] as? Double), accuracy: 2e-3)
        XCTAssertEqual(m.lossBarriers(data: 1)[0][1], try XCTUnwrap(expected["linear_train_barrier"] as? Double), accuracy: 2e-3)
        XCTAssertGreaterThan(m.accuracyBarriers(data: 0)[0][1], 0)

        let flag = CancellationFlag()
        flag.cancel()
        XCTAssertNil(try BarrierMatrix.compute(models: [a.params, b.params], network: a.network, datasets: [test], cancel: flag))
        XCTAssertThrowsError(try BarrierMatrix.compute(models: [a.params], network: a.network, datasets: [test])) {
            XCTAssertEqual(($0 as? AnalysisError)?.kind, .invalidArgument)
        }
    }

    func testMatchingStopsWhenCancelled() throws {
        let a = try LoadedModel(path: Fixtures.mlpSeed0.path), b = try LoadedModel(path: Fixtures.mlpSeed1.path)
        let train = try Dataset(url: Fixtures.digitsTrain)
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        let flag = CancellationFlag()
        flag.cancel()
        for method in MatchMethod.allCases {
            XCTAssertThrowsError(try Alignment.align(reference: a.params, model: b.params, spec: spec, method: method,
                                                     network: a.network, data: train, cancel: flag), "\(method)") {
                XCTAssertTrue($0 is CancellationError, "\(method): \($0)")
            }
        }
        // An unset flag changes nothing.
        let plain = try WeightMatching.match(reference: a.params, model: b.params, spec: spec)
        let flagged = try WeightMatching.match(reference: a.params, model: b.params, spec: spec, cancel: CancellationFlag())
        XCTAssertEqual(plain.permutations, flagged.permutations)
    }
}
