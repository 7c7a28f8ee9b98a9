import CNodeGuardLinux
import FoundationEssentials
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Serves the control socket: accepts connections on a thread of its own and
/// serves each on its own thread (blocking reads with timeouts), handing each
/// request to `handler`, which queues it on the reconcile loop.
public final class ControlServer: Service, @unchecked Sendable {
    public typealias Handler = @Sendable (ControlRequest, RequestOrigin) async -> ControlResponse

    /// A connection that sends nothing for this long is closed.
    public static let idleTimeoutSeconds = 10
    /// More simultaneous connections than this are refused at once.
    public static let maximumConnections = 256

    private let listener: Int32
    private let path: String
    /// False when systemd passed the socket: then systemd owns the path.
    private let ownsPath: Bool
    /// Written to on shutdown to wake the accept loop's poll().
    private let wake: (read: Int32, write: Int32)
    private let handler: Handler
    private let logger: Logger
    private let access: ControlAccess
    // Guarded by `lock`.
    private let lock = ConditionLock()
    private var connections = 0

    /// Takes the socket systemd passed (socket activation), or binds `path`
    /// now, so a start-up problem (path in use, no permission) is reported
    /// before the daemon says it is ready.
    public init(path: String, logger: Logger, access: ControlAccess = ControlAccess(),
                handler: @escaping Handler) throws(NodeGuardError) {
        self.path = path
        self.handler = handler
        self.logger = logger
        self.access = access
        if let passed = try SocketActivation.listeningUnixSocket() {
            listener = passed
            ownsPath = false
            logger.info("using the control socket passed by systemd (socket activation)")
        } else {
            listener = try Self.bind(path, group: access.groupID)
            ownsPath = true
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw ioError("cannot create the control server's wake-up pipe") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        wake = (fds[0], fds[1])
        // poll() says when to accept; non-blocking so a client that gave up in
        // between cannot block the loop.
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
    }

    static func bind(_ path: String, group: UInt32?) throws(NodeGuardError) -> Int32 {
        let directory = parentDirectory(of: path)
        if !directory.isEmpty {
            do { try makeDirectories(directory, mode: 0o755) } catch {
                throw NodeGuardError(.ioFailure, "cannot create \(directory) for the control socket: \(error.message)")
            }
        }
        if FileManager.default.fileExists(atPath: path) {
            // A socket someone still answers on belongs to a running daemon; a dead one is stale.
            if let fd = try? UnixSocket.connect(path) {
                close(fd)
                throw NodeGuardError(.conflict, "another nodeguardd is already serving \(path)")
            }
            unlink(path)
        }
        var address = try UnixSocket.address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ioError("cannot create the control socket") }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let error = ioError("cannot bind the control socket \(path)")
            close(fd)
            throw error
        }
        // 0660: root and the control group, if it exists.
        chmod(path, 0o660)
        if let group { chown(path, 0, group) }
        guard listen(fd, 128) == 0 else {
            let error = ioError("cannot listen on \(path)")
            close(fd)
            throw error
        }
        return fd
    }

    public func run() async throws {
        let finished = AsyncStream<Void>.makeStream()
        try startThread(name: "ng-control") { [self] in
            acceptLoop()
            finished.continuation.finish()
        }
        try? await gracefulShutdown()
        // Connections in progress finish on their own. A socket systemd passed
        // must not be shut down: systemd keeps listening on it.
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
        for await _ in finished.stream {}
        close(listener)
        close(wake.read)
        close(wake.write)
        if ownsPath { unlink(path) }
    }

    private func acceptLoop() {
        while true {
            var events = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
                          pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
            if poll(&events, 2, -1) < 0 {
                if errno == EINTR { continue }
                logger.critical("control socket: poll failed: \(String(cString: strerror(errno)))")
                return
            }
            if events[1].revents != 0 { return }   // shutting down
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED || errno == EAGAIN || errno == EWOULDBLOCK { continue }
                if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM {
                    logger.error("control socket: accept failed: \(String(cString: strerror(errno))); pausing")
                    usleep(100_000)
                    continue
                }
                logger.critical("control socket: accept failed: \(String(cString: strerror(errno)))")
                return
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            lock.lock()
            let admitted = connections < Self.maximumConnections
            if admitted { connections += 1 }
            lock.unlock()
            guard admitted else {
                _ = UnixSocket.writeAll(fd, ControlResponse.failure(
                    NodeGuardError(.shuttingDown, "too many control connections; retry")).encoded())
                close(fd)
                continue
            }
            do {
                try startThread(name: "ng-client", stackSize: 512 * 1024) { [self] in
                    serve(fd)
                    close(fd)
                    lock.lock()
                    connections -= 1
                    let idle = connections == 0
                    lock.unlock()
                    // Answers (metrics, list, explain) can be megabytes of text,
                    // freed between live objects: give the pages back once no
                    // client is left.
                    if idle { releaseFreeHeap() }
                }
            } catch {
                // Out of threads: refuse this client, keep serving.
                lock.withLock { connections -= 1 }
                logger.error("control socket: \(error.message)")
                _ = UnixSocket.writeAll(fd, ControlResponse.failure(
                    NodeGuardError(.shuttingDown, "nodeguardd cannot take more connections now; retry")).encoded())
                close(fd)
            }
        }
    }

    private func serve(_ fd: Int32) {
        UnixSocket.setTimeouts(fd, seconds: Self.idleTimeoutSeconds)
        let peer = ControlAccess.peer(of: fd)
        let origin = peer.origin
        var reader = UnixSocket.LineReader(fd: fd, limit: ControlProtocol.maximumMessageBytes)
        while true {
            let response: ControlResponse
            switch reader.next() {
            case .endOfStream, .failed:
                return
            case .tooLong:
                _ = UnixSocket.writeAll(fd, ControlResponse.failure(NodeGuardError(.messageTooLarge,
                    "request longer than \(ControlProtocol.maximumMessageBytes) bytes; closing the connection")).encoded())
                return
            case .line(let line):
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0d }) { continue }
                do {
                    let request = try ControlRequest.decode(line)
                    if let refusal = access.check(request, from: peer) {
                        logger.warning("refused \(request.command) from \(origin)", metadata: [
                            "peer_uid": "\(peer.uid)", "peer_pid": "\(peer.pid)", "action": "refused"])
                        response = .failure(refusal)
                    } else {
                        response = Self.wait(for: request, from: origin, handler: handler)
                    }
                } catch {
                    response = .failure(error)
                }
            }
            guard UnixSocket.writeAll(fd, response.encoded()) else { return }
        }
    }

    /// Bridges this blocking connection thread to the async handler.
    private static func wait(for request: ControlRequest, from origin: RequestOrigin, handler: @escaping Handler) -> ControlResponse {
        // Guarded by `box.lock`.
        final class Box: @unchecked Sendable { let lock = ConditionLock(); var response: ControlResponse? }
        let box = Box()
        Task {
            let response = await handler(request, origin)
            box.lock.withLock {
                box.response = response
                box.lock.signal()
            }
        }
        return box.lock.withLock {
            while box.response == nil { box.lock.wait() }
            return box.response!
        }
    }
}
