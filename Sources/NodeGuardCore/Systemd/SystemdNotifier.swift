import CSystemd

#if canImport(Glibc)
import Glibc
#endif

/// Tells systemd about the daemon's state (sd_notify): READY=1 after the first
/// successful apply, STATUS= in words for `systemctl status`, RELOADING=1 /
/// READY=1 around reloads, STOPPING=1 on shutdown, and WATCHDOG=1 from the
/// reconcile loop only. Without NOTIFY_SOCKET every call is a no-op.
public struct SystemdNotifier: Sendable {
    /// Whether a service manager listens (NOTIFY_SOCKET is set).
    public let isEnabled: Bool
    /// How often systemd expects WATCHDOG=1 (WatchdogSec=), when it does and
    /// WATCHDOG_PID, if set, names this process.
    public let watchdogTimeout: Duration?

    public init() {
        isEnabled = getenv("NOTIFY_SOCKET") != nil
        var usec: UInt64 = 0
        // > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID is unset or ours.
        if sd_watchdog_enabled(0, &usec) > 0, usec > 0 {
            watchdogTimeout = .microseconds(Int64(clamping: usec))
        } else {
            watchdogTimeout = nil
        }
    }

    init(isEnabled: Bool, watchdogTimeout: Duration?) {
        self.isEnabled = isEnabled
        self.watchdogTimeout = watchdogTimeout
    }

    /// How often the reconcile loop must at least come round: half the
    /// watchdog timeout, so one late pass does not get the daemon killed.
    public func loopInterval(verifyInterval: Duration) -> Duration {
        guard let watchdogTimeout else { return verifyInterval }
        return min(verifyInterval, watchdogTimeout / 2)
    }

    public func ready(status: String) { send(["READY=1", "STATUS=\(status)"]) }

    /// Sent by the reconcile loop after each completed pass: a stalled loop
    /// stops pinging and systemd restarts the daemon.
    public func loopAlive(status: String) {
        send((watchdogTimeout != nil ? ["WATCHDOG=1"] : []) + ["STATUS=\(status)"])
    }

    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let usec = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        send(["RELOADING=1", "MONOTONIC_USEC=\(usec)", "STATUS=Reloading the deny-list"])
    }

    /// Start-up is waiting for something outside the daemon (the xtables
    /// lock): asks systemd for `time` more before it gives up, and says why.
    public func stillStarting(extendBy time: Duration, status: String) {
        let usec = time.components.seconds * 1_000_000 + time.components.attoseconds / 1_000_000_000_000
        send(["EXTEND_TIMEOUT_USEC=\(usec)", "STATUS=\(status)"])
    }

    public func stopping() { send(["STOPPING=1", "STATUS=Stopping; NodeGuard's rules stay in the kernel"]) }

    public func send(_ fields: [String]) {
        guard isEnabled else { return }
        // A newline inside a value would start a new field; status texts are ours, but be safe.
        let state = fields.map { $0.replacing("\n", with: " ") }.joined(separator: "\n")
        _ = sd_notify(0, state)
    }
}
