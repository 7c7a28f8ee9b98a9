import Foundation
import NodeGuardCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Another program holding the xtables lock (`flock /run/xtables.lock sleep
/// 25`) must not stop the daemon: requests that change the tables wait for it
/// in order while status answers, says who holds the lock, and the watchdog
/// is pinged as usual; a start-up under a held lock keeps the kernel's rules
/// and says why it waits. Each test uses a lock file of its own.
final class LockHolderTests: NodeTestCase {
    var lockPath: String { node.directory.appendingPathComponent("xtables.lock").path }

    /// flock(1) holds the lock for `seconds`; returns once it does.
    func holdLock(for seconds: Int) throws -> ChildProcess {
        let holder = try ChildProcess(["flock", lockPath, "sleep", String(seconds)])
        XCTAssertTrue(eventually(5, every: 0.01) { XtablesLock.holder(of: lockPath) != nil }, "flock never took the lock")
        return holder
    }

    /// Runs a daemon once with `denyList` and stops it: its rules stay in
    /// the kernel. Returns them.
    func rulesLeftBy(_ denyList: String) throws -> [String] {
        try node.writeDenyList(denyList)
        try node.startDaemon(environment: ["XTABLES_LOCKFILE": lockPath])
        node.stopDaemon()
        return try node.mangleRules()
    }

    func startDaemon(notify listener: NotifyListener) throws {
        try node.startDaemon(extraArguments: ["--verify-interval", "5s"],
                             environment: ["XTABLES_LOCKFILE": lockPath, "NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "2000000"])
    }

    func testABlockWaitsForTheHolderWhileStatusAnswersAndTheWatchdogIsPinged() throws {
        try setUpNode()
        let listener = try NotifyListener(path: node.directory.appendingPathComponent("notify.sock").path)
        defer { listener.close() }
        try startDaemon(notify: listener)
        let holder = try holdLock(for: 4)
        defer { holder.signal(SIGKILL); holder.wait() }
        let started = Date()
        let block = try ChildProcess([TestPaths.nodeguardctl, "block", "--socket", node.socketPath, "31002"])
        usleep(300_000)
        XCTAssertTrue(block.isRunning, "the block waits for the lock")

        let asked = Date()
        let status = try node.status()
        XCTAssertLessThan(Date().timeIntervalSince(asked), 2, "status answers while a request waits for the lock")
        let lock = try XCTUnwrap(status["xtablesLock"] as? [String: Any], "\(status)")
        let heldBy = try XCTUnwrap(lock["heldBy"] as? [String: Any], "\(lock)")
        XCTAssertEqual(heldBy["pid"] as? Int, Int(holder.pid))
        XCTAssertEqual(heldBy["command"] as? String, "flock")

        // WATCHDOG_USEC=2s: at least a ping a second, lock or no lock.
        let pings = listener.count { $0.contains("WATCHDOG=1") }
        Thread.sleep(forTimeInterval: 2)
        XCTAssertGreaterThanOrEqual(listener.count { $0.contains("WATCHDOG=1") } - pings, 2, "the loop kept pinging")

        XCTAssertEqual(block.wait(), 0, "the block is applied once the lock is free:\n\(node.daemonLog)")
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 3, "it waited for the holder")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertNil(try node.status()["xtablesLock"], "nothing waits any more")
    }

    func testARequestThatWaitsTooLongFailsNamingTheHolderAndChangesNothing() throws {
        try setUpNode()
        let listener = try NotifyListener(path: node.directory.appendingPathComponent("notify.sock").path)
        defer { listener.close() }
        try startDaemon(notify: listener)
        let before = try node.mangleRules()
        let holder = try holdLock(for: 14)
        defer { holder.signal(SIGKILL); holder.wait() }
        let started = Date()
        let block = try node.ctl("block", "31002")
        XCTAssertNotEqual(block.status, 0)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 9.5)
        XCTAssertTrue(block.stderr.contains("waited") && block.stderr.contains("PID \(holder.pid) (flock)"), block.stderr)
        holder.signal(SIGKILL)
        holder.wait()
        usleep(300_000)
        XCTAssertEqual(try node.mangleRules(), before, "a failed request leaves the tables as they were")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002))
        let audit = try String(contentsOfFile: node.stateDirectory + "/audit.log", encoding: .utf8)
        XCTAssertTrue(audit.contains("\"action\":\"block\"") && audit.contains("waited"), audit)
    }

    func testAStartUnderAHeldLockKeepsTheKernelsRulesAndSaysWhyItWaits() throws {
        try setUpNode()
        let rules = try rulesLeftBy(#"{"version": 1, "blocked": [{"port": 31002}]}"#)
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31003}]}"#)

        let holder = try holdLock(for: 3)
        defer { holder.signal(SIGKILL); holder.wait() }
        let listener = try NotifyListener(path: node.directory.appendingPathComponent("notify.sock").path)
        defer { listener.close() }
        try node.startDaemon(environment: ["XTABLES_LOCKFILE": lockPath, "NOTIFY_SOCKET": listener.path])
        // startDaemon returned once status answered: after the lock was free.
        let waiting = try XCTUnwrap(listener.waitFor { $0.contains("EXTEND_TIMEOUT_USEC=") }, "\(listener.messages)")
        XCTAssertTrue(waiting.contains("STATUS=waiting for the xtables lock") && waiting.contains("PID \(holder.pid) (flock)"), waiting)
        XCTAssertTrue(node.daemonLog.contains("start-up waits for the xtables lock, keeping the kernel's rules as they are"), node.daemonLog)
        let ready = try XCTUnwrap(listener.messages.firstIndex { $0.contains("READY=1") })
        XCTAssertGreaterThan(ready, try XCTUnwrap(listener.messages.firstIndex { $0.contains("EXTEND_TIMEOUT_USEC=") }))
        XCTAssertNotEqual(try node.mangleRules(), rules, "the new list is applied after the wait")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31003))
    }

    /// While the daemon waits at start-up, the old rules hold: nothing is
    /// removed before the new list can be applied.
    func testTheOldRulesHoldWhileAStartUpWaits() throws {
        try setUpNode()
        let rules = try rulesLeftBy(#"{"version": 1, "blocked": [{"port": 31002}]}"#)
        try node.writeDenyList(#"{"version": 1, "blocked": []}"#)
        let holder = try holdLock(for: 20)
        defer { holder.signal(SIGKILL); holder.wait() }
        let log = open(node.logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        let daemon = try ChildProcess(["ip", "netns", "exec", node.node, TestPaths.nodeguardd, "--config", node.configPath,
                                       "--state-dir", node.stateDirectory, "--socket", node.socketPath],
                                      stdout: log, stderr: log, environment: ["XTABLES_LOCKFILE": lockPath])
        close(log)
        defer { daemon.signal(SIGKILL); daemon.wait() }
        XCTAssertTrue(eventually(5, every: 0.05) { node.daemonLog.contains("start-up waits for the xtables lock") }, node.daemonLog)
        usleep(500_000)
        XCTAssertTrue(daemon.isRunning)
        XCTAssertEqual(try node.mangleRules(), rules)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002), "still blocked while it waits")
    }
}
