import FoundationEssentials
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A child process started with posix_spawn and reaped with waitpid on its own
/// pid. Foundation's Process is not used: its shared SIGCHLD reaper hung
/// (blocking in wait4 on a live child, or never noticing an exit) when a child
/// left a background process behind or exec'd another program, and a hang in
/// the reconcile loop would cost the daemon its watchdog. swift-subprocess
/// 1.0.2 was weighed and not taken: its API is async only (the reconcile loop
/// is a plain thread and would block on a task), a child's life is bound to a
/// closure (tests keep daemons across calls), and it reaps through a
/// process-wide monitor thread that falls back to a SIGCHLD handler on
/// kernels without pidfd.
public final class ChildProcess {
    public let pid: pid_t
    /// What was started, for messages.
    public let arguments: [String]
    private var exitStatus: Int32?

    /// Starts `arguments` (looked up on PATH) with the given descriptors as
    /// stdin/stdout/stderr (nil: /dev/null) and extra environment variables.
    public init(_ arguments: [String], stdin: Int32? = nil, stdout: Int32? = nil, stderr: Int32? = nil,
         environment: [String: String] = [:]) throws(NodeGuardError) {
        _ = Self.standardDescriptorsOpen
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (fd, target) in [(stdin, STDIN_FILENO), (stdout, STDOUT_FILENO), (stderr, STDERR_FILENO)] {
            if let fd {
                posix_spawn_file_actions_adddup2(&actions, fd, target)
            } else {
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == STDIN_FILENO ? O_RDONLY : O_WRONLY, 0)
            }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Default signal handling in the child, whatever this process changed.
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let result = posix_spawnp(&child, arguments[0], &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw NodeGuardError(io: "cannot start \(arguments[0])", Errno(rawValue: result))
        }
        pid = child
        self.arguments = arguments
    }

    /// CI runs the tests without standard input. With descriptor 0 closed, a
    /// pipe could be given descriptor 0, and the child's "stdin from
    /// /dev/null" would replace it before it is dup'ed to stdout: output lost.
    /// So 0, 1 and 2 are kept open (on /dev/null) in this process.
    private static let standardDescriptorsOpen: Bool = {
        for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) < 0 {
            _ = open("/dev/null", O_RDWR)   // takes the lowest free descriptor: this one
        }
        return true
    }()

    public var isRunning: Bool {
        reap(blocking: false)
        return exitStatus == nil
    }

    /// Waits for the child and returns its exit status (128 + signal if killed).
    @discardableResult
    public func wait() -> Int32 {
        reap(blocking: true)
        return exitStatus ?? -1
    }

    public func signal(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

    private func reap(blocking: Bool) {
        guard exitStatus == nil else { return }
        var status: Int32 = 0
        guard (try? systemCall { waitpid(pid, &status, blocking ? 0 : WNOHANG) }) == pid else { return }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (they are macros in C).
        let signal = status & 0x7f
        exitStatus = signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}

/// Reads all of two pipes until both are closed, or until `deadline`.
public func readAll(_ out: Int32, _ err: Int32, deadline: ContinuousClock.Instant? = nil) -> (Data, Data) {
    var buffers = [Data(), Data()]
    var fds = [pollfd(fd: out, events: Int16(POLLIN), revents: 0), pollfd(fd: err, events: Int16(POLLIN), revents: 0)]
    var open = 2
    var chunk = [UInt8](repeating: 0, count: 65536)
    while open > 0 {
        var wait: Int32 = -1
        if let deadline {
            let left = deadline - ContinuousClock.now
            if left <= .zero { break }
            wait = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
        }
        let ready: Int32
        do {
            ready = try systemCall(retryOnInterrupt: false) { poll(&fds, 2, wait) }
        } catch .interrupted {
            continue   // with the time left recomputed
        } catch {
            break
        }
        if ready == 0 { continue }
        for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
            // Retried while interrupted; end of file or an error ends the stream.
            let n = (try? chunk.withUnsafeMutableBytes { try FileDescriptor(rawValue: fds[i].fd).read(into: $0) }) ?? 0
            if n > 0 {
                buffers[i].append(contentsOf: chunk[0..<n])
            } else {
                fds[i].fd = -1
                open -= 1
            }
        }
    }
    return (buffers[0], buffers[1])
}

/// A pipe whose ends are closed on exec from their creation (pipe2 with
/// O_CLOEXEC: a child another thread starts meanwhile inherits neither); a
/// child gets its end through dup2, which clears the flag on the copy.
public func makePipe() throws(NodeGuardError) -> (read: Int32, write: Int32) {
    let (read, write) = try io("cannot create a pipe") { try FileDescriptor.closeOnExecPipe() }
    return (read.rawValue, write.rawValue)
}

/// Runs a program to completion with a time limit and returns its exit status
/// and output. Past the limit it is killed and the status is 128 + SIGKILL.
public func runProgram(_ arguments: [String], timeout: Duration) throws(NodeGuardError) -> (status: Int32, stdout: Data, stderr: Data) {
    let out = try makePipe(), err = try makePipe()
    let child = try ChildProcess(arguments, stdout: out.write, stderr: err.write)
    close(out.write)
    close(err.write)
    let (stdout, stderr) = readAll(out.read, err.read, deadline: .now + timeout)
    close(out.read)
    close(err.read)
    if child.isRunning { child.signal(SIGKILL) }
    return (child.wait(), stdout, stderr)
}
