import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// The op protocol, the registry, the architecture file and the interpreter.
final class GraphTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func random(_ shape: [Int], _ g: inout SeededGenerator) -> Tensor {
        Tensor(shape: shape, storage: (0..<shape.reduce(1, *)).map { _ in g.uniform(-1, 1) })
    }

    func write(_ json: String) throws -> URL {
        let url = dir.appendingPathComponent("arch-\(UUID().uuidString).json")
        try Data(json.utf8).write(to: url)
        return url
    }

    func testEveryRegisteredOpRoundTripsThroughTheArchitectureFile() throws {
        let names = OpRegistry.names
        XCTAssertEqual(Set(names).count, names.count, "an op name is registered twice")
        XCTAssertTrue(names.contains("linear") && names.contains("relu") && names.contains("add"))
        let arch = Architecture(nodes: [
            Node(name: "flat", op: .flatten, inputs: [-1]),
            Node(name: "fc1", op: Linear(weight: "a.weight", bias: "a.bias", outFeatures: 5), inputs: [0]),
            Node(name: "act", op: .activation(.gelu), inputs: [1]),
            Node(name: "fc2", op: .linear(weight: "b.weight", bias: nil), inputs: [2]),
            Node(name: "sum", op: .add, inputs: [3, 2]),
            Node(name: "t", op: .activation(.tanh), inputs: [4]),
        ], inputShape: [2, 4])
        let data = try JSONEncoder().encode(arch.file)
        let back = try JSONDecoder().decode(ArchitectureFile.self, from: data).architecture()
        XCTAssertEqual(back, arch)
        XCTAssertEqual(back.inputShape, [2, 4])
        XCTAssertEqual(arch.trainedParameterNames, ["a.weight", "a.bias", "b.weight"])
        XCTAssertEqual(arch.bufferNames, [])
    }

    func testArchitectureFileErrorsHaveKindsAndContext() throws {
        let typo = try write(#"{"nodes": [{"name": "fc", "op": "linear", "weight": "w", "bais": "b"}]}"#)
        XCTAssertThrowsError(try ArchitectureFile.load(typo)) { error in
            let e = error as? NetworkError
            XCTAssertEqual(e?.kind, .badAttribute)
            XCTAssertEqual(e?.key, "bais")
            XCTAssertEqual(e?.node, "fc")
            XCTAssertEqual(e?.file, typo.path)
        }
        let unknown = try write(#"{"nodes": [{"name": "c", "op": "conv9d"}]}"#)
        XCTAssertThrowsError(try ArchitectureFile.load(unknown)) { XCTAssertEqual(($0 as? NetworkError)?.kind, .unknownOp) }
        let wrongType = try write(#"{"nodes": [{"op": "linear", "weight": 3}]}"#)
        XCTAssertThrowsError(try ArchitectureFile.load(wrongType)) { error in
            XCTAssertEqual((error as? NetworkError)?.kind, .badAttribute)
            XCTAssertTrue("\(error)".contains("\"weight\""), "\(error)")
        }
        let badShape = try write(#"{"input_shape": [1, 0], "nodes": [{"op": "relu"}]}"#)
        XCTAssertThrowsError(try ArchitectureFile.load(badShape)) { XCTAssertEqual(($0 as? NetworkError)?.key, "input_shape") }
        let arity = try write(#"{"nodes": [{"op": "relu"}, {"op": "add"}]}"#)
        XCTAssertThrowsError(try ArchitectureFile.load(arity)) { XCTAssertEqual(($0 as? NetworkError)?.kind, .badGraph) }
        XCTAssertThrowsError(try ArchitectureFile.load(dir.appendingPathComponent("absent.json"))) {
            XCTAssertEqual(($0 as? NetworkError)?.kind, .badFile)
        }

        // Validation: a missing tensor and a shape that does not fit name the node and tensor.
        let arch = Architecture.mlp(layers: [("l0.w", "l0.b"), ("l1.w", nil)], activation: .relu)
        var g = SeededGenerator(seed: 1)
        var params = ParameterSet([("l0.w", random([4, 3], &g)), ("l0.b", random([4], &g))])
        XCTAssertThrowsError(try arch.validate(params, source: "m.safetensors")) { error in
            let e = error as? NetworkError
            XCTAssertEqual(e?.kind, .missingTensor)
            XCTAssertEqual(e?.tensor, "l1.w")
            XCTAssertEqual(e?.node, "linear1")
            XCTAssertEqual(e?.file, "m.safetensors")
        }
        params["l1.w"] = random([2, 5], &g)
        XCTAssertThrowsError(try arch.validate(params)) { error in
            XCTAssertEqual((error as? NetworkError)?.kind, .badShape)
            XCTAssertEqual((error as? NetworkError)?.tensor, "l1.w")
        }
        params["l1.w"] = random([2, 4], &g)
        XCTAssertEqual(try arch.validate(params), 2)
    }

    private func source(_ tensors: [(String, [Int])]) throws -> any TensorSource {
        let url = dir.appendingPathComponent("m-\(UUID().uuidString).safetensors")
        try SafeTensorsWriter.write(tensors.map { ($0.0, Tensor(shape: $0.1, repeating: 0.5)) }, to: url)
        return try SafeTensorsFile(url: url)
    }

    /// Issue 11 §3: a state_dict that is clearly not a plain chain is an error without --arch, never a
    /// silently wrong network.
    func testInferenceRefusesWhatIsNotAPlainChain() throws {
        let cases: [(String, [(String, [Int])])] = [
            ("conv weight", [("features.0.weight", [16, 1, 3, 3]), ("classifier.weight", [10, 16]), ("classifier.bias", [10])]),
            ("BatchNorm", [("fc.weight", [4, 2]), ("bn.weight", [4]), ("bn.bias", [4]), ("bn.running_mean", [4])]),
            ("norm scale", [("fc.weight", [4, 2]), ("ln.weight", [4])]),
            ("residual block", [("stem.weight", [8, 4]), ("blocks.0.fc1.weight", [8, 8]), ("blocks.0.fc2.weight", [8, 8]),
                                ("head.weight", [3, 8])]),
            ("torchvision names", [("layer1.0.conv1.weight", [8, 8]), ("fc.weight", [3, 8])]),
            ("skip module", [("fc1.weight", [8, 4]), ("shortcut.weight", [8, 8]), ("fc2.weight", [3, 8])]),
        ]
        for (label, tensors) in cases {
            XCTAssertThrowsError(try Architecture.inferMLP(from: try source(tensors)), label) { error in
                XCTAssertEqual((error as? NetworkError)?.kind, .notAChain, label)
                XCTAssertTrue("\(error)".contains("--arch"), "\(label): \(error)")
                XCTAssertNotNil((error as? NetworkError)?.tensor, label)
            }
        }
        // Plain chains in the usual namings still infer.
        for names in [["layers.0", "layers.1"], ["net.0", "net.2"], ["fc1", "fc2"], ["encoder.layers.0.linear", "encoder.layers.1.linear"]] {
            let s = try source([(names[0] + ".weight", [4, 2]), (names[0] + ".bias", [4]), (names[1] + ".weight", [3, 4])])
            XCTAssertEqual(try Architecture.inferMLP(from: s).linearNodes.count, 2, "\(names)")
        }
    }

    /// Token labels [N, L] with -100: the loss is the mean over scored positions, the accuracy the share of
    /// them whose argmax is right, and ignored positions get no gradient.
    func testCrossEntropyOverPositionsIgnoresMinus100() {
        let logits = Tensor(shape: [2, 3, 2], storage: [2, 0, 0, 1, 5, 5, /* row 2 */ 0, 0, 1, -1, 3, 0])
        let labels: [Int32] = [0, -100, 1, -100, -100, 1]
        let r = Network.crossEntropy(logits, labels: labels[...], wantGradient: true)
        XCTAssertEqual(r.count, 3)
        let lse = { (a: Double, b: Double) in max(a, b) + log(exp(a - max(a, b)) + exp(b - max(a, b))) }
        let expected = (lse(2, 0) - 2) + (lse(5, 5) - 5) + (lse(3, 0) - 0)
        XCTAssertEqual(r.lossSum, expected, accuracy: 1e-9)
        XCTAssertEqual(r.correct, 1, "position 0 is right; the tie at (5, 5) picks class 0; (3, 0) is wrong")
        let g = r.gradient!
        XCTAssertEqual(g.shape, [2, 3, 2])
        for ignored in [1, 3, 4] { XCTAssertEqual(g[ignored * 2], 0); XCTAssertEqual(g[ignored * 2 + 1], 0) }
        // Scored position 5 (logits 3, 0, label 1): (softmax - onehot) / 3.
        let p1 = exp(0.0 - lse(3, 0))
        XCTAssertEqual(Double(g[11]), (p1 - 1) / 3, accuracy: 1e-6)

        // The same through Network.evaluate on a token data set: a single linear node over positions.
        let x = Tensor(shape: [2, 3, 2], storage: logits.storage)
        let data = Dataset(x: x, labels: labels, labelShape: [3], name: "tokens")
        let identity = ParameterSet([("w", Tensor(shape: [2, 2], storage: [1, 0, 0, 1]))])
        let net = Network(Architecture(nodes: [Node(name: "id", op: .linear(weight: "w", bias: nil), inputs: [-1])]))
        let m = net.evaluate(identity, on: data, batchSize: 1)
        XCTAssertEqual(m.loss, expected / 3, accuracy: 1e-6)
        XCTAssertEqual(m.accuracy, 1.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(m.samples, 2)
    }

    func testTokenDataSets() throws {
        let data = try Dataset(url: Fixtures.url("data/modarith-test.safetensors"))
        XCTAssertEqual(data.count, 635)
        XCTAssertTrue(data.isTokens)
        XCTAssertEqual(data.x.shape, [635, 5])
        XCTAssertEqual(data.labelShape, [5])
        for r in 0..<data.count {
            let row = Array(data.labels(r..<(r + 1)))
            XCTAssertEqual(row.enumerated().filter { $0.element != -100 }.map(\.offset), [3])
            XCTAssertEqual(row[3], Int32(data.x[r * 5 + 4]), "the label at '=' is the answer c")
            XCTAssertEqual(data.x[r * 5 + 3], 26)
        }
        let sub = data.subset([4, 0])
        XCTAssertEqual(Array(sub.labels(0..<1)), Array(data.labels(4..<5)))
        let url = dir.appendingPathComponent("tokens.safetensors")
        try sub.write(to: url)
        let back = try Dataset(url: url)
        XCTAssertEqual(back.x, sub.x)
        XCTAssertEqual(back.y, sub.y)
        XCTAssertEqual(back.labelShape, [5])
        XCTAssertTrue(back.isTokens)

        // -100 is only allowed in per-position labels.
        let bad = dir.appendingPathComponent("bad.safetensors")
        try SafeTensorsWriter.write([("x", Tensor(shape: [2, 2], repeating: 0)), ("y", Tensor(shape: [2], storage: [0, -100]))],
                                    to: bad, dtype: { $0 == "y" ? .i64 : .f32 })
        XCTAssertThrowsError(try Dataset(url: bad)) { XCTAssertEqual(($0 as? BasinIOError)?.kind, .badDataset) }
        let float = dir.appendingPathComponent("float-ids.safetensors")
        try SafeTensorsWriter.write([("input_ids", Tensor(shape: [1, 2], repeating: 1)), ("labels", Tensor(shape: [1, 2], repeating: 1))],
                                    to: float, dtype: { $0 == "labels" ? .i64 : .f32 })
        XCTAssertThrowsError(try Dataset(url: float)) { XCTAssertEqual(($0 as? BasinIOError)?.tensor, "input_ids") }
    }

    /// The interpreter: evaluation runs activations in place without touching the caller's input, exposes
    /// chosen nodes, supplies outputs, and skips what only supplied nodes needed.
    func testInterpreterExposesSuppliesAndLeavesInputsAlone() throws {
        var g = SeededGenerator(seed: 4)
        let arch = Architecture(nodes: [
            Node(name: "pre", op: .activation(.relu), inputs: [-1]),
            Node(name: "fc", op: .linear(weight: "w", bias: "b"), inputs: [0]),
            Node(name: "act", op: .activation(.tanh), inputs: [1]),
            Node(name: "sum", op: .add, inputs: [2, 0]),
        ])
        let params = ParameterSet([("w", random([6, 6], &g)), ("b", random([6], &g))])
        let net = Network(arch)
        let x = random([5, 6], &g)
        let copy = x
        let full = net.forwardTrace(x, params, keepAll: true)
        XCTAssertEqual(x, copy, "the caller's input is never written")
        let exposed = net.run(x, params, Network.RunOptions(expose: [1]))
        XCTAssertEqual(exposed.outputs[1], full[1])
        XCTAssertNil(exposed.outputs[2], "intermediates are freed")
        XCTAssertEqual(exposed.outputs[3], full[3])
        XCTAssertEqual(x, copy)
        // Supplying node 1's output: the rest is computed from it.
        let supplied = net.run(x, params, Network.RunOptions(supplied: [1: .tensor(full[1]!)]))
        XCTAssertEqual(supplied.outputs[3], full[3])
        XCTAssertTrue(net.readsInput(supplied: [1]), "the residual reads the input's relu")
        XCTAssertEqual(net.combinableNodes, [], "the linear layer reads a relu, not the input")
        XCTAssertEqual(Network(Architecture(nodes: [Node(name: "f", op: .flatten, inputs: [-1]),
                                                    Node(name: "l", op: .linear(weight: "w", bias: nil), inputs: [0])])).combinableNodes, [1])
    }

    /// Data whose rows hold as many values as the declared input shape is reshaped to it; other data is a
    /// clear error.
    func testDataIsReshapedToTheDeclaredInputShape() throws {
        let url = try write("""
        {"input_shape": [4, 16], "nodes": [
          {"name": "flat", "op": "flatten"},
          {"name": "fc", "op": "linear", "weight": "layers.0.weight", "bias": "layers.0.bias"},
          {"op": "relu"},
          {"op": "linear", "weight": "layers.1.weight", "bias": "layers.1.bias"},
          {"op": "relu"},
          {"op": "linear", "weight": "layers.2.weight", "bias": "layers.2.bias"}
        ]}
        """)
        let model = try LoadedModel(path: Fixtures.mlpSeed0.path, architecture: ArchitectureChoice(file: url))
        let plain = try LoadedModel(path: Fixtures.mlpSeed0.path)
        XCTAssertEqual(plain.architecture.inputShape, [64], "resolved from the first layer")
        let data = try Dataset(url: Fixtures.digitsTest)
        XCTAssertEqual(try model.evaluate(on: data), try plain.evaluate(on: data))
        let square = Dataset(x: data.x.reshaped([data.count, 8, 8]), y: data.y, name: "square")
        XCTAssertEqual(try plain.evaluate(on: square), try plain.evaluate(on: data))
        let wrong = Dataset(x: Tensor(shape: [2, 3, 7], repeating: 0), y: [0, 1], name: "odd")
        XCTAssertThrowsError(try model.evaluate(on: wrong)) { error in
            XCTAssertEqual((error as? NetworkError)?.kind, .dataMismatch)
            XCTAssertTrue("\(error)".contains("'odd'"), "\(error)")
        }
        let tokens = try Dataset(url: Fixtures.url("data/modarith-test.safetensors"))
        XCTAssertThrowsError(try plain.evaluate(on: tokens)) { XCTAssertEqual(($0 as? NetworkError)?.kind, .dataMismatch) }
    }
}
