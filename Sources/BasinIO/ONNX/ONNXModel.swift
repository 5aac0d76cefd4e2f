import BasinTensor
import Foundation
import SwiftProtobuf

/// One dimension of a value's shape in an ONNX graph.
public enum ONNXDimension: Sendable, Equatable, CustomStringConvertible {
    case fixed(Int)
    /// A named dimension such as the batch size `N`.
    case symbolic(String)
    /// Neither a size nor a name.
    case unknown

    public var description: String {
        switch self {
        case let .fixed(n): "\(n)"
        case let .symbolic(s): s
        case .unknown: "?"
        }
    }

    public var value: Int? {
        if case let .fixed(n) = self { return n }
        return nil
    }
}

/// A graph input or output: its name, element type and shape as declared (either may be absent).
public struct ONNXValueInfo: Sendable, Equatable {
    public let name: String
    /// ONNX TensorProto.DataType code (1 = float32, 7 = int64, ...); nil when not a tensor or not declared.
    public let elementType: Int?
    /// nil when the rank is not declared.
    public let shape: [ONNXDimension]?

    public var elementTypeName: String { elementType.map(ONNXModel.dataTypeName) ?? "undeclared" }
}

/// A tensor-valued attribute (e.g. Constant's `value`), decoded to a dtype Basin knows.
public struct ONNXTensor: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Little-endian element bytes.
    public let bytes: [UInt8]

    public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        precondition(bytes.count == Tensor.elementCount(shape) * dtype.byteSize, "ONNXTensor: \(bytes.count) bytes for \(shape) of \(dtype)")
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// The elements widened to Float32.
    public var tensor: Tensor { bytes.withUnsafeBytes { Tensor(shape: shape, dtype: dtype, bytes: $0) } }

    /// The elements as integers (I64, I32, I16, I8, U8, BOOL); nil for floating-point tensors.
    public var integers: [Int]? {
        let n = Tensor.elementCount(shape)
        return bytes.withUnsafeBytes { raw -> [Int]? in
            switch dtype {
            case .i64: (0..<n).map { Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
            case .i32: (0..<n).map { Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
            case .i16: (0..<n).map { Int(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: Int16.self))) }
            case .i8: (0..<n).map { Int(raw.load(fromByteOffset: $0, as: Int8.self)) }
            case .u8, .bool: (0..<n).map { Int(raw.load(fromByteOffset: $0, as: UInt8.self)) }
            case .f32, .f16, .bf16, .f64: nil
            }
        }
    }
}

/// A node attribute, typed.
public enum ONNXAttribute: Sendable, Equatable {
    case float(Float)
    case int(Int)
    case string(String)
    case tensor(ONNXTensor)
    case floats([Float])
    case ints([Int])
    case strings([String])
    /// A kind Basin does not read (a subgraph, sparse tensor, type or list of tensors): only its ONNX type name,
    /// so a converter can say which node carries it.
    case other(type: String)

    public var intValue: Int? { if case let .int(v) = self { v } else { nil } }
    public var floatValue: Float? { if case let .float(v) = self { v } else { nil } }
    public var intsValue: [Int]? { if case let .ints(v) = self { v } else { nil } }
    public var stringValue: String? { if case let .string(v) = self { v } else { nil } }
}

/// One node of an ONNX graph.
public struct ONNXNode: Sendable, Equatable {
    public let index: Int
    /// May be empty in a valid file; `displayName` is never empty.
    public let name: String
    public let opType: String
    /// "" for the default ONNX domain.
    public let domain: String
    /// Input value names in order; "" marks an omitted optional input.
    public let inputs: [String]
    public let outputs: [String]
    /// Attributes in file order.
    public let attributes: [(name: String, value: ONNXAttribute)]

    public subscript(attribute name: String) -> ONNXAttribute? {
        attributes.first { $0.name == name }?.value
    }

    /// The node's name, or `#index` when it has none.
    public var displayName: String { name.isEmpty ? "#\(index)" : name }

    public static func == (a: ONNXNode, b: ONNXNode) -> Bool {
        a.index == b.index && a.name == b.name && a.opType == b.opType && a.domain == b.domain && a.inputs == b.inputs
            && a.outputs == b.outputs && a.attributes.map(\.name) == b.attributes.map(\.name)
            && a.attributes.map(\.value) == b.attributes.map(\.value)
    }
}

/// An ONNX model file (`.onnx`), read and validated when opened.
///
/// The graph (inputs, outputs, nodes with typed attributes) is kept for conversion to an architecture, and the
/// initializers are served as a `TensorSource`, so an `.onnx` file alone is a model whose weights are its
/// initializers. An Identity node whose input is an initializer (the PyTorch exporter stores bit-identical tensors
/// once and recreates the other names that way) is served as a tensor of its own name too, so the names match
/// the exporting state_dict.
///
/// Checked on open: a regular file of at most 2 GiB (protobuf's own limit for one message; larger models need
/// external data, which Basin does not read); a decodable ModelProto with a graph; every initializer with a
/// supported element type whose stored values match its dims; unique value names; every node input produced by a
/// graph input, an initializer or an earlier node (ONNX requires topological order); every graph output produced.
public final class ONNXModel: TensorSource, @unchecked Sendable {
    /// Protobuf cannot encode a message over 2 GiB; anything larger is not a self-contained ONNX file.
    public static let maximumFileSize = Int(Int32.max)

    public let url: URL
    public let irVersion: Int
    /// Opset of the default (ai.onnx) domain, nil when the file imports none.
    public let opsetVersion: Int?
    /// Every imported opset: domain ("" = ai.onnx) -> version.
    public let opsets: [String: Int]
    public let producerName: String
    public let producerVersion: String
    public let graphName: String
    /// Graph inputs that are not initializers (what the caller feeds).
    public let inputs: [ONNXValueInfo]
    public let outputs: [ONNXValueInfo]
    public let nodes: [ONNXNode]
    /// Initializer names in file order.
    public let initializerNames: [String]
    /// Identity-made copies of initializers: output name -> the initializer it copies (followed through chains).
    public let aliases: [String: String]
    public let metadata: [String: String]
    /// Initializers first (file order), then aliases (node order).
    public let names: [String]

    private let infos: [String: TensorInfo]
    private let storage: [UInt8]

    public var displayPath: String { url.path }
    public var files: [URL] { [url] }

    public convenience init(path: String) throws {
        try self.init(url: URL(fileURLWithPath: path))
    }

    public convenience init(url: URL) throws {
        let file = url.path
        let size: Int
        do {
            let status = try Platform.fileStatus(file)
            if let kind = status.kind {
                throw BasinIOError(.unreadable, file: file, "is \(kind), not a regular file: an ONNX model must be a file")
            }
            size = status.size
        } catch let failure as Platform.Failure {
            throw BasinIOError(.unreadable, file: file, "cannot be read (\(failure.message))")
        }
        guard size <= Self.maximumFileSize else {
            throw BasinIOError(.fileTooLarge, file: file,
                               "is \(size) bytes, more than the \(Self.maximumFileSize)-byte limit of a protobuf message: not an ONNX file, or a model that needs external data (not supported)")
        }
        let model: Onnx_ModelProto
        do {
            let mapping = try Platform.Mapping(path: file)
            model = try withExtendedLifetime(mapping) {
                let data: Data
                if let base = mapping.base {
                    data = Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: mapping.size, deallocator: .none)
                } else {
                    data = Data()
                }
                return try Onnx_ModelProto(serializedBytes: data)
            }
        } catch let failure as Platform.Failure {
            throw BasinIOError(.unreadable, file: file, "cannot be read (\(failure.message))")
        } catch {
            throw BasinIOError(.malformedProtobuf, file: file, "is not a valid ONNX protobuf (\(Self.describe(error)))")
        }
        try self.init(model: model, url: url)
    }

    /// Parses ONNX bytes held in memory; `url` only names them in messages (the fuzz target's entry).
    public convenience init(bytes: Data, url: URL) throws {
        guard bytes.count <= Self.maximumFileSize else {
            throw BasinIOError(.fileTooLarge, file: url.path, "is \(bytes.count) bytes, more than the \(Self.maximumFileSize)-byte limit of a protobuf message")
        }
        let model: Onnx_ModelProto
        do { model = try Onnx_ModelProto(serializedBytes: bytes) } catch {
            throw BasinIOError(.malformedProtobuf, file: url.path, "is not a valid ONNX protobuf (\(Self.describe(error)))")
        }
        try self.init(model: model, url: url)
    }

    private init(model: Onnx_ModelProto, url: URL) throws {
        self.url = url
        let file = url.path
        guard model.hasGraph, model.irVersion > 0 else {
            throw BasinIOError(.badONNX, file: file,
                               model.hasGraph ? "declares no IR version: not an ONNX model" : "has no graph: not an ONNX model")
        }
        irVersion = Int(clamping: model.irVersion)
        var opsets: [String: Int] = [:]
        for entry in model.opsetImport {
            let domain = entry.domain == "ai.onnx" ? "" : entry.domain
            opsets[domain] = Int(clamping: entry.version)
        }
        self.opsets = opsets
        opsetVersion = opsets[""]
        producerName = model.producerName
        producerVersion = model.producerVersion
        var meta: [String: String] = [:]
        for entry in model.metadataProps { meta[entry.key] = entry.value }
        metadata = meta

        let graph = model.graph
        graphName = graph.name
        guard graph.sparseInitializer.isEmpty else {
            throw BasinIOError(.unsupportedONNX, file: file, tensor: graph.sparseInitializer.first?.values.name,
                               "holds \(graph.sparseInitializer.count) sparse initializers, which Basin does not read")
        }

        // Initializers: decoded into one little-endian byte buffer.
        var bytes: [UInt8] = []
        var infos: [String: TensorInfo] = [:]
        var initializerNames: [String] = []
        for proto in graph.initializer {
            let name = proto.name
            guard !name.isEmpty else {
                throw BasinIOError(.badONNX, file: file, "has an initializer without a name (initializer \(initializerNames.count))")
            }
            guard infos[name] == nil else {
                throw BasinIOError(.badONNX, file: file, tensor: name, "is defined twice as an initializer")
            }
            let decoded = try Self.decode(proto, file: file)
            let start = bytes.count
            bytes += decoded.bytes
            infos[name] = TensorInfo(name: name, dtype: decoded.dtype, shape: decoded.shape, dataOffsets: start..<bytes.count)
            initializerNames.append(name)
        }
        self.initializerNames = initializerNames

        // Inputs: a value an initializer also defines is a default (IR < 4 lists every weight as an input).
        var defined = Set(initializerNames)
        var graphInputs: [ONNXValueInfo] = []
        for input in graph.input {
            guard !input.name.isEmpty else { throw BasinIOError(.badONNX, file: file, "has a graph input without a name") }
            if defined.contains(input.name) { continue }
            graphInputs.append(Self.valueInfo(input))
        }
        for input in graphInputs {
            guard defined.insert(input.name).inserted else {
                throw BasinIOError(.badONNX, file: file, tensor: input.name, "is declared twice as a graph input")
            }
        }
        inputs = graphInputs
        outputs = graph.output.map(Self.valueInfo)

        // Nodes: typed attributes, topological order, single assignment.
        var nodes: [ONNXNode] = []
        var aliases: [String: String] = [:]
        var aliasOrder: [String] = []
        for (index, proto) in graph.node.enumerated() {
            let label = "node '\(proto.name.isEmpty ? "#\(index)" : proto.name)' (\(proto.opType))"
            guard !proto.opType.isEmpty else {
                throw BasinIOError(.badONNX, file: file, "node \(index) ('\(proto.name)') has no op_type")
            }
            for input in proto.input where !input.isEmpty && !defined.contains(input) {
                throw BasinIOError(.badONNX, file: file, tensor: input,
                                   "\(label) reads '\(input)', which no graph input, initializer or earlier node produces (nodes must be in topological order)")
            }
            var attributes: [(name: String, value: ONNXAttribute)] = []
            for attribute in proto.attribute {
                guard !attribute.name.isEmpty else {
                    throw BasinIOError(.badONNX, file: file, "\(label) has an attribute without a name")
                }
                guard !attributes.contains(where: { $0.name == attribute.name }) else {
                    throw BasinIOError(.badONNX, file: file, "\(label) has attribute '\(attribute.name)' twice")
                }
                attributes.append((attribute.name, try Self.attributeValue(attribute, node: label, file: file)))
            }
            for output in proto.output where !output.isEmpty {
                guard defined.insert(output).inserted else {
                    throw BasinIOError(.badONNX, file: file, tensor: output,
                                       "\(label) outputs '\(output)', which an input, initializer or earlier node already defines")
                }
            }
            let node = ONNXNode(index: index, name: proto.name, opType: proto.opType, domain: proto.domain == "ai.onnx" ? "" : proto.domain,
                                inputs: proto.input, outputs: proto.output, attributes: attributes)
            if node.opType == "Identity", node.domain.isEmpty, node.inputs.count == 1, node.outputs.count == 1, !node.outputs[0].isEmpty {
                let source = node.inputs[0]
                if let root = infos[source] != nil ? source : aliases[source] {
                    aliases[node.outputs[0]] = root
                    aliasOrder.append(node.outputs[0])
                }
            }
            nodes.append(node)
        }
        for output in outputs where !defined.contains(output.name) {
            throw BasinIOError(.badONNX, file: file, tensor: output.name, "graph output '\(output.name)' is produced by no node, input or initializer")
        }
        self.nodes = nodes
        self.aliases = aliases
        for alias in aliasOrder {
            let info = infos[aliases[alias]!]!
            infos[alias] = TensorInfo(name: alias, dtype: info.dtype, shape: info.shape, dataOffsets: info.dataOffsets)
        }
        names = initializerNames + aliasOrder
        self.infos = infos
        storage = bytes
    }

    // MARK: TensorSource

    public func info(_ name: String) -> TensorInfo? { infos[name] }

    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard let info = infos[name] else { throw missing(name) }
        return try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[info.dataOffsets])) }
    }

    public func tensor(_ name: String) throws -> Tensor {
        guard let info = infos[name] else { throw missing(name) }
        return try withRawBytes(name) { Tensor(shape: info.shape, dtype: info.dtype, bytes: $0) }
    }

    /// The initializers are decoded into memory when the file is opened; nothing to release.
    public func release(_ name: String) {}

    /// Whether `name` is an initializer (or an Identity copy of one), i.e. a weight rather than a computed value.
    public func isInitializer(_ name: String) -> Bool { infos[name] != nil }

    // MARK: Decoding

    /// ONNX TensorProto.DataType names, for messages.
    public static func dataTypeName(_ code: Int) -> String {
        let names = [1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "STRING",
                     9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
                     15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
                     20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1"]
        return names[code] ?? "data type \(code)"
    }

    /// The Basin dtype of an ONNX element type, nil for the ones Basin does not hold.
    public static func dtype(forDataType code: Int) -> DType? {
        switch code {
        case 1: .f32
        case 2: .u8
        case 3: .i8
        case 5: .i16
        case 6: .i32
        case 7: .i64
        case 9: .bool
        case 10: .f16
        case 11: .f64
        case 16: .bf16
        default: nil
        }
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case let e as BinaryDecodingError:
            switch e {
            case .truncated: "truncated: a field runs past the end of the file"
            case .malformedProtobuf: "malformed protobuf data"
            case .invalidUTF8: "a string field is not valid UTF-8"
            case .messageDepthLimit: "messages nested deeper than the decoder's limit"
            case .missingRequiredFields: "required fields missing"
            default: "\(e)"
            }
        default: "\(error)"
        }
    }

    private static func valueInfo(_ proto: Onnx_ValueInfoProto) -> ONNXValueInfo {
        guard proto.hasType, case let .tensorType(tensorType)? = proto.type.value else {
            return ONNXValueInfo(name: proto.name, elementType: nil, shape: nil)
        }
        let elementType = tensorType.hasElemType ? Int(tensorType.elemType) : nil
        let shape: [ONNXDimension]? = tensorType.hasShape ? tensorType.shape.dim.map { dim in
            switch dim.value {
            case let .dimValue(v)?: v >= 0 ? .fixed(Int(clamping: v)) : .unknown
            case let .dimParam(p)?: p.isEmpty ? .unknown : .symbolic(p)
            case nil: .unknown
            }
        } : nil
        return ONNXValueInfo(name: proto.name, elementType: elementType, shape: shape)
    }

    private static func attributeValue(_ proto: Onnx_AttributeProto, node: String, file: String) throws -> ONNXAttribute {
        let text = { (data: Data) in String(decoding: data, as: UTF8.self) }
        func int(_ v: Int64) throws -> Int {
            guard let i = Int(exactly: v) else {
                throw BasinIOError(.badONNX, file: file, "\(node): attribute '\(proto.name)' holds \(v), out of range")
            }
            return i
        }
        var type = proto.type
        if !proto.hasType || type == .undefined {
            // IR version 1 files may leave the type out; the one field that is set tells it.
            if proto.hasF { type = .float } else if proto.hasI { type = .int } else if proto.hasS { type = .string }
            else if proto.hasT { type = .tensor } else if !proto.floats.isEmpty { type = .floats }
            else if !proto.ints.isEmpty { type = .ints } else if !proto.strings.isEmpty { type = .strings }
        }
        switch type {
        case .float: return .float(proto.f)
        case .int: return .int(try int(proto.i))
        case .string: return .string(text(proto.s))
        case .tensor:
            let t = try decode(proto.t, file: file, context: "\(node): attribute '\(proto.name)'")
            return .tensor(ONNXTensor(name: proto.t.name, dtype: t.dtype, shape: t.shape, bytes: t.bytes))
        case .floats: return .floats(proto.floats)
        case .ints: return .ints(try proto.ints.map(int))
        case .strings: return .strings(proto.strings.map(text))
        case .graph: return .other(type: "GRAPH")
        case .graphs: return .other(type: "GRAPHS")
        case .sparseTensor: return .other(type: "SPARSE_TENSOR")
        case .sparseTensors: return .other(type: "SPARSE_TENSORS")
        case .tensors: return .other(type: "TENSORS")
        case .typeProto: return .other(type: "TYPE_PROTO")
        case .typeProtos: return .other(type: "TYPE_PROTOS")
        case .undefined:
            throw BasinIOError(.badONNX, file: file, "\(node): attribute '\(proto.name)' has no type and no value")
        }
    }

    /// A TensorProto's elements as little-endian bytes of a Basin dtype, checked against its dims.
    static func decode(_ proto: Onnx_TensorProto, file: String, context: String? = nil) throws
        -> (dtype: DType, shape: [Int], bytes: [UInt8]) {
        let name = context == nil ? proto.name : nil
        func fail(_ kind: BasinIOError.Kind, _ problem: String) -> BasinIOError {
            BasinIOError(kind, file: file, tensor: name, context.map { "\($0): \(problem)" } ?? problem)
        }
        if proto.dataLocation == .external || !proto.externalData.isEmpty {
            let location = proto.externalData.first { $0.key == "location" }?.value
            throw fail(.externalData, "stores its data in an external file\(location.map { " ('\($0)')" } ?? "") (external data is not supported; re-export with the weights embedded)")
        }
        guard !proto.hasSegment else {
            throw fail(.unsupportedONNX, "is one segment of a chunked tensor, which Basin does not read")
        }
        let code = Int(proto.dataType)
        guard let dtype = dtype(forDataType: code) else {
            throw fail(.unsupportedDType, "has element type \(dataTypeName(code)), which Basin does not read (supported: FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT64, INT32, INT16, INT8, UINT8, BOOL)")
        }
        var shape: [Int] = []
        var count = 1
        for d in proto.dims {
            guard d >= 0, d < (1 << 40) else { throw fail(.badShape, "dims \(proto.dims) has an entry that is not a non-negative size") }
            shape.append(Int(d))
            let (p, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow, p <= maximumFileSize else { throw fail(.badShape, "dims \(proto.dims) hold more elements than an ONNX file can store") }
            count = p
        }
        let byteCount = count * dtype.byteSize
        let typedCount = proto.floatData.count + proto.int32Data.count + proto.int64Data.count + proto.doubleData.count
            + proto.uint64Data.count + proto.stringData.count
        if proto.hasRawData {
            guard typedCount == 0 else { throw fail(.badONNX, "holds both raw_data and typed values") }
            guard proto.rawData.count == byteCount else {
                throw fail(.sizeMismatch, "dims \(shape) of \(dataTypeName(code)) need \(count) x \(dtype.byteSize) = \(byteCount) bytes but raw_data holds \(proto.rawData.count)")
            }
            return (dtype, shape, [UInt8](proto.rawData))
        }
        // Typed fields: FLOAT in float_data, DOUBLE in double_data, INT64 in int64_data, every narrower type (and the
        // bit patterns of FLOAT16/BFLOAT16) in int32_data.
        let field: String
        let stored: Int
        switch dtype {
        case .f32: (field, stored) = ("float_data", proto.floatData.count)
        case .f64: (field, stored) = ("double_data", proto.doubleData.count)
        case .i64: (field, stored) = ("int64_data", proto.int64Data.count)
        default: (field, stored) = ("int32_data", proto.int32Data.count)
        }
        guard stored == count, typedCount == stored else {
            throw fail(.sizeMismatch, "dims \(shape) of \(dataTypeName(code)) need \(count) values but \(field) holds \(stored)\(typedCount != stored ? " (and other fields hold \(typedCount - stored))" : "")")
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(byteCount)
        func append<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        switch dtype {
        case .f32: for v in proto.floatData { append(v.bitPattern) }
        case .f64: for v in proto.doubleData { append(v.bitPattern) }
        case .i64: for v in proto.int64Data { append(v) }
        case .i32: for v in proto.int32Data { append(v) }
        default:
            let range: ClosedRange<Int32> = switch dtype {
            case .i16: Int32(Int16.min)...Int32(Int16.max)
            case .i8: Int32(Int8.min)...Int32(Int8.max)
            case .u8: 0...255
            case .bool: 0...1
            default: 0...0xFFFF // f16, bf16: 16-bit patterns
            }
            for v in proto.int32Data {
                guard range.contains(v) else { throw fail(.badONNX, "int32_data holds \(v), out of range for \(dataTypeName(code))") }
                if dtype.byteSize == 1 { bytes.append(UInt8(truncatingIfNeeded: v)) } else { append(UInt16(truncatingIfNeeded: v)) }
            }
        }
        return (dtype, shape, bytes)
    }
}
