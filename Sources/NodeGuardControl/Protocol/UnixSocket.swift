import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Blocking Unix stream socket helpers shared by the control server and client.
package enum UnixSocket {
    private static func address(_ path: String) throws(NodeGuardError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw NodeGuardError(.ioFailure, "socket path \(path) is empty or longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    /// A connected socket, closed on exec from its creation. The error keeps
    /// connect's errno: callers tell "nothing there" (ENOENT, ECONNREFUSED)
    /// from "not allowed" (EACCES) by it.
    package static func connect(_ path: String) throws(NodeGuardError) -> Int32 {
        try socket(path, creating: "cannot create a socket", calling: "cannot connect to \(path)") { Glibc.connect($0, $1, $2) }
    }

    /// A stream socket, closed on exec from its creation (and `flags`, such
    /// as SOCK_NONBLOCK), on which `call` (connect or bind) has succeeded
    /// with `path`'s address. The errors say `creating` or `calling` and keep
    /// the errno; the socket is closed if `call` fails.
    package static func socket(
        _ path: String, flags: Int32 = 0, creating: String, calling: String,
        _ call: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32
    ) throws(NodeGuardError) -> Int32 {
        var address = try address(path)
        let fd: Int32
        do {
            fd = try systemCall { Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | flags, 0) }
        } catch {
            throw NodeGuardError(io: creating, error)
        }
        do {
            _ = try systemCall {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
            }
        } catch {
            close(fd)
            throw NodeGuardError(io: calling, error)
        }
        return fd
    }

    package static func setTimeouts(_ fd: Int32, seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends `text` and a newline. With a deadline, gives up (`.timedOut`)
    /// when the peer has not taken it all by then, however slowly it reads.
    package static func writeAll(_ fd: Int32, _ text: String, until deadline: ContinuousClock.Instant? = nil) throws(Errno) {
        var bytes = Array(text.utf8)
        bytes.append(UInt8(ascii: "\n"))
        // MSG_NOSIGNAL: a peer that went away is EPIPE here, not SIGPIPE for the process.
        let flags = Int32(MSG_NOSIGNAL) | (deadline == nil ? 0 : Int32(MSG_DONTWAIT))
        var sent = 0
        while sent < bytes.count {
            if let deadline {
                guard try wait(fd, for: POLLOUT, until: deadline) else { throw .timedOut }
            }
            do {
                let n = try systemCall { bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, flags) } }
                sent += n
            } catch where deadline != nil && error == .resourceTemporarilyUnavailable {
                // Ready, then full again: wait once more.
            }
        }
    }

    /// One line for a peer about to be closed: sent only if the socket takes
    /// it at once (a fresh connection always does), never waited for.
    package static func sendNow(_ fd: Int32, _ text: String) {
        let bytes = Array((text + "\n").utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
    }

    /// Milliseconds to `deadline` for poll(), at least 1; nil once it has passed.
    package static func millisecondsLeft(until deadline: ContinuousClock.Instant) -> Int32? {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { return nil }
        let ms = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
        return Int32(clamping: max(1, ms))
    }

    /// Waits until `fd` is ready for `events` (true) or `deadline` passes
    /// (false); a signal does not end the wait, nor extend it.
    package static func wait(_ fd: Int32, for events: Int32, until deadline: ContinuousClock.Instant) throws(Errno) -> Bool {
        while let milliseconds = millisecondsLeft(until: deadline) {
            var ready = pollfd(fd: fd, events: Int16(events), revents: 0)
            do {
                if try systemCall(retryOnInterrupt: false, { poll(&ready, 1, milliseconds) }) > 0 { return true }
            } catch where error == .interrupted {}
        }
        return false
    }

    package enum ReadResult {
        case line([UInt8])
        case endOfStream
        case tooLong
        /// The deadline passed before a whole line arrived.
        case timedOut
        case failed(Errno)
    }

    /// Reads lines from a socket, at most `limit` bytes each.
    package struct LineReader {
        let fd: Int32
        let limit: Int
        private var buffer: [UInt8] = []
        /// `buffer[..<scanned]` holds no newline: each byte is looked at once,
        /// however many reads a long line (a 20 MB answer) takes.
        private var scanned = 0
        private var chunk = [UInt8](repeating: 0, count: 65536)

        package init(fd: Int32, limit: Int) {
            self.fd = fd
            self.limit = limit
        }

        /// The next line. With a deadline, the whole line must arrive by then:
        /// bytes that trickle in do not extend it.
        package mutating func next(until deadline: ContinuousClock.Instant? = nil) -> ReadResult {
            while true {
                if let newline = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Array(buffer[..<newline])
                    buffer.removeSubrange(...newline)
                    scanned = 0
                    if line.count > limit { return .tooLong }
                    return .line(line)
                }
                scanned = buffer.count
                if buffer.count > limit { return .tooLong }
                let n: Int
                do {
                    if let deadline, try !UnixSocket.wait(fd, for: POLLIN, until: deadline) { return .timedOut }
                    n = try systemCall { chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }
                } catch {
                    return .failed(error)
                }
                if n == 0 {
                    // A last line without its newline still counts (the peer half-closed).
                    if buffer.isEmpty { return .endOfStream }
                    defer { buffer.removeAll(); scanned = 0 }
                    return .line(buffer)
                }
                buffer += chunk[0..<n]
            }
        }
    }
}
