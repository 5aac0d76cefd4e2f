#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// What happens when the process is told to stop, or an input shrinks under its memory map.
///
/// - SIGINT, SIGTERM, SIGHUP: every file registered with `CleanupRegistry` (writers' temporary files, shards
///   already renamed into place before the index is written, an output folder this run created) is removed,
///   then the signal's default action runs, so the exit status is the conventional 128 + signo.
/// - SIGXFSZ is ignored: a write past `ulimit -f` then fails with EFBIG, which the writers report as a
///   clear `noSpace` error (and remove their temporary file) instead of the process dying silently.
/// - SIGBUS at an address inside a memory-mapped input (the file was truncated by another program while
///   Basin was reading it) prints one line naming the file, removes the registered files, and exits with
///   status 128 + SIGBUS (135). Swift cannot recover from the fault (no sigsetjmp/siglongjmp), and reading
///   defensively (fstat before and after) cannot close the window, so the handler is the only way to
///   turn the crash into a clear message. A SIGBUS anywhere else falls through to the previous handler.
///
/// The handlers only call async-signal-safe functions (unlink, rmdir, write, strlen, signal, raise, _exit)
/// on memory allocated before they were installed. The explorer's terminal handlers (BasinCurses) restore
/// the terminal first and then hand the signal on to these.
public enum ProcessSignals {
    private static let installLock = NSLock()
    nonisolated(unsafe) private static var installed = false

    /// Installs the handlers (idempotent). The `basin` executable calls this first thing.
    public static func install() {
        installLock.lock()
        defer { installLock.unlock() }
        guard !installed else { return }
        installed = true
        SignalTables.prepare()
        // A last net: whatever is still registered when the process exits (exit() after an error while another
        // thread still held a writer) is unfinished, so it goes too.
        atexit { SignalTables.runCleanup() }
        signal(SIGXFSZ, SIG_IGN)
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            var sa = sigaction()
            #if canImport(Darwin)
            sa.__sigaction_u.__sa_handler = basinTerminationHandler
            #else
            sa.__sigaction_handler.sa_handler = basinTerminationHandler
            #endif
            sigemptyset(&sa.sa_mask)
            sa.sa_flags = 0
            sigaction(sig, &sa, nil)
        }
        var bus = sigaction()
        #if canImport(Darwin)
        bus.__sigaction_u.__sa_sigaction = basinBusHandler
        #else
        bus.__sigaction_handler.sa_sigaction = basinBusHandler
        #endif
        sigemptyset(&bus.sa_mask)
        bus.sa_flags = SA_SIGINFO
        sigaction(SIGBUS, &bus, SignalTables.previousBusAction)
    }
}

/// Files and folders to remove if the process is interrupted: the writers register what they create and
/// unregister it once it is finished (or removed).
public enum CleanupRegistry {
    /// A registration, to pass back to `unregister`.
    public struct Token: Sendable, Hashable {
        let slot: Int
    }

    /// Registers a file to unlink on SIGINT/SIGTERM/SIGHUP/SIGBUS. Returns nil when the table is full or the
    /// path is too long (the file is then only cleaned up on ordinary errors).
    @discardableResult
    public static func register(file path: String) -> Token? { SignalTables.cleanup.add(path, kind: 1) }

    /// Registers a folder to remove (rmdir: only once empty; its registered files go first).
    @discardableResult
    public static func register(directory path: String) -> Token? { SignalTables.cleanup.add(path, kind: 2) }

    /// Registers a child's process group (an external evaluator and everything it started) to stop with
    /// SIGTERM when Basin is interrupted or exits before the child is done.
    @discardableResult
    public static func register(processGroup: pid_t) -> Token? {
        guard processGroup > 0 else { return nil }
        return SignalTables.cleanup.add("", kind: 3, base: UInt(processGroup), size: 0).map { Token(slot: $0) }
    }

    /// Registers a finished folder Basin made and everything in it (files and symbolic links to unlink, folders
    /// to remove once empty), e.g. a candidate merge written for an external evaluator. Returns the tokens to
    /// unregister once the folder is removed.
    public static func register(tree folder: URL) -> [Token] {
        var tokens: [Token] = []
        if let t = register(directory: folder.path) { tokens.append(t) }
        guard let items = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isDirectoryKey, .isSymbolicLinkKey],
                                                         options: []) else { return tokens }
        for case let url as URL in items {
            let values = try? url.resourceValues(forKeys: [.isDirectoryKey, .isSymbolicLinkKey])
            let isFolder = values?.isDirectory == true && values?.isSymbolicLink != true
            if let t = isFolder ? register(directory: url.path) : register(file: url.path) { tokens.append(t) }
        }
        return tokens
    }

    public static func unregister(_ token: Token?) {
        guard let token else { return }
        SignalTables.cleanup.remove(token.slot)
    }

    /// The paths registered now (for tests).
    public static var registeredPaths: [String] { SignalTables.cleanup.paths() }

    /// Does now what an interrupt would: stops the registered process groups and removes the registered files
    /// and folders. For a program that ends with `_exit`, which runs no exit handlers (the explorer after q,
    /// with an external evaluator still running).
    public static func cleanUpNow() {
        SignalTables.prepare()
        SignalTables.runCleanup()
    }
}

/// Memory maps of input files, so the SIGBUS handler can name the file that shrank.
enum MappingRegistry {
    static func register(base: UnsafeRawPointer, size: Int, path: String) -> Int? {
        SignalTables.mappings.add(path, kind: 1, base: UInt(bitPattern: base), size: UInt(size))
    }

    static func unregister(_ slot: Int?) {
        guard let slot else { return }
        SignalTables.mappings.remove(slot)
    }
}

/// Fixed tables allocated once: each slot is [state: Int, base: UInt, size: UInt, path: NUL-terminated bytes].
/// Writers take a lock among themselves; the handlers read without one (a slot's path is written before
/// its state is set, and a slot is freed by clearing its state).
final class SlotTable: @unchecked Sendable {
    static let header = 24
    let count: Int
    let pathBytes: Int
    let memory: UnsafeMutableRawPointer
    private let lock = NSLock()

    init(count: Int, pathBytes: Int) {
        self.count = count
        self.pathBytes = pathBytes
        memory = UnsafeMutableRawPointer.allocate(byteCount: count * (Self.header + pathBytes), alignment: 16)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: count * (Self.header + pathBytes))
    }

    @inline(__always) func slot(_ i: Int) -> UnsafeMutableRawPointer { memory + i * (Self.header + pathBytes) }
    @inline(__always) func state(_ i: Int) -> Int { slot(i).load(as: Int.self) }
    @inline(__always) func base(_ i: Int) -> UInt { slot(i).load(fromByteOffset: 8, as: UInt.self) }
    @inline(__always) func size(_ i: Int) -> UInt { slot(i).load(fromByteOffset: 16, as: UInt.self) }
    @inline(__always) func path(_ i: Int) -> UnsafeMutablePointer<CChar> {
        (slot(i) + Self.header).assumingMemoryBound(to: CChar.self)
    }

    func add(_ path: String, kind: Int, base: UInt = 0, size: UInt = 0) -> Int? {
        let utf8 = Array(path.utf8)
        guard utf8.count < pathBytes, !utf8.contains(0) else { return nil }
        lock.lock()
        defer { lock.unlock() }
        guard let i = (0..<count).first(where: { state($0) == 0 }) else { return nil }
        let s = slot(i)
        s.storeBytes(of: base, toByteOffset: 8, as: UInt.self)
        s.storeBytes(of: size, toByteOffset: 16, as: UInt.self)
        utf8.withUnsafeBytes { (s + Self.header).copyMemory(from: $0.baseAddress!, byteCount: utf8.count) }
        (s + Self.header + utf8.count).storeBytes(of: 0, as: UInt8.self)
        s.storeBytes(of: kind, as: Int.self)
        return i
    }

    func add(_ path: String, kind: Int) -> CleanupRegistry.Token? {
        let i: Int? = add(path, kind: kind, base: 0, size: 0)
        return i.map { CleanupRegistry.Token(slot: $0) }
    }

    func remove(_ i: Int) {
        lock.lock()
        slot(i).storeBytes(of: 0, as: Int.self)
        lock.unlock()
    }

    func paths() -> [String] {
        lock.lock()
        defer { lock.unlock() }
        return (0..<count).filter { state($0) == 1 || state($0) == 2 }.map { String(cString: path($0)) }
    }
}

/// What the handlers read, as plain values set once by `prepare()` before any handler is installed. The handlers
/// touch nothing else: no class references (retain/release), no generic types whose metadata could be created
/// (and allocated) on first use, no Range or stride iteration, only while loops over raw memory. A handler that
/// allocated could deadlock on malloc's lock held by the code it interrupted, which a debug build did.
nonisolated(unsafe) private var cleanupMemory: UnsafeMutableRawPointer?
nonisolated(unsafe) private var cleanupSlots = 0
nonisolated(unsafe) private var cleanupStride = 0
nonisolated(unsafe) private var mappingMemory: UnsafeMutableRawPointer?
nonisolated(unsafe) private var mappingSlots = 0
nonisolated(unsafe) private var mappingStride = 0
nonisolated(unsafe) private var previousBus: UnsafeMutablePointer<sigaction>?

enum SignalTables {
    static let cleanup = SlotTable(count: 256, pathBytes: Int(PATH_MAX))
    static let mappings = SlotTable(count: 1024, pathBytes: 1024)
    nonisolated(unsafe) static let previousBusAction: UnsafeMutablePointer<sigaction> = {
        let p = UnsafeMutablePointer<sigaction>.allocate(capacity: 1)
        p.initialize(to: sigaction())
        return p
    }()

    /// Sets the plain values the handlers read, so nothing is initialised (or allocated) inside a handler.
    static func prepare() {
        cleanupMemory = cleanup.memory
        cleanupSlots = cleanup.count
        cleanupStride = SlotTable.header + cleanup.pathBytes
        mappingMemory = mappings.memory
        mappingSlots = mappings.count
        mappingStride = SlotTable.header + mappings.pathBytes
        previousBus = previousBusAction
    }

    /// Removes the registered files, then the registered folders (innermost last registered first), then stops
    /// the registered child process groups. Async-signal-safe: see the note on the values above.
    static func runCleanup() {
        guard let memory = cleanupMemory else { return }
        let n = cleanupSlots, stride = cleanupStride
        var i = 0
        while i < n {
            let slot = memory + i * stride
            if slot.load(as: Int.self) == 1 { _ = unlink((slot + SlotTable.header).assumingMemoryBound(to: CChar.self)) }
            i += 1
        }
        // Folders: innermost (last registered) first; a second pass catches a parent whose slot came before its
        // child's (slots are reused, so registration order is not always slot order).
        var pass = 0
        while pass < 2 {
            i = n - 1
            while i >= 0 {
                let slot = memory + i * stride
                if slot.load(as: Int.self) == 2 { _ = rmdir((slot + SlotTable.header).assumingMemoryBound(to: CChar.self)) }
                i -= 1
            }
            pass += 1
        }
        // Child process groups last: a worker thread waiting on an evaluator wakes when it dies and would go on
        // (writing the next candidate) while the files above were still being removed; the caller ends the
        // process right after this.
        i = 0
        while i < n {
            let slot = memory + i * stride
            if slot.load(as: Int.self) == 3 { _ = kill(-pid_t(truncatingIfNeeded: slot.load(fromByteOffset: 8, as: UInt.self)), SIGTERM) }
            i += 1
        }
    }

    static func writeError(_ s: StaticString) {
        _ = write(2, s.utf8Start, s.utf8CodeUnitCount)
    }

    /// The path of the registered mapping holding `address`, if any (async-signal-safe).
    static func mappedFile(containing address: UInt) -> UnsafeMutablePointer<CChar>? {
        guard let memory = mappingMemory else { return nil }
        let n = mappingSlots, stride = mappingStride
        var i = 0
        while i < n {
            let slot = memory + i * stride
            if slot.load(as: Int.self) != 0 {
                let base = slot.load(fromByteOffset: 8, as: UInt.self)
                let size = slot.load(fromByteOffset: 16, as: UInt.self)
                if address >= base && address - base < size { return (slot + SlotTable.header).assumingMemoryBound(to: CChar.self) }
            }
            i += 1
        }
        return nil
    }
}

private func basinTerminationHandler(_ sig: Int32) {
    SignalTables.runCleanup()
    signal(sig, SIG_DFL)
    raise(sig)
}

private func basinBusHandler(_ sig: Int32, _ info: UnsafeMutablePointer<siginfo_t>?, _ context: UnsafeMutableRawPointer?) {
    var address: UInt = 0
    if let info {
        #if canImport(Darwin)
        address = UInt(bitPattern: info.pointee.si_addr)
        #else
        address = UInt(bitPattern: info.pointee._sifields._sigfault.si_addr)
        #endif
    }
    if let p = SignalTables.mappedFile(containing: address) {
        SignalTables.writeError("Error: ")
        _ = write(2, p, strlen(p))
        SignalTables.writeError(": the file shrank while Basin was reading it (truncated or rewritten by another program?); stopped, and removed this run's unfinished outputs\n")
        SignalTables.runCleanup()
        _exit(128 + SIGBUS)
    }
    // Not an input's mapping: a genuine fault. Hand it to whoever handled SIGBUS before; returning re-runs the
    // faulting instruction under that handler (or the default action).
    if let previousBus { sigaction(SIGBUS, previousBus, nil) } else { signal(SIGBUS, SIG_DFL) }
}
