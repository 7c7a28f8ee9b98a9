#if canImport(Glibc)
import Glibc
#endif

/// Sends one request to nodeguardd and returns its response.
public struct ControlClient: Sendable {
    public var socketPath: String
    /// A block can wait for the xtables lock; allow for it.
    public var timeoutSeconds = 60

    public init(socketPath: String) { self.socketPath = socketPath }

    public func send(_ request: ControlRequest) throws(NodeGuardError) -> ControlResponse {
        let fd: Int32
        do {
            fd = try UnixSocket.connect(socketPath)
        } catch {
            throw NodeGuardError(.daemonUnreachable,
                "cannot reach nodeguardd at \(socketPath) (\(error.message)); start it with `systemctl start nodeguardd` or `nodeguardd --socket \(socketPath)`")
        }
        defer { close(fd) }
        UnixSocket.setTimeouts(fd, seconds: timeoutSeconds)
        guard UnixSocket.writeAll(fd, request.encoded()) else {
            throw NodeGuardError(.daemonUnreachable, "nodeguardd at \(socketPath) closed the connection: \(String(cString: strerror(errno)))")
        }
        var reader = UnixSocket.LineReader(fd: fd, limit: 16 << 20)
        switch reader.next() {
        case .line(let line): return try ControlResponse.decode(line)
        case .failed(let code) where code == EAGAIN || code == EWOULDBLOCK:
            throw NodeGuardError(.daemonUnreachable, "nodeguardd at \(socketPath) did not answer within \(timeoutSeconds) s")
        case .failed, .endOfStream, .tooLong:
            throw NodeGuardError(.daemonUnreachable, "nodeguardd at \(socketPath) closed the connection without an answer")
        }
    }
}
