import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// The CNN ops against PyTorch (Tests/Fixtures/cnn, copied from ../shared/fixtures/cnn): a VGG-style and a
/// ResNet-style network with BatchNorm, described by the architecture files beside them.
final class CNNReferenceTests: XCTestCase {
    static let names = ["vgg", "resnet"]

    func expected(_ net: String) throws -> [String: Any] {
        (try Fixtures.json("cnn/expected.json") as! [String: Any])[net] as! [String: Any]
    }

    func model(_ net: String, _ file: String) throws -> LoadedModel {
        try LoadedModel(path: Fixtures.url("cnn/\(file).safetensors").path,
                        architecture: ArchitectureChoice(file: Fixtures.url("cnn/\(net).arch.json")))
    }

    func testEndpointsMatchPyTorch() throws {
        let test = try Dataset(url: Fixtures.digitsTest)
        let train = try Dataset(url: Fixtures.digitsTrain)
        for net in Self.names {
            let e = try expected(net)
            for seed in 0..<2 {
                let m = try model(net, "\(net)-seed\(seed)")
                XCTAssertEqual(m.outputs, 10)
                XCTAssertEqual(m.architecture.inputShape, [1, 8, 8])
                for (data, key) in [(test, "endpoint_test"), (train, "endpoint_train")] {
                    let got = try m.evaluate(on: data)
                    let want = (e[key] as! [[Double]])[seed]
                    XCTAssertEqual(got.loss, want[0], accuracy: 1e-4, "\(net) seed \(seed) \(key)")
                    XCTAssertEqual(got.accuracy, want[1], accuracy: 1e-4, "\(net) seed \(seed) \(key)")
                }
            }
        }
    }

    /// Train mode on the first 32 rows of digits-train: the gradient of every parameter and the buffers after
    /// one forward (running statistics with momentum 0.1, num_batches_tracked 631).
    func testTrainModeGradientsAndRunningStatisticsMatchPyTorch() throws {
        let reference = try SafeTensorsFile(url: Fixtures.url("cnn/gradients.safetensors"))
        let batch = try Dataset(url: Fixtures.digitsTrain).slice(0..<32)
        for net in Self.names {
            let g = try expected(net)["gradients"] as! [String: Any]
            let m = try model(net, "\(net)-seed0")
            let step = m.network.step(m.params, x: batch.x, y: batch.y[...])
            XCTAssertEqual(step.metrics.loss, g["loss"] as! Double, accuracy: 1e-5, net)
            let parameters = g["parameters"] as! [String]
            XCTAssertEqual(Set(step.gradients.names), Set(parameters), net)
            XCTAssertEqual(Set(m.architecture.trainedParameterNames), Set(parameters), net)
            for name in parameters {
                let want = try reference.tensor("\(net).\(name)")
                let got = try XCTUnwrap(step.gradients[name], name)
                XCTAssertEqual(got.shape, want.shape, name)
                XCTAssertLessThanOrEqual(got.maxAbsDifference(want), 1e-4 * max(want.maxAbs, 1e-12), "\(net) \(name)")
            }
            let updates = Dictionary(step.bufferUpdates, uniquingKeysWith: { $1 })
            let buffers = g["buffers_after_forward"] as! [String]
            XCTAssertEqual(Set(updates.keys), Set(buffers), net)
            XCTAssertEqual(Set(m.architecture.bufferNames), Set(buffers), net)
            for name in buffers {
                let want = try reference.tensor("\(net).\(name)")
                let got = try XCTUnwrap(updates[name], name)
                XCTAssertEqual(got.count, want.count, name)
                XCTAssertLessThanOrEqual(got.reshaped(want.shape).maxAbsDifference(want), 1e-4 * max(want.maxAbs, 1e-12), "\(net) \(name)")
            }
        }
    }

    /// The matched seed 1 is the same function as seed 1.
    func testMatchedModelIsTheSameFunction() throws {
        let test = try Dataset(url: Fixtures.digitsTest)
        for net in Self.names {
            let a = try model(net, "\(net)-seed1"), b = try model(net, "\(net)-seed1-matched")
            let diff = a.network.logits(test.x, a.params).maxAbsDifference(b.network.logits(test.x, b.params))
            XCTAssertLessThanOrEqual(diff, 1e-5, net)
        }
    }

    /// BatchNorm reset with cumulative statistics (momentum None) reproduces update_bn's midpoint.
    func testBatchNormResetReproducesTheMidpoint() throws {
        let train = try Dataset(url: Fixtures.digitsTrain)
        let test = try Dataset(url: Fixtures.digitsTest)
        for net in Self.names {
            let a = try model(net, "\(net)-seed0"), b = try model(net, "\(net)-seed1")
            var mid = ParameterSet.lerp(a.params, b.params, 0.5)
            for name in a.architecture.bufferNames where name.hasSuffix("num_batches_tracked") { mid[name] = a.params[name] }
            let reset = Trainer.resetBatchNormStatistics(network: a.network, params: mid, data: train, batchSize: 64)
            let want = try ParameterSet(source: SafeTensorsFile(url: Fixtures.url("cnn/\(net)-midpoint-bn-reset.safetensors")))
            XCTAssertEqual(Set(reset.names), Set(want.names))
            for name in want.names {
                XCTAssertLessThanOrEqual(reset[name]!.maxAbsDifference(want[name]!), 1e-5 * max(1, want[name]!.maxAbs), "\(net) \(name)")
            }
            let metrics = a.network.evaluate(reset, on: test)
            let e = (try expected(net)["midpoint_bn_reset"] as! [String: Any])["test"] as! [Double]
            XCTAssertEqual(metrics.loss, e[0], accuracy: 1e-4, net)
            XCTAssertEqual(metrics.accuracy, e[1], accuracy: 1e-4, net)
        }
    }

    /// The architecture files round-trip, and PyTorch's default initialisation gives the fixture's shapes
    /// (BN weight 1, bias 0, statistics 0 and 1).
    func testArchitectureFilesInitialiseLikeTheFixtures() throws {
        for net in Self.names {
            let arch = try ArchitectureFile.load(Fixtures.url("cnn/\(net).arch.json"))
            let back = try JSONDecoder().decode(ArchitectureFile.self, from: JSONEncoder().encode(arch.file)).architecture()
            XCTAssertEqual(back, arch, net)
            var g = SeededGenerator(seed: 0)
            let p = try arch.initialParameters(generator: &g)
            let reference = try ParameterSet(source: SafeTensorsFile(url: Fixtures.url("cnn/\(net)-seed0.safetensors")))
            XCTAssertEqual(Set(p.names), Set(reference.names), net)
            for name in reference.names { XCTAssertEqual(p[name]!.shape, reference[name]!.shape, name) }
            for name in p.names where name.hasSuffix("running_var") || (name.hasSuffix(".weight") && p[name]!.rank == 1) {
                XCTAssertTrue(p[name]!.storage.allSatisfy { $0 == 1 }, name)
            }
            let conv = p[net == "vgg" ? "features.3.weight" : "layer1.0.conv1.weight"]!
            let bound = 1 / Float(16 * 9).squareRoot()
            XCTAssertLessThanOrEqual(conv.maxAbs, bound)
            XCTAssertGreaterThan(conv.maxAbs, bound * 0.9)
            XCTAssertEqual(try arch.validate(p), 10)
        }
    }

    func testConvolutionalStateDictWithoutArchitectureIsAClearError() throws {
        XCTAssertThrowsError(try LoadedModel(path: Fixtures.url("cnn/resnet-seed0.safetensors").path)) { error in
            XCTAssertEqual((error as? NetworkError)?.kind, .notAChain)
            XCTAssertTrue("\(error)".contains("--arch"), "\(error)")
        }
    }
}

/// Each CNN op's backward against central differences, in eval and train mode, through small graphs.
final class CNNGradientTests: XCTestCase {
    func random(_ shape: [Int], _ g: inout SeededGenerator, scale: Float = 1) -> Tensor {
        Tensor(shape: shape, storage: (0..<shape.reduce(1, *)).map { _ in g.uniform(-scale, scale) })
    }

    func check(_ arch: Architecture, _ params: ParameterSet, x: Tensor, y: [Int32], mode: ForwardMode,
               tolerance: Double = 3e-3, file: StaticString = #filePath, line: UInt = #line) throws {
        let net = Network(arch)
        _ = try arch.validate(params, inputShape: Array(x.shape.dropFirst()))
        let step = net.step(params, x: x, y: y[...], mode: mode)
        for name in arch.trainedParameterNames {
            let t = params[name]!
            let grad = try XCTUnwrap(step.gradients[name], name, file: file, line: line)
            var checked = 0
            for k in Set([0, t.count / 3, t.count / 2, t.count - 1]) {
                var plus = params, minus = params
                var tp = t, tm = t
                let h: Float = 1e-2
                tp[k] += h
                tm[k] -= h
                plus[name] = tp
                minus[name] = tm
                let lp = net.step(plus, x: x, y: y[...], mode: mode).metrics.loss
                let lm = net.step(minus, x: x, y: y[...], mode: mode).metrics.loss
                let numeric = (lp - lm) / Double(2 * h)
                XCTAssertEqual(Double(grad[k]), numeric, accuracy: tolerance * max(1, abs(numeric)), "\(name)[\(k)] \(mode)", file: file, line: line)
                checked += 1
            }
            XCTAssertGreaterThan(checked, 0)
        }
    }

    func testConvPoolBatchNormGraph() throws {
        var g = SeededGenerator(seed: 11)
        let arch = Architecture(nodes: [
            Node(name: "c1", op: Conv2d(weight: "c1.w", bias: "c1.b", stride: [2, 1], padding: [1, 1]), inputs: [-1]),
            Node(name: "bn", op: BatchNorm(module: "bn"), inputs: [0]),
            Node(name: "r", op: .activation(.tanh), inputs: [1]),
            Node(name: "avg", op: AvgPool2d(kernel: [2, 2], stride: [1, 1], padding: [1, 1]), inputs: [2]),
            Node(name: "c2", op: Conv2d(weight: "c2.w", bias: nil, stride: [1, 1], padding: [0, 0]), inputs: [3]),
            Node(name: "max", op: MaxPool2d(kernel: [2, 2]), inputs: [4]),
            Node(name: "gap", op: GlobalAvgPool(), inputs: [5]),
            Node(name: "fc", op: .linear(weight: "fc.w", bias: "fc.b"), inputs: [6]),
        ], inputShape: [2, 6, 5])
        var params = ParameterSet([("c1.w", random([3, 2, 3, 3], &g)), ("c1.b", random([3], &g)),
                                   ("bn.weight", random([3], &g)), ("bn.bias", random([3], &g)),
                                   ("bn.running_mean", random([3], &g, scale: 0.1)), ("bn.running_var", Tensor(shape: [3], storage: [0.5, 1, 2])),
                                   ("bn.num_batches_tracked", Tensor(shape: [], storage: [3])),
                                   ("c2.w", random([4, 3, 2, 2], &g)), ("fc.w", random([3, 4], &g)), ("fc.b", random([3], &g))])
        // Shapes: [2,6,5] -> c1 (stride 2,1; pad 1) [3,3,5] -> avg (k2 s1 p1) [3,4,6] -> c2 [4,3,5] -> max [4,1,2].
        let shapes = try arch.inferShapes(shapeOf: { params[$0]?.shape })
        XCTAssertEqual(shapes.map { $0 ?? [] }, [[3, 3, 5], [3, 3, 5], [3, 3, 5], [3, 4, 6], [4, 3, 5], [4, 1, 2], [4], [3]])
        let x = random([5, 2, 6, 5], &g)
        let y: [Int32] = [0, 1, 2, 1, 0]
        try check(arch, params, x: x, y: y, mode: .eval)
        try check(arch, params, x: x, y: y, mode: .train)
        // A train-mode forward updates the buffers with momentum 0.1; cumulative mode averages.
        let step = Network(arch).step(params, x: x, y: y[...])
        let updates = Dictionary(step.bufferUpdates, uniquingKeysWith: { $1 })
        XCTAssertEqual(updates["bn.num_batches_tracked"]?.storage, [4])
        params["bn.num_batches_tracked"] = Tensor(shape: [], storage: [1])
        let cumulative = Network(arch).step(params, x: x, y: y[...], cumulativeStatistics: true)
        let m1 = Dictionary(cumulative.bufferUpdates, uniquingKeysWith: { $1 })["bn.running_mean"]!
        let m01 = updates["bn.running_mean"]!
        // batch mean b: momentum 0.1 gives 0.9 r + 0.1 b; cumulative with one batch tracked gives (r + b) / 2.
        for k in 0..<3 {
            let r = params["bn.running_mean"]![k]
            let b = (m01[k] - 0.9 * r) / 0.1
            XCTAssertEqual(m1[k], (r + b) / 2, accuracy: 1e-5)
        }
    }

    func testLayerNormReshapeDropoutAndResidualGraph() throws {
        var g = SeededGenerator(seed: 12)
        let arch = Architecture(nodes: [
            Node(name: "fc1", op: .linear(weight: "a.w", bias: "a.b"), inputs: [-1]),
            Node(name: "ln", op: LayerNorm(weight: "ln.w", bias: "ln.b"), inputs: [0]),
            Node(name: "drop", op: Dropout(p: 0.25), inputs: [1]),
            Node(name: "act", op: .activation(.gelu), inputs: [2]),
            Node(name: "sum", op: .add, inputs: [3, 0]),
            Node(name: "id", op: Identity(), inputs: [4]),
            Node(name: "shape", op: Reshape(shape: [2, nil]), inputs: [5]),
            Node(name: "ln2", op: LayerNorm(weight: "l2.w", bias: nil), inputs: [6]),
            Node(name: "flat", op: .flatten, inputs: [7]),
            Node(name: "fc2", op: .linear(weight: "b.w", bias: nil), inputs: [8]),
        ])
        let params = ParameterSet([("a.w", random([6, 4], &g)), ("a.b", random([6], &g)), ("ln.w", random([6], &g)),
                                   ("ln.b", random([6], &g)), ("l2.w", random([3], &g)), ("b.w", random([3, 6], &g))])
        let x = random([7, 4], &g)
        let y: [Int32] = [0, 1, 2, 0, 1, 2, 0]
        try check(arch, params, x: x, y: y, mode: .eval)
        // Train mode: dropout draws its mask from the run's seed, so the same seed gives the same loss.
        try check(arch, params, x: x, y: y, mode: .train)
        let net = Network(arch)
        XCTAssertNotEqual(net.step(params, x: x, y: y[...], mode: .train).metrics.loss, net.step(params, x: x, y: y[...], mode: .eval).metrics.loss)
        XCTAssertEqual(net.step(params, x: x, y: y[...], seed: 5).metrics.loss, net.step(params, x: x, y: y[...], seed: 5).metrics.loss)
    }

    /// im2col convolution against a direct loop.
    func testConvolutionMatchesDirectLoop() throws {
        var g = SeededGenerator(seed: 13)
        for (stride, padding, kernel) in [([1, 1], [1, 1], [3, 3]), ([2, 2], [1, 0], [3, 2]), ([1, 2], [0, 0], [1, 1])] {
            let (n, c, h, w, o) = (3, 2, 7, 6, 4)
            let x = random([n, c, h, w], &g), wt = random([o, c, kernel[0], kernel[1]], &g), b = random([o], &g)
            let conv = Conv2d(weight: "w", bias: "b", stride: stride, padding: padding)
            let net = Network(Architecture(nodes: [Node(name: "c", op: conv, inputs: [-1])]))
            let params = ParameterSet([("w", wt), ("b", b)])
            let y = net.logits(x, params)
            let ho = (h + 2 * padding[0] - kernel[0]) / stride[0] + 1, wo = (w + 2 * padding[1] - kernel[1]) / stride[1] + 1
            XCTAssertEqual(y.shape, [n, o, ho, wo])
            for i in 0..<n { for oc in 0..<o { for oh in 0..<ho { for ow in 0..<wo {
                var s = Double(b[oc])
                for ic in 0..<c { for ki in 0..<kernel[0] { for kj in 0..<kernel[1] {
                    let ih = oh * stride[0] - padding[0] + ki, iw = ow * stride[1] - padding[1] + kj
                    guard ih >= 0, ih < h, iw >= 0, iw < w else { continue }
                    s += Double(x[((i * c + ic) * h + ih) * w + iw]) * Double(wt[((oc * c + ic) * kernel[0] + ki) * kernel[1] + kj])
                } } }
                XCTAssertEqual(Double(y[((i * o + oc) * ho + oh) * wo + ow]), s, accuracy: 1e-4)
            } } } }
        }
    }
}
