import SystemPackage

/// One nodeguardd per state directory: an exclusive `flock` on the state
/// directory itself, taken before anything touches the kernel or the socket
/// and held until the process exits (the kernel drops it then, even after
/// SIGKILL). Locking the directory, not a file in it, needs no write, so a
/// daemon whose state directory went read-only still starts and guards.
/// Whoever holds the lock is named from /proc/locks, the kernel's own record.
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
        let holder = holder(of: fd).map { pid in "\(processName(pid) ?? "nodeguardd") (PID \(pid))" } ?? "nodeguardd"
        return NodeGuardError(.conflict,
            "another \(holder) is running with state directory \(directory); stop it first (systemctl stop nodeguardd), or give this one another --state-dir")
    }

    /// The PID holding a flock on `fd`'s inode, from /proc/locks:
    /// `1: FLOCK  ADVISORY  WRITE 4711 08:01:1835010 0 EOF` (device in hex).
    static func holder(of fd: FileDescriptor) -> Int32? {
        guard let info = try? fd.stat(), let table = try? readFile("/proc/locks") else { return nil }
        // glibc's dev_t encoding (gnu_dev_major, gnu_dev_minor).
        let dev = UInt64(info.deviceID.rawValue)
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)
        let minor = (dev & 0xff) | ((dev >> 12) & ~0xff)
        let file = "\(hex2(major)):\(hex2(minor)):\(info.inode.rawValue)"
        for line in String(decoding: table, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            // Waiters are listed as "N: -> FLOCK ..."; only the holder counts.
            guard fields.count >= 6, fields[1] == "FLOCK", fields[5] == file else { continue }
            return Int32(fields[4]).flatMap { $0 > 0 ? $0 : nil }   // 0 or -1: in a PID namespace this one cannot see
        }
        return nil
    }

    private static func hex2(_ value: UInt64) -> String {
        let text = String(value, radix: 16)
        return text.count < 2 ? "0" + text : text
    }

    /// What the process calls itself (/proc/PID/comm), if it can be read.
    private static func processName(_ pid: Int32) -> String? {
        guard let bytes = try? readFile("/proc/\(pid)/comm") else { return nil }
        let name = String(decoding: bytes, as: UTF8.self).trimmingWhitespace
        return name.isEmpty ? nil : name
    }
}
