import BasinTensor
import Foundation

/// Process-wide choices about what writers accept. The `basin` executable sets them from its options.
public enum WritePolicy {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var _allowNonFinite = false

    /// Write tensors holding NaN or infinite values (`--allow-nonfinite`); refused by default.
    public static var allowNonFinite: Bool {
        get { lock.lock(); defer { lock.unlock() }; return _allowNonFinite }
        set { lock.lock(); _allowNonFinite = newValue; lock.unlock() }
    }
}

/// Counting NaN and infinite values, on stored bytes (any float dtype) or on Float32 tensors.
public enum NonFinite {
    /// Elements of `raw` (little-endian `dtype` values) whose exponent bits are all ones: NaN or +-Inf.
    public static func count(_ raw: UnsafeRawBufferPointer, dtype: DType) -> Int {
        guard let base = raw.baseAddress, dtype.isFloatingPoint else { return 0 }
        let n = raw.count / dtype.byteSize
        var bad = 0
        switch dtype {
        case .f32:
            for i in 0..<n where UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)) & 0x7F80_0000 == 0x7F80_0000 { bad += 1 }
        case .f16:
            for i in 0..<n where UInt16(littleEndian: base.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) & 0x7C00 == 0x7C00 { bad += 1 }
        case .bf16:
            for i in 0..<n where UInt16(littleEndian: base.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) & 0x7F80 == 0x7F80 { bad += 1 }
        case .f64:
            for i in 0..<n where UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) & 0x7FF0_0000_0000_0000 == 0x7FF0_0000_0000_0000 { bad += 1 }
        default:
            break
        }
        return bad
    }

    public static func count(_ tensor: Tensor) -> Int {
        tensor.withUnsafeBufferPointer { b in
            var bad = 0
            for v in b where !v.isFinite { bad += 1 }
            return bad
        }
    }

    /// One tensor with non-finite values.
    public struct Finding: Sendable, Equatable {
        public let tensor: String
        public let count: Int
        public let elements: Int

        public init(tensor: String, count: Int, elements: Int) {
            self.tensor = tensor
            self.count = count
            self.elements = elements
        }
    }

    /// The float tensors of a source holding NaN or infinite values (reads every tensor's bytes).
    public static func scan(_ source: any TensorSource) throws -> [Finding] {
        var found: [Finding] = []
        for name in source.names {
            guard let info = source.info(name), info.dtype.isFloatingPoint else { continue }
            let bad = try source.withRawBytes(name) { count($0, dtype: info.dtype) }
            source.release(name)
            if bad > 0 { found.append(Finding(tensor: name, count: bad, elements: info.elementCount)) }
        }
        return found
    }

    /// The warning line for one finding.
    public static func warning(file: String, _ f: Finding) -> String {
        "warning: \(file): tensor '\(f.tensor)' has \(f.count) NaN or infinite value\(f.count == 1 ? "" : "s") (of \(f.elements))"
    }
}

/// Small files (indexes, reports, recipes next to exports) written atomically like the safetensors writer:
/// a temporary file in the same folder, registered for removal on a signal, flushed and renamed into place.
public enum AtomicFile {
    public static func write(_ data: Data, to url: URL, protecting inputs: [URL] = []) throws {
        try OutputGuard.check(output: url, inputs: inputs)
        let folder = url.deletingLastPathComponent().path
        let temp = folder + "/." + url.lastPathComponent + ".basin-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp"
        let token = CleanupRegistry.register(file: temp)
        defer { CleanupRegistry.unregister(token) }
        let file: Platform.WriteFile
        do { file = try Platform.WriteFile(creatingExclusive: temp) } catch let f as Platform.Failure {
            throw BasinIOError(.writeFailed, file: url.path, "cannot create a temporary file in \(folder) (\(f.message))")
        }
        do {
            try data.withUnsafeBytes { try file.write($0) }
            try file.sync()
            file.close()
            try Platform.rename(temp, url.path)
        } catch let f as Platform.Failure {
            file.close()
            Platform.unlink(temp)
            throw SafeTensorsWriter.failure(f, file: url.path)
        }
        Platform.syncDirectory(folder)
    }
}

/// What the machine can give: a request that needs more memory than it has is refused before any work.
public enum MemoryBudget {
    /// Physical memory (MemTotal of /proc/meminfo), or nil where unknown.
    public static var totalBytes: Int? { Platform.memInfoField("MemTotal:") }

    /// Throws `.insufficientMemory` when `bytes` exceed the machine's memory. `what` says what needs it.
    public static func check(_ bytes: Int, for what: String) throws {
        guard let total = totalBytes else { return }
        if bytes > total {
            throw BasinIOError(.insufficientMemory, file: what,
                               "needs about \(formatted(bytes)) of memory but this machine has \(formatted(total)); ask for less")
        }
    }

    /// Adds and multiplies byte counts, saturating at Int.max instead of trapping.
    public static func product(_ factors: Int...) -> Int { product(factors) }

    public static func product(_ factors: [Int]) -> Int {
        var p = 1
        for f in factors {
            let (r, o) = p.multipliedReportingOverflow(by: max(0, f))
            if o { return Int.max }
            p = r
        }
        return p
    }

    public static func sum(_ terms: [Int]) -> Int {
        var s = 0
        for t in terms {
            let (r, o) = s.addingReportingOverflow(max(0, t))
            if o { return Int.max }
            s = r
        }
        return s
    }

    /// A byte count for messages: "1.5 GiB".
    public static func describe(_ n: Int) -> String { formatted(n) }

    static func formatted(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var v = Double(n)
        var u = 0
        while v >= 1024, u + 1 < units.count {
            v /= 1024
            u += 1
        }
        return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
    }
}
