import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// The shared mlp-pair, loaded once for every path test.
enum PathFixtures {
    struct Pair: @unchecked Sendable {
        let a: LoadedModel
        let b: LoadedModel
        let train: Dataset
        let test: Dataset
        let expected: [String: Any]
    }

    static let pair: Pair = {
        let a = try! LoadedModel(path: Fixtures.mlpSeed0.path)
        let b = try! LoadedModel(path: Fixtures.mlpSeed1.path)
        return Pair(a: a, b: b, train: try! Dataset(url: Fixtures.digitsTrain), test: try! Dataset(url: Fixtures.digitsTest),
                    expected: try! Fixtures.json("mlp-pair/expected.json") as! [String: Any])
    }()

    static func randomBend(like p: ParameterSet, scale: Float, seed: UInt64) -> ParameterSet {
        var g = SeededGenerator(seed: seed)
        return p.mapTensors { _, t in
            var r = t
            r.withUnsafeMutableBufferPointer { v in for k in 0..<v.count { v[k] += scale * Float(g.normal()) } }
            return r
        }
    }
}

final class PathEvaluationTests: XCTestCase {
    func checkAgainstExpected(_ metrics: PathMetrics, key: String, barrierKey: String, file: StaticString = #filePath, line: UInt = #line) {
        let pair = PathFixtures.pair
        let expected = pair.expected[key] as! [[String: Double]]
        XCTAssertEqual(metrics.points.count, expected.count, file: file, line: line)
        for (p, e) in zip(metrics.points, expected) {
            XCTAssertEqual(p.t, e["t"]!, accuracy: 1e-9, file: file, line: line)
            XCTAssertEqual(p.loss, e["loss"]!, accuracy: 1e-4, "loss at t=\(p.t)", file: file, line: line)
            XCTAssertEqual(p.accuracy, e["accuracy"]!, accuracy: 1e-4, "accuracy at t=\(p.t)", file: file, line: line)
        }
        XCTAssertEqual(metrics.barrier.loss, pair.expected[barrierKey] as! Double, accuracy: 1e-4, file: file, line: line)
    }

    func testLinearPathMatchesPyTorchReference() throws {
        let pair = PathFixtures.pair
        let path = try ModelPath.linear(pair.a.params, pair.b.params)
        for fast in [true, false] {
            let evaluator = PathEvaluator(path: path, network: pair.a.network, datasets: [pair.test, pair.train], fast: fast)
            XCTAssertEqual(evaluator.usesFirstLayerShortcut, fast)
            let m = try XCTUnwrap(evaluator.metrics(points: 21))
            checkAgainstExpected(m[0], key: "linear_test", barrierKey: "linear_test_barrier")
            checkAgainstExpected(m[1], key: "linear_train", barrierKey: "linear_train_barrier")
            XCTAssertEqual(m[0].data, "digits-test")
            XCTAssertEqual(m[0].samples, pair.test.count)
        }
    }

    func testFastEvaluationEqualsNaiveOnEveryPathType() throws {
        let pair = PathFixtures.pair
        let a = pair.a.params, b = pair.b.params
        let mid = ParameterSet.lerp(a, b, 0.5)
        let bend1 = PathFixtures.randomBend(like: mid, scale: 0.02, seed: 1)
        let bend2 = PathFixtures.randomBend(like: ParameterSet.lerp(a, b, 0.7), scale: 0.02, seed: 2)
        let paths = [
            try ModelPath.linear(a, b),
            try ModelPath.chain([a, mid, b]),
            try ModelPath.withBends(.polychain, from: a, to: b, bends: [bend1, bend2]),
            try ModelPath.withBends(.bezier, from: a, to: b, bends: [bend1]),
            try ModelPath.withBends(.bezier, from: a, to: b, bends: [bend1, bend2]),
        ]
        let ts = [0, 0.13, 1.0 / 3, 0.5, 0.77, 1]
        for path in paths {
            // A batch size that does not divide the data exercises the per-batch products.
            let fast = PathEvaluator(path: path, network: pair.a.network, datasets: [pair.test], batchSize: 200)
            let naive = PathEvaluator(path: path, network: pair.a.network, datasets: [pair.test], fast: false)
            let f = try XCTUnwrap(fast.evaluatePoints(ts: ts))
            let n = try XCTUnwrap(naive.evaluatePoints(ts: ts))
            for (x, y) in zip(f, n) {
                XCTAssertEqual(x[0].loss, y[0].loss, accuracy: 1e-5, "\(path.type)")
                XCTAssertEqual(x[0].accuracy, y[0].accuracy, accuracy: 1e-9, "\(path.type)")
            }
        }
    }

    func testArchitectureNotStartingWithLinearFallsBackToNaive() throws {
        let pair = PathFixtures.pair
        // tanh on the input before the first linear layer: no shortcut possible.
        var arch = pair.a.architecture
        arch.nodes.insert(Node(name: "pre", op: .activation(.tanh), inputs: [Architecture.inputIndex]), at: 0)
        for i in 1..<arch.nodes.count { arch.nodes[i].inputs = arch.nodes[i].inputs.map { $0 + 1 } }
        arch.output += 1
        let network = Network(arch)
        XCTAssertNil(PathEvaluator.firstLinearOnInput(arch))
        let path = try ModelPath.linear(pair.a.params, pair.b.params)
        let evaluator = PathEvaluator(path: path, network: network, datasets: [pair.test])
        XCTAssertFalse(evaluator.usesFirstLayerShortcut)
        let m = evaluator.evaluate(at: 0.3)[0]
        let direct = network.evaluate(ParameterSet.lerp(pair.a.params, pair.b.params, 0.3), on: pair.test)
        XCTAssertEqual(m.loss, direct.loss, accuracy: 1e-9)

        // A flatten before the first linear keeps the shortcut.
        var flat = pair.a.architecture
        flat.nodes.insert(Node(name: "flatten", op: .flatten, inputs: [Architecture.inputIndex]), at: 0)
        for i in 1..<flat.nodes.count { flat.nodes[i].inputs = flat.nodes[i].inputs.map { $0 + 1 } }
        flat.output += 1
        XCTAssertEqual(PathEvaluator.firstLinearOnInput(flat), 1)
        let f = PathEvaluator(path: path, network: Network(flat), datasets: [pair.test]).evaluate(at: 0.3)[0]
        let plain = pair.a.network.evaluate(ParameterSet.lerp(pair.a.params, pair.b.params, 0.3), on: pair.test)
        XCTAssertEqual(f.loss, plain.loss, accuracy: 1e-5)
    }

    func testCancellationBetweenPoints() throws {
        let pair = PathFixtures.pair
        let evaluator = PathEvaluator(path: try .linear(pair.a.params, pair.b.params), network: pair.a.network, datasets: [pair.test])
        let flag = CancellationFlag()
        var seen = 0
        let r = evaluator.evaluatePoints(ts: ModelPath.grid(10), isCancelled: { flag.isCancelled }) { i, _ in
            seen += 1
            if i == 2 { flag.cancel() }
        }
        XCTAssertNil(r)
        XCTAssertEqual(seen, 3)
    }
}

final class PathEvaluationGraphTests: XCTestCase {
    func random(_ shape: [Int], _ g: inout SeededGenerator) -> Tensor {
        Tensor(shape: shape, storage: (0..<shape.reduce(1, *)).map { _ in g.uniform(-0.5, 0.5) })
    }

    func params(_ seed: UInt64) -> ParameterSet {
        var g = SeededGenerator(seed: seed)
        return ParameterSet([("l0.weight", random([16, 8], &g)), ("l0.bias", random([16], &g)),
                             ("l1.weight", random([16, 16], &g)), ("l1.bias", random([16], &g)),
                             ("l2.weight", random([4, 16], &g)), ("l2.bias", random([4], &g))])
    }

    /// A residual block reads the first layer's activation twice; a single linear layer ends at the shortcut.
    func testFastEqualsNaiveOnResidualAndSingleLayerGraphs() throws {
        var g = SeededGenerator(seed: 9)
        let data = Dataset(x: random([37, 8], &g), y: (0..<37).map { _ in Int32(g.next() % 4) }, name: "toy")
        let residual = Architecture(nodes: [
            Node(name: "l0", op: .linear(weight: "l0.weight", bias: "l0.bias"), inputs: [-1]),
            Node(name: "r0", op: .activation(.relu), inputs: [0]),
            Node(name: "l1", op: .linear(weight: "l1.weight", bias: "l1.bias"), inputs: [1]),
            Node(name: "add", op: .add, inputs: [1, 2]),
            Node(name: "g", op: .activation(.gelu), inputs: [3]),
            Node(name: "l2", op: .linear(weight: "l2.weight", bias: "l2.bias"), inputs: [4]),
        ])
        var single = ParameterSet()
        single["l0.weight"] = params(1)["l2.weight"]!.matmul(Tensor(shape: [16, 8], storage: params(1)["l0.weight"]!.storage))
        single["l0.bias"] = params(1)["l2.bias"]!
        let singleB = single.mapTensors { _, t in t.scaled(by: -0.7) }
        let linearOnly = Architecture(nodes: [Node(name: "l0", op: .linear(weight: "l0.weight", bias: "l0.bias"), inputs: [-1])])
        let cases: [(Architecture, ModelPath)] = [
            (residual, try .withBends(.bezier, from: params(1), to: params(2), bends: [params(3)])),
            (residual, try .chain([params(1), params(2), params(3)])),
            (linearOnly, try .linear(single, singleB)),
        ]
        for (arch, path) in cases {
            let net = Network(arch)
            let fast = PathEvaluator(path: path, network: net, datasets: [data], batchSize: 10)
            XCTAssertTrue(fast.usesFirstLayerShortcut)
            let naive = PathEvaluator(path: path, network: net, datasets: [data], fast: false)
            for t in [0, 0.3, 0.5, 0.8, 1] {
                XCTAssertEqual(fast.evaluate(at: t)[0].loss, naive.evaluate(at: t)[0].loss, accuracy: 1e-5)
                XCTAssertEqual(fast.evaluate(at: t)[0].accuracy, naive.evaluate(at: t)[0].accuracy)
            }
        }
    }

    func testBenchmarkRunsOnASmallMLP() {
        let f = PathBenchmark.run(sizes: [20, 16, 3], samples: 50, points: 5, batchSize: 16, repeats: 1)
        XCTAssertTrue(f.usesFirstLayerShortcut)
        XCTAssertEqual(f.naiveFlops, 5 * 50 * 2 * (20 * 16 + 16 * 3))
        XCTAssertGreaterThan(f.effectiveGflops, 0)
    }
}
