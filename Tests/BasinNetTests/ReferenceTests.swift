import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// Basin's numbers against PyTorch's (Tests/Fixtures, copied from ../shared).
final class ReferenceTests: XCTestCase {
    func expected() throws -> [String: Any] { try Fixtures.json("mlp-pair/expected.json") as! [String: Any] }

    func metricsPair(_ value: Any?) -> (Double, Double) {
        let a = value as! [Double]
        return (a[0], a[1])
    }

    func testEndpointsMatchPyTorchOnTestAndTrain() throws {
        let e = try expected()
        let test = try Dataset(url: Fixtures.digitsTest)
        let train = try Dataset(url: Fixtures.digitsTrain)
        for (i, url) in [Fixtures.mlpSeed0, Fixtures.mlpSeed1].enumerated() {
            let model = try LoadedModel(path: url.path)
            let mt = try model.evaluate(on: test)
            let (lt, at) = metricsPair((e["endpoint_test"] as! [Any])[i])
            XCTAssertEqual(mt.loss, lt, accuracy: 1e-4)
            XCTAssertEqual(mt.accuracy, at, accuracy: 1e-4)
            XCTAssertEqual(mt.samples, 497)
            let mr = try model.evaluate(on: train)
            let (lr, ar) = metricsPair((e["endpoint_train"] as! [Any])[i])
            XCTAssertEqual(mr.loss, lr, accuracy: 1e-4)
            XCTAssertEqual(mr.accuracy, ar, accuracy: 1e-4)
        }
    }

    func testHalfPrecisionAndSequentialCopies() throws {
        let e = try expected()
        let test = try Dataset(url: Fixtures.digitsTest)
        let cases: [(String, String)] = [("mlp-seed0-f16", "seed0_f16_test"), ("mlp-seed0-bf16", "seed0_bf16_test")]
        for (file, key) in cases {
            let m = try LoadedModel(path: Fixtures.url("mlp-pair/\(file).safetensors").path).evaluate(on: test)
            let (l, a) = metricsPair(e[key])
            XCTAssertEqual(m.loss, l, accuracy: 1e-4, file)
            XCTAssertEqual(m.accuracy, a, accuracy: 1e-4, file)
        }
        let seq = try LoadedModel(path: Fixtures.url("mlp-pair/mlp-seed0-sequential.safetensors").path)
        XCTAssertEqual(seq.architecture.linearNodes.count, 3)
        let m = try seq.evaluate(on: test)
        let (l, a) = metricsPair((e["endpoint_test"] as! [Any])[0])
        XCTAssertEqual(m.loss, l, accuracy: 1e-4)
        XCTAssertEqual(m.accuracy, a, accuracy: 1e-4)
    }

    func testGradientsMatchPyTorch() throws {
        let e = try Fixtures.json("gradients/expected.json") as! [String: Any]
        let data = try Dataset(url: Fixtures.digitsTest).slice(0..<32)
        // The activations PyTorch's gradients were recorded for (gelu_new and silu are checked in
        // TransformerKernelTests).
        for activation in [Activation.relu, .tanh, .gelu] {
            let model = try LoadedModel(path: Fixtures.mlpSeed0.path, architecture: ArchitectureChoice(activation: activation))
            let (metrics, grads) = model.network.lossAndGradients(model.params, x: data.x, y: data.y[...])
            let expectedLoss = (e[activation.rawValue] as! [String: Any])["loss"] as! Double
            XCTAssertEqual(metrics.loss, expectedLoss, accuracy: 1e-5, activation.rawValue)
            let reference = try SafeTensorsFile(url: Fixtures.url("gradients/grad-\(activation.rawValue).safetensors"))
            XCTAssertEqual(Set(grads.names), Set(reference.names))
            for name in reference.names {
                let want = try reference.tensor(name)
                let got = try XCTUnwrap(grads[name])
                XCTAssertEqual(got.shape, want.shape)
                let scale = max(want.maxAbs, 1e-12)
                XCTAssertLessThanOrEqual(got.maxAbsDifference(want), 1e-4 * scale, "\(activation) \(name)")
            }
        }
    }

    func testGradientAgreesWithFiniteDifferencesThroughResidualAdd() throws {
        // A small graph with a residual add and a gelu, checked against central differences in Float64-ish steps.
        let arch = try ArchitectureFile(nodes: [
            .init(name: "fc1", op: "linear", weight: "a.weight", bias: "a.bias", input: nil, inputs: nil),
            .init(name: "act", op: "gelu", weight: nil, bias: nil, input: nil, inputs: nil),
            .init(name: "fc2", op: "linear", weight: "b.weight", bias: "b.bias", input: nil, inputs: nil),
            .init(name: "sum", op: "add", weight: nil, bias: nil, input: nil, inputs: ["fc2", "act"]),
            .init(name: "t", op: "tanh", weight: nil, bias: nil, input: nil, inputs: nil),
            .init(name: "out", op: "linear", weight: "c.weight", bias: nil, input: nil, inputs: nil),
        ], output: nil, permutations: nil).architecture()
        var g = SeededGenerator(seed: 3)
        func rand(_ shape: [Int]) -> Tensor { Tensor(shape: shape, storage: (0..<shape.reduce(1, *)).map { _ in g.uniform(-1, 1) }) }
        let params = ParameterSet([("a.weight", rand([5, 4])), ("a.bias", rand([5])), ("b.weight", rand([5, 5])),
                                   ("b.bias", rand([5])), ("c.weight", rand([3, 5]))])
        let net = Network(arch)
        XCTAssertEqual(try arch.validate(params, inputFeatures: 4), 3)
        let x = rand([6, 4])
        let y: [Int32] = [0, 1, 2, 0, 1, 2]
        let (_, grads) = net.lossAndGradients(params, x: x, y: y[...])
        for name in params.names {
            let t = params[name]!
            for k in [0, t.count / 2, t.count - 1] {
                var plus = params, minus = params
                var tp = t, tm = t
                tp[k] += 1e-2
                tm[k] -= 1e-2
                plus[name] = tp
                minus[name] = tm
                let lp = net.lossAndGradients(plus, x: x, y: y[...]).metrics.loss
                let lm = net.lossAndGradients(minus, x: x, y: y[...]).metrics.loss
                XCTAssertEqual(Double(grads[name]![k]), (lp - lm) / 2e-2, accuracy: 2e-4, "\(name)[\(k)]")
            }
        }
    }
}
