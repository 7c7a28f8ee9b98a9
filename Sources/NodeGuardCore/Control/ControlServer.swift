import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Serves the control socket: accepts connections on a thread of its own and
/// serves each on its own thread (blocking reads with timeouts), handing each
/// request to `handler`, which queues it on the reconcile loop.
public final class ControlServer: Service, @unchecked Sendable {
    public typealias Handler = @Sendable (ControlRequest) async -> ControlResponse

    /// A connection that sends nothing for this long is closed.
    public static let idleTimeoutSeconds = 10
    /// More simultaneous connections than this are refused at once.
    public static let maximumConnections = 256

    private let listener: Int32
    private let path: String
    private let handler: Handler
    private let logger: Logger
    // Guarded by `lock`.
    private let lock = NSLock()
    private var connections = 0

    /// Binds the socket now, so a start-up problem (path in use, no
    /// permission) is reported before the daemon says it is ready.
    public init(path: String, logger: Logger, handler: @escaping Handler) throws(NodeGuardError) {
        self.path = path
        self.handler = handler
        self.logger = logger
        self.listener = try Self.bind(path)
    }

    static func bind(_ path: String) throws(NodeGuardError) -> Int32 {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty && !FileManager.default.fileExists(atPath: directory) {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o755])
            } catch {
                throw NodeGuardError(.ioFailure, "cannot create \(directory) for the control socket: \(error.localizedDescription)")
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
        // 0660: root and the `nodeguard` group, if the group exists.
        chmod(path, 0o660)
        if let group = getgrnam("nodeguard") { chown(path, 0, group.pointee.gr_gid) }
        guard listen(fd, 128) == 0 else {
            let error = ioError("cannot listen on \(path)")
            close(fd)
            throw error
        }
        return fd
    }

    public func run() async throws {
        let finished = AsyncStream<Void>.makeStream()
        let thread = Thread { [self] in
            acceptLoop()
            finished.continuation.finish()
        }
        thread.name = "nodeguard-control"
        thread.start()
        try? await gracefulShutdown()
        // Wakes accept() with EINVAL; connections in progress finish on their own.
        shutdown(listener, Int32(SHUT_RDWR))
        for await _ in finished.stream {}
        close(listener)
        unlink(path)
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM {
                    logger.error("control socket: accept failed: \(String(cString: strerror(errno))); pausing")
                    usleep(100_000)
                    continue
                }
                return   // the listener was shut down
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
            let connection = Thread { [self] in
                serve(fd)
                close(fd)
                lock.lock()
                connections -= 1
                lock.unlock()
            }
            connection.stackSize = 512 * 1024
            connection.start()
        }
    }

    private func serve(_ fd: Int32) {
        UnixSocket.setTimeouts(fd, seconds: Self.idleTimeoutSeconds)
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
                    response = Self.wait(for: request, handler: handler)
                } catch {
                    response = .failure(error)
                }
            }
            guard UnixSocket.writeAll(fd, response.encoded()) else { return }
        }
    }

    /// Bridges this blocking connection thread to the async handler.
    private static func wait(for request: ControlRequest, handler: @escaping Handler) -> ControlResponse {
        final class Box: @unchecked Sendable { var response: ControlResponse? }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        Task {
            box.response = await handler(request)
            done.signal()   // the semaphore orders the write before the read below
        }
        done.wait()
        return box.response!
    }
}
