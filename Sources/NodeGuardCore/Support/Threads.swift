import CNodeGuardLinux
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

// NodeGuard's few blocking threads (the reconcile loop, the lock watcher, the
// control socket) run on plain pthreads. Foundation's Thread and NSCondition
// would pull swift-corelibs-foundation and ICU into the static daemon: about
// 50 MB of binary and several MB of resident pages for two primitives.

/// Starts `body` on a new detached pthread. `name` shows in `ps -L` and
/// `top -H` (the kernel keeps 15 bytes of it). Throws when the system has no
/// thread to give (EAGAIN: the process or cgroup limit): the caller decides
/// whether that refuses one client or stops the daemon.
public func startThread(name: String, stackSize: Int = 0,
                        _ body: @escaping @Sendable () -> Void) throws(NodeGuardError) {
    final class Start { let body: @Sendable () -> Void; let name: String
        init(_ body: @escaping @Sendable () -> Void, _ name: String) { self.body = body; self.name = name } }
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    if stackSize > 0 { pthread_attr_setstacksize(&attributes, stackSize) }
    let context = Unmanaged.passRetained(Start(body, name)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, &attributes, { raw in
        let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
        nglinux_set_thread_name(start.name)
        start.body()
        return nil
    }, context)
    guard result == 0 else {
        Unmanaged<Start>.fromOpaque(context).release()
        throw NodeGuardError(io: "cannot start the \(name) thread", Errno(rawValue: result))
    }
}

/// A mutex with a condition variable whose timed waits use the monotonic
/// clock, so a wall-clock step (NTP, an operator's `date -s`) never stretches
/// or cuts short the reconcile loop's sleep.
public final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
    public func signal() { pthread_cond_signal(condition) }
    public func broadcast() { pthread_cond_broadcast(condition) }
    /// Waits for a signal; the lock must be held.
    public func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits for a signal or until `duration` has passed; the lock must be held.
    public func wait(for duration: Duration) {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let (seconds, attoseconds) = max(duration, .zero).components
        let nanoseconds = Int(deadline.tv_nsec) + Int(attoseconds / 1_000_000_000)
        deadline.tv_sec += Int(seconds) + nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        _ = pthread_cond_timedwait(condition, mutex, &deadline)
    }

    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// Lowers the calling thread's priority (nice +10; on Linux the nice value
/// is per thread): threads that serve control clients must not take the CPU
/// from the reconcile loop's repairs when a flood of them arrives. Raising
/// one's own nice value needs no privilege; if it fails nothing else changes.
func lowerCurrentThreadPriority() {
    _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
}
