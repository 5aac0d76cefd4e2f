#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// libc's write, close, rename and unlink, which the methods below shadow, from whichever C library this is.
#if canImport(Glibc)
private let libcWrite = Glibc.write, libcClose = Glibc.close, libcRename = Glibc.rename, libcUnlink = Glibc.unlink
#elseif canImport(Musl)
private let libcWrite = Musl.write, libcClose = Musl.close, libcRename = Musl.rename, libcUnlink = Musl.unlink
#elseif canImport(Darwin)
private let libcWrite = Darwin.write, libcClose = Darwin.close, libcRename = Darwin.rename, libcUnlink = Darwin.unlink
#endif

/// Every libc call BasinIO makes lives here (as swift-argument-parser keeps its libc in one `Platform` file).
enum Platform {
    struct Failure: Error {
        let call: String
        let code: Int32
        var message: String { "\(call): \(String(cString: strerror(code)))" }
    }

    /// What a path names, found with stat(2) (following symbolic links) before anything opens it.
    enum FileKind: Equatable {
        case regular(size: Int), directory, fifo, characterDevice, blockDevice, socket, other
        case missing, symlinkLoop, failed(Int32)

        var label: String {
            switch self {
            case .regular: "a file"
            case .directory: "a folder"
            case .fifo: "a FIFO (named pipe)"
            case .characterDevice: "a character device"
            case .blockDevice: "a block device"
            case .socket: "a socket"
            case .other: "not a regular file"
            case .missing: "missing"
            case .symlinkLoop: "a loop of symbolic links"
            case let .failed(code): String(cString: strerror(code))
            }
        }
    }

    static func fileKind(_ path: String) -> FileKind {
        var st = stat()
        guard stat(path, &st) == 0 else {
            switch errno {
            case ENOENT, ENOTDIR: return .missing
            case ELOOP: return .symlinkLoop
            case let code: return .failed(code)
            }
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .regular(size: Int(st.st_size))
        case S_IFDIR: return .directory
        case S_IFIFO: return .fifo
        case S_IFCHR: return .characterDevice
        case S_IFBLK: return .blockDevice
        case S_IFSOCK: return .socket
        default: return .other
        }
    }

    /// Opens a regular file for reading without ever blocking: O_NONBLOCK so a FIFO cannot hang the open,
    /// then fstat refuses anything but a regular file (the path may have changed since a stat).
    static func openRegularForReading(_ path: String) throws -> (fd: Int32, size: Int) {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(call: "open", code: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            close(fd)
            throw Failure(call: "fstat", code: code)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw Failure(call: "open", code: (st.st_mode & S_IFMT) == S_IFDIR ? EISDIR : EINVAL)
        }
        return (fd, Int(st.st_size))
    }

    /// Reads a whole regular file of at most `limit` bytes.
    static func readFile(_ path: String, limit: Int) throws -> [UInt8] {
        let (fd, size) = try openRegularForReading(path)
        defer { close(fd) }
        guard size <= limit else { throw Failure(call: "read", code: EFBIG) }
        var bytes = [UInt8](repeating: 0, count: size)
        var offset = 0
        while offset < size {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + offset, size - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(call: "read", code: errno)
            }
            if n == 0 { break }
            offset += n
        }
        return Array(bytes.prefix(offset))
    }

    /// A read-only private memory map of a whole file (or a private copy of some bytes, for parsing in memory).
    /// A file's map is registered with the SIGBUS handler so a file that shrinks while mapped is named.
    /// Unchecked Sendable: it holds a raw pointer, which is set once, only read through, and released when the last
    /// reference goes.
    final class Mapping: @unchecked Sendable {
        let base: UnsafeRawPointer?
        let size: Int
        private let owned: Bool
        private let registration: Int?

        init(path: String) throws {
            let (fd, size) = try Platform.openRegularForReading(path)
            defer { close(fd) }
            self.size = size
            owned = false
            if size == 0 {
                base = nil
                registration = nil
                return
            }
            let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
            guard let p, p != MAP_FAILED else { throw Failure(call: "mmap", code: errno) }
            base = UnsafeRawPointer(p)
            registration = MappingRegistry.register(base: UnsafeRawPointer(p), size: size, path: path)
        }

        /// A private copy of `bytes` (no file).
        init(copying bytes: UnsafeRawBufferPointer) {
            size = bytes.count
            owned = true
            registration = nil
            if bytes.isEmpty {
                base = nil
            } else {
                let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 16)
                p.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                base = UnsafeRawPointer(p)
            }
        }

        var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

        /// Tells the kernel the pages of [offset, offset+count) will not be needed soon, so a streaming reader
        /// keeps its resident set at about one tensor.
        /// With `wholePagesOnly`, pages the range only partly covers are kept (they may hold bytes still to be read).
        func release(offset: Int, count: Int, wholePagesOnly: Bool = false) {
            guard let base, count > 0, !owned else { return }
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let start = wholePagesOnly ? ((offset + page - 1) / page) * page : (offset / page) * page
            let end = wholePagesOnly ? ((offset + count) / page) * page : min(size, offset + count)
            guard end > start else { return }
            _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
        }

        deinit {
            guard let base else { return }
            if owned {
                UnsafeMutableRawPointer(mutating: base).deallocate()
            } else {
                MappingRegistry.unregister(registration)
                munmap(UnsafeMutableRawPointer(mutating: base), size)
            }
        }
    }

    /// What a path is (symbolic links followed) and its size, checked before opening so a FIFO or device is
    /// refused instead of blocking in open(2) or reading forever. `kind` is nil for a regular file.
    static func fileStatus(_ path: String) throws -> (kind: String?, size: Int) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw Failure(call: "stat", code: errno) }
        let kind: String? = switch st.st_mode & S_IFMT {
        case S_IFREG: nil
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "a special file"
        }
        return (kind, Int(st.st_size))
    }

    /// Identity of a file on disk (device, inode), to tell whether two paths are the same file.
    static func fileIdentity(_ path: String) -> (UInt64, UInt64)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// The absolute path with symbolic links and `.`/`..` resolved; for a path that does not exist (yet), its
    /// nearest existing ancestor is resolved and the rest appended.
    static func resolvedPath(_ path: String) -> String {
        let absolute = path.isAbsolutePath ? path : FileManager.default.currentDirectoryPath + "/" + path
        if let r = realpath(absolute, nil) {
            defer { free(r) }
            return String(cString: r)
        }
        let standardized = (absolute as NSString).standardizingPath
        let parent = (standardized as NSString).deletingLastPathComponent
        guard parent != standardized, !parent.isEmpty else { return standardized }
        return (resolvedPath(parent) as NSString).appendingPathComponent((standardized as NSString).lastPathComponent)
    }

    /// An open file descriptor for writing a temporary file.
    final class WriteFile {
        let fd: Int32
        let path: String
        init(creatingExclusive path: String) throws {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw Failure(call: "open", code: errno) }
            self.fd = fd
            self.path = path
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws {
            var offset = 0
            while offset < bytes.count {
                let n = libcWrite(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw Failure(call: "write", code: errno)
                }
                offset += n
            }
        }

        /// Writes at a fixed offset without moving the file position (pwrite).
        func write(_ bytes: UnsafeRawBufferPointer, at position: Int) throws {
            var offset = 0
            while offset < bytes.count {
                let n = pwrite(fd, bytes.baseAddress! + offset, bytes.count - offset, off_t(position + offset))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw Failure(call: "pwrite", code: errno)
                }
                offset += n
            }
        }

        func sync() throws {
            guard fsync(fd) == 0 else { throw Failure(call: "fsync", code: errno) }
        }

        func close() {
            _ = libcClose(fd)
        }
    }

    static func rename(_ from: String, _ to: String) throws {
        guard libcRename(from, to) == 0 else { throw Failure(call: "rename", code: errno) }
    }

    static func unlink(_ path: String) {
        _ = libcUnlink(path)
    }

    /// fsync of a directory, so a rename inside it is durable.
    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        _ = libcClose(fd)
    }

    /// Peak resident set size of this process in bytes (/proc/self/status VmHWM).
    static func peakResidentBytes() -> Int? { statusField("VmHWM:") }

    /// Current resident set size in bytes (/proc/self/status VmRSS).
    static func currentResidentBytes() -> Int? { statusField("VmRSS:") }

    /// A "Name:   N kB" line of /proc/meminfo, in bytes.
    static func memInfoField(_ field: String) -> Int? { procField("/proc/meminfo", field) }

    /// A "Name:   N kB" line of /proc/self/status, in bytes.
    private static func statusField(_ field: String) -> Int? { procField("/proc/self/status", field) }

    /// A "Name:   N kB" line of a /proc file, in bytes; nil where there is no /proc (Basin supports Linux only).
    private static func procField(_ file: String, _ field: String) -> Int? {
        #if os(Linux)
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field) {
            let digits = line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
            return digits.map { $0 * 1024 }
        }
        return nil
        #else
        return nil
        #endif
    }
}

/// Process memory figures for benchmarks.
package enum ProcessMemory {
    package static var peakResidentBytes: Int? { Platform.peakResidentBytes() }
    package static var currentResidentBytes: Int? { Platform.currentResidentBytes() }

    /// User + system CPU seconds of this process so far, every thread (getrusage).
    public static var cpuSeconds: Double {
        var usage = rusage()
        _ = getrusage(0 /* RUSAGE_SELF */, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }

    /// Resets the peak resident set size to the current one (Linux: "5" to /proc/self/clear_refs), so a benchmark
    /// can measure the peak of one phase. Returns false where the kernel does not support it.
    @discardableResult
    package static func resetPeak() -> Bool {
        (try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)) != nil
    }
}

extension String {
    /// Path syntax tested on UTF-8 bytes, as the file system reads it. Swift's `hasPrefix` and `split` compare
    /// Characters (grapheme clusters), and a combining mark after "/" makes the slash part of another Character,
    /// invisible to them while the kernel still sees a separator.
    package var isAbsolutePath: Bool { utf8.first == UInt8(ascii: "/") }

    /// Whether this path starts with `prefix`, byte for byte (see `isAbsolutePath`).
    package func hasPathPrefix(_ prefix: String) -> Bool { utf8.starts(with: prefix.utf8) }
}
