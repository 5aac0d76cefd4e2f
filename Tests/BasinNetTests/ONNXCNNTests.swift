import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// The convolutional networks PyTorch exported to ONNX (Fixtures/cnn: `torch.onnx.export`, opset 17, eval mode,
/// no constant folding): converted graphs reproduce the recorded metrics with the graphs' own weights and with
/// another seed's state_dict, the exporter's Identity-recreated tensor included.
final class ONNXCNNTests: XCTestCase {
    private func expected(_ family: String) throws -> [String: Any] {
        let all = try XCTUnwrap(try Fixtures.json("cnn/expected.json") as? [String: Any])
        return try XCTUnwrap(all[family] as? [String: Any])
    }

    private func endpoint(_ family: String, seed: Int) throws -> (loss: Double, accuracy: Double) {
        let rows = try XCTUnwrap(try expected(family)["endpoint_test"] as? [[Double]])
        return (rows[seed][0], rows[seed][1])
    }

    private func assertMetrics(_ m: Metrics, _ e: (loss: Double, accuracy: Double), _ label: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(m.loss, e.loss, accuracy: 1e-4, "\(label): loss", file: file, line: line)
        XCTAssertEqual(m.accuracy, e.accuracy, accuracy: 1e-6, "\(label): accuracy", file: file, line: line)
    }

    func testExportedGraphsConvertToTheirOps() throws {
        let vgg = try ONNXArchitecture.load(Fixtures.url("cnn/vgg-seed0.onnx"))
        XCTAssertEqual(vgg.nodes.map(\.op.typeName),
                       ["conv2d", "batchnorm2d", "relu", "conv2d", "batchnorm2d", "relu", "maxpool2d", "conv2d", "batchnorm2d", "relu",
                        "global_avg_pool", "flatten", "linear"])
        XCTAssertEqual(vgg.inputShape, [1, 8, 8])
        let bn = try XCTUnwrap(vgg.nodes[1].op as? BatchNorm)
        XCTAssertEqual(bn.momentum, 0.1, "ONNX momentum 0.9 is PyTorch's 0.1")
        XCTAssertEqual(bn.eps, 1e-5, accuracy: 1e-12)
        XCTAssertNil(bn.numBatchesTracked, "the graph alone has no num_batches_tracked")
        let conv = try XCTUnwrap(vgg.nodes[0].op as? Conv2d)
        XCTAssertEqual(conv.window.padding, [1, 1])
        XCTAssertEqual(conv.window.stride, [1, 1])

        let resnet = try ONNXArchitecture.load(Fixtures.url("cnn/resnet-seed0.onnx"))
        XCTAssertEqual(resnet.nodes.filter { $0.op is Add }.count, 2)
        XCTAssertEqual(resnet.nodes.filter { $0.op is BatchNorm }.count, 6)
        let downsample = try XCTUnwrap(resnet.nodes.compactMap { $0.op as? BatchNorm }.first { $0.runningMean == "layer2.0.downsample.1.running_mean" })
        XCTAssertEqual(downsample.bias, "layer2.0.downsample.1.bias", "the Identity-recreated tensor keeps its state_dict name")
        let strided = try XCTUnwrap(resnet.nodes.compactMap { $0.op as? Conv2d }.first { $0.weight == "layer2.0.downsample.0.weight" })
        XCTAssertEqual(strided.window.stride, [2, 2])
        XCTAssertEqual(strided.window.padding, [0, 0])
    }

    /// `basin eval G.onnx`: the graph's own weights give seed 0's recorded test metrics ([N, 64] data reshaped
    /// to the graph's [N, 1, 8, 8]).
    func testGraphAloneIsSeedZero() throws {
        let test = try Dataset(url: Fixtures.digitsTest)
        for family in ["vgg", "resnet"] {
            let model = try LoadedModel(path: Fixtures.url("cnn/\(family)-seed0.onnx").path)
            assertMetrics(try model.evaluate(on: test), try endpoint(family, seed: 0), "\(family) graph alone")
        }
    }

    /// `--arch G.onnx` with each seed's state_dict (num_batches_tracked included, which the graph lacks), and
    /// the same network as the hand-written architecture file.
    func testGraphAsArchitectureForEverySeed() throws {
        let test = try Dataset(url: Fixtures.digitsTest)
        for family in ["vgg", "resnet"] {
            let graph = Fixtures.url("cnn/\(family)-seed0.onnx")
            for seed in [0, 1] {
                let weights = Fixtures.url("cnn/\(family)-seed\(seed).safetensors")
                let model = try LoadedModel(path: weights.path, architecture: ArchitectureChoice(file: graph))
                assertMetrics(try model.evaluate(on: test), try endpoint(family, seed: seed), "\(family) seed \(seed) via --arch onnx")
                let bns = model.architecture.nodes.compactMap { $0.op as? BatchNorm }
                XCTAssertTrue(bns.allSatisfy { $0.numBatchesTracked != nil }, "the state_dict's counters are bound")
            }
        }
        // The ONNX graph and the architecture file describe the same function.
        let weights = Fixtures.url("cnn/resnet-seed1.safetensors")
        let viaONNX = try LoadedModel(path: weights.path, architecture: ArchitectureChoice(file: Fixtures.url("cnn/resnet-seed0.onnx")))
        let viaFile = try LoadedModel(path: weights.path, architecture: ArchitectureChoice(file: Fixtures.url("cnn/resnet.arch.json")))
        let x = try Dataset(url: Fixtures.digitsTest).x.rows(0..<64)
        let a = viaONNX.network.logits(x, viaONNX.params), b = viaFile.network.logits(x, viaFile.params)
        XCTAssertLessThanOrEqual(a.maxAbsDifference(b), 1e-5)
    }

    /// Data already [N, C, H, W] is used as it is.
    func testImageShapedDataIsAccepted() throws {
        let test = try Dataset(url: Fixtures.digitsTest)
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let images = dir.appendingPathComponent("images.safetensors")
        let y = Tensor(shape: [test.count], storage: test.y.map(Float.init))
        try SafeTensorsWriter.write([("x", test.x.reshaped([test.count, 1, 8, 8])), ("y", y)], to: images,
                                    dtype: { $0 == "y" ? .i64 : .f32 })
        let model = try LoadedModel(path: Fixtures.url("cnn/vgg-seed0.onnx").path)
        let data = try Dataset(url: images)
        assertMetrics(try model.evaluate(on: data), try endpoint("vgg", seed: 0), "vgg on [N, 1, 8, 8] data")
    }

    /// A biased Conv, AveragePool (count_include_pad), a padded stride-1 MaxPool and ReduceMean over H, W:
    /// logits against onnx.reference's.
    func testPoolsAndReduceMeanAgainstReferenceEvaluator() throws {
        let model = try LoadedModel(path: Fixtures.url("onnx/cnn-pools.onnx").path)
        XCTAssertEqual(model.architecture.nodes.map(\.op.typeName),
                       ["conv2d", "relu", "avgpool2d", "conv2d", "relu", "maxpool2d", "global_avg_pool", "linear"])
        let expected = try SafeTensorsFile(url: Fixtures.url("onnx/expected-logits.safetensors")).tensor("cnn-pools")
        let logits = model.network.logits(try Dataset(url: Fixtures.digitsTest).x.rows(0..<expected.rows), model.params)
        XCTAssertLessThanOrEqual(logits.maxAbsDifference(expected), 1e-5)
    }

    /// A CNN state_dict without an architecture is refused, naming a tensor that shows it is not a chain.
    func testCNNStateDictWithoutArchitectureIsRefused() {
        for family in ["vgg", "resnet"] {
            XCTAssertThrowsError(try LoadedModel(path: Fixtures.url("cnn/\(family)-seed0.safetensors").path)) { error in
                guard let e = error as? NetworkError else { return XCTFail("\(error)") }
                XCTAssertEqual(e.kind, .notAChain, "\(e)")
                XCTAssertNotNil(e.tensor)
                XCTAssertTrue(e.description.contains("--arch"), "\(e)")
            }
        }
    }
}
