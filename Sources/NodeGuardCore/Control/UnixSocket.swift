#if canImport(Glibc)
import Glibc
#endif

/// Blocking Unix stream socket helpers shared by the control server and client.
enum UnixSocket {
    static func address(_ path: String) throws(NodeGuardError) -> sockaddr_un {
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

    static func connect(_ path: String) throws(NodeGuardError) -> Int32 {
        var address = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ioError("cannot create a socket") }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let error = ioError("cannot connect to \(path)")
            close(fd)
            throw error
        }
        return fd
    }

    static func setTimeouts(_ fd: Int32, seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    static func writeAll(_ fd: Int32, _ text: String) -> Bool {
        var bytes = Array(text.utf8)
        bytes.append(UInt8(ascii: "\n"))
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            sent += n
        }
        return true
    }

    enum ReadResult {
        case line([UInt8])
        case endOfStream
        case tooLong
        case failed(Int32)
    }

    /// Reads lines from a socket, at most `limit` bytes each.
    struct LineReader {
        let fd: Int32
        let limit: Int
        private var buffer: [UInt8] = []

        init(fd: Int32, limit: Int) {
            self.fd = fd
            self.limit = limit
        }

        mutating func next() -> ReadResult {
            var chunk = [UInt8](repeating: 0, count: 16384)
            while true {
                if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Array(buffer[..<newline])
                    buffer.removeSubrange(...newline)
                    if line.count > limit { return .tooLong }
                    return .line(line)
                }
                if buffer.count > limit { return .tooLong }
                let n = recv(fd, &chunk, chunk.count, 0)
                if n < 0 {
                    if errno == EINTR { continue }
                    return .failed(errno)
                }
                if n == 0 {
                    // A last line without its newline still counts (the peer half-closed).
                    if buffer.isEmpty { return .endOfStream }
                    defer { buffer.removeAll() }
                    return .line(buffer)
                }
                buffer += chunk[0..<n]
            }
        }
    }
}
