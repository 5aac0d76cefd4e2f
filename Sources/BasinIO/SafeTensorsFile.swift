import BasinTensor
import Foundation

/// Where a tensor lives in a safetensors file and what it holds.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range inside the data area (after the header).
    public let dataOffsets: Range<Int>

    public init(name: String, dtype: DType, shape: [Int], dataOffsets: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
    }

    public var elementCount: Int { Tensor.elementCount(shape) }
    public var byteCount: Int { dataOffsets.count }
}

/// Anything that serves named tensors: one safetensors file or a sharded checkpoint.
public protocol TensorSource: Sendable {
    /// A path to show in messages.
    var displayPath: String { get }
    /// Tensor names in storage order.
    var names: [String] { get }
    var metadata: [String: String] { get }
    func info(_ name: String) -> TensorInfo?
    /// The tensor decoded to Float32.
    func tensor(_ name: String) throws -> Tensor
    /// Calls `body` with the tensor's raw little-endian bytes (memory-mapped, no copy).
    func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R
    /// Drops the tensor's pages from memory (a hint for streaming readers).
    func release(_ name: String)
    /// Drops the pages wholly inside `bytes` (offsets within the tensor's data) from memory, so a streaming reader
    /// can let go of what it has consumed while it is still working on the rest of the tensor.
    func release(_ name: String, bytes: Range<Int>)
    /// The files that make up this source (one, or every shard).
    var files: [URL] { get }
}

extension TensorSource {
    /// Elements as Double (F64 stays exact).
    public func doubles(_ name: String) throws -> [Double] {
        guard let info = info(name) else { throw missing(name) }
        if info.dtype == .f64 {
            return try withRawBytes(name) { raw in
                (0..<info.elementCount).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
            }
        }
        if info.dtype == .i64 {
            return try withRawBytes(name) { raw in
                (0..<info.elementCount).map { Double(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
            }
        }
        return try tensor(name).storage.map(Double.init)
    }

    /// Integer elements (for labels): I64, I32, I16, I8, U8 exactly; float dtypes must hold whole numbers.
    public func integers(_ name: String) throws -> [Int] {
        guard let info = info(name) else { throw missing(name) }
        return try withRawBytes(name) { raw -> [Int] in
            let n = info.elementCount
            switch info.dtype {
            case .i64: return (0..<n).map { Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
            case .i32: return (0..<n).map { Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
            case .i16: return (0..<n).map { Int(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: Int16.self))) }
            case .i8: return (0..<n).map { Int(raw.load(fromByteOffset: $0, as: Int8.self)) }
            case .u8, .bool: return (0..<n).map { Int(raw.load(fromByteOffset: $0, as: UInt8.self)) }
            case .f32, .f16, .bf16, .f64:
                throw BasinIOError(.unsupportedDType, file: displayPath, tensor: name,
                                   "holds \(info.dtype.rawValue) values where integer labels (I64, I32 or U8) are expected")
            }
        }
    }

    /// Sources that cannot release part of a tensor do nothing.
    public func release(_ name: String, bytes: Range<Int>) {}

    /// Every tensor decoded to Float32, in storage order.
    public func allTensors() throws -> [(String, Tensor)] {
        try names.map { ($0, try tensor($0)) }
    }

    func missing(_ name: String) -> BasinIOError {
        BasinIOError(.missingTensor, file: displayPath, tensor: name, "no tensor of that name (the file holds \(names.count): \(names.prefix(6).joined(separator: ", "))\(names.count > 6 ? ", ..." : ""))")
    }
}

/// A safetensors file, memory-mapped and validated when opened; tensors are decoded lazily by name.
///
/// The format: 8-byte little-endian header length N, N bytes of JSON header mapping each tensor name to
/// `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the data area after the
/// header) plus an optional `__metadata__` string map, then the data area.
public final class SafeTensorsFile: TensorSource, Sendable {
    /// Headers larger than this are refused, as the reference implementation does (100 MB).
    public static let maximumHeaderLength = 100_000_000

    public let url: URL
    public let names: [String]
    public let metadata: [String: String]
    public let headerLength: Int
    private let infos: [String: TensorInfo]
    private let mapping: Platform.Mapping
    private let dataStart: Int

    public var displayPath: String { url.path }
    public var files: [URL] { [url] }

    public convenience init(path: String) throws {
        try self.init(url: URL(fileURLWithPath: path))
    }

    /// Opens and validates a file (a regular file only: FIFOs, devices and folders are refused before opening).
    public convenience init(url: URL) throws {
        let file = url.path
        try FileCheck.input(file)
        let mapping: Platform.Mapping
        do {
            mapping = try Platform.Mapping(path: file)
        } catch let failure as Platform.Failure {
            throw BasinIOError(.unreadable, file: file, "cannot be read (\(failure.message))")
        }
        try self.init(url: url, mapping: mapping)
    }

    /// Parses safetensors bytes held in memory (a private copy); `url` only names them in messages.
    public convenience init(bytes: UnsafeRawBufferPointer, url: URL) throws {
        try self.init(url: url, mapping: Platform.Mapping(copying: bytes))
    }

    private init(url: URL, mapping: Platform.Mapping) throws {
        self.url = url
        self.mapping = mapping
        let file = url.path
        let bytes = mapping.bytes
        guard bytes.count >= 8 else {
            throw BasinIOError(.truncatedHeaderLength, file: file,
                               "is \(bytes.count) bytes long, too short for the 8-byte header length of a safetensors file")
        }
        let declared = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard declared <= UInt64(Self.maximumHeaderLength) else {
            throw BasinIOError(.absurdHeaderLength, file: file,
                               "declares a header of \(declared) bytes, more than the \(Self.maximumHeaderLength)-byte limit: not a safetensors file, or corrupt")
        }
        let n = Int(declared)
        guard 8 + n <= bytes.count else {
            throw BasinIOError(.headerPastEnd, file: file,
                               "declares a header of \(n) bytes but the file has only \(bytes.count - 8) bytes after the length (truncated?)")
        }
        headerLength = n
        dataStart = 8 + n
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + n)])
        guard let headerText = String(validating: headerBytes, as: UTF8.self) else {
            throw BasinIOError(.headerNotUTF8, file: file, "header is not valid UTF-8")
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerText.utf8), options: [])
        } catch {
            throw BasinIOError(.badJSON, file: file, "header is not valid JSON (\(Self.describe(error)))")
        }
        guard let object = json as? [String: Any] else {
            throw BasinIOError(.headerNotObject, file: file, "header JSON is not an object of tensor entries")
        }
        var meta: [String: String] = [:]
        if let rawMeta = object["__metadata__"] {
            guard let m = rawMeta as? [String: Any] else {
                throw BasinIOError(.badMetadata, file: file, "__metadata__ is not an object of strings")
            }
            for (k, v) in m {
                guard let s = v as? String else {
                    throw BasinIOError(.badMetadata, file: file, "__metadata__ value for '\(k)' is not a string")
                }
                meta[k] = s
            }
        }
        metadata = meta
        let dataSize = bytes.count - dataStart
        var parsed: [TensorInfo] = []
        for (name, value) in object where name != "__metadata__" {
            parsed.append(try Self.parseEntry(name: name, value: value, dataSize: dataSize, file: file))
        }
        parsed.sort { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name) }
        // Tensors must tile the data area: no overlap, no holes, nothing after the last one.
        var cursor = 0
        var previous: TensorInfo?
        for info in parsed where !info.dataOffsets.isEmpty {
            if info.dataOffsets.lowerBound < cursor, let previous {
                throw BasinIOError(.overlappingTensors, file: file, tensor: info.name,
                                   "bytes \(info.dataOffsets.lowerBound)..<\(info.dataOffsets.upperBound) overlap tensor '\(previous.name)' (\(previous.dataOffsets.lowerBound)..<\(previous.dataOffsets.upperBound))")
            }
            if info.dataOffsets.lowerBound > cursor {
                throw BasinIOError(.uncoveredBytes, file: file, tensor: info.name,
                                   "starts at byte \(info.dataOffsets.lowerBound) of the data area, leaving bytes \(cursor)..<\(info.dataOffsets.lowerBound) that no tensor covers")
            }
            cursor = info.dataOffsets.upperBound
            previous = info
        }
        if cursor != dataSize {
            throw BasinIOError(.uncoveredBytes, file: file,
                               "data area is \(dataSize) bytes but the tensors cover only \(cursor) (trailing bytes, or a truncated header)")
        }
        names = parsed.map(\.name)
        infos = Dictionary(uniqueKeysWithValues: parsed.map { ($0.name, $0) })
    }

    private static func describe(_ error: Error) -> String {
        let ns = error as NSError
        return (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ns.localizedDescription
    }

    /// A JSON number that is a whole number (JSONSerialization hands back NSNumber for both kinds).
    private static func exactInteger(_ value: Any) -> Int64? {
        guard let n = value as? NSNumber else { return nil }
        let d = n.doubleValue
        guard d.rounded() == d, abs(d) < 9.0e15 else { return nil }
        return n.int64Value
    }

    private static func parseEntry(name: String, value: Any, dataSize: Int, file: String) throws -> TensorInfo {
        guard let entry = value as? [String: Any] else {
            throw BasinIOError(.malformedEntry, file: file, tensor: name, "header entry is not an object")
        }
        guard let dtypeName = entry["dtype"] as? String else {
            throw BasinIOError(.malformedEntry, file: file, tensor: name, "header entry has no \"dtype\" string")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw BasinIOError(.unknownDType, file: file, tensor: name,
                               "unknown dtype \"\(dtypeName)\" (known: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let rawShape = entry["shape"] as? [Any] else {
            throw BasinIOError(.malformedEntry, file: file, tensor: name, "header entry has no \"shape\" array")
        }
        var shape: [Int] = []
        for d in rawShape {
            guard let n = Self.exactInteger(d), n >= 0, n < (1 << 40) else {
                throw BasinIOError(.badShape, file: file, tensor: name, "shape \(rawShape) has an entry that is not a non-negative integer")
            }
            shape.append(Int(n))
        }
        guard let rawOffsets = entry["data_offsets"] as? [Any], rawOffsets.count == 2,
              let begin = Self.exactInteger(rawOffsets[0]), let end = Self.exactInteger(rawOffsets[1]) else {
            throw BasinIOError(.badOffsets, file: file, tensor: name, "\"data_offsets\" is not a pair of integers")
        }
        guard begin >= 0, end >= begin else {
            throw BasinIOError(.badOffsets, file: file, tensor: name, "data_offsets [\(begin), \(end)] are not an increasing pair of non-negative integers")
        }
        guard end <= Int64(dataSize) else {
            throw BasinIOError(.offsetsOutsideData, file: file, tensor: name,
                               "data_offsets [\(begin), \(end)] run past the end of the \(dataSize)-byte data area (truncated file?)")
        }
        var elements = 1
        for d in shape {
            let (p, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow else {
                throw BasinIOError(.badShape, file: file, tensor: name, "shape \(shape) has more elements than can be addressed")
            }
            elements = p
        }
        let (expected, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, Int64(expected) == end - begin else {
            throw BasinIOError(.sizeMismatch, file: file, tensor: name,
                               "shape \(shape) of \(dtype.rawValue) needs \(elements) x \(dtype.byteSize) = \(expected) bytes but data_offsets give \(end - begin)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: Int(begin)..<Int(end))
    }

    public func info(_ name: String) -> TensorInfo? { infos[name] }

    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard let info = infos[name] else { throw missing(name) }
        let all = mapping.bytes
        let start = dataStart + info.dataOffsets.lowerBound
        return try body(UnsafeRawBufferPointer(rebasing: all[start..<(start + info.byteCount)]))
    }

    public func tensor(_ name: String) throws -> Tensor {
        guard let info = infos[name] else { throw missing(name) }
        return try withRawBytes(name) { Tensor(shape: info.shape, dtype: info.dtype, bytes: $0) }
    }

    public func release(_ name: String) {
        guard let info = infos[name] else { return }
        mapping.release(offset: dataStart + info.dataOffsets.lowerBound, count: info.byteCount)
    }

    public func release(_ name: String, bytes: Range<Int>) {
        guard let info = infos[name], bytes.lowerBound >= 0, bytes.upperBound <= info.byteCount else { return }
        mapping.release(offset: dataStart + info.dataOffsets.lowerBound + bytes.lowerBound, count: bytes.count, wholePagesOnly: true)
    }

    /// The whole file's bytes (memory-mapped), e.g. for hashing.
    public func withFileBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(mapping.bytes)
    }
}
