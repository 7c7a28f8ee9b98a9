import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The lock every iptables binary takes before it touches the tables.
/// libiptc takes none, so NodeGuard holds it from read to commit; without it
/// a concurrent writer's update can be silently lost (NETFILTER.md).
///
/// A thread that holds it may take it again (the daemon holds it across a
/// whole request, and each table's transaction inside takes it too).
public enum XtablesLock {
    public static let defaultPath = "/run/xtables.lock"

    /// `XTABLES_LOCKFILE` overrides the path, as it does for iptables.
    public static var path: String {
        if let value = getenv("XTABLES_LOCKFILE"), value.pointee != 0 { return String(cString: value) }
        return defaultPath
    }

    /// Which thread holds which lock path, and how deeply.
    private final class Holdings: @unchecked Sendable {
        let lock = ConditionLock()
        var held: [String: (thread: pthread_t, depth: Int)] = [:]
    }
    private static let holdings = Holdings()

    /// Runs `body` while holding the lock, waiting up to `timeout` for it and
    /// polling as `iptables -w` does. A zero timeout tries once: the daemon's
    /// loop never waits, it comes back when the lock is released. The error
    /// names the holder (from /proc/locks) and is `.lockTimeout`.
    public static func withLock<T>(
        path: String = XtablesLock.path, timeout: Duration = .seconds(10),
        _ body: () throws(NodeGuardError) -> T
    ) throws(NodeGuardError) -> T {
        if enterIfHeld(path) {
            defer { leave(path) }
            return try body()
        }
        let fd = try io("cannot open the xtables lock \(path)") {
            try FileDescriptor.openClosingOnExec(path, .readOnly, options: .create, permissions: .ownerReadWrite)
        }
        // Closing the descriptor releases the flock.
        defer { fd.closeQuietly() }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var pause: useconds_t = 200
        while try !io("cannot lock \(path)", { try fd.tryLockExclusively() }) {
            if clock.now >= deadline { throw busy(path, waited: timeout) }
            usleep(pause)
            pause = min(pause * 2, 20_000)
        }
        holdings.lock.lock()
        holdings.held[path] = (pthread_self(), 1)
        holdings.lock.unlock()
        defer { leave(path) }
        return try body()
    }

    private static func enterIfHeld(_ path: String) -> Bool {
        holdings.lock.lock()
        defer { holdings.lock.unlock() }
        guard let holding = holdings.held[path], pthread_equal(holding.thread, pthread_self()) != 0 else { return false }
        holdings.held[path] = (holding.thread, holding.depth + 1)
        return true
    }

    private static func leave(_ path: String) {
        holdings.lock.lock()
        defer { holdings.lock.unlock() }
        guard let holding = holdings.held[path] else { return }
        holdings.held[path] = holding.depth > 1 ? (holding.thread, holding.depth - 1) : nil
    }

    static func busy(_ path: String, waited: Duration) -> NodeGuardError {
        let who = holder(of: path).map { "PID \($0.pid) (\($0.command))" } ?? "another program (iptables, kube-proxy, firewalld)"
        let waiting = waited > .zero ? "waited \(waited) for \(path)" : "\(path) is busy"
        return NodeGuardError(.lockTimeout, "\(waiting): \(who) holds it; retry when it lets go, or find it with `fuser \(path)`")
    }

    /// Who holds the lock on `path`, from /proc/locks, or nil if nobody (or
    /// it cannot be told).
    public static func holder(of path: String) -> (pid: Int32, command: String)? {
        guard let info = try? FilePath(path).stat(), let pid = FlockHolder.pid(of: info) else { return nil }
        return (pid, FlockHolder.processName(pid) ?? "?")
    }
}
