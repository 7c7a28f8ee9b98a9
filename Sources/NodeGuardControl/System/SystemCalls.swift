import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// NodeGuard's system calls, for the daemon and the CLI alike. swift-system serves what it has (FileDescriptor
// with open, read, writeAll, close, stat and pipe2; FilePath; Errno). For the
// few calls it lacks (fsync, fchmod, flock, rename, unlink, mkdir) this is the
// one place where "-1 and errno" becomes a thrown `Errno`, in the manner of
// swift-nio's NIOPosix/System.swift. Errno stays typed (in
// `NodeGuardError.errno`) until it becomes the operator's message.

extension Errno {
    /// This thread's errno after a failed call (swift-system keeps its own
    /// accessor internal).
    package static var current: Errno { Errno(rawValue: Glibc.errno) }
}

/// Runs a system call that returns -1 and sets errno when it fails, again
/// while it is interrupted by a signal (EINTR), and throws the errno.
@inline(__always)
package func systemCall<Result: FixedWidthInteger>(
    retryOnInterrupt: Bool = true, _ call: () -> Result
) throws(Errno) -> Result {
    while true {
        let result = call()
        guard result == -1 else { return result }
        let error = Errno.current
        if retryOnInterrupt && error == .interrupted { continue }
        throw error
    }
}

/// Runs `body`, whose system calls throw `Errno` (swift-system declares most
/// of its calls untyped `throws` but throws nothing else), and turns an errno
/// into an `.ioFailure` saying `action` and why, the errno kept typed.
@discardableResult
package func io<T>(_ action: @autoclosure () -> String, _ body: () throws -> T) throws(NodeGuardError) -> T {
    do {
        return try body()
    } catch let error as Errno {
        throw NodeGuardError(io: action(), error)
    } catch let error as NodeGuardError {
        throw error
    } catch {
        throw NodeGuardError(.ioFailure, "\(action()): \(error)")
    }
}

extension FileDescriptor {
    /// Opens `path` with close-on-exec set at creation, so no child started
    /// meanwhile by another thread inherits it.
    package static func openClosingOnExec(
        _ path: String, _ mode: AccessMode, options: OpenOptions = [], permissions: FilePermissions? = nil
    ) throws(Errno) -> FileDescriptor {
        do {
            return try open(FilePath(path), mode, options: options.union(.closeOnExec), permissions: permissions)
        } catch {
            throw error as? Errno ?? .ioError
        }
    }

    /// A pipe whose ends are both closed on exec from the start (pipe2 with
    /// O_CLOEXEC); a child is given its end with dup2, which clears the flag.
    package static func closeOnExecPipe() throws(Errno) -> (readEnd: FileDescriptor, writeEnd: FileDescriptor) {
        try pipe(options: .closeOnExec)
    }

    /// Closes the descriptor, ignoring an error: for clean-up after another
    /// failure, and for descriptors only read from.
    package func closeQuietly() {
        _ = try? close()
    }

    /// fsync(2): the file's data and metadata are on disk.
    package func sync() throws(Errno) {
        _ = try systemCall { fsync(rawValue) }
    }

    /// fdatasync(2): the file's data are on disk.
    package func syncData() throws(Errno) {
        _ = try systemCall { fdatasync(rawValue) }
    }

    /// fchmod(2): the mode exactly, whatever the umask was at creation.
    package func setPermissions(_ permissions: FilePermissions) throws(Errno) {
        _ = try systemCall { fchmod(rawValue, mode_t(permissions.rawValue)) }
    }

    /// flock(LOCK_EX | LOCK_NB): true when taken, false when another
    /// descriptor holds it.
    package func tryLockExclusively() throws(Errno) -> Bool {
        do {
            _ = try systemCall { flock(rawValue, LOCK_EX | LOCK_NB) }
            return true
        } catch where error == .wouldBlock {
            return false
        }
    }

    /// Reads to the end, or until more than `limit` bytes have come
    /// (then returns what it read, `limit` + 1 bytes or more, for the caller to refuse).
    package func readToEnd(limit: Int) throws(Errno) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count <= limit {
            let count: Int
            do {
                count = try chunk.withUnsafeMutableBytes { try read(into: $0) }
            } catch {
                throw error as? Errno ?? .ioError
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
        }
        return bytes
    }
}

/// rename(2).
package func renameFile(_ source: String, to target: String) throws(Errno) {
    _ = try systemCall { rename(source, target) }
}

/// unlink(2).
package func removeFile(_ path: String) throws(Errno) {
    _ = try systemCall { unlink(path) }
}

/// mkdir(2).
package func createDirectory(_ path: String, permissions: FilePermissions) throws(Errno) {
    _ = try systemCall { mkdir(path, mode_t(permissions.rawValue)) }
}
