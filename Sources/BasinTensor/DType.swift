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

/// The one codec between Float32 and every stored element type (issue 9: the reader, the writers and the
/// streaming merge all call it). Narrowing rounds to nearest, ties to even, as PyTorch's `.to(dtype)` does.
///
/// Bulk loops are written so the compiler vectorises them: aligned buffers are read and written through typed
/// pointers with branch-free bodies (BF16 is a 16-bit shift; F16 uses the exponent-rebias trick, with denormals,
/// infinities and NaN handled by selects). Unaligned buffers (a tensor at an odd offset of a memory-mapped file)
/// take the element-by-element path through `loadUnaligned`. Stored data is little-endian; every platform Basin
/// builds for is little-endian, which the typed fast paths rely on (checked once below).
public enum DTypeConversion {
    public static let hostIsLittleEndian = 1.littleEndian == 1

    @inlinable
    public static func bf16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        // NaN keeps its sign and top payload bits, made quiet so truncation cannot turn it into infinity.
        if (bits & 0x7FFF_FFFF) > 0x7F80_0000 { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
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

    /// Half to single without a libcall: exponent and mantissa move into place, the exponent is rebiased, and
    /// the two special classes are fixed up by selects (infinity/NaN get the largest exponent; zero and
    /// denormals are renormalised by subtracting 2^-14).
    @inlinable
    public static func float(fromF16 bits: UInt16) -> Float {
        let h = UInt32(bits)
        let shiftedExponent: UInt32 = 0x7C00 << 13
        var o = (h & 0x7FFF) << 13
        let exponent = o & shiftedExponent
        o &+= (127 - 15) << 23
        let special = exponent == shiftedExponent
        let small = exponent == 0
        o = special ? o &+ ((128 - 16) << 23) : o
        let renormalised = Float(bitPattern: o &+ (1 << 23)) - Float(bitPattern: 113 << 23)
        let magnitude = small ? renormalised.bitPattern : o
        return Float(bitPattern: magnitude | ((h & 0x8000) << 16))
    }

    /// Decodes `count` little-endian elements of `dtype` at `source` into Float32 at `destination`.
    /// Integer dtypes are converted by value.
    public static func decode(_ dtype: DType, from source: UnsafeRawPointer, count n: Int,
                              into destination: UnsafeMutablePointer<Float>) {
        guard n > 0 else { return }
        let aligned = hostIsLittleEndian && Int(bitPattern: source) % dtype.byteSize == 0
        switch dtype {
        case .f32:
            UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: n * 4)
            if !hostIsLittleEndian { for i in 0..<n { destination[i] = Float(bitPattern: UInt32(littleEndian: destination[i].bitPattern)) } }
        case .bf16:
            if aligned {
                let s = source.assumingMemoryBound(to: UInt16.self)
                destination.withMemoryRebound(to: UInt32.self, capacity: n) { o in
                    for i in 0..<n { o[i] = UInt32(s[i]) << 16 }
                }
            } else {
                for i in 0..<n { destination[i] = float(fromBF16: UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) }
            }
        case .f16:
            if aligned {
                let s = source.assumingMemoryBound(to: UInt16.self)
                for i in 0..<n { destination[i] = float(fromF16: s[i]) }
            } else {
                for i in 0..<n { destination[i] = float(fromF16: UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) }
            }
        case .f64:
            if aligned {
                let s = source.assumingMemoryBound(to: Double.self)
                for i in 0..<n { destination[i] = Float(s[i]) }
            } else {
                for i in 0..<n {
                    destination[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))))
                }
            }
        case .i64:
            if aligned {
                let s = source.assumingMemoryBound(to: Int64.self)
                for i in 0..<n { destination[i] = Float(s[i]) }
            } else {
                for i in 0..<n { destination[i] = Float(Int64(littleEndian: source.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))) }
            }
        case .i32:
            for i in 0..<n { destination[i] = Float(Int32(littleEndian: source.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))) }
        case .i16:
            for i in 0..<n { destination[i] = Float(Int16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: Int16.self))) }
        case .i8:
            for i in 0..<n { destination[i] = Float(source.load(fromByteOffset: i, as: Int8.self)) }
        case .u8, .bool:
            for i in 0..<n { destination[i] = Float(source.load(fromByteOffset: i, as: UInt8.self)) }
        }
    }

    /// Encodes `count` Float32 values as little-endian `dtype` at `destination` (integers are rounded to nearest).
    public static func encode(_ source: UnsafePointer<Float>, count n: Int, as dtype: DType,
                              into destination: UnsafeMutableRawPointer) {
        guard n > 0 else { return }
        let aligned = hostIsLittleEndian && Int(bitPattern: destination) % dtype.byteSize == 0
        switch dtype {
        case .f32:
            if hostIsLittleEndian {
                destination.copyMemory(from: UnsafeRawPointer(source), byteCount: n * 4)
            } else {
                for i in 0..<n { destination.storeBytes(of: source[i].bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self) }
            }
        case .bf16:
            if aligned {
                let d = destination.assumingMemoryBound(to: UInt16.self)
                source.withMemoryRebound(to: UInt32.self, capacity: n) { bits in
                    for i in 0..<n {
                        let b = bits[i]
                        let isNaN = (b & 0x7FFF_FFFF) > 0x7F80_0000
                        let rounded = (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16
                        d[i] = UInt16(truncatingIfNeeded: isNaN ? ((b >> 16) | 0x0040) : rounded)
                    }
                }
            } else {
                for i in 0..<n { destination.storeBytes(of: bf16Bits(source[i]).littleEndian, toByteOffset: i * 2, as: UInt16.self) }
            }
        case .f16:
            for i in 0..<n { destination.storeBytes(of: f16Bits(source[i]).littleEndian, toByteOffset: i * 2, as: UInt16.self) }
        case .f64:
            if aligned {
                let d = destination.assumingMemoryBound(to: Double.self)
                for i in 0..<n { d[i] = Double(source[i]) }
            } else {
                for i in 0..<n { destination.storeBytes(of: Double(source[i]).bitPattern.littleEndian, toByteOffset: i * 8, as: UInt64.self) }
            }
        case .i64:
            for i in 0..<n { destination.storeBytes(of: Int64(clamping: source[i]).littleEndian, toByteOffset: i * 8, as: Int64.self) }
        case .i32:
            for i in 0..<n { destination.storeBytes(of: Int32(clamping: source[i]).littleEndian, toByteOffset: i * 4, as: Int32.self) }
        case .i16:
            for i in 0..<n { destination.storeBytes(of: Int16(clamping: source[i]).littleEndian, toByteOffset: i * 2, as: Int16.self) }
        case .i8:
            for i in 0..<n { destination.storeBytes(of: Int8(clamping: source[i]), toByteOffset: i, as: Int8.self) }
        case .u8, .bool:
            for i in 0..<n { destination.storeBytes(of: UInt8(clamping: source[i]), toByteOffset: i, as: UInt8.self) }
        }
    }

    /// How many of `count` Float32 values are NaN or infinite. The common case (none) costs one vectorised pass of
    /// and/add/or over the exponent fields; only when one is all ones are the values counted.
    public static func nonFiniteCount(_ values: UnsafePointer<Float>, count n: Int) -> Int {
        values.withMemoryRebound(to: UInt32.self, capacity: n) { bits in
            // An all-ones exponent plus one carries into bit 31; any other exponent does not.
            var flags: UInt32 = 0
            for i in 0..<n { flags |= (bits[i] & 0x7F80_0000) &+ 0x0080_0000 }
            guard flags & 0x8000_0000 != 0 else { return 0 }
            var total = 0
            for i in 0..<n where (bits[i] & 0x7F80_0000) == 0x7F80_0000 { total += 1 }
            return total
        }
    }
}

extension Int64 {
    /// Rounds to nearest and clamps into range (NaN becomes 0), so encoding never traps.
    @usableFromInline init(clamping value: Float) {
        if value.isNaN { self = 0 } else if value >= 9.2233715e18 { self = .max } else if value <= -9.2233715e18 { self = .min } else { self = Int64(value.rounded()) }
    }
}

extension Int32 {
    @usableFromInline init(clamping value: Float) {
        if value.isNaN { self = 0 } else { self = Int32(clamping: Int64(clamping: value)) }
    }
}

extension Int16 {
    @usableFromInline init(clamping value: Float) {
        if value.isNaN { self = 0 } else { self = Int16(clamping: Int64(clamping: value)) }
    }
}

extension Int8 {
    @usableFromInline init(clamping value: Float) {
        if value.isNaN { self = 0 } else { self = Int8(clamping: Int64(clamping: value)) }
    }
}

extension UInt8 {
    @usableFromInline init(clamping value: Float) {
        if value.isNaN { self = 0 } else { self = UInt8(clamping: Int64(clamping: value)) }
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
