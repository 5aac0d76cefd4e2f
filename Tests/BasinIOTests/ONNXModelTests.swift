@testable import BasinIO
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// The ONNX reader against the PyTorch exports in fixtures/cnn (whose facts expected.json records), and every
/// kind of bad file it must refuse with a typed error naming the file.
final class ONNXModelTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func expected(_ family: String) throws -> [String: Any] {
        let all = try XCTUnwrap(Fixtures.json("cnn/expected.json") as? [String: Any])
        let f = try XCTUnwrap(all[family] as? [String: Any])
        return try XCTUnwrap(f["onnx"] as? [String: Any])
    }

    private func rawBytes(_ source: any TensorSource, _ name: String) throws -> [UInt8] {
        try source.withRawBytes(name) { [UInt8]($0) }
    }

    // MARK: The fixtures

    func testVGGGraph() throws {
        let model = try ONNXModel(url: Fixtures.url("cnn/vgg-seed0.onnx"))
        let facts = try expected("vgg")
        XCTAssertEqual(model.irVersion, facts["ir_version"] as? Int)
        XCTAssertEqual(model.opsetVersion, facts["opset"] as? Int)
        XCTAssertEqual(model.nodes.map(\.opType), facts["node_ops"] as? [String])
        XCTAssertEqual(model.inputs, [ONNXValueInfo(name: "x", elementType: 1, shape: [.symbolic("N"), .fixed(1), .fixed(8), .fixed(8)])])
        XCTAssertEqual(model.outputs.map(\.name), ["logits"])
        XCTAssertEqual(model.outputs[0].elementTypeName, "FLOAT")
        XCTAssertEqual(model.outputs[0].shape?.map(\.value), [nil, 10])
        XCTAssertEqual(model.outputs[0].shape?.first, model.inputs[0].shape?.first, "the batch dimension is the same symbol")
        XCTAssertEqual(Set(model.initializerNames), Set(try XCTUnwrap(facts["initializer_names"] as? [String])))
        XCTAssertTrue(model.aliases.isEmpty)

        let conv = model.nodes[0]
        XCTAssertEqual(conv.inputs, ["x", "features.0.weight"])
        XCTAssertEqual(conv[attribute: "kernel_shape"], .ints([3, 3]))
        XCTAssertEqual(conv[attribute: "pads"], .ints([1, 1, 1, 1]))
        XCTAssertEqual(conv[attribute: "strides"], .ints([1, 1]))
        let bn = model.nodes[1]
        XCTAssertEqual(bn.inputs, [conv.outputs[0], "features.1.weight", "features.1.bias", "features.1.running_mean", "features.1.running_var"])
        let attrs = try XCTUnwrap(facts["batchnorm_attributes"] as? [String: Any])
        XCTAssertEqual(bn[attribute: "epsilon"]?.floatValue, Float(try XCTUnwrap(attrs["epsilon"] as? Double)))
        XCTAssertEqual(bn[attribute: "momentum"]?.floatValue, Float(try XCTUnwrap(attrs["momentum"] as? Double)))
        XCTAssertEqual(bn[attribute: "training_mode"]?.intValue, attrs["training_mode"] as? Int)
        let pool = try XCTUnwrap(model.nodes.first { $0.opType == "MaxPool" })
        XCTAssertEqual(pool[attribute: "kernel_shape"], .ints([2, 2]))
        XCTAssertEqual(pool[attribute: "strides"], .ints([2, 2]))
        let gemm = try XCTUnwrap(model.nodes.last)
        XCTAssertEqual(gemm.opType, "Gemm")
        XCTAssertEqual(gemm.inputs.dropFirst(), ["classifier.weight", "classifier.bias"])
        XCTAssertEqual(gemm[attribute: "transB"], .int(1))
        XCTAssertEqual(gemm.outputs, ["logits"])
    }

    func testVGGInitializersAreTheStateDict() throws {
        let model = try ONNXModel(url: Fixtures.url("cnn/vgg-seed0.onnx"))
        let stateDict = try SafeTensorsFile(url: Fixtures.url("cnn/vgg-seed0.safetensors"))
        let expectedNames = stateDict.names.filter { !$0.hasSuffix("num_batches_tracked") }
        XCTAssertEqual(Set(model.names), Set(expectedNames))
        for name in model.names {
            let info = try XCTUnwrap(model.info(name))
            XCTAssertEqual(info.dtype, .f32, name)
            XCTAssertEqual(info.shape, stateDict.info(name)?.shape, name)
            XCTAssertEqual(try rawBytes(model, name), try rawBytes(stateDict, name), "\(name): bit-identical to the state_dict")
            XCTAssertEqual(try model.tensor(name), try stateDict.tensor(name), name)
        }
    }

    func testResNetIdentityRecreatesTheDownsampleBias() throws {
        let model = try ONNXModel(url: Fixtures.url("cnn/resnet-seed0.onnx"))
        let facts = try expected("resnet")
        XCTAssertEqual(model.nodes.map(\.opType), facts["node_ops"] as? [String])
        XCTAssertEqual(Set(model.initializerNames), Set(try XCTUnwrap(facts["initializer_names"] as? [String])))
        XCTAssertFalse(model.initializerNames.contains("layer2.0.downsample.1.bias"))
        let identity = model.nodes[0]
        XCTAssertEqual(identity.opType, "Identity")
        XCTAssertEqual(identity.inputs, ["layer2.0.bn2.bias"])
        XCTAssertEqual(identity.outputs, ["layer2.0.downsample.1.bias"])
        XCTAssertEqual(model.aliases, ["layer2.0.downsample.1.bias": "layer2.0.bn2.bias"])
        XCTAssertTrue(model.isInitializer("layer2.0.downsample.1.bias"))
        XCTAssertFalse(model.isInitializer(model.nodes[1].outputs[0]))
        let downsampleBN = try XCTUnwrap(model.nodes.first { $0.opType == "BatchNormalization" && $0.inputs.contains("layer2.0.downsample.1.weight") })
        XCTAssertEqual(downsampleBN.inputs[2], "layer2.0.downsample.1.bias")
        XCTAssertEqual(model.nodes.filter { $0.opType == "Add" }.map(\.inputs.count), [2, 2])

        // As a tensor source the file serves every state_dict key but num_batches_tracked, the alias included.
        let stateDict = try SafeTensorsFile(url: Fixtures.url("cnn/resnet-seed0.safetensors"))
        XCTAssertEqual(Set(model.names), Set(stateDict.names.filter { !$0.hasSuffix("num_batches_tracked") }))
        XCTAssertEqual(model.names.last, "layer2.0.downsample.1.bias")
        for name in model.names {
            XCTAssertEqual(try rawBytes(model, name), try rawBytes(stateDict, name), name)
        }
        let opened = try ModelFile.open(Fixtures.url("cnn/resnet-seed0.onnx"))
        XCTAssertTrue(opened is ONNXModel)
        XCTAssertEqual(try opened.tensor("layer2.0.downsample.1.bias"), try stateDict.tensor("layer2.0.downsample.1.bias"))
    }

    // MARK: Building small models

    private func tensorProto(_ name: String, dims: [Int64], type: Int32 = 1, _ fill: (inout Onnx_TensorProto) -> Void) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = dims
        t.dataType = type
        fill(&t)
        return t
    }

    private func modelProto(initializers: [Onnx_TensorProto], nodes: [Onnx_NodeProto] = [], outputs: [String] = []) -> Onnx_ModelProto {
        var m = Onnx_ModelProto()
        m.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        m.opsetImport = [opset]
        var g = Onnx_GraphProto()
        g.name = "test"
        var input = Onnx_ValueInfoProto()
        input.name = "x"
        g.input = [input]
        g.initializer = initializers
        g.node = nodes
        g.output = outputs.map { name in
            var o = Onnx_ValueInfoProto()
            o.name = name
            return o
        }
        m.graph = g
        return m
    }

    private func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String = "") -> Onnx_NodeProto {
        var n = Onnx_NodeProto()
        n.opType = op
        n.input = inputs
        n.output = outputs
        n.name = name
        return n
    }

    private func write(_ model: Onnx_ModelProto, _ name: String = "m.onnx") throws -> URL {
        let url = dir.appendingPathComponent(name)
        try (model.serializedData() as Data).write(to: url)
        return url
    }

    private func expect(_ url: URL, _ kind: BasinIOError.Kind, tensor: String? = nil, mentions: String? = nil,
                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ONNXModel(url: url), file: file, line: line) { error in
            guard let e = error as? BasinIOError else { return XCTFail("not a BasinIOError: \(error)", file: file, line: line) }
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            XCTAssertTrue(e.description.hasPrefix(url.path), "message names the file: \(e)", file: file, line: line)
            if let tensor { XCTAssertTrue(e.description.contains("'\(tensor)'"), "message names the tensor: \(e)", file: file, line: line) }
            if let mentions { XCTAssertTrue(e.description.contains(mentions), "message says \(mentions): \(e)", file: file, line: line) }
        }
    }

    // MARK: Typed fields and dtypes

    func testTypedFieldsAndRawDataAgree() throws {
        let values: [Float] = [1.5, -2, 0.25, 8, 1e-3, -0]
        let ints: [Int64] = [3, -1, 1 << 40]
        let m = modelProto(initializers: [
            tensorProto("typed", dims: [2, 3]) { $0.floatData = values },
            tensorProto("raw", dims: [2, 3]) { t in t.rawData = values.withUnsafeBytes { Data($0) } },
            tensorProto("shape", dims: [3], type: 7) { $0.int64Data = ints },
            tensorProto("shapeRaw", dims: [3], type: 7) { t in t.rawData = ints.withUnsafeBytes { Data($0) } },
            tensorProto("half", dims: [2], type: 10) { $0.int32Data = [Int32(Float16(1.5).bitPattern), Int32(Float16(-3).bitPattern)] },
            tensorProto("scalar", dims: [], type: 11) { $0.doubleData = [2.5] },
            tensorProto("empty", dims: [0, 4]) { _ in },
        ])
        let model = try ONNXModel(url: write(m))
        XCTAssertEqual(model.names, ["typed", "raw", "shape", "shapeRaw", "half", "scalar", "empty"])
        XCTAssertEqual(try model.tensor("typed"), Tensor(shape: [2, 3], storage: values))
        XCTAssertEqual(try model.tensor("raw"), Tensor(shape: [2, 3], storage: values))
        XCTAssertEqual(model.info("shape")?.dtype, .i64)
        XCTAssertEqual(try model.integers("shape"), ints.map(Int.init))
        XCTAssertEqual(try model.integers("shapeRaw"), ints.map(Int.init))
        XCTAssertEqual(try model.tensor("half").storage, [1.5, -3])
        XCTAssertEqual(try model.doubles("scalar"), [2.5])
        XCTAssertEqual(model.info("scalar")?.shape, [])
        XCTAssertEqual(try model.tensor("empty").shape, [0, 4])
        XCTAssertEqual(model.inputs.map(\.name), ["x"])
        XCTAssertNil(model.inputs[0].shape)
    }

    func testAttributesAreTyped() throws {
        var n = node("Custom", ["x"], ["y"], name: "c")
        func attr(_ name: String, _ fill: (inout Onnx_AttributeProto) -> Void) -> Onnx_AttributeProto {
            var a = Onnx_AttributeProto()
            a.name = name
            fill(&a)
            return a
        }
        n.attribute = [
            attr("f") { $0.type = .float; $0.f = 0.5 },
            attr("i") { $0.type = .int; $0.i = -7 },
            attr("s") { $0.type = .string; $0.s = Data("NOTSET".utf8) },
            attr("fs") { $0.type = .floats; $0.floats = [1, 2] },
            attr("is") { $0.type = .ints; $0.ints = [0, 1, 2] },
            attr("ss") { $0.type = .strings; $0.strings = [Data("a".utf8)] },
            attr("t") { $0.type = .tensor; $0.t = tensorProto("", dims: [2], type: 7) { $0.int64Data = [-1, 10] } },
            attr("g") { $0.type = .graph; $0.g = Onnx_GraphProto() },
            attr("legacy") { $0.i = 4 }, // IR 1: no type, one field set
        ]
        let model = try ONNXModel(url: write(modelProto(initializers: [], nodes: [n], outputs: ["y"])))
        let c = model.nodes[0]
        XCTAssertEqual(c.attributes.map(\.name), ["f", "i", "s", "fs", "is", "ss", "t", "g", "legacy"])
        XCTAssertEqual(c[attribute: "f"], .float(0.5))
        XCTAssertEqual(c[attribute: "i"], .int(-7))
        XCTAssertEqual(c[attribute: "s"], .string("NOTSET"))
        XCTAssertEqual(c[attribute: "fs"], .floats([1, 2]))
        XCTAssertEqual(c[attribute: "is"], .ints([0, 1, 2]))
        XCTAssertEqual(c[attribute: "ss"], .strings(["a"]))
        guard case let .tensor(t)? = c[attribute: "t"] else { return XCTFail("tensor attribute") }
        XCTAssertEqual(t.dtype, .i64)
        XCTAssertEqual(t.integers, [-1, 10])
        XCTAssertEqual(c[attribute: "g"], .other(type: "GRAPH"))
        XCTAssertEqual(c[attribute: "legacy"], .int(4))
        XCTAssertNil(c[attribute: "missing"])
    }

    func testIdentityChainsResolveToTheInitializer() throws {
        let m = modelProto(initializers: [tensorProto("w", dims: [2]) { $0.floatData = [1, 2] }],
                           nodes: [node("Identity", ["w"], ["w1"]), node("Identity", ["w1"], ["w2"]),
                                   node("Identity", ["x"], ["y"])],
                           outputs: ["y"])
        let model = try ONNXModel(url: write(m))
        XCTAssertEqual(model.aliases, ["w1": "w", "w2": "w"])
        XCTAssertEqual(model.names, ["w", "w1", "w2"])
        XCTAssertEqual(try model.tensor("w2").storage, [1, 2])
        XCTAssertFalse(model.isInitializer("y"))
    }

    func testInitializersListedAsInputsAreNotInputs() throws {
        var m = modelProto(initializers: [tensorProto("w", dims: [1]) { $0.floatData = [1] }])
        var w = Onnx_ValueInfoProto()
        w.name = "w"
        m.graph.input.append(w)
        let model = try ONNXModel(url: write(m))
        XCTAssertEqual(model.inputs.map(\.name), ["x"])
    }

    // MARK: Bad files

    func testGarbageIsMalformedProtobuf() throws {
        let url = dir.appendingPathComponent("garbage.onnx")
        try Data([0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x12, 0x34]).write(to: url)
        expect(url, .malformedProtobuf)
    }

    func testTruncatedExportIsMalformedProtobuf() throws {
        let whole = try Data(contentsOf: Fixtures.url("cnn/vgg-seed0.onnx"))
        let url = dir.appendingPathComponent("truncated.onnx")
        try whole.prefix(whole.count / 2).write(to: url)
        expect(url, .malformedProtobuf, mentions: "truncated")
    }

    func testEmptyAndGraphlessFilesAreNotModels() throws {
        let empty = dir.appendingPathComponent("empty.onnx")
        try Data().write(to: empty)
        expect(empty, .badONNX, mentions: "no graph")
        var m = Onnx_ModelProto()
        m.irVersion = 8
        expect(try write(m, "nograph.onnx"), .badONNX, mentions: "no graph")
    }

    func testNonRegularFilesAreRefused() throws {
        expect(dir, .unreadable, mentions: "directory")
        let fifo = dir.appendingPathComponent("pipe.onnx")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        expect(fifo, .unreadable, mentions: "FIFO")
        expect(dir.appendingPathComponent("absent.onnx"), .unreadable)
    }

    func testAbsurdSizeIsRefusedBeforeReading() throws {
        let url = dir.appendingPathComponent("huge.onnx")
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: nil))
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: UInt64(ONNXModel.maximumFileSize) + 1) // sparse: no disk used
        try handle.close()
        expect(url, .fileTooLarge)
    }

    func testExternalDataIsNotSupported() throws {
        let t = tensorProto("big.weight", dims: [4]) { t in
            t.dataLocation = .external
            var location = Onnx_StringStringEntryProto()
            location.key = "location"
            location.value = "weights.bin"
            t.externalData = [location]
        }
        expect(try write(modelProto(initializers: [t])), .externalData, tensor: "big.weight", mentions: "weights.bin")
    }

    func testStoredValuesMustMatchDims() throws {
        expect(try write(modelProto(initializers: [tensorProto("w", dims: [2, 3]) { $0.floatData = [1, 2, 3] }])),
               .sizeMismatch, tensor: "w", mentions: "6 values")
        expect(try write(modelProto(initializers: [tensorProto("w", dims: [2]) { $0.rawData = Data([0, 0, 0]) }])),
               .sizeMismatch, tensor: "w", mentions: "raw_data holds 3")
        expect(try write(modelProto(initializers: [tensorProto("w", dims: [-1]) { _ in }])), .badShape, tensor: "w")
        expect(try write(modelProto(initializers: [tensorProto("w", dims: [1 << 20, 1 << 20]) { _ in }])), .badShape, tensor: "w")
        expect(try write(modelProto(initializers: [tensorProto("b", dims: [1], type: 9) { $0.int32Data = [2] }])),
               .badONNX, tensor: "b", mentions: "out of range")
    }

    func testUnsupportedElementTypeNamesTheTensor() throws {
        expect(try write(modelProto(initializers: [tensorProto("labels", dims: [1], type: 8) { $0.stringData = [Data("a".utf8)] }])),
               .unsupportedDType, tensor: "labels", mentions: "STRING")
    }

    func testGraphStructureIsChecked() throws {
        let w = tensorProto("w", dims: [1]) { $0.floatData = [1] }
        expect(try write(modelProto(initializers: [w, w])), .badONNX, tensor: "w", mentions: "twice")
        expect(try write(modelProto(initializers: [w], nodes: [node("Relu", ["h"], ["y"], name: "act")], outputs: ["y"])),
               .badONNX, tensor: "h", mentions: "node 'act' (Relu)")
        expect(try write(modelProto(initializers: [w], nodes: [node("Relu", ["x"], ["w"])], outputs: ["w"])),
               .badONNX, tensor: "w", mentions: "already defines")
        expect(try write(modelProto(initializers: [w], nodes: [node("Relu", ["x"], ["y"])], outputs: ["z"])),
               .badONNX, tensor: "z", mentions: "produced by no node")
        // Out of topological order: the consumer comes first.
        expect(try write(modelProto(initializers: [w], nodes: [node("Relu", ["h"], ["y"]), node("Relu", ["x"], ["h"])], outputs: ["y"])),
               .badONNX, tensor: "h", mentions: "topological")
    }
}
