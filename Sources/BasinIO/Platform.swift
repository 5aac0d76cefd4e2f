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

    /// A read-only private memory map of a whole file. Unchecked Sendable: it holds a raw pointer, which is
    /// set once, only read through, and unmapped when the last reference goes.
    final class Mapping: @unchecked Sendable {
        let base: UnsafeRawPointer?
        let size: Int

        init(path: String) throws {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw Failure(call: "open", code: errno) }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw Failure(call: "fstat", code: errno) }
            guard (st.st_mode & S_IFMT) == S_IFREG else { throw Failure(call: "open", code: EISDIR) }
            size = Int(st.st_size)
            if size == 0 {
                base = nil
                return
            }
            let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
            guard let p, p != MAP_FAILED else { throw Failure(call: "mmap", code: errno) }
            base = UnsafeRawPointer(p)
        }

        var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

        /// Tells the kernel the pages of [offset, offset+count) will not be needed soon, so a streaming reader
        /// keeps its resident set at about one tensor.
        func release(offset: Int, count: Int) {
            guard let base, count > 0 else { return }
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let start = (offset / page) * page
            let end = min(size, offset + count)
            guard end > start else { return }
            _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
        }

        deinit {
            if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
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

    static func resolvedPath(_ path: String) -> String {
        guard let r = realpath(path, nil) else { return (path as NSString).standardizingPath }
        defer { free(r) }
        return String(cString: r)
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

    /// A "Name:   N kB" line of /proc/self/status, in bytes; nil where there is no /proc (Basin supports Linux only).
    private static func statusField(_ field: String) -> Int? {
        #if os(Linux)
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
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

    /// Resets the peak resident set size to the current one (Linux: "5" to /proc/self/clear_refs), so a benchmark
    /// can measure the peak of one phase. Returns false where the kernel does not support it.
    @discardableResult
    package static func resetPeak() -> Bool {
        (try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)) != nil
    }
}
