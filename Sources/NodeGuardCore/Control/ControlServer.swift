import CNodeGuardLinux
import Logging
import ServiceLifecycle
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Serves the control socket: accepts connections on a thread of its own and
/// serves each on its own thread (blocking reads with deadlines), calling
/// `handler` on that thread for each request; the daemon's handler hands the
/// request to the reconcile loop and waits for its answer.
///
/// Nobody who may connect can take the socket away from root: a peer that is
/// neither root nor in the control group is answered and closed at accept and
/// never takes a slot; a request line must arrive whole within a deadline that
/// trickling bytes do not extend; and the last slots are kept for root.
public final class ControlServer: Service, @unchecked Sendable {
    /// Called on the connection's thread; may block until the answer is ready.
    public typealias Handler = @Sendable (ControlRequest, RequestOrigin) -> ControlResponse

    /// The server's limits: the defaults in production, smaller in tests.
    public struct Limits: Sendable {
        /// A request line must arrive whole within this long of the connection
        /// opening (or of the previous answer), and each answer be taken by the
        /// client within this long; bytes that trickle in do not extend it.
        public var timeout: Duration
        /// Connections served at once.
        public var maximumConnections: Int
        /// Of those, the last ones are for root only, so root's `block` and
        /// `status` work while the group's members hold every other slot.
        public var rootReserve: Int
        /// A longer answer is replaced by a `message_too_large` error.
        public var maximumResponseBytes: Int

        public init(timeout: Duration = .seconds(10), maximumConnections: Int = 256, rootReserve: Int = 16,
                    maximumResponseBytes: Int = ControlProtocol.maximumResponseBytes) {
            self.timeout = timeout
            self.maximumConnections = maximumConnections
            self.rootReserve = rootReserve
            self.maximumResponseBytes = maximumResponseBytes
        }
    }

    private let listener: Int32
    private let path: String
    /// False when systemd passed the socket: then systemd owns the path.
    private let ownsPath: Bool
    /// Written to on shutdown to wake the accept loop's poll().
    private let wake: (readEnd: FileDescriptor, writeEnd: FileDescriptor)
    private let handler: Handler
    private let logger: Logger
    private let access: ControlAccess
    public let limits: Limits
    // Guarded by `lock`.
    private let lock = ConditionLock()
    private var connections = 0
    // Used by the accept loop's thread only.
    private var refusals = RefusalLog()

    /// Takes the socket systemd passed (socket activation), or binds `path`
    /// now, so a start-up problem (path in use, no permission) is reported
    /// before the daemon says it is ready.
    public init(path: String, logger: Logger, access: ControlAccess = ControlAccess(), limits: Limits = Limits(),
                handler: @escaping Handler) throws(NodeGuardError) {
        self.path = path
        self.handler = handler
        self.logger = logger
        self.access = access
        self.limits = limits
        if let passed = try SocketActivation.listeningUnixSocket() {
            // Made non-blocking here, as `bind` makes its own at creation (see there).
            _ = fcntl(passed, F_SETFL, fcntl(passed, F_GETFL) | O_NONBLOCK)
            listener = passed
            ownsPath = false
            logger.info("using the control socket passed by systemd (socket activation)")
        } else {
            listener = try Self.bind(path, group: access.groupID)
            ownsPath = true
        }
        do {
            wake = try FileDescriptor.closeOnExecPipe()
        } catch {
            throw NodeGuardError(io: "cannot create the control server's wake-up pipe", error)
        }
    }

    /// For a handler that must await (tests that stand in for the loop):
    /// each request is bridged from its connection's thread to a task.
    public convenience init(path: String, logger: Logger, access: ControlAccess = ControlAccess(), limits: Limits = Limits(),
                            handler: @escaping @Sendable (ControlRequest, RequestOrigin) async -> ControlResponse) throws(NodeGuardError) {
        try self.init(path: path, logger: logger, access: access, limits: limits) { request, origin in
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

    static func bind(_ path: String, group: UInt32?) throws(NodeGuardError) -> Int32 {
        let directory = parentDirectory(of: path)
        if !directory.isEmpty {
            do { try makeDirectories(directory, mode: 0o755) } catch {
                throw NodeGuardError(.ioFailure, "cannot create \(directory) for the control socket: \(error.message)")
            }
        }
        // A socket someone still answers on belongs to a running daemon; one
        // nobody answers on is stale; ENOENT: nothing is there.
        do throws(NodeGuardError) {
            let fd = try UnixSocket.connect(path)
            close(fd)
            throw NodeGuardError(.conflict, "another nodeguardd is already serving \(path)")
        } catch where error.errno == .noSuchFileOrDirectory {
        } catch where error.errno != nil {
            // If it cannot be removed, bind says why.
            try? removeFile(path)
        }
        // Non-blocking: poll() says when to accept, and a client that gave up
        // in between must not block the loop in accept().
        let fd = try UnixSocket.socket(path, flags: Int32(SOCK_NONBLOCK.rawValue), creating: "cannot create the control socket",
                                       calling: "cannot bind the control socket \(path)") { Glibc.bind($0, $1, $2) }
        // 0660: root and the control group, if it exists.
        chmod(path, 0o660)
        if let group { chown(path, 0, group) }
        do {
            _ = try systemCall { listen(fd, 128) }
        } catch {
            close(fd)
            throw NodeGuardError(io: "cannot listen on \(path)", error)
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
        _ = try? wake.writeEnd.writeAll([1])
        for await _ in finished.stream {}
        close(listener)
        wake.readEnd.closeQuietly()
        wake.writeEnd.closeQuietly()
        if ownsPath { unlink(path) }
    }

    private func acceptLoop() {
        while true {
            var events = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
                          pollfd(fd: wake.readEnd.rawValue, events: Int16(POLLIN), revents: 0)]
            do {
                _ = try systemCall { poll(&events, 2, -1) }
            } catch {
                logger.critical("control socket: poll failed: \(error)")
                return
            }
            if events[1].revents != 0 { return }   // shutting down
            let fd: Int32
            do {
                // Closed on exec from the start: a child started meanwhile
                // (iptables-legacy-save, ...) must not hold a client's connection.
                fd = try systemCall { nglinux_accept_closing_on_exec(listener) }
            } catch {
                switch error {
                case .connectionAbort, .resourceTemporarilyUnavailable:   // the client gave up first (EWOULDBLOCK is EAGAIN)
                    continue
                case .tooManyOpenFiles, .tooManyOpenFilesInSystem, .noBufferSpace, .noMemory:
                    logger.error("control socket: accept failed: \(error); pausing")
                    usleep(100_000)
                    continue
                default:
                    logger.critical("control socket: accept failed: \(error)")
                    return
                }
            }
            let peer = ControlAccess.peer(of: fd)
            if let refusal = access.check(peer) {
                UnixSocket.sendNow(fd, ControlResponse.failure(refusal).encoded())
                close(fd)
                if let line = refusals.note(peer) {
                    logger.warning("\(line)", metadata: ["peer_uid": "\(peer.uid)", "peer_pid": "\(peer.pid)", "action": "refused"])
                }
                continue
            }
            lock.lock()
            let slots = peer.uid == 0 ? limits.maximumConnections : limits.maximumConnections - limits.rootReserve
            let admitted = connections < slots
            if admitted { connections += 1 }
            lock.unlock()
            guard admitted else {
                let whose = peer.uid == 0 ? "all \(slots) connections it serves"
                    : "all \(slots) connections it serves to users other than root (the other \(limits.rootReserve) are kept for root)"
                UnixSocket.sendNow(fd, ControlResponse.failure(NodeGuardError(.busy,
                    "nodeguardd is busy: \(whose) are in use; retry in a moment")).encoded())
                close(fd)
                continue
            }
            do {
                try startThread(name: "ng-client", stackSize: 512 * 1024) { [self] in
                    lowerCurrentThreadPriority()
                    serve(fd, peer: peer)
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
                UnixSocket.sendNow(fd, ControlResponse.failure(
                    NodeGuardError(.busy, "nodeguardd cannot take more connections now; retry in a moment")).encoded())
                close(fd)
            }
        }
    }

    private func serve(_ fd: Int32, peer: ControlAccess.Peer) {
        let origin = peer.origin
        var reader = UnixSocket.LineReader(fd: fd, limit: ControlProtocol.maximumMessageBytes)
        var deadline = ContinuousClock.now + limits.timeout
        while true {
            let response: ControlResponse
            var command = "the request"
            switch reader.next(until: deadline) {
            case .endOfStream, .failed:
                return
            case .timedOut:
                UnixSocket.sendNow(fd, ControlResponse.failure(NodeGuardError(.invalidRequest,
                    "no complete request line within \(limits.timeout) of connecting or of the last answer; closing the connection")).encoded())
                return
            case .tooLong:
                UnixSocket.sendNow(fd, ControlResponse.failure(NodeGuardError(.messageTooLarge,
                    "request longer than \(ControlProtocol.maximumMessageBytes) bytes; closing the connection")).encoded())
                return
            case .line(let line):
                // A blank line is no request, and does not extend the deadline.
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0d }) { continue }
                do {
                    let request = try ControlRequest.decode(line)
                    command = request.command
                    response = handler(request, origin)
                } catch {
                    response = .failure(error)
                }
            }
            var text = response.encoded()
            if text.utf8.count > limits.maximumResponseBytes {
                logger.error("control socket: the answer to \(command) is \(text.utf8.count) bytes, over the \(limits.maximumResponseBytes) a client reads; sent an error instead")
                text = ControlResponse.failure(NodeGuardError(.messageTooLarge,
                    "the answer to \(command) is \(text.utf8.count) bytes, more than the \(limits.maximumResponseBytes) bytes a client reads; ask for less (`nodeguardctl explain PORT` for one port), or read the metrics from `nodeguardd --metrics-textfile`")).encoded()
            }
            do { try UnixSocket.writeAll(fd, text, until: .now + limits.timeout) } catch { return }
            deadline = .now + limits.timeout
        }
    }
}

/// Refused connections are logged at most once a second, with how many were
/// refused in between, so a flood of them cannot flood the log.
struct RefusalLog {
    private var last: ContinuousClock.Instant?
    private var unlogged = 0

    /// The line to log for this refusal, or nil to count it silently.
    mutating func note(_ peer: ControlAccess.Peer, at now: ContinuousClock.Instant = .now) -> String? {
        if let last, now - last < .seconds(1) {
            unlogged += 1
            return nil
        }
        defer { last = now; unlogged = 0 }
        let more = unlogged > 0 ? " (and \(unlogged) more since the last such line)" : ""
        return "refused control connection from uid \(peer.uid) gid \(peer.gid) pid \(peer.pid): not root nor in the control group\(more)"
    }
}
