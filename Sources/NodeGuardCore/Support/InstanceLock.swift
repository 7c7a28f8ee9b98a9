import SystemPackage

/// One nodeguardd per state directory: an exclusive `flock` on the state
/// directory itself, taken before anything touches the kernel or the socket
/// and held until the process exits (the kernel drops it then, even after
/// SIGKILL). Locking the directory, not a file in it, needs no write, so a
/// daemon whose state directory went read-only still starts and guards.
/// Whoever holds the lock is named from /proc/locks (`FlockHolder`).
public final class InstanceLock {
    public let directory: String
    private let fd: FileDescriptor

    private init(directory: String, fd: FileDescriptor) {
        self.directory = directory
        self.fd = fd
    }

    deinit { fd.closeQuietly() }

    /// Takes the lock, creating the directory (0750) if it does not exist.
    public static func acquire(stateDirectory: String) throws(NodeGuardError) -> InstanceLock {
        do { try makeDirectories(stateDirectory, mode: 0o750) } catch {
            throw NodeGuardError(.ioFailure, "cannot create the state directory: \(error.message)", errno: error.errno)
        }
        return try lock(stateDirectory)
    }

    /// For `--remove-rules`: nil when the directory does not exist, since no
    /// daemon can be using it then; nothing is created.
    public static func acquireIfPresent(stateDirectory: String) throws(NodeGuardError) -> InstanceLock? {
        guard (try? FilePath(stateDirectory).stat()) != nil else { return nil }
        return try lock(stateDirectory)
    }

    private static func lock(_ directory: String) throws(NodeGuardError) -> InstanceLock {
        let fd = try io("cannot open the state directory \(directory)") {
            try FileDescriptor.openClosingOnExec(directory, .readOnly, options: .directory)
        }
        let taken: Bool
        do {
            taken = try fd.tryLockExclusively()
        } catch {
            fd.closeQuietly()
            throw NodeGuardError(io: "cannot lock the state directory \(directory)", error)
        }
        guard taken else {
            let error = conflict(directory, fd: fd)
            fd.closeQuietly()
            throw error
        }
        return InstanceLock(directory: directory, fd: fd)
    }

    private static func conflict(_ directory: String, fd: FileDescriptor) -> NodeGuardError {
        let pid = (try? fd.stat()).flatMap(FlockHolder.pid(of:))
        let holder = pid.map { pid in "\(FlockHolder.processName(pid) ?? "nodeguardd") (PID \(pid))" } ?? "nodeguardd"
        return NodeGuardError(.conflict,
            "another \(holder) is running with state directory \(directory); stop it first (systemctl stop nodeguardd), or give this one another --state-dir")
    }
}
