import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

final class CurveFitTests: XCTestCase {
    /// Loss at phi(t) on a batch, in double precision accumulation.
    func loss(_ path: ModelPath, _ network: Network, t: Double, x: Tensor, y: [Int32]) -> Double {
        let z = network.logits(x, path.parameters(at: t))
        return Network.crossEntropy(z, labels: y[...]).lossSum / Double(y.count)
    }

    func testBendGradientMatchesFiniteDifferences() throws {
        let pair = PathFixtures.pair
        let a = pair.a.params, b = pair.b.params
        let batch = pair.train.slice(0..<64)
        let x = batch.x.reshaped([64, batch.x.columns])
        for type in [PathType.bezier, .polychain] {
            let bends = [PathFixtures.randomBend(like: ParameterSet.lerp(a, b, 1.0 / 3), scale: 0.01, seed: 3),
                         PathFixtures.randomBend(like: ParameterSet.lerp(a, b, 2.0 / 3), scale: 0.01, seed: 4)]
            let path = try ModelPath.withBends(type, from: a, to: b, bends: bends)
            let t = 0.41
            let (_, grads) = CurveFitter.lossAndBendGradients(network: pair.a.network, path: path, t: t, x: x, y: batch.y[...])
            XCTAssertEqual(grads.count, 2)
            for j in 0..<2 {
                // Directional derivative along a random unit direction in bend j.
                let dir = PathFixtures.randomBend(like: bends[j], scale: 1, seed: 10 + UInt64(j)) - bends[j]
                let unit = ParameterSet.combination([(dir, Float(1 / dir.norm))])
                let analytic = grads[j].dot(unit)
                let eps: Float = 1e-2
                var plus = path, minus = path
                var bp = bends, bm = bends
                bp[j] = ParameterSet.combination([(bends[j], 1), (unit, eps)])
                bm[j] = ParameterSet.combination([(bends[j], 1), (unit, -eps)])
                plus.setBends(bp)
                minus.setBends(bm)
                let numeric = (loss(plus, pair.a.network, t: t, x: x, y: batch.y)
                               - loss(minus, pair.a.network, t: t, x: x, y: batch.y)) / Double(2 * eps)
                XCTAssertGreaterThan(abs(analytic), 1e-3, "\(type) bend \(j): direction with no slope")
                XCTAssertEqual(analytic, numeric, accuracy: 0.02 * abs(numeric) + 1e-4, "\(type) bend \(j)")
            }
            // The polychain bend 1 has weight 0 at t = 0.9 (segment between bend 2 and w_B).
            if type == .polychain {
                let (_, g) = CurveFitter.lossAndBendGradients(network: pair.a.network, path: path, t: 0.9, x: x, y: batch.y[...])
                XCTAssertEqual(g[0].norm, 0)
                XCTAssertGreaterThan(g[1].norm, 0)
            }
        }
    }

    /// Fits on digits-train and returns the test metrics at 25 points.
    func fitAndMeasure(_ config: CurveFitConfig) throws -> (PathMetrics, CurveFitResult) {
        let pair = PathFixtures.pair
        let fitter = try CurveFitter(network: pair.a.network, start: pair.a.params, end: pair.b.params, data: pair.train, config: config)
        let result = fitter.fit()
        XCTAssertFalse(result.cancelled)
        let m = try XCTUnwrap(PathEvaluator(path: result.path, network: pair.a.network, datasets: [pair.test]).metrics(points: 25))[0]
        return (m, result)
    }

    /// The PyTorch reference's 30 epochs (about 2.5 s per fit in a debug build on 2 cores; 8 epochs are not
    /// enough for the Bezier barrier to fall under 0.03).
    let epochs = 30

    func testQuadraticBezierFitRemovesTheBarrier() throws {
        // The PyTorch reference's procedure: Adam at a constant 1e-2.
        var config = CurveFitConfig(type: .bezier, bends: 1, epochs: epochs, learningRate: 1e-2, batchSize: 64, seed: 0, schedule: .constant)
        config.optimizer = .adam
        let (m, result) = try fitAndMeasure(config)
        let pair = PathFixtures.pair
        let worse = max(m.points.first!.loss, m.points.last!.loss)
        print("bezier fit (\(epochs) epochs): test barrier \(m.barrier.loss), max test loss \(m.lossSummary.max) (worse endpoint \(worse)), epoch losses \(result.epochLosses)")
        XCTAssertLessThanOrEqual(m.barrier.loss, 0.03)
        XCTAssertLessThanOrEqual(m.lossSummary.max, worse + 0.03)
        XCTAssertEqual(m.points.first!.loss, (pair.expected["endpoint_test"] as! [[Double]])[0][0], accuracy: 1e-4)
        XCTAssertLessThan(result.epochLosses.last!, result.epochLosses.first!)
    }

    func testPolychainFitComesClose() throws {
        let (m, _) = try fitAndMeasure(CurveFitConfig(type: .polychain, bends: 1, epochs: epochs, learningRate: 1e-2, batchSize: 64, seed: 0,
                                                      schedule: .constant))
        let worse = max(m.points.first!.loss, m.points.last!.loss)
        print("polychain fit (\(epochs) epochs): test barrier \(m.barrier.loss), max test loss \(m.lossSummary.max)")
        XCTAssertLessThanOrEqual(m.barrier.loss, 0.03)
        XCTAssertLessThanOrEqual(m.lossSummary.max, worse + 0.03)
    }

    /// With several bends a constant Adam 1e-2 oscillates (3-bend polychain: test barrier 0.87); the default
    /// Garipov schedule settles.
    func testThreeBendPolychainWithGaripovSchedule() throws {
        let (m, _) = try fitAndMeasure(CurveFitConfig(type: .polychain, bends: 3, epochs: epochs, learningRate: 1e-2, batchSize: 64, seed: 0))
        print("3-bend polychain fit, Garipov schedule: test barrier \(m.barrier.loss), max test loss \(m.lossSummary.max)")
        XCTAssertLessThanOrEqual(m.barrier.loss, 0.03)
        let s = LearningRateSchedule.garipov
        XCTAssertEqual(s.factor(epoch: 1, of: 30), 1)
        XCTAssertEqual(s.factor(epoch: 16, of: 30), 1)
        XCTAssertEqual(s.factor(epoch: 22, of: 30), 1 - (0.7 - 0.5) / 0.4 * 0.99, accuracy: 1e-6)
        XCTAssertEqual(s.factor(epoch: 30, of: 30), 0.01)
        XCTAssertEqual(LearningRateSchedule.constant.factor(epoch: 30, of: 30), 1)
    }

    func testFitIsReproducibleCancellableAndSavesBends() throws {
        let pair = PathFixtures.pair
        let data = pair.train.slice(0..<256)
        var config = CurveFitConfig(type: .bezier, bends: 2, epochs: 2, learningRate: 1e-2, batchSize: 32, seed: 5)
        config.optimizer = .sgd
        config.l2 = 1e-4
        let fitter = try CurveFitter(network: pair.a.network, start: pair.a.params, end: pair.b.params, data: data, config: config)
        var reports: [CurveFitProgress] = []
        var snapshots: [(Int, ModelPath)] = []
        let r1 = fitter.fit(progress: { reports.append($0) }, epochEnd: { snapshots.append(($0, $1)) })
        XCTAssertEqual(snapshots.map(\.0), [1, 2])
        XCTAssertEqual(snapshots.last!.1.bends, r1.path.bends)
        let r2 = fitter.fit()
        XCTAssertEqual(r1.path.bends, r2.path.bends)
        XCTAssertEqual(r1.epochLosses.count, 2)
        XCTAssertEqual(reports.filter(\.endOfEpoch).map(\.epoch), [1, 2])
        XCTAssertEqual(reports.filter { !$0.endOfEpoch }.count, 16)
        XCTAssertEqual(reports.last!.fraction, 1, accuracy: 1e-12)
        XCTAssertNotEqual(r1.path.bends[0], fitter.path.bends[0])

        // Cancelled from another thread: stops between minibatches.
        let flag = CancellationFlag()
        let box = ResultBox()
        let done = expectation(description: "fit stopped")
        let background = fitter
        Thread.detachNewThread {
            let r = background.fit(cancel: flag) { p in if p.epoch == 1 && p.batch == 3 { flag.cancel() } }
            box.set(r)
            done.fulfill()
        }
        wait(for: [done], timeout: 60)
        XCTAssertEqual(box.get()?.cancelled, true)
        XCTAssertEqual(box.get()?.epochLosses.count, 0)

        // Round trip through a bends file with the endpoints' digests.
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("bends.safetensors")
        let sa = try FileDigest.sha256(Fixtures.mlpSeed0), sb = try FileDigest.sha256(Fixtures.mlpSeed1)
        try BendsFile.write(r1.path, to: url, startSHA256: sa, endSHA256: sb)
        let loaded = try BendsFile.read(url, like: pair.a.params)
        XCTAssertEqual(loaded.type, .bezier)
        XCTAssertEqual(loaded.bends, r1.path.bends)
        XCTAssertEqual(loaded.bends[0].names, pair.a.params.names)
        XCTAssertEqual(loaded.startSHA256, sa)
        XCTAssertNoThrow(try BendsFile.checkEndpoints(loaded, file: url, startSHA256: sa, endSHA256: sb))
        XCTAssertThrowsError(try BendsFile.checkEndpoints(loaded, file: url, startSHA256: sb, endSHA256: sa)) { e in
            XCTAssertTrue("\(e)".contains("other order"), "\(e)")
        }
        // Resuming from loaded bends continues the same path.
        let resumed = try CurveFitter(network: pair.a.network,
                                      path: .withBends(loaded.type, from: pair.a.params, to: pair.b.params, bends: loaded.bends),
                                      data: data, config: config)
        XCTAssertEqual(resumed.path.bends, r1.path.bends)
        XCTAssertThrowsError(try BendsFile.read(Fixtures.mlpSeed0))
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: CurveFitResult?
    func set(_ v: CurveFitResult) { lock.lock(); value = v; lock.unlock() }
    func get() -> CurveFitResult? { lock.lock(); defer { lock.unlock() }; return value }
}
