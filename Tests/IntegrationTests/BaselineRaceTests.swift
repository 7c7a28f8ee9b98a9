import Foundation
import NodeGuardCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// What the change watch compares against is what NodeGuard committed, read
/// back before it let go of the xtables lock, never a read taken afterwards:
/// a writer that takes the lock the moment NodeGuard releases it and flushes
/// NodeGuard's chain must be repaired, not taken as the new good state.
final class BaselineRaceTests: NodeTestCase {
    /// Waits, in the node, for the moment the daemon's commit of `port` is in
    /// the kernel and the lock is free; takes the lock first and flushes
    /// NODEGUARD-TCP under it, as `iptables -w -F` would. Returns whether it
    /// got in.
    func flushRightAfterCommit(of port: UInt16, within seconds: Double) throws -> Bool {
        let lockPath = XtablesLock.path
        // The flush itself goes through libiptc with a private lock file: this
        // thread already holds the real one (flock is per open file).
        let privateLock = node.directory.appendingPathComponent("writer.lock").path
        return try node.inNodeNamespace { () throws -> Bool in
            let reader = LibIPTCBackend()
            let writer = LibIPTCBackend(lockPath: privateLock)
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                let fd = open(lockPath, O_CREAT | O_RDONLY | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw TestNodeError("cannot open \(lockPath)") }
                defer { close(fd) }
                guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }
                let committed = try reader.readTable("mangle", .ipv4) { table throws(NodeGuardError) -> Bool in
                    guard table.chainNames().contains("NODEGUARD-TCP") else { return false }
                    return try table.rules(in: "NODEGUARD-TCP").contains { $0.spec?.destinationPorts == port...port }
                }
                if committed {
                    _ = try writer.transact("mangle", .ipv4) { _ throws(NodeGuardError) in TableRepair(edits: [.flushChain("NODEGUARD-TCP")]) }
                    return true
                }
                // Not yet: let the daemon have the lock.
                flock(fd, LOCK_UN)
                usleep(20)
            }
            return false
        }
    }

    func testAFlushTheMomentTheLockIsReleasedAfterABlockIsRepaired() throws {
        try setUpNode()
        // No polling: only the lock's release can wake the daemon, so the
        // repair below must come from comparing with what it committed.
        try node.startDaemon(extraArguments: ["--watch-interval", "1h", "--verify-interval", "1h"])
        XCTAssertEqual(try node.ctl("block", "31003").status, 0)
        let request = try ChildProcess([TestPaths.nodeguardctl, "block", "--socket", node.socketPath, "31002"])
        let gotIn = try flushRightAfterCommit(of: 31002, within: 10)
        XCTAssertEqual(request.wait(), 0, "the block itself succeeded")
        XCTAssertTrue(gotIn, "the writer never saw the commit:\n\(node.daemonLog)")
        XCTAssertTrue(try node.eventually(5) {
            try node.mangleRules().contains { $0.hasPrefix("-A NODEGUARD-TCP ") && $0.contains("--dport 31002 ") && $0.hasSuffix("-j DROP") }
        }, "the flush right after the commit was never repaired:\n\(node.daemonLog)")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002), "the blocked port answered")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31003), "the other blocked port answered")
        XCTAssertEqual(try node.status()["healthy"] as? Bool, true)
    }
}
