#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A shell command run as a child in its own process group, with a deadline and bounded output: what Basin
/// needs to run a user's evaluator (`merge --evaluate`, `soup --evaluate`) without trusting it.
///
/// Hand-written over posix_spawn because Foundation's `Process` can do none of the three things that matter
/// here: it cannot put the child in a new process group (so `terminate()` reaches `/bin/sh` but not the
/// `sleep` or Python it started, which keep the pipes open and the wait blocked), it cannot bound what it
/// reads (`readDataToEndOfFile` of an endless stdout grows without limit), and a child it starts inherits
/// Basin's ignored SIGXFSZ. Here:
/// - the child leads a new process group (POSIX_SPAWN_SETPGROUP) with default signal dispositions and an
///   empty mask, standard input /dev/null;
/// - the group is registered with `CleanupRegistry`, so SIGINT/SIGTERM/SIGHUP to Basin (or its exit) also
///   stops the evaluator and everything it started;
/// - past the deadline, or once standard output exceeds `outputLimit`, the whole group gets SIGTERM, then
///   SIGKILL after a grace period, and the result says which;
/// - standard error keeps its last `errorLimit` bytes (the end of a traceback is what explains a failure).
public struct ChildProcess {
    public enum Ending: Sendable, Equatable {
        case exited(Int32)
        case signalled(Int32)
        /// Stopped by Basin: the deadline passed.
        case timedOut(seconds: Double)
        /// Stopped by Basin: standard output exceeded the limit.
        case outputTooLarge(limit: Int)
    }

    public struct Result: Sendable {
        public var ending: Ending
        public var standardOutput: Data
        /// The last bytes of standard error (at most the error limit).
        public var standardError: Data
        public var standardErrorTruncated: Bool
    }

    private static let spawnLock = NSLock()

    /// Seconds between SIGTERM and SIGKILL to the group.
    public static let gracePeriod = 2.0

    /// Runs `/bin/sh -c script` with `arguments` as `$0, $1, ...`.
    public static func run(shell script: String, arguments: [String] = [], timeout: Double?, outputLimit: Int = 4 << 20,
                           errorLimit: Int = 64 << 10) throws -> Result {
        // Pipes are made close-on-exec and the child spawned under one lock, so a child spawned by another
        // thread (several evaluators at a time) never inherits this one's pipe and holds it open.
        spawnLock.lock()
        var locked = true
        defer { if locked { spawnLock.unlock() } }
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard pipe(&outPipe) == 0 else { throw failure("cannot create a pipe") }
        guard pipe(&errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            throw failure("cannot create a pipe")
        }
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGXFSZ, SIGQUIT] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        let argv: [UnsafeMutablePointer<CChar>?] = (["/bin/sh", "-c", script] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, environ)
        close(outPipe[1])
        close(errPipe[1])
        spawnLock.unlock()
        locked = false
        guard spawned == 0 else {
            close(outPipe[0]); close(errPipe[0])
            throw failure("cannot start /bin/sh: \(String(cString: strerror(spawned)))")
        }
        let token = CleanupRegistry.register(processGroup: pid)
        defer { CleanupRegistry.unregister(token) }

        var out = Data(), err = Data()
        var errTruncated = false
        var stopped: Ending?
        var killDeadline: Double?
        let start = now()
        var open = [outPipe[0], errPipe[0]]
        defer { for fd in [outPipe[0], errPipe[0]] { close(fd) } }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 16)
        defer { buffer.deallocate() }

        func stop(_ why: Ending) {
            guard stopped == nil else { return }
            stopped = why
            kill(-pid, SIGTERM)
            killDeadline = now() + gracePeriod
        }

        while open.contains(where: { $0 >= 0 }) {
            // Wake at the deadline (then at the end of the grace period), at least every second.
            var wait = 1.0
            if stopped == nil, let timeout { wait = min(wait, max(0, start + timeout - now())) }
            if let killDeadline { wait = min(wait, max(0, killDeadline - now())) }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), Int32((wait * 1000).rounded(.up)))
            if ready < 0 && errno != EINTR { break }
            for (k, p) in fds.enumerated() where p.fd >= 0 && p.revents != 0 {
                let n = read(p.fd, buffer, 65536)
                if n <= 0 {
                    if n == 0 || (errno != EINTR && errno != EAGAIN) { open[k] = -1 }
                    continue
                }
                let chunk = UnsafeRawBufferPointer(start: buffer, count: n)
                if k == 0 {
                    // Past the limit, nothing more is kept: the group is told to stop, and reading goes on
                    // (discarding) only so the children never block on a full pipe before they die.
                    if stopped == nil {
                        if out.count + n > outputLimit { stop(.outputTooLarge(limit: outputLimit)) } else { out.append(contentsOf: chunk) }
                    }
                } else {
                    err.append(contentsOf: chunk)
                    if err.count > 2 * errorLimit {
                        err = err.suffix(errorLimit)
                        errTruncated = true
                    }
                }
            }
            if stopped == nil, let timeout, now() - start >= timeout { stop(.timedOut(seconds: timeout)) }
            if let d = killDeadline, now() >= d {
                kill(-pid, SIGKILL)
                killDeadline = nil
                // Whatever still holds the pipes after SIGKILL to the group is outside it (it left the group
                // itself); stop reading rather than wait for it.
                break
            }
        }
        if err.count > errorLimit {
            err = err.suffix(errorLimit)
            errTruncated = true
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // Anything the command left running in its group goes too once Basin has given up on it.
        if stopped != nil { kill(-pid, SIGKILL) }
        let ending: Ending
        if let stopped {
            ending = stopped
        } else if status & 0x7f == 0 {
            ending = .exited((status >> 8) & 0xff)
        } else {
            ending = .signalled(status & 0x7f)
        }
        return Result(ending: ending, standardOutput: out, standardError: Data(err), standardErrorTruncated: errTruncated)
    }

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    static func failure(_ message: String) -> BasinIOError {
        BasinIOError(.unreadable, file: "/bin/sh", message)
    }
}
