/// Element types Basin reads and writes, named as safetensors names them.
public enum DType: String, Sendable, CaseIterable, Codable {
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    case f64 = "F64"
    case i64 = "I64"
    case i32 = "I32"
    case i16 = "I16"
    case i8 = "I8"
    case u8 = "U8"
    case bool = "BOOL"

    public var byteSize: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .i8, .u8, .bool: 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f32, .f16, .bf16, .f64: true
        default: false
        }
    }

    /// Parses a dtype name case-insensitively ("bf16", "float16" and "float32" too, as recipes write them).
    public init?(name: String) {
        switch name.lowercased() {
        case "f32", "float32", "float": self = .f32
        case "f16", "float16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "f64", "float64", "double": self = .f64
        case "i64", "int64": self = .i64
        case "i32", "int32": self = .i32
        case "i16", "int16": self = .i16
        case "i8", "int8": self = .i8
        case "u8", "uint8": self = .u8
        case "bool": self = .bool
        default: return nil
        }
    }
}

/// Conversions between Float32 and the stored float formats.
/// Narrowing rounds to nearest, ties to even, as PyTorch's `.to(dtype)` does.
public enum DTypeConversion {
    @inlinable
    public static func bf16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
        let lsb = (bits >> 16) & 1
        let rounded = bits &+ 0x7FFF &+ lsb
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    @inlinable
    public static func float(fromBF16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    @inlinable
    public static func f16Bits(_ value: Float) -> UInt16 {
        Float16(value).bitPattern
    }

    @inlinable
    public static func float(fromF16 bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
    }

    /// Decodes `count` little-endian elements of `dtype` at `source` into Float32 at `destination`.
    /// Integer dtypes are converted by value.
    public static func decode(_ dtype: DType, from source: UnsafeRawPointer, count: Int,
                              into destination: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .f32:
            for i in 0..<count {
                destination[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
            }
        case .f16:
            for i in 0..<count {
                destination[i] = float(fromF16: UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
            }
        case .bf16:
            for i in 0..<count {
                destination[i] = float(fromBF16: UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
            }
        case .f64:
            for i in 0..<count {
                destination[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))))
            }
        case .i64:
            for i in 0..<count { destination[i] = Float(Int64(littleEndian: source.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))) }
        case .i32:
            for i in 0..<count { destination[i] = Float(Int32(littleEndian: source.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))) }
        case .i16:
            for i in 0..<count { destination[i] = Float(Int16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: Int16.self))) }
        case .i8:
            for i in 0..<count { destination[i] = Float(source.load(fromByteOffset: i, as: Int8.self)) }
        case .u8, .bool:
            for i in 0..<count { destination[i] = Float(source.load(fromByteOffset: i, as: UInt8.self)) }
        }
    }

    /// Encodes `count` Float32 values as little-endian `dtype` (a float type) at `destination`.
    public static func encode(_ source: UnsafePointer<Float>, count: Int, as dtype: DType,
                              into destination: UnsafeMutableRawPointer) {
        switch dtype {
        case .f32:
            for i in 0..<count { destination.storeBytes(of: source[i].bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self) }
        case .f16:
            for i in 0..<count { destination.storeBytes(of: f16Bits(source[i]).littleEndian, toByteOffset: i * 2, as: UInt16.self) }
        case .bf16:
            for i in 0..<count { destination.storeBytes(of: bf16Bits(source[i]).littleEndian, toByteOffset: i * 2, as: UInt16.self) }
        case .f64:
            for i in 0..<count { destination.storeBytes(of: Double(source[i]).bitPattern.littleEndian, toByteOffset: i * 8, as: UInt64.self) }
        case .i64:
            for i in 0..<count { destination.storeBytes(of: Int64(source[i].rounded()).littleEndian, toByteOffset: i * 8, as: Int64.self) }
        case .i32:
            for i in 0..<count { destination.storeBytes(of: Int32(source[i].rounded()).littleEndian, toByteOffset: i * 4, as: Int32.self) }
        case .i16:
            for i in 0..<count { destination.storeBytes(of: Int16(source[i].rounded()).littleEndian, toByteOffset: i * 2, as: Int16.self) }
        case .i8:
            for i in 0..<count { destination.storeBytes(of: Int8(source[i].rounded()), toByteOffset: i, as: Int8.self) }
        case .u8, .bool:
            for i in 0..<count { destination.storeBytes(of: UInt8(source[i].rounded()), toByteOffset: i, as: UInt8.self) }
        }
    }
}

extension Tensor {
    /// Decodes a little-endian buffer of `dtype` elements into a Float32 tensor.
    public init(shape: [Int], dtype: DType, bytes: UnsafeRawBufferPointer) {
        let n = Tensor.elementCount(shape)
        precondition(bytes.count >= n * dtype.byteSize, "buffer too small for \(shape) \(dtype)")
        self.init(shape: shape) { out in
            if n > 0 { DTypeConversion.decode(dtype, from: bytes.baseAddress!, count: n, into: out.baseAddress!) }
        }
    }

    /// The tensor encoded as little-endian bytes of `dtype`.
    public func encoded(as dtype: DType) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count * dtype.byteSize)
        storage.withUnsafeBufferPointer { src in
            bytes.withUnsafeMutableBytes { dst in
                if count > 0 { DTypeConversion.encode(src.baseAddress!, count: count, as: dtype, into: dst.baseAddress!) }
            }
        }
        return bytes
    }

    /// Rounds every element through `dtype` and back, as storing and reloading in that dtype would.
    public func roundedThrough(_ dtype: DType) -> Tensor {
        guard dtype != .f32 else { return self }
        return encoded(as: dtype).withUnsafeBytes { Tensor(shape: shape, dtype: dtype, bytes: $0) }
    }
}
