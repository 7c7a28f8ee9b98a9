import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Every change is recorded with who made it: the socket peer's uid and pid
/// from SO_PEERCRED, SIGHUP, or the daemon's own repairs.
final class AuditTests: NodeTestCase {
    func records() throws -> [[String: Any]] {
        let text = try String(contentsOfFile: node.stateDirectory + "/audit.log", encoding: .utf8)
        return try text.split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    func testChangesAreRecordedWithWhoMadeThem() throws {
        try setUpNode()
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31003}]}"#)
        // nobody (65534) may use the socket as a member of its control group.
        try node.startDaemon(extraArguments: ["--verify-interval", "100ms", "--group", "nogroup"])
        XCTAssertEqual(try node.ctl("block", "31002", "--reason", "SEC-1").status, 0)
        // Another user (in the socket's group) is recorded as that user.
        let other = try runCommand(["setpriv", "--reuid=65534", "--regid=65534", "--groups=0", TestPaths.nodeguardctl,
                                    "block", "31005/udp", "--socket", node.socketPath])
        XCTAssertEqual(other.status, 0, other.stderr)
        XCTAssertEqual(try node.ctl("unblock", "31003").status, 1, "a file entry cannot be unblocked")
        node.signalDaemon(SIGHUP)
        XCTAssertTrue(try node.eventually { try self.records().contains { $0["action"] as? String == "reload" } })
        try node.inNode("iptables-legacy -w -t mangle -F NODEGUARD-TCP")
        XCTAssertTrue(try node.eventually { try self.records().contains { $0["action"] as? String == "repair" } })
        XCTAssertEqual(try node.ctl("status").status, 0)   // reads are not recorded

        let all = try records()
        XCTAssertEqual(all.map { $0["action"] as? String }, ["start", "block", "block", "unblock", "reload", "repair"])
        XCTAssertTrue(all.allSatisfy { ($0["time"] as? String)?.hasSuffix("Z") == true })
        guard all.count == 6 else { return }

        let block = all[1]
        let origin = try XCTUnwrap(block["origin"] as? [String: Any])
        XCTAssertEqual(origin["kind"] as? String, "socket")
        XCTAssertEqual(origin["uid"] as? Int, 0)
        XCTAssertGreaterThan(origin["pid"] as? Int ?? 0, 1)
        XCTAssertEqual((block["entry"] as? [String: Any])?["reason"] as? String, "SEC-1")
        XCTAssertEqual(block["result"] as? String, "ok")

        XCTAssertEqual((all[2]["origin"] as? [String: Any])?["uid"] as? Int, 65534)
        XCTAssertEqual((all[2]["entry"] as? [String: Any])?["protocol"] as? String, "udp")

        XCTAssertEqual(all[3]["result"] as? String, "error")
        XCTAssertTrue((all[3]["error"] as? String)?.contains(node.configPath) == true)
        XCTAssertEqual((all[4]["origin"] as? [String: Any])?["kind"] as? String, "signal")
        XCTAssertEqual((all[5]["origin"] as? [String: Any])?["kind"] as? String, "daemon")
        XCTAssertTrue((all[5]["changes"] as? [String])?.contains { $0.contains("NODEGUARD-TCP") } == true)
        XCTAssertTrue(node.daemonLog.contains("peer_uid=65534"), "the log names the peer too")
    }

    /// A bulk insert of 20,000 rules above NodeGuard's jump is summarised:
    /// the repair's audit record and log line name three rules and count the
    /// rest, instead of copying a megabyte into each.
    func testABulkInsertAboveTheJumpIsSummarisedNotCopied() throws {
        try setUpNode()
        try node.startDaemon()
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        var rules = "*mangle\n"
        for index in 0..<20_000 { rules += "-I PREROUTING 1 -p tcp -m comment --comment \"bulk rule \(index)\" -j ACCEPT\n" }
        rules += "COMMIT\n"
        XCTAssertEqual(try runCommand(["ip", "netns", "exec", node.node, "iptables-legacy-restore", "--noflush"], input: rules).status, 0)
        XCTAssertTrue(try node.eventually(10) { try node.mangleRules().first?.hasSuffix("-j NODEGUARD") == true }, node.daemonLog.suffix(2000).description)
        // The record and the log line follow the commit: wait for them too.
        XCTAssertTrue(try node.eventually(5) { try self.records().contains { $0["action"] as? String == "repair" }
            && node.daemonLog.contains("repaired drift") })
        let repair = try XCTUnwrap(try records().last { $0["action"] as? String == "repair" })
        let line = try XCTUnwrap(String(data: JSONSerialization.data(withJSONObject: repair), encoding: .utf8))
        XCTAssertLessThan(line.utf8.count, 4096, line)
        XCTAssertTrue(line.contains("and 19997 more"), line)
        let logLine = try XCTUnwrap(node.daemonLog.split(separator: "\n").last { $0.contains("repaired drift") && $0.contains("PREROUTING") })
        XCTAssertLessThan(logLine.utf8.count, 4096, String(logLine))
    }
}
