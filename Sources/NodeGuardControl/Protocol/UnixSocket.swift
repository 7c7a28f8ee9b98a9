#if canImport(Glibc)
import Glibc
#endif

/// Blocking Unix stream socket helpers shared by the control server and client.
package enum UnixSocket {
    package static func address(_ path: String) throws(NodeGuardError) -> sockaddr_un {
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

    package static func connect(_ path: String) throws(NodeGuardError) -> Int32 {
        var address = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ioError("cannot create a socket") }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            let error = ioError("cannot connect to \(path)")
            close(fd)
            errno = code   // callers tell "nothing there" from "not allowed" by it
            throw error
        }
        return fd
    }

    package static func setTimeouts(_ fd: Int32, seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends `text` and a newline. With a deadline, gives up (false) when the
    /// peer has not taken it all by then, however slowly it reads.
    package static func writeAll(_ fd: Int32, _ text: String, until deadline: ContinuousClock.Instant? = nil) -> Bool {
        var bytes = Array(text.utf8)
        bytes.append(UInt8(ascii: "\n"))
        var sent = 0
        while sent < bytes.count {
            if let deadline {
                guard let wait = millisecondsLeft(until: deadline) else { return false }
                var ready = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let polled = poll(&ready, 1, wait)
                if polled < 0 && errno != EINTR { return false }
                if polled <= 0 { continue }
            }
            let flags = Int32(MSG_NOSIGNAL) | (deadline == nil ? 0 : Int32(MSG_DONTWAIT))
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, flags) }
            if n < 0 {
                if errno == EINTR || (deadline != nil && (errno == EAGAIN || errno == EWOULDBLOCK)) { continue }
                return false
            }
            sent += n
        }
        return true
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

    package enum ReadResult {
        case line([UInt8])
        case endOfStream
        case tooLong
        /// The deadline passed before a whole line arrived.
        case timedOut
        case failed(Int32)
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
                if let deadline {
                    guard let wait = millisecondsLeft(until: deadline) else { return .timedOut }
                    var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    let polled = poll(&ready, 1, wait)
                    if polled < 0 && errno != EINTR { return .failed(errno) }
                    if polled <= 0 { continue }
                }
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 {
                    if errno == EINTR { continue }
                    return .failed(errno)
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
