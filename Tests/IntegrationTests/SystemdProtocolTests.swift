import Foundation
import NodeGuardCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// nodeguardd's side of the systemd protocols, checked without systemd: a
/// test socket stands in for NOTIFY_SOCKET, and systemd-socket-activate
/// passes the control socket as systemd would. (The booted-systemd proof is
/// in SystemdServiceTests.)
final class SystemdProtocolTests: NodeTestCase {
    func testNotifiesReadyStatusWatchdogReloadingAndStopping() throws {
        try setUpNode()
        let listener = try NotifyListener(path: node.directory.appendingPathComponent("notify.sock").path)
        defer { listener.close() }
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31002}]}"#)
        // WATCHDOG_USEC=600ms: the loop must come round (and ping) at least every 300 ms.
        try node.startDaemon(extraArguments: ["--verify-interval", "5s"],
                             environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "600000"])

        let ready = try XCTUnwrap(listener.waitFor { $0.contains("READY=1") }, "no READY=1")
        XCTAssertTrue(ready.contains("STATUS=Guarding 1 port (0 runtime)"), ready)
        XCTAssertFalse(try node.mangleRules().isEmpty, "READY=1 comes after the first apply")

        let before = listener.count { $0.contains("WATCHDOG=1") }
        Thread.sleep(forTimeInterval: 1.5)
        let pings = listener.count { $0.contains("WATCHDOG=1") } - before
        XCTAssertGreaterThanOrEqual(pings, 3, "the loop pings at least every half watchdog period, even with a 5 s verify interval")

        // A stalled loop stops pinging.
        node.signalDaemon(SIGSTOP)
        Thread.sleep(forTimeInterval: 0.2)
        let stalled = listener.count { $0.contains("WATCHDOG=1") }
        Thread.sleep(forTimeInterval: 1.0)
        XCTAssertEqual(listener.count { $0.contains("WATCHDOG=1") }, stalled, "no pings while the daemon is stopped")
        node.signalDaemon(SIGCONT)
        XCTAssertNotNil(listener.waitFor(after: stalled) { $0.contains("WATCHDOG=1") }, "pings resume")

        // Reload: RELOADING=1, then READY=1 again.
        let mark = listener.messages.count
        node.signalDaemon(SIGHUP)
        XCTAssertNotNil(listener.waitFor(after: mark) { $0.contains("RELOADING=1") && $0.contains("MONOTONIC_USEC=") })
        XCTAssertNotNil(listener.waitFor(after: mark) { $0.contains("READY=1") })

        // Status follows runtime blocks.
        XCTAssertEqual(try node.ctl("block", "31003").status, 0)
        XCTAssertNotNil(listener.waitFor { $0.contains("STATUS=Guarding 2 ports (1 runtime)") })

        node.stopDaemon(SIGTERM)
        XCTAssertNotNil(listener.waitFor { $0.contains("STOPPING=1") })
    }

    func testWithoutANotifySocketNothingIsSentAndEverythingWorks() throws {
        try setUpNode()
        try node.startDaemon(environment: ["NOTIFY_SOCKET": "", "WATCHDOG_USEC": ""])
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
    }

    /// The control socket passed by socket activation (LISTEN_FDS) is used as
    /// is, and the first connection starts the daemon.
    func testSocketActivation() throws {
        try setUpNode()
        let activated = node.directory.appendingPathComponent("activated.sock").path
        try node.writeDenyList(#"{"version": 1, "blocked": []}"#)
        let log = node.directory.appendingPathComponent("activate.log").path
        let logFD = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        let activator = try ChildProcess(["ip", "netns", "exec", node.node, "systemd-socket-activate", "-l", activated,
                                          TestPaths.nodeguardd, "--config", node.configPath, "--state-dir", node.stateDirectory,
                                          "--socket", node.socketPath], stderr: logFD)
        close(logFD)
        defer {
            activator.signal(SIGKILL)
            activator.wait()
        }
        XCTAssertTrue(node.eventually { FileManager.default.fileExists(atPath: activated) })

        // The first request starts nodeguardd, which answers on the passed socket.
        let block = try runCommand([TestPaths.nodeguardctl, "block", "31002", "--socket", activated])
        XCTAssertEqual(block.status, 0, block.stderr)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertFalse(FileManager.default.fileExists(atPath: node.socketPath), "no socket of its own when one is passed")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertTrue(text.contains("socket activation"), text)
    }
}

/// A Unix datagram socket that records what nodeguardd sends to NOTIFY_SOCKET.
final class NotifyListener: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var thread: Thread?

    init(path: String) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw TestNodeError("cannot bind \(path)") }
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = recv(fd, &buffer, buffer.count, 0)
                if n <= 0 { return }
                let message = String(decoding: buffer[0..<n], as: UTF8.self)
                lock.lock(); received.append(message); lock.unlock()
            }
        }
        thread.start()
        self.thread = thread
    }

    var messages: [String] { lock.lock(); defer { lock.unlock() }; return received }

    func count(where predicate: (String) -> Bool) -> Int { messages.filter(predicate).count }

    /// The first message from index `after` on that matches, waiting up to 5 s.
    func waitFor(after: Int = 0, _ predicate: (String) -> Bool) -> String? {
        let deadline = Date().addingTimeInterval(5)
        repeat {
            if let match = messages.dropFirst(after).first(where: predicate) { return match }
            usleep(20_000)
        } while Date() < deadline
        return nil
    }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
        unlink(path)
    }
}
