import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

final class ArchitectureTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testNaturalOrder() {
        let names = ["layers.10", "layers.2", "fc10", "fc2", "fc1", "layers.1"]
        XCTAssertEqual(names.sorted(by: NaturalOrder.less), ["fc1", "fc2", "fc10", "layers.1", "layers.2", "layers.10"])
    }

    private func write(_ tensors: [(String, [Int])]) throws -> any TensorSource {
        let url = dir.appendingPathComponent("m-\(UUID().uuidString).safetensors")
        try SafeTensorsWriter.write(tensors.map { ($0.0, Tensor(shape: $0.1, repeating: 0.5)) }, to: url)
        return try SafeTensorsFile(url: url)
    }

    func testInfersChainInNumericOrderForEveryNamingStyle() throws {
        // Twelve layers, so string order (layers.10 before layers.2) would break the chain.
        var tensors: [(String, [Int])] = []
        for i in 0..<12 { tensors += [("layers.\(i).weight", [3 + i + 1, 3 + i]), ("layers.\(i).bias", [3 + i + 1])] }
        let arch = try Architecture.inferMLP(from: try write(tensors))
        XCTAssertEqual(arch.linearNodes.count, 12)
        guard let w = (arch.nodes[arch.linearNodes[10]].op as? Linear)?.weight else { return XCTFail() }
        XCTAssertEqual(w, "layers.10.weight")
        XCTAssertEqual(arch.nodes.count, 23, "an activation between layers and none after the last")

        for style in [["0.weight", "0.bias", "1.weight", "1.bias"], ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"],
                      ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]] {
            let s = try write([(style[0], [4, 2]), (style[1], [4]), (style[2], [3, 4]), (style[3], [3])])
            let a = try Architecture.inferMLP(from: s, activation: .tanh)
            XCTAssertEqual(a.nodes.map(\.op.kindName), ["linear", "tanh", "linear"])
            XCTAssertEqual(a.parameterNames, style)
        }
    }

    func testRejectsLayersThatDoNotChain() throws {
        let s = try write([("l.0.weight", [4, 2]), ("l.1.weight", [3, 5])])
        XCTAssertThrowsError(try Architecture.inferMLP(from: s)) { error in
            XCTAssertTrue("\(error)".contains("'l.1.weight'") && "\(error)".contains("do not chain"), "\(error)")
        }
        let t = try write([("l.0.weight", [4, 2]), ("running_mean", [4])])
        XCTAssertThrowsError(try Architecture.inferMLP(from: t)) { error in
            XCTAssertTrue("\(error)".contains("--arch"), "\(error)")
        }
        let u = try write([("l.0.weight", [4, 2]), ("l.0.bias", [5])])
        XCTAssertThrowsError(try Architecture.inferMLP(from: u)) { error in
            XCTAssertTrue("\(error)".contains("'l.0.bias'"), "\(error)")
        }
    }

    func testArchitectureFileMatchesInference() throws {
        let json = """
        {"nodes": [
          {"name": "fc1", "op": "linear", "weight": "layers.0.weight", "bias": "layers.0.bias"},
          {"op": "relu"},
          {"name": "fc2", "op": "linear", "weight": "layers.1.weight", "bias": "layers.1.bias"},
          {"op": "relu"},
          {"name": "fc3", "op": "linear", "weight": "layers.2.weight", "bias": "layers.2.bias"}
        ], "output": "fc3"}
        """
        let url = dir.appendingPathComponent("arch.json")
        try Data(json.utf8).write(to: url)
        let viaFile = try LoadedModel(path: Fixtures.mlpSeed0.path, architecture: ArchitectureChoice(file: url))
        let inferred = try LoadedModel(path: Fixtures.mlpSeed0.path)
        let data = try Dataset(url: Fixtures.digitsTest)
        XCTAssertEqual(try viaFile.evaluate(on: data), try inferred.evaluate(on: data))
        // Round trip through the file form.
        XCTAssertEqual(try inferred.architecture.file.architecture().nodes, inferred.architecture.nodes)
    }

    func testArchitectureFileErrors() throws {
        let bad = dir.appendingPathComponent("bad.json")
        try Data(#"{"nodes": [{"op": "conv9d"}]}"#.utf8).write(to: bad)
        XCTAssertThrowsError(try ArchitectureFile.load(bad)) { XCTAssertTrue("\($0)".contains("conv9d") && "\($0)".contains(bad.path)) }
        try Data(#"{"nodes": [{"op": "linear", "weight": "w", "input": "nowhere"}]}"#.utf8).write(to: bad)
        XCTAssertThrowsError(try ArchitectureFile.load(bad)) { XCTAssertTrue("\($0)".contains("nowhere")) }
        let missing = dir.appendingPathComponent("m.json")
        try Data(#"{"nodes": [{"op": "linear", "weight": "nope.weight"}]}"#.utf8).write(to: missing)
        XCTAssertThrowsError(try LoadedModel(path: Fixtures.mlpSeed0.path, architecture: ArchitectureChoice(file: missing))) {
            XCTAssertTrue("\($0)".contains("'nope.weight'"), "\($0)")
        }
    }

    func testDataThatDoesNotFitTheModel() throws {
        let model = try LoadedModel(path: Fixtures.mlpSeed0.path)
        let wide = Dataset(x: Tensor(shape: [2, 10], repeating: 0), y: [0, 1], name: "wide")
        XCTAssertThrowsError(try model.evaluate(on: wide)) { XCTAssertTrue("\($0)".contains("10 features"), "\($0)") }
        let labels = Dataset(x: Tensor(shape: [1, 64], repeating: 0), y: [12], name: "labels")
        XCTAssertThrowsError(try model.evaluate(on: labels)) { XCTAssertTrue("\($0)".contains("label 12"), "\($0)") }
    }
}

final class TrainingTests: XCTestCase {
    func testTrainingIsReproducibleAndLearns() throws {
        let data = try Dataset(url: Fixtures.digitsTrain).slice(0..<400)
        let layers = (0..<2).map { (weight: "layers.\($0).weight", bias: Optional("layers.\($0).bias")) }
        let arch = Architecture.mlp(layers: layers, activation: .relu)
        let net = Network(arch)
        func run(seed: UInt64) throws -> (ParameterSet, [Double]) {
            var g = SeededGenerator(seed: seed)
            var p = Trainer.initialise(arch, sizes: [64, 32, 10], generator: &g)
            var config = TrainingConfig()
            config.epochs = 8
            config.learningRate = 1e-2
            config.seed = seed
            var losses: [Double] = []
            try Trainer.train(network: net, params: &p, data: data, config: config, progress: { losses.append($0.meanLoss) })
            return (p, losses)
        }
        let (a, la) = try run(seed: 5)
        let (b, _) = try run(seed: 5)
        let (c, _) = try run(seed: 6)
        XCTAssertEqual(a, b, "same seed, same bits")
        XCTAssertNotEqual(a, c)
        XCTAssertLessThan(la.last!, la.first! * 0.5)
        XCTAssertGreaterThan(net.evaluate(a, on: data).accuracy, 0.85)
    }

    func testSGDMatchesHandComputedStep() {
        var sgd = SGD(learningRate: 0.1, momentum: 0.9)
        var p = [Tensor(shape: [2], storage: [1, 2])]
        sgd.step(&p, gradients: [Tensor(shape: [2], storage: [1, -1])])
        XCTAssertEqual(p[0].storage, [0.9, 2.1])
        sgd.step(&p, gradients: [Tensor(shape: [2], storage: [1, -1])])
        // velocity = 0.9 * 1 + 1 = 1.9
        XCTAssertEqual(p[0].storage[0], 0.9 - 0.19, accuracy: 1e-6)
    }

    func testAdamFirstStepIsLearningRateTimesSign() {
        var adam = Adam(learningRate: 0.01)
        var p = [Tensor(shape: [3], storage: [0, 0, 0])]
        adam.step(&p, gradients: [Tensor(shape: [3], storage: [5, -0.1, 0])])
        XCTAssertEqual(p[0].storage[0], -0.01, accuracy: 1e-6)
        XCTAssertEqual(p[0].storage[1], 0.01, accuracy: 1e-6)
        XCTAssertEqual(p[0].storage[2], 0)
    }
}
