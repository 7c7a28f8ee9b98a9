import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Sends one request to nodeguardd and returns its response.
public struct ControlClient: Sendable {
    public var socketPath: String
    /// A block can wait for the xtables lock; allow for it.
    public var timeoutSeconds = 60

    public init(socketPath: String) { self.socketPath = socketPath }

    /// Throws `daemon_unreachable` only when nothing could be connected to;
    /// a daemon that took the connection but did not serve it is `busy` (its
    /// own answer) or `no_answer`.
    public func send(_ request: ControlRequest) throws(NodeGuardError) -> ControlResponse {
        let fd: Int32
        do {
            fd = try UnixSocket.connect(socketPath)
        } catch {
            if error.errno == .permissionDenied || error.errno == .notPermitted {
                throw NodeGuardError(.permissionDenied,
                    "may not connect to nodeguardd at \(socketPath) (\(error.message)); it serves root and members of its group (nodeguard by default): ask an administrator to add you to it, or use sudo")
            }
            throw NodeGuardError(.daemonUnreachable,
                "cannot reach nodeguardd at \(socketPath) (\(error.message)); start it with `systemctl start nodeguardd` or `nodeguardd --socket \(socketPath)`")
        }
        defer { close(fd) }
        UnixSocket.setTimeouts(fd, seconds: timeoutSeconds)
        // A daemon that refuses the connection (busy, not allowed) answers and
        // closes before reading the request, so the write may fail: read its answer anyway.
        var sendError: Errno?
        do { try UnixSocket.writeAll(fd, request.encoded()) } catch { sendError = error }
        var reader = UnixSocket.LineReader(fd: fd, limit: ControlProtocol.maximumResponseBytes)
        switch reader.next() {
        case .line(let line): return try ControlResponse.decode(line)
        case .tooLong:
            throw NodeGuardError(.messageTooLarge,
                "nodeguardd's answer is longer than the \(ControlProtocol.maximumResponseBytes) bytes a client reads; is the daemon newer than this nodeguardctl?")
        case .failed(.resourceTemporarilyUnavailable) where sendError == nil:   // SO_RCVTIMEO passed
            throw NodeGuardError(.noAnswer,
                "nodeguardd at \(socketPath) took the request but did not answer within \(timeoutSeconds) s; it may be overloaded or stuck: see `journalctl -u nodeguardd`")
        case .failed, .endOfStream, .timedOut:
            let why = sendError.map { " (sending the request: \($0))" } ?? ""
            throw NodeGuardError(.noAnswer,
                "nodeguardd at \(socketPath) closed the connection without an answer\(why); retry, and see `journalctl -u nodeguardd` if it goes on")
        }
    }
}
