import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// docs/reliability.md, cases 71-75: architectures whose sizes are each in range but whose products overflow
/// or exceed any machine are refused by the memory plan, by name, before anything is allocated; and the plan
/// counts exactly what initialisation allocates.
final class ArchitecturePlanTests: XCTestCase {
    private let gib = 1 << 30

    private func arch(_ json: String, path: String = "hostile.json") throws -> Architecture {
        try JSONDecoder().decode(ArchitectureFile.self, from: Data(json.utf8)).architecture(path: path)
    }

    private func corpus(_ name: String) throws -> Architecture {
        let url = Fixtures.repositoryRoot.appendingPathComponent("Tests/FuzzCorpus/arch/\(name)")
        return try ArchitectureFile.load(url)
    }

    private func expectTooLarge(_ body: () throws -> Void, node: String?, mentions: [String],
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let e = error as? NetworkError else { return XCTFail("not a NetworkError: \(error)", file: file, line: line) }
            XCTAssertEqual(e.kind, .insufficientMemory, "\(e)", file: file, line: line)
            XCTAssertEqual(e.node, node, "\(e)", file: file, line: line)
            XCTAssertNotNil(e.file, "\(e)", file: file, line: line)
            for m in mentions { XCTAssertTrue(e.description.contains(m), "'\(m)' not in: \(e)", file: file, line: line) }
        }
    }

    func testThePlanCountsExactlyWhatInitialisationAllocates() throws {
        let a = try corpus("cnn-small.json")
        let plan = try a.plan(source: "cnn-small.json")
        // conv 4x1x3x3 + 4, batchnorm 4 x 4 + 1 counter, linear 10 x (4*4*4) + 10.
        XCTAssertEqual(plan.parameterCount, 36 + 4 + 16 + 1 + 640 + 10)
        var g = SeededGenerator(seed: 0)
        XCTAssertEqual(try a.initialParameters(generator: &g).scalarCount, plan.parameterCount)
        // Outputs per sample: conv 4x8x8, batchnorm and relu the same, pool 4x4x4, flatten 64, linear 10.
        XCTAssertEqual(plan.activationsPerRow, 256 * 3 + 64 + 64 + 10)
        XCTAssertEqual(plan.nodes.map(\.outputCount), [256, 256, 256, 64, 64, 10])
        XCTAssertEqual(plan.bytes(batch: 2, training: false), 4 * (plan.parameterCount + 2 * plan.activationsPerRow))
        XCTAssertNoThrow(try plan.requireMemory(batch: 64, training: true, available: gib))
    }

    func testAConvolutionWithAHundredMillionChannelsIsRefusedByNodeBeforeAllocating() throws {
        let a = try corpus("conv-huge-channels.json")
        let plan = try a.plan(source: "conv-huge-channels.json")
        XCTAssertEqual(plan.nodes[0].parameters.first?.shape, [100_000_000, 1, 3, 3])
        expectTooLarge({ try plan.requireMemory(batch: 64, training: true, available: 24 * gib) }, node: "conv1",
                       mentions: ["conv-huge-channels.json", "[100000000, 6, 6] per sample", "of memory", "24.0 GiB"])
        // Initialisation asks the plan first (this machine's memory): refused, never a trap in the allocation.
        var g = SeededGenerator(seed: 0)
        XCTAssertThrowsError(try a.initialParameters(generator: &g, source: "conv-huge-channels.json")) {
            XCTAssertEqual(($0 as? NetworkError)?.kind, .insufficientMemory, "\($0)")
        }
    }

    func testALinearLayerOfAMillionByAMillionIsRefusedNamingTheTensor() throws {
        let plan = try corpus("linear-huge.json").plan(inputShape: [64], source: "linear-huge.json")
        XCTAssertEqual(plan.parameterCount, 1_000_000 * 64 + 1_000_000 * 1_000_000 + 10 * 1_000_000)
        expectTooLarge({ try plan.requireMemory(available: 24 * gib) }, node: "fc2",
                       mentions: ["'b.weight'", "[1000000, 1000000]", "(linear)"])
    }

    func testSizesWhoseProductOverflowsAreAnErrorNotATrap() throws {
        // input_shape 10^8 x 10^8 x 10^8, flattened.
        expectTooLarge({ _ = try self.corpus("input-overflow.json").plan(source: "f.json") }, node: "node0",
                       mentions: ["f.json", "[100000000, 100000000, 100000000]", "64-bit"])
        // A conv weight of (10^9 - 1)^4 values.
        expectTooLarge({ _ = try self.corpus("kernel-overflow.json").plan(source: "k.json") }, node: "c",
                       mentions: ["'c.weight'", "64-bit"])
        // A reshape target whose product overflows.
        let reshape = try arch(#"{"input_shape": [64], "nodes": [{"name": "r", "op": "reshape", "shape": [999999999, 999999999, 999999999]}]}"#)
        expectTooLarge({ _ = try reshape.plan(source: "r.json") }, node: "r", mentions: ["reshape target"])
        XCTAssertThrowsError(try reshape.inferShapes(shapeOf: { _ in nil })) { XCTAssertEqual(($0 as? NetworkError)?.kind, .insufficientMemory) }
        // Many layers each in range whose total overflows: 10 linear layers of 999999999 x 999999999.
        let nodes = (0..<10).map { #"{"op": "linear", "weight": "w\#($0)", "out": 999999999}"# }.joined(separator: ", ")
        let deep = try arch(#"{"input_shape": [999999999], "nodes": [\#(nodes)]}"#)
        expectTooLarge({ _ = try deep.plan(source: "deep.json") }, node: "node9", mentions: ["parameters", "64-bit"])
    }

    func testALoadedModelIsPlannedFromItsOwnTensors() throws {
        let model = try LoadedModel(path: Fixtures.url("cnn/vgg-seed0.safetensors").path,
                                    architecture: ArchitectureChoice(file: Fixtures.url("cnn/vgg.arch.json")))
        let plan = try model.architecture.plan(shapeOf: { model.params[$0]?.shape }, source: model.path)
        XCTAssertEqual(plan.parameterCount, model.params.scalarCount)
        XCTAssertGreaterThan(plan.activationsPerRow, 64)
    }

    func testHostileONNXGraphsAreRefusedByName() throws {
        func load(_ name: String) throws -> Architecture {
            let url = Fixtures.url("onnx/hostile/\(name).onnx")
            let model = try ONNXModel(url: url)
            let a = try ONNXArchitecture.architecture(from: model)
            _ = try a.inferShapes(shapeOf: { model.info($0)?.shape }, source: url.path)
            return a
        }
        for (name, kind, mention) in [("conv-huge-pads", NetworkError.Kind.badAttribute, "pads"),
                                      ("input-overflow", .badShape, "1099511627776"),
                                      ("reshape-huge", .insufficientMemory, "reshape target")] {
            XCTAssertThrowsError(try load(name), name) { error in
                guard let e = error as? NetworkError else { return XCTFail("\(name): not a NetworkError: \(error)") }
                XCTAssertEqual(e.kind, kind, "\(name): \(e)")
                XCTAssertTrue(e.description.contains("\(name).onnx"), "names the file: \(e)")
                XCTAssertTrue(e.description.contains(mention), "\(name): '\(mention)' not in \(e)")
            }
        }
    }
}
