import Foundation
import XCTest

/// The daemon notices changes to its tables cheaply: at once when a writer
/// releases the xtables lock, by a size check for writers that skip the lock,
/// by a digest of every rule for same-size edits, and never because of
/// traffic. It re-reads its chains with libiptc only when one of those saw a
/// change.
final class ChangeWatchTests: NodeTestCase {
    /// A writer that does not share the daemon's lock file, so only polling can see it.
    func lockFreeWriter(_ command: String) throws {
        let other = "/tmp/\(node.node)-other.lock"
        defer { unlink(other) }
        let result = try node.inNode("XTABLES_LOCKFILE=\(other) \(command)")
        XCTAssertEqual(result.status, 0, result.stderr)
    }

    func fullReads() throws -> Int { try XCTUnwrap(node.status()["fullReads"] as? Int) }

    func metric(_ name: String) throws -> Double {
        let text = try node.ctl("metrics").stdout
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix(name + " ") }, text)
        return try XCTUnwrap(Double(line.split(separator: " ").last!))
    }

    func testTrafficAndIdleTimeCauseNoFullRead() throws {
        try setUpNode()
        try node.startDaemon(extraArguments: ["--watch-interval", "10ms", "--verify-interval", "20ms"])
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        usleep(200_000)
        let reads = try fullReads()
        let deep = try metric(#"nodeguard_change_checks_total{kind="deep"}"#)
        // Dropped packets change the counters, which the digest ignores.
        for _ in 0..<3 { XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002)) }
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31003))
        usleep(500_000)
        XCTAssertEqual(try fullReads(), reads, "nothing changed, so nothing may be re-read:\n\(node.daemonLog)")
        XCTAssertGreaterThan(try metric(#"nodeguard_change_checks_total{kind="deep"}"#), deep + 5, "deep checks kept running")
        let dropped = try metric(#"nodeguard_dropped_packets_total{family="ipv4",port="31002",protocol="tcp"}"#)
        XCTAssertGreaterThan(dropped, 0, "the counters moved")
    }

    func testALockHolderIsSeenAtOnceWithoutPolling() throws {
        try setUpNode()
        // Polling this slow would take an hour: only the lock's release can wake the daemon.
        try node.startDaemon(extraArguments: ["--watch-interval", "1h", "--verify-interval", "1h"])
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        let jump = try XCTUnwrap(try node.mangleRules().first)
        try node.inNode("iptables-legacy -w -t mangle -I PREROUTING 1 -p tcp -j ACCEPT")
        XCTAssertTrue(try node.eventually { try node.mangleRules().first == jump }, "repaired after the lock was released:\n\(node.daemonLog)")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertTrue(node.daemonLog.contains("full read: NodeGuard's rules in the ipv4 mangle table changed"), node.daemonLog)
    }

    func testAWriterThatSkipsTheLockIsCaughtBySizeChecks() throws {
        try setUpNode()
        try node.startDaemon(extraArguments: ["--watch-interval", "20ms", "--verify-interval", "1h"])
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        let before = try node.mangleRules(ipv6: true)
        try lockFreeWriter("ip6tables-legacy -w -t mangle -F NODEGUARD-TCP")
        XCTAssertTrue(try node.eventually { try node.mangleRules(ipv6: true) == before }, node.daemonLog)
        XCTAssertTrue(node.daemonLog.contains("full read: NodeGuard's rules in the ipv6 mangle table changed"), node.daemonLog)
    }

    func testASameSizeEditIsCaughtByTheDigest() throws {
        try setUpNode()
        try node.startDaemon(extraArguments: ["--watch-interval", "1h", "--verify-interval", "50ms"])
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        let before = try node.mangleRules()
        let rule = try XCTUnwrap(before.first { $0.hasPrefix("-A NODEGUARD-TCP ") && $0.hasSuffix("-j DROP") })
        // The same rule with ACCEPT instead of DROP and a comment of the same
        // length: every size stays as it was.
        let edited = rule.replacingOccurrences(of: "-A NODEGUARD-TCP ", with: "")
            .replacingOccurrences(of: "-j DROP", with: "-j ACCEPT")
            .replacingOccurrences(of: "NodeGuard: ", with: "NodeGuarD: ")
        try lockFreeWriter("iptables-legacy -w -t mangle -R NODEGUARD-TCP 1 \(edited)")
        XCTAssertTrue(try node.eventually { try node.mangleRules() == before }, node.daemonLog)
        XCTAssertTrue(node.daemonLog.contains("full read: NodeGuard's rules in the ipv4 mangle table changed"), node.daemonLog)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
    }

    /// The rule 1 of NODEGUARD-TCP turned into an ACCEPT of the same size.
    func sameSizeAccept(of rules: [String]) throws -> String {
        let rule = try XCTUnwrap(rules.first { $0.hasPrefix("-A NODEGUARD-TCP ") && $0.hasSuffix("-j DROP") })
        return rule.replacingOccurrences(of: "-A NODEGUARD-TCP ", with: "")
            .replacingOccurrences(of: "-j DROP", with: "-j ACCEPT")
            .replacingOccurrences(of: "NodeGuard: ", with: "NodeGuarD: ")
    }

    func testBesideALargeTableTheDigestKeepsItsIntervalAndALockHoldersEditIsSeenAtOnce() throws {
        try setUpNode()
        // Only the lock's release can wake the daemon within the test.
        try node.startDaemon(extraArguments: ["--watch-interval", "1h", "--verify-interval", "1h"])
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        try node.loadForeignMangleRules()
        let before = try node.mangleRules()
        XCTAssertGreaterThan(before.count, 20_000)
        let edited = try sameSizeAccept(of: before)
        // Same size, taken under the lock: only a digest at the lock's release tells.
        try node.inNode("iptables-legacy -w -t mangle -R NODEGUARD-TCP 1 \(edited)")
        XCTAssertTrue(try node.eventually(5) { try node.mangleRules() == before }, node.daemonLog)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertEqual(try node.status()["healthy"] as? Bool, true)
    }

    func testBesideALargeTableASameSizeEditByAWriterThatSkipsTheLockIsFoundWithinTheVerifyInterval() throws {
        try setUpNode()
        try node.startDaemon(extraArguments: ["--watch-interval", "100ms", "--verify-interval", "1s"])
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        try node.loadForeignMangleRules()
        usleep(1_500_000)
        // The digest covers NodeGuard's rules only: other programs' rules do not stretch it.
        XCTAssertEqual(try node.status()["deepCheckIntervalMs"] as? Int, 1000)
        let before = try node.mangleRules()
        let reads = try fullReads()
        try lockFreeWriter("iptables-legacy -w -t mangle -R NODEGUARD-TCP 1 \(try sameSizeAccept(of: before))")
        let edited = Date()
        XCTAssertTrue(try node.eventually(10) { try node.mangleRules() == before }, node.daemonLog)
        // A generous bound for a busy machine; before, beside 20,000 rules the
        // digest ran every 14 s.
        XCTAssertLessThan(Date().timeIntervalSince(edited), 4, "found late:\n\(node.daemonLog)")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        // Loading 20,000 foreign rules changed the table's size but not NodeGuard's part of it.
        XCTAssertEqual(try fullReads(), reads + 1, "only the edit caused a full read:\n\(node.daemonLog)")
    }
}
