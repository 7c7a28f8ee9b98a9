import FoundationEssentials
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Wakes the reconcile loop the moment a well-behaved writer finishes with
/// the tables. Legacy xtables send no change events, but every iptables
/// binary (and iptables-restore as kube-proxy, Calico and firewalld run it)
/// holds /run/xtables.lock while it changes them and closes it when done:
/// inotify reports that close. Writers that skip the lock are still caught by
/// the loop's own polling.
public final class XtablesLockWatcher: @unchecked Sendable {
    private let path: String
    private let onRelease: @Sendable () -> Void
    private let inotify: Int32
    private let stopPipe: (readEnd: FileDescriptor, writeEnd: FileDescriptor)
    private var watch: Int32 = -1
    private let finished = ConditionLock()
    private var running = false

    public init(path: String = XtablesLock.path, onRelease: @escaping @Sendable () -> Void) throws(NodeGuardError) {
        self.path = path
        self.onRelease = onRelease
        do {
            inotify = try systemCall { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) }
        } catch {
            throw NodeGuardError(io: "cannot watch \(path) for its release (inotify_init1)", error)
        }
        do {
            stopPipe = try FileDescriptor.closeOnExecPipe()
        } catch {
            close(inotify)
            throw NodeGuardError(io: "cannot create the lock watcher's stop pipe", error)
        }
        arm()
    }

    deinit {
        close(inotify)
        stopPipe.readEnd.closeQuietly()
        stopPipe.writeEnd.closeQuietly()
    }

    /// (Re)adds the watch, creating the lock file as iptables does if it is
    /// missing. A failure is not fatal: polling still works.
    @discardableResult
    private func arm() -> Bool {
        (try? FileDescriptor.openClosingOnExec(path, .readOnly, options: .create, permissions: .ownerReadWrite))?.closeQuietly()
        watch = inotify_add_watch(inotify, path, UInt32(IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_DELETE_SELF | IN_MOVE_SELF))
        return watch >= 0
    }

    public var isArmed: Bool { watch >= 0 }

    /// Runs the watcher on a thread of its own until `stop()`.
    public func start() {
        finished.lock()
        running = true
        finished.unlock()
        do {
            try startThread(name: "ng-lockwatch") { [self] in
                run()
                finished.lock()
                running = false
                finished.broadcast()
                finished.unlock()
            }
        } catch {
            // Polling still catches every change, only later.
            finished.withLock { running = false }
        }
    }

    public func stop() {
        _ = try? stopPipe.writeEnd.writeAll([1])
        finished.lock()
        while running { finished.wait() }
        finished.unlock()
    }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var fds = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stopPipe.readEnd.rawValue, events: Int16(POLLIN), revents: 0)]
            // While unarmed (the file was removed), retry once a second.
            do {
                _ = try systemCall(retryOnInterrupt: false) { poll(&fds, 2, isArmed ? -1 : 1000) }
            } catch .interrupted {
                continue
            } catch {
                return
            }
            if fds[1].revents != 0 { return }
            if !isArmed {
                if arm() { onRelease() }
                continue
            }
            guard fds[0].revents != 0 else { continue }
            var released = false
            while true {
                let count = buffer.withUnsafeMutableBytes { read(inotify, $0.baseAddress, $0.count) }
                guard count > 0 else { break }
                var offset = 0
                while offset + MemoryLayout<inotify_event>.size <= count {
                    let (mask, length) = buffer.withUnsafeBytes { raw -> (UInt32, UInt32) in
                        let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                        return (event.mask, event.len)
                    }
                    if mask & UInt32(IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) != 0 { released = true }
                    if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 { watch = -1 }
                    offset += MemoryLayout<inotify_event>.size + Int(length)
                }
            }
            if released { onRelease() }
        }
    }
}
