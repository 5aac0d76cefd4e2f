import BasinTensor
import Crypto
import Foundation

/// One tensor a writer will receive: its name, the dtype it is stored in, and its shape.
public struct TensorPlan: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]

    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    public var byteCount: Int { Tensor.elementCount(shape) * dtype.byteSize }
}

/// Writes a safetensors file tensor by tensor, atomically: the data goes to a temporary file in the same
/// folder, which is flushed and renamed over the destination only by `finish()`. A writer dropped
/// before `finish()` (an error, a cancelled export) removes its temporary file and leaves the
/// destination untouched.
public final class SafeTensorsWriter {
    public let url: URL
    public let plan: [TensorPlan]
    /// Refuse tensors holding NaN or infinite values (unless `WritePolicy.allowNonFinite`).
    public let checkFinite: Bool
    private let file: Platform.WriteFile
    private var next = 0
    private var finished = false
    private var closed = false
    private var scratch: [UInt8] = []
    /// Bytes reserved for the header (after the 8-byte length), so `replaceMetadata` can rewrite it in place.
    private let headerLength: Int
    private var cleanup: CleanupRegistry.Token?
    /// Where each tensor's data starts in the file, and how many of its bytes have been written.
    private let dataOffsets: [String: (start: Int, count: Int)]
    private var bytesWritten: [String: Int] = [:]
    private let lock = NSLock()

    public init(url: URL, plan: [TensorPlan], metadata: [String: String] = [:], protecting inputs: [URL] = [],
                checkFinite: Bool = true) throws {
        self.url = url
        self.plan = plan
        self.checkFinite = checkFinite
        try OutputGuard.check(output: url, inputs: inputs)
        var seen = Set<String>()
        for p in plan where !seen.insert(p.name).inserted {
            throw BasinIOError(.duplicateTensor, file: url.path, tensor: p.name, "is planned twice for this file")
        }
        let folder = url.deletingLastPathComponent().path
        let temp = folder + "/." + url.lastPathComponent + ".basin-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp"
        // Registered before it exists, so a signal between the two cannot leave it behind.
        let token = CleanupRegistry.register(file: temp)
        do {
            file = try Platform.WriteFile(creatingExclusive: temp)
        } catch let failure as Platform.Failure {
            CleanupRegistry.unregister(token)
            throw BasinIOError(.writeFailed, file: url.path, "cannot create a temporary file in \(folder) (\(failure.message))")
        }
        cleanup = token
        let header: [UInt8]
        do { header = try SafeTensorsWriter.header(plan: plan, metadata: metadata) } catch {
            file.close()
            Platform.unlink(temp)
            CleanupRegistry.unregister(token)
            throw BasinIOError(.writeFailed, file: url.path, "cannot encode the header (\(error))")
        }
        headerLength = header.count
        var offsets: [String: (start: Int, count: Int)] = [:]
        var position = 8 + header.count
        for p in plan {
            offsets[p.name] = (position, p.byteCount)
            position += p.byteCount
        }
        dataOffsets = offsets
        do {
            var length = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &length) { try file.write($0) }
            try header.withUnsafeBytes { try file.write($0) }
        } catch {
            discard()
            throw wrap(error)
        }
    }

    deinit { discard() }

    /// Removes the temporary file (a writer that will not be finished).
    private func discard() {
        guard !finished else { return }
        if !closed { file.close() }
        closed = true
        Platform.unlink(file.path)
        CleanupRegistry.unregister(cleanup)
        cleanup = nil
    }

    /// The header JSON, padded with spaces to a multiple of 8 bytes as the reference writer does.
    public static func header(plan: [TensorPlan], metadata: [String: String]) throws -> [UInt8] {
        var entries: [String: HeaderValue] = [:]
        var offset = 0
        for p in plan {
            entries[p.name] = .tensor(dtype: p.dtype.rawValue, shape: p.shape, offsets: [offset, offset + p.byteCount])
            offset += p.byteCount
        }
        if !metadata.isEmpty { entries["__metadata__"] = .metadata(metadata) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var bytes = [UInt8](try encoder.encode(entries))
        while bytes.count % 8 != 0 { bytes.append(0x20) }
        return bytes
    }

    private enum HeaderValue: Encodable {
        case tensor(dtype: String, shape: [Int], offsets: [Int])
        case metadata([String: String])

        enum Keys: String, CodingKey { case dtype, shape, data_offsets }

        func encode(to encoder: Encoder) throws {
            switch self {
            case let .tensor(dtype, shape, offsets):
                var c = encoder.container(keyedBy: Keys.self)
                try c.encode(dtype, forKey: .dtype)
                try c.encode(shape, forKey: .shape)
                try c.encode(offsets, forKey: .data_offsets)
            case let .metadata(m):
                var c = encoder.singleValueContainer()
                try c.encode(m)
            }
        }
    }

    private func wrap(_ error: Error) -> Error {
        if error is BasinIOError { return error }
        if let f = error as? Platform.Failure { return SafeTensorsWriter.failure(f, file: url.path) }
        return BasinIOError(.writeFailed, file: url.path, "\(error)")
    }

    static func failure(_ f: Platform.Failure, file: String) -> BasinIOError {
        switch f.code {
        case EFBIG:
            return BasinIOError(.noSpace, file: file, "cannot be written: the file-size limit was reached (\(f.message); see ulimit -f); nothing was written")
        case ENOSPC, EDQUOT:
            return BasinIOError(.noSpace, file: file, "cannot be written: the disk is full (\(f.message)); nothing was written")
        default:
            return BasinIOError(.writeFailed, file: file, f.message)
        }
    }

    private func checkFinite(_ name: String, _ raw: UnsafeRawBufferPointer, _ dtype: DType) throws {
        guard checkFinite, !WritePolicy.allowNonFinite else { return }
        let bad = NonFinite.count(raw, dtype: dtype)
        if bad > 0 {
            throw BasinIOError(.nonFiniteValues, file: url.path, tensor: name,
                               "holds \(bad) NaN or infinite value\(bad == 1 ? "" : "s") of \(raw.count / max(1, dtype.byteSize)); refusing to write non-finite weights (basin: --allow-nonfinite writes them anyway)")
        }
    }

    private func expect(_ name: String) throws -> TensorPlan {
        guard next < plan.count else {
            throw BasinIOError(.writeFailed, file: url.path, tensor: name, "is one more tensor than the \(plan.count) planned")
        }
        let p = plan[next]
        guard p.name == name else {
            throw BasinIOError(.writeFailed, file: url.path, tensor: name, "arrived where '\(p.name)' was planned (tensors must come in plan order)")
        }
        return p
    }

    /// Writes the next planned tensor, encoding it to the planned dtype.
    public func write(_ name: String, _ tensor: Tensor) throws {
        let p = try expect(name)
        guard tensor.shape == p.shape else {
            throw BasinIOError(.writeFailed, file: url.path, tensor: name, "has shape \(tensor.shape) where \(p.shape) was planned")
        }
        let n = p.byteCount
        if scratch.count < n { scratch = [UInt8](repeating: 0, count: n) }
        tensor.withUnsafeBufferPointer { src in
            scratch.withUnsafeMutableBytes { dst in
                if tensor.count > 0 { DTypeConversion.encode(src.baseAddress!, count: tensor.count, as: p.dtype, into: dst.baseAddress!) }
            }
        }
        try scratch.withUnsafeBytes { try checkFinite(name, UnsafeRawBufferPointer(rebasing: $0[0..<n]), p.dtype) }
        try scratch.withUnsafeBytes { try write(name, bytes: UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: 0) }
        next += 1
    }

    /// Writes the next planned tensor from bytes already encoded in its planned dtype.
    public func write(_ name: String, rawBytes: UnsafeRawBufferPointer) throws {
        let p = try expect(name)
        guard rawBytes.count == p.byteCount else {
            throw BasinIOError(.writeFailed, file: url.path, tensor: name, "has \(rawBytes.count) bytes where \(p.byteCount) were planned")
        }
        try checkFinite(name, rawBytes, p.dtype)
        try write(name, bytes: rawBytes, at: 0)
        next += 1
    }

    /// Writes part of a planned tensor's bytes (already in its dtype) at `offset` within its data, in any order and
    /// from any thread (pwrite): the merge's threads write their ranges of a tensor directly, with no tensor-sized
    /// buffer. `finish` checks every tensor was written in full. The caller checks for non-finite values (the
    /// merge kernels do it as they compute).
    public func write(_ name: String, bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        guard let (start, count) = dataOffsets[name] else {
            throw BasinIOError(.writeFailed, file: url.path, tensor: name, "is not planned for this file")
        }
        guard offset >= 0, offset + bytes.count <= count else {
            throw BasinIOError(.writeFailed, file: url.path, tensor: name, "bytes \(offset)..<\(offset + bytes.count) lie outside its \(count) bytes")
        }
        do { try file.write(bytes, at: start + offset) } catch { throw wrap(error) }
        lock.lock()
        bytesWritten[name, default: 0] += bytes.count
        lock.unlock()
    }

    /// Rewrites the header's metadata in place (before `finish`), e.g. with input digests computed while the tensors
    /// were written. The new header must not be longer than the one written at the start: reserve room by starting
    /// with placeholder values of the final length; a shorter header is padded with spaces.
    public func replaceMetadata(_ metadata: [String: String]) throws {
        var header = try SafeTensorsWriter.header(plan: plan, metadata: metadata)
        guard header.count <= headerLength else {
            throw BasinIOError(.writeFailed, file: url.path, "the final metadata (\(header.count) bytes) does not fit the \(headerLength) bytes reserved for it")
        }
        header += [UInt8](repeating: 0x20, count: headerLength - header.count)
        do { try header.withUnsafeBytes { try file.write($0, at: 8) } } catch { throw wrap(error) }
    }

    /// Renames the file into place, after flushing it to disk when `durable` (the default; without it the data may
    /// still be in the page cache when this returns, as after `cp`, and survives anything but a crash of the machine).
    public func finish(durable: Bool = true) throws {
        try flush(durable: durable)
        try commit(durable: durable)
    }

    /// Finishes several writers as one: every file is flushed before any is renamed into place, and if a
    /// rename fails the ones already renamed are removed (e.g. `basin split`'s two outputs).
    public static func finish(_ writers: [SafeTensorsWriter]) throws {
        for w in writers { try w.flush() }
        var done: [SafeTensorsWriter] = []
        do {
            for w in writers {
                try w.commit()
                done.append(w)
            }
        } catch {
            for w in done { Platform.unlink(w.url.path) }
            throw error
        }
    }

    private func flush(durable: Bool = true) throws {
        lock.lock()
        let incomplete = plan.first { (bytesWritten[$0.name] ?? 0) != $0.byteCount }
        let written = incomplete.map { bytesWritten[$0.name] ?? 0 } ?? 0
        lock.unlock()
        if let incomplete {
            throw BasinIOError(.writeFailed, file: url.path, tensor: incomplete.name,
                               "only \(written) of its \(incomplete.byteCount) bytes were written")
        }
        guard !closed else { return }
        do {
            if durable { try file.sync() }
            file.close()
            closed = true
        } catch {
            throw wrap(error)
        }
    }

    private func commit(durable: Bool = true) throws {
        do {
            try Platform.rename(file.path, url.path)
            finished = true
            CleanupRegistry.unregister(cleanup)
            cleanup = nil
            if durable { Platform.syncDirectory(url.deletingLastPathComponent().path) }
        } catch {
            throw wrap(error)
        }
    }

    /// Writes the tensors in order, each in `dtype(name)` (F32 by default), atomically.
    public static func write(_ tensors: [(String, Tensor)], to url: URL, dtype: (String) -> DType = { _ in .f32 },
                             metadata: [String: String] = [:], protecting inputs: [URL] = [], checkFinite: Bool = true) throws {
        let plan = tensors.map { TensorPlan(name: $0.0, dtype: dtype($0.0), shape: $0.1.shape) }
        let writer = try SafeTensorsWriter(url: url, plan: plan, metadata: metadata, protecting: inputs, checkFinite: checkFinite)
        for (name, t) in tensors { try writer.write(name, t) }
        try writer.finish()
    }
}

/// SHA-256 digests of input files, recorded in exported metadata.
public enum FileDigest {
    /// Lower-case hex SHA-256 of a file's bytes (memory-mapped, hashed in 1 MiB steps).
    public static func sha256(_ url: URL) throws -> String {
        try FileCheck.input(url.path)
        let mapping: Platform.Mapping
        do { mapping = try Platform.Mapping(path: url.path) } catch let f as Platform.Failure {
            throw BasinIOError(.unreadable, file: url.path, "cannot be read (\(f.message))")
        }
        var hasher = SHA256()
        let bytes = mapping.bytes
        var offset = 0
        let step = 1 << 20
        while offset < bytes.count {
            let end = min(bytes.count, offset + step)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
            mapping.release(offset: offset, count: end - offset)
            offset = end
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// SHA-256 of bytes fed in order (a writer hashing the file it writes as it goes).
    public struct Running {
        private var hasher = SHA256()
        public init() {}
        public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }
        public func hex() -> String { hasher.finalize().map { String(format: "%02x", $0) }.joined() }
    }

    /// SHA-256 of a tensor source: the file's digest, or for a sharded checkpoint the digest of its shards'
    /// digests in order.
    public static func sha256(of source: any TensorSource, fileDigest: (URL) throws -> String = { try sha256($0) }) throws -> String {
        let files = source.files.filter { $0.pathExtension == "safetensors" }
        if files.count == 1 { return try fileDigest(files[0]) }
        var hasher = SHA256()
        for f in files { hasher.update(data: Data(try fileDigest(f).utf8)) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
