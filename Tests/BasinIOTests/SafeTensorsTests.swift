import BasinIO
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

final class SafeTensorsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testReadsFixtureLazilyWithShapesAndDtypes() throws {
        let f = try SafeTensorsFile(url: Fixtures.mlpSeed0)
        XCTAssertEqual(Set(f.names), ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "layers.2.weight", "layers.2.bias"])
        XCTAssertEqual(f.info("layers.0.weight")?.shape, [128, 64])
        XCTAssertEqual(f.info("layers.2.bias")?.dtype, .f32)
        let h = try SafeTensorsFile(url: Fixtures.url("mlp-pair/mlp-seed0-f16.safetensors"))
        XCTAssertEqual(h.info("layers.0.weight")?.dtype, .f16)
        let b = try SafeTensorsFile(url: Fixtures.url("mlp-pair/mlp-seed0-bf16.safetensors"))
        XCTAssertEqual(b.info("layers.0.weight")?.dtype, .bf16)
        // The half-precision copies are the float32 weights rounded to nearest even.
        let w = try f.tensor("layers.0.weight")
        XCTAssertEqual(try h.tensor("layers.0.weight"), w.roundedThrough(.f16))
        XCTAssertEqual(try b.tensor("layers.0.weight"), w.roundedThrough(.bf16))
    }

    func testDatasetLabelsAreI64() throws {
        let d = try Dataset(url: Fixtures.digitsTest)
        XCTAssertEqual(d.count, 497)
        XCTAssertEqual(d.sampleShape, [64])
        XCTAssertEqual(d.classCount, 10)
        XCTAssertEqual(try Dataset(url: Fixtures.digitsTrain).count, 1300)
    }

    func testWriteReadRoundTripInEveryFloatDtype() throws {
        let t = Tensor(shape: [2, 3], storage: [1, -2, 3.5, 0.25, 1e-3, 7])
        for dtype in [DType.f32, .f16, .bf16, .f64] {
            let url = dir.appendingPathComponent("t-\(dtype.rawValue).safetensors")
            try SafeTensorsWriter.write([("a.weight", t), ("a.bias", Tensor(shape: [2], storage: [1, 2]))], to: url,
                                        dtype: { _ in dtype }, metadata: ["recipe": "x: 1\n\"quoted\""])
            let f = try SafeTensorsFile(url: url)
            XCTAssertEqual(f.names, ["a.weight", "a.bias"], "storage order is the plan order")
            XCTAssertEqual(f.info("a.weight")?.dtype, dtype)
            XCTAssertEqual(try f.tensor("a.weight"), t.roundedThrough(dtype))
            XCTAssertEqual(f.metadata["recipe"], "x: 1\n\"quoted\"")
            XCTAssertEqual(f.headerLength % 8, 0)
        }
    }

    func testWriterIsAtomicAndLeavesNothingOnFailure() throws {
        let url = dir.appendingPathComponent("out.safetensors")
        try Data("precious".utf8).write(to: url)
        do {
            let w = try SafeTensorsWriter(url: url, plan: [TensorPlan(name: "a", dtype: .f32, shape: [2]), TensorPlan(name: "b", dtype: .f32, shape: [1])])
            try w.write("a", Tensor(shape: [2], storage: [1, 2]))
            XCTAssertThrowsError(try w.write("b", Tensor(shape: [3], repeating: 0)))
            XCTAssertThrowsError(try w.finish())
        }
        XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "precious", "destination untouched")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.safetensors"], "no temporary file left")
    }

    func testRefusesToOverwriteAnInput() throws {
        let input = dir.appendingPathComponent("in.safetensors")
        try SafeTensorsWriter.write([("a", Tensor(shape: [1], storage: [1]))], to: input)
        let before = try Data(contentsOf: input)
        let alias = dir.appendingPathComponent("./sub/../in.safetensors")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("sub"), withIntermediateDirectories: true)
        XCTAssertThrowsError(try SafeTensorsWriter.write([("a", Tensor(shape: [1], storage: [2]))], to: alias, protecting: [input])) { error in
            XCTAssertEqual((error as? BasinIOError)?.kind, .wouldOverwriteInput)
            XCTAssertTrue("\(error)".contains("input"))
        }
        XCTAssertEqual(try Data(contentsOf: input), before)
    }

    func testShardedCheckpointReadsAsOneModel() throws {
        try SafeTensorsWriter.write([("a.weight", Tensor(shape: [2, 2], storage: [1, 2, 3, 4]))], to: dir.appendingPathComponent("m-1.safetensors"))
        try SafeTensorsWriter.write([("a.bias", Tensor(shape: [2], storage: [5, 6]))], to: dir.appendingPathComponent("m-2.safetensors"))
        let index = #"{"metadata": {"total_size": 24}, "weight_map": {"a.weight": "m-1.safetensors", "a.bias": "m-2.safetensors"}}"#
        try Data(index.utf8).write(to: dir.appendingPathComponent("m.safetensors.index.json"))
        let source = try ModelFile.open(dir)
        XCTAssertEqual(Set(source.names), ["a.weight", "a.bias"])
        XCTAssertEqual(try source.tensor("a.bias").storage, [5, 6])
        XCTAssertEqual(source.metadata["total_size"], "24")
        XCTAssertEqual(try ModelFile.open(dir.appendingPathComponent("m.safetensors.index.json")).names.count, 2)
    }

    func testDigestIsSHA256() throws {
        let url = dir.appendingPathComponent("abc.txt")
        try Data("abc".utf8).write(to: url)
        XCTAssertEqual(try FileDigest.sha256(url), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
