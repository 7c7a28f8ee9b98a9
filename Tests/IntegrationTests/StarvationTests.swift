import Foundation
import NodeGuardCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A hostile node: 20,000 foreign mangle rules, kube-proxy's nat table for
/// 5,000 services, and 50 clients polling `status` back to back. A flush of
/// NodeGuard's chain is still repaired at once and the watchdog still pinged:
/// repairs and the verify schedule come before reads.
final class StarvationTests: NodeTestCase {
    final class Pollers: @unchecked Sendable {
        private let lock = NSLock()
        private var stopped = false
        private(set) var answered = 0
        var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }
        func stop() { lock.lock(); stopped = true; lock.unlock() }
        func count() { lock.lock(); answered += 1; lock.unlock() }
        var answers: Int { lock.lock(); defer { lock.unlock() }; return answered }
    }

    func testRepairsAndTheWatchdogComeBeforeAFloodOfStatusCalls() throws {
        try setUpNode()
        let generated = try runCommand(["python3", TestPaths.fixtures.appendingPathComponent("make-kube-proxy-nat.py").path,
                                        "--services", "5000"])
        XCTAssertEqual(generated.status, 0, generated.stderr)
        XCTAssertEqual(try runCommand(["ip", "netns", "exec", node.node, "iptables-legacy-restore"], input: generated.stdout).status, 0)
        try node.loadForeignMangleRules()

        let lockPath = node.directory.appendingPathComponent("xtables.lock").path
        let listener = try NotifyListener(path: node.directory.appendingPathComponent("notify.sock").path)
        defer { listener.close() }
        try node.startDaemon(extraArguments: ["--verify-interval", "1s"],
                             environment: ["XTABLES_LOCKFILE": lockPath, "NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "2000000"])
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)

        let pollers = Pollers()
        let client = ControlClient(socketPath: node.socketPath)
        var threads: [Thread] = []
        for _ in 0..<50 {
            let thread = Thread {
                while !pollers.isStopped {
                    if case .success? = try? client.send(.status) { pollers.count() }
                }
            }
            thread.start()
            threads.append(thread)
        }
        defer { pollers.stop() }
        Thread.sleep(forTimeInterval: 1)

        let pings = listener.count { $0.contains("WATCHDOG=1") }
        let flushed = Date()
        XCTAssertEqual(try node.inNode("XTABLES_LOCKFILE=\(lockPath) iptables-legacy -w -t mangle -F NODEGUARD-TCP").status, 0)
        XCTAssertTrue(try node.eventually(15) {
            try node.mangleRules().contains { $0.hasPrefix("-A NODEGUARD-TCP ") && $0.hasSuffix("-j DROP") }
        }, "never repaired:\n\(node.daemonLog.suffix(3000))")
        // Generous for a busy machine (and the 20,000-rule reads above); it took 7-10 s before.
        XCTAssertLessThan(Date().timeIntervalSince(flushed), 3, "the repair waited behind the status calls")
        Thread.sleep(forTimeInterval: max(0, 3 - Date().timeIntervalSince(flushed)))
        // WATCHDOG_USEC=2s: a ping at least every second.
        XCTAssertGreaterThanOrEqual(listener.count { $0.contains("WATCHDOG=1") } - pings, 2, "the watchdog went unpinged")
        pollers.stop()
        XCTAssertGreaterThan(pollers.answers, 50, "the status calls were answered too")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
    }
}
