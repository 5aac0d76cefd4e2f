import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// ONNX graphs converted to architectures: the logits of the small graphs in Fixtures/onnx against
/// onnx.reference's (an independent implementation), and the refusals that must name node and op.
final class ONNXArchitectureTests: XCTestCase {
    private func firstRows(_ n: Int) throws -> Tensor {
        try Dataset(url: Fixtures.digitsTest).x.rows(0..<n)
    }

    /// The model's logits on the first 32 test rows against the reference evaluator's.
    private func assertLogitsMatchReference(_ name: String, tolerance: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try LoadedModel(path: Fixtures.url("onnx/\(name).onnx").path)
        let expected = try SafeTensorsFile(url: Fixtures.url("onnx/expected-logits.safetensors")).tensor(name)
        let logits = model.network.logits(try firstRows(expected.rows), model.params)
        XCTAssertEqual(logits.shape, expected.shape, file: file, line: line)
        let diff = zip(logits.storage, expected.storage).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(diff, tolerance, "\(name): max |logit difference| \(diff)", file: file, line: line)
    }

    private func assertRefused(_ name: String, node: String, tensor: String? = nil, mentions: [String],
                               file: StaticString = #filePath, line: UInt = #line) {
        let url = Fixtures.url("onnx/\(name).onnx")
        XCTAssertThrowsError(try LoadedModel(path: url.path), file: file, line: line) { error in
            guard let e = error as? NetworkError else { return XCTFail("not a NetworkError: \(error)", file: file, line: line) }
            XCTAssertEqual(e.kind, .unknownOp, "\(e)", file: file, line: line)
            XCTAssertEqual(e.file, url.path, file: file, line: line)
            XCTAssertEqual(e.node, node, file: file, line: line)
            if let tensor { XCTAssertEqual(e.tensor, tensor, file: file, line: line) }
            for m in mentions { XCTAssertTrue(e.description.contains(m), "message mentions \(m): \(e)", file: file, line: line) }
        }
    }

    func testErfGELUBecomesOneGELU() throws {
        let arch = try ONNXArchitecture.load(Fixtures.url("onnx/mlp-gelu.onnx"))
        XCTAssertEqual(arch.nodes.map(\.op.typeName), ["linear", "gelu", "linear"])
        XCTAssertEqual(arch.parameterNames, ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"])
        XCTAssertEqual(arch.inputShape, [64])
        try assertLogitsMatchReference("mlp-gelu")
    }

    func testTransposeMatMulAndBiasAddBecomeOneLinear() throws {
        let arch = try ONNXArchitecture.load(Fixtures.url("onnx/mlp-matmul-tanh.onnx"))
        XCTAssertEqual(arch.nodes.map(\.op.typeName), ["reshape", "linear", "tanh", "linear"], "Reshape [-1, 64]: the per-sample shape [64] is checked")
        XCTAssertEqual(arch.parameterNames, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        XCTAssertEqual(arch.inputShape, [1, 8, 8])
        XCTAssertEqual(arch.output, 3)
        try assertLogitsMatchReference("mlp-matmul-tanh")
    }

    func testUnsupportedOpNamesNodeAndOp() {
        assertRefused("unsupported", node: "/wave/Sin", mentions: ["Sin", "not supported", "unsupported.onnx"])
    }

    /// ReduceMean of a 5-D input: over every axis after the channels it is a global mean (logits against
    /// onnx.reference's, digits rows reshaped to [4, 2, 2, 4]); over only the last two ([-2, -1], which on a
    /// 4-D input would be H and W) it is refused at load, naming the node, the axes and the input's rank.
    func testReduceMeanBeyondFourDimensions() throws {
        let arch = try ONNXArchitecture.load(Fixtures.url("onnx/reduce-mean-5d.onnx"))
        XCTAssertEqual(arch.nodes.map(\.op.typeName), ["global_avg_pool", "linear"])
        XCTAssertEqual(arch.inputShape, [4, 2, 2, 4])
        try assertLogitsMatchReference("reduce-mean-5d")
        let url = Fixtures.url("onnx/reduce-mean-5d-partial.onnx")
        XCTAssertThrowsError(try LoadedModel(path: url.path)) { error in
            guard let e = error as? NetworkError else { return XCTFail("not a NetworkError: \(error)") }
            XCTAssertEqual(e.kind, .badAttribute, "\(e)")
            XCTAssertEqual(e.file, url.path)
            XCTAssertEqual(e.node, "/ReduceMean")
            for m in ["[-2, -1]", "5-D", "[2, 3, 4]"] { XCTAssertTrue(e.description.contains(m), "mentions \(m): \(e)") }
        }
    }

    func testWeightStoredInOutIsRefused() {
        assertRefused("gemm-in-out", node: "/Gemm", tensor: "w", mentions: ["Gemm", "[in, out]"])
    }

    /// `--arch G.onnx` with weights from a safetensors file whose names are the initializers'.
    func testWeightsFromASafetensorsFile() throws {
        let graph = try ONNXModel(url: Fixtures.url("onnx/mlp-gelu.onnx"))
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SeededGenerator(seed: 7)
        let tensors = try graph.names.map { name -> (String, Tensor) in
            let t = try graph.tensor(name)
            return (name, Tensor(shape: t.shape, storage: t.storage.map { $0 * 0.5 + rng.uniform(-0.1, 0.1) }))
        }
        let weights = dir.appendingPathComponent("other.safetensors")
        try SafeTensorsWriter.write(tensors + [("unused.extra", Tensor(shape: [2], storage: [1, 2]))], to: weights)

        let viaArch = try LoadedModel(path: weights.path, architecture: ArchitectureChoice(file: Fixtures.url("onnx/mlp-gelu.onnx")))
        let own = try LoadedModel(path: Fixtures.url("onnx/mlp-gelu.onnx").path)
        XCTAssertEqual(viaArch.architecture, own.architecture)
        let x = try firstRows(16)
        let got = viaArch.network.logits(x, viaArch.params)
        let expected = own.network.logits(x, ParameterSet(tensors))
        XCTAssertEqual(got, expected)
        XCTAssertNotEqual(got, own.network.logits(x, own.params), "the safetensors' weights are used, not the graph's")
    }
}
