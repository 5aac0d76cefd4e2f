import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// The naive linear path between two CNNs with BatchNorm (running statistics interpolated like every other
/// tensor) against PyTorch's 21 points on digits-test.
final class CNNPathTests: XCTestCase {
    func testNaiveLinearPathMatchesPyTorch() throws {
        let test = try Dataset(url: Fixtures.digitsTest)
        let all = try Fixtures.json("cnn/expected.json") as! [String: Any]
        for net in ["vgg", "resnet"] {
            let e = all[net] as! [String: Any]
            let choice = ArchitectureChoice(file: Fixtures.url("cnn/\(net).arch.json"))
            let a = try LoadedModel(path: Fixtures.url("cnn/\(net)-seed0.safetensors").path, architecture: choice)
            let b = try LoadedModel(path: Fixtures.url("cnn/\(net)-seed1.safetensors").path, architecture: choice)
            let path = try ModelPath.linear(a.params, b.params)
            let points = e["linear_test_naive"] as! [[Double]]
            // All 21 points with the fast evaluator (the first convolution reads the input, so its outputs are
            // combined per control point), the midpoint also with the naive one (phi(t) built, network run).
            for fast in [true, false] {
                let evaluator = PathEvaluator(path: path, network: a.network, datasets: [test], batchSize: 200, fast: fast)
                XCTAssertEqual(evaluator.usesFirstLayerShortcut, fast, net)
                let chosen = fast ? points : points.filter { $0[0] == 0.5 }
                let results = try XCTUnwrap(evaluator.evaluatePoints(ts: chosen.map { $0[0] }))
                for (got, want) in zip(results, chosen) {
                    XCTAssertEqual(got[0].loss, want[1], accuracy: 1e-4, "\(net) t=\(want[0]) fast=\(fast)")
                    XCTAssertEqual(got[0].accuracy, want[2], accuracy: 1e-4, "\(net) t=\(want[0]) fast=\(fast)")
                }
                if fast {
                    let m = PathMetrics(type: .linear, data: test.name, samples: test.count,
                                        points: zip(chosen, results).map { PathPoint(t: $0.0[0], loss: $0.1[0].loss, accuracy: $0.1[0].accuracy) })
                    XCTAssertEqual(m.barrier.loss, e["linear_test_naive_barrier"] as! Double, accuracy: 1e-4, net)
                }
            }
        }
    }
}
