#if canImport(Glibc)
import Glibc
#endif

/// The lock every iptables binary takes before it touches the tables.
/// libiptc takes none, so NodeGuard holds it from read to commit; without it
/// a concurrent writer's update can be silently lost (NETFILTER.md).
public enum XtablesLock {
    public static let defaultPath = "/run/xtables.lock"

    /// `XTABLES_LOCKFILE` overrides the path, as it does for iptables.
    public static var path: String {
        if let value = getenv("XTABLES_LOCKFILE"), value.pointee != 0 { return String(cString: value) }
        return defaultPath
    }

    /// Runs `body` while holding the lock, waiting up to `timeout` for it and
    /// polling as `iptables -w` does.
    public static func withLock<T>(
        path: String = XtablesLock.path, timeout: Duration = .seconds(10),
        _ body: () throws(NodeGuardError) -> T
    ) throws(NodeGuardError) -> T {
        let fd = open(path, O_CREAT | O_RDONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw NodeGuardError(.ioFailure, "cannot open the xtables lock \(path): \(reason)")
        }
        // Closing the descriptor releases the flock.
        defer { close(fd) }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var pause: useconds_t = 200
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let error = errno
            if error == EINTR { continue }
            guard error == EWOULDBLOCK else {
                throw NodeGuardError(.ioFailure, "cannot lock \(path): \(String(cString: strerror(error)))")
            }
            if clock.now >= deadline {
                throw NodeGuardError(.lockTimeout,
                    "waited \(timeout) for \(path): another program (iptables, kube-proxy, firewalld) holds it; retry, or find the holder with `fuser \(path)`")
            }
            usleep(pause)
            pause = min(pause * 2, 20_000)
        }
        return try body()
    }
}
