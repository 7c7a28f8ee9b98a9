import Foundation
import NodeGuardCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Start-up, reload, persistence, uninstall and the CLI's contract, against
/// the real kernel in a test node.
final class DaemonLifecycleTests: NodeTestCase {
    func testReloadAppliesAGoodFileAndKeepsTheLastGoodListOnABadOne() throws {
        try setUpNode()
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31002}]}"#)
        try node.startDaemon()
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31003))

        // Applying the same list again commits nothing.
        let commits = try node.status()["commits"] as? Int
        XCTAssertEqual(try node.ctl("reload").status, 0)
        XCTAssertEqual(try node.status()["commits"] as? Int, commits, "reloading an unchanged list must not commit")

        // SIGHUP with a new file.
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31003, "reason": "moved"}]}"#)
        node.signalDaemon(SIGHUP)
        XCTAssertTrue(try node.eventually { try node.mangleRules().contains { $0.contains("--dport 31003") } })
        XCTAssertFalse(try node.mangleRules().contains { $0.contains("--dport 31002") }, "ports no longer listed are removed")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31003))

        // A bad file: the error names the entry and field, the old list stays.
        let before = try node.mangleRules()
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31004}, {"port": 70000}]}"#)
        let reload = try node.ctl("reload")
        XCTAssertEqual(reload.status, 1)
        XCTAssertTrue(reload.stderr.contains("blocked[1].port") && reload.stderr.contains("70000"), reload.stderr)
        XCTAssertEqual(try node.mangleRules(), before)
        node.signalDaemon(SIGHUP)
        XCTAssertTrue(node.eventually { node.daemonLog.contains("SIGHUP reload failed") })
        XCTAssertEqual(try node.mangleRules(), before)

        // A port from the file cannot be unblocked at runtime; the message names the file.
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31003}]}"#)
        XCTAssertEqual(try node.ctl("reload").status, 0)
        let unblock = try node.ctl("unblock", "31003")
        XCTAssertEqual(unblock.status, 1)
        XCTAssertTrue(unblock.stderr.contains(node.configPath), unblock.stderr)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31003))
    }

    func testABadFileAtStartUpStopsTheDaemonAndLeavesTheKernelAlone() throws {
        try setUpNode()
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31002}]}"#)
        try node.startDaemon()
        node.stopDaemon()
        let rules = try node.mangleRules()
        XCTAssertFalse(rules.isEmpty)

        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31002, "protocol": "icmp"}]}"#)
        XCTAssertThrowsError(try node.startDaemon())
        XCTAssertTrue(node.daemonLog.contains("blocked[0].protocol"), node.daemonLog)
        XCTAssertEqual(try node.mangleRules(), rules, "a rejected file changes nothing in the kernel")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
    }

    func testRuntimeBlocksArePersistedDurably() throws {
        try setUpNode()
        try node.startDaemon()
        XCTAssertEqual(try node.ctl("block", "31002", "--family", "ipv4", "--reason", "SEC-1").status, 0)
        let state = try String(contentsOfFile: node.stateDirectory + "/runtime.json", encoding: .utf8)
        XCTAssertTrue(state.contains("31002") && state.contains("SEC-1") && state.contains("ipv4"), state)
        XCTAssertFalse(try node.mangleRules(ipv6: true).contains { $0.contains("--dport 31002") }, "family ipv4 only")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv6, 31002), "IPv6 stays open for an ipv4-only block")
        XCTAssertEqual(try node.ctl("unblock", "31002").status, 0)
        let after = try String(contentsOfFile: node.stateDirectory + "/runtime.json", encoding: .utf8)
        XCTAssertFalse(after.contains("31002"), after)
    }

    /// `iptables-legacy-save -t mangle` for both families, without its timestamps and counters.
    func mangleTables() throws -> String {
        try ["iptables-legacy-save", "ip6tables-legacy-save"].map { tool in
            let result = try runCommand(["ip", "netns", "exec", node.node, tool, "-t", "mangle"])
            XCTAssertEqual(result.status, 0, result.stderr)
            return result.stdout.split(separator: "\n").filter { !$0.hasPrefix("#") }
                .map { $0.replacingOccurrences(of: #"\[\d+:\d+\]"#, with: "[]", options: .regularExpression) }
                .joined(separator: "\n")
        }.joined(separator: "\n")
    }

    /// A second nodeguardd with the same state directory, whatever its socket
    /// and deny-list, stops before it touches the kernel or the socket, and
    /// names the first; so does `--remove-rules`.
    func testASecondDaemonWithTheSameStateDirectoryChangesNothingAndNamesTheFirst() throws {
        try setUpNode()
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31002}]}"#)
        try node.startDaemon()
        XCTAssertEqual(try node.ctl("block", "31003").status, 0)
        let first = try XCTUnwrap(node.daemon?.pid)
        let before = try mangleTables()
        XCTAssertTrue(before.contains("--dport 31002") && before.contains("--dport 31003"), before)
        // The first daemon repairs any change at once, so the tables alone could
        // look untouched after a change: its repair count says whether one happened.
        let repairs = try XCTUnwrap(node.status()["repairs"] as? Int)
        // The second one's deny-list is empty: had it applied it, 31002 would be open.
        let emptyList = node.directory.appendingPathComponent("empty.json").path
        try #"{"version": 1, "blocked": []}"#.write(toFile: emptyList, atomically: true, encoding: .utf8)
        let otherSocket = node.directory.appendingPathComponent("other.sock").path

        for (socket, extra) in [(node.socketPath, [String]()), (otherSocket, []), (otherSocket, ["--remove-rules"])] {
            let started = ContinuousClock.now
            let second = try runProgram(["ip", "netns", "exec", node.node, TestPaths.nodeguardd, "--config", emptyList,
                                         "--state-dir", node.stateDirectory, "--socket", socket] + extra, timeout: .seconds(15))
            let output = String(decoding: second.stderr, as: UTF8.self)
            XCTAssertEqual(second.status, 1, "\(socket) \(extra): the second daemon must stop: \(output)")
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(5), "it stops at once")
            XCTAssertTrue(output.contains("another nodeguardd (PID \(first)) is running with state directory \(node.stateDirectory); stop it first"),
                          "\(extra): \(output)")
            XCTAssertEqual(try mangleTables(), before, "\(socket) \(extra): the first daemon's rules are byte for byte as they were")
            XCTAssertFalse(FileManager.default.fileExists(atPath: otherSocket), "the second daemon made no socket")
            let status = try node.status()
            XCTAssertEqual(status["pid"] as? Int, Int(first), "the first daemon still serves its socket")
            XCTAssertEqual(status["repairs"] as? Int, repairs, "\(socket) \(extra): nothing changed the first daemon's rules, not even for a moment")
        }
        XCTAssertFalse(node.daemonLog.contains("repaired drift"), node.daemonLog)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31003))
        XCTAssertTrue(node.daemon?.isRunning ?? false)

        // Once the first has stopped, the lock is free again.
        node.stopDaemon()
        try node.startDaemon()
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31003))
    }

    func testRemoveRulesLeavesNoNodeGuardRuleAndKeepsForeignOnes() throws {
        try setUpNode()
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31002}, {"port": 31900, "protocol": "udp"}]}"#)
        try node.startDaemon()
        node.stopDaemon()
        try node.inNode("iptables-legacy -t mangle -A PREROUTING -j MARK --set-mark 7 && iptables-legacy -t mangle -N FOREIGN")
        let result = try runCommand(["ip", "netns", "exec", node.node, TestPaths.nodeguardd, "--remove-rules", "--state-dir", node.stateDirectory])
        XCTAssertEqual(result.status, 0, result.stderr)
        let v4 = try runCommand(["ip", "netns", "exec", node.node, "iptables-legacy-save", "-t", "mangle"]).stdout
        let v6 = try runCommand(["ip", "netns", "exec", node.node, "ip6tables-legacy-save", "-t", "mangle"]).stdout
        XCTAssertFalse(v4.contains("NODEGUARD") || v6.contains("NODEGUARD"), v4 + v6)
        XCTAssertTrue(v4.contains("-A PREROUTING -j MARK --set-xmark 0x7/0xffffffff") && v4.contains(":FOREIGN"), v4)
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002))
        // Running it again finds nothing to do.
        XCTAssertEqual(try runCommand(["ip", "netns", "exec", node.node, TestPaths.nodeguardd, "--remove-rules", "--state-dir", node.stateDirectory]).status, 0)
    }

    func testSCTPAndTheWholeNodePortRange() throws {
        try setUpNode()
        let all = (30000...32767).map { #"{"port": \#($0)}"# }.joined(separator: ",")
        try node.writeDenyList(#"{"version": 1, "blocked": [\#(all), {"port": 31010, "protocol": "sctp"}]}"#)
        try node.startDaemon()
        for ipv6 in [false, true] {
            let rules = try node.mangleRules(ipv6: ipv6)
            XCTAssertEqual(rules.filter { $0.hasSuffix("-j DROP") && $0.contains("-p tcp") }.count, 2768)
            XCTAssertTrue(rules.contains("-A NODEGUARD-SCTP -p sctp -m sctp --dport 31010 -m comment --comment \"NodeGuard: block 31010/sctp\" -j DROP"))
            // The dispatch keeps every chain short.
            let perChain = Dictionary(grouping: rules, by: { $0.split(separator: " ")[1] }).mapValues(\.count)
            XCTAssertLessThanOrEqual(perChain.filter { $0.key.hasPrefix("NODEGUARD") }.values.max() ?? 0, 16)
        }
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv6, 31003, from: .node))
        XCTAssertTrue(try node.isOpen("tcp", TestNode.podIPv4, 31002), "pod traffic still flows")
        XCTAssertEqual(try node.status()["commits"] as? Int, 2, "one commit per family")
    }

    func testCLIExitCodesAndValidate() throws {
        try setUpNode()
        // 3: daemon not reachable, with advice.
        let unreachable = try node.ctl("status")
        XCTAssertEqual(unreachable.status, 3)
        XCTAssertTrue(unreachable.stderr.contains("start it"), unreachable.stderr)
        // 2: usage errors.
        XCTAssertEqual(try node.ctl("block", "70000").status, 2)
        XCTAssertEqual(try node.ctl("block", "31002/icmp").status, 2)
        XCTAssertEqual(try node.ctl("block", "31002", "--allow-from", "10.0.0.1/8").status, 2)
        XCTAssertEqual(try node.ctl("frobnicate").status, 2)
        // validate: offline.
        try node.writeDenyList(#"{"version": 2, "blocked": [{"port": 1, "colour": "red"}]}"#)
        let invalid = try node.ctl("validate", node.configPath)
        XCTAssertEqual(invalid.status, 1)
        XCTAssertTrue(invalid.stderr.contains("version") && invalid.stderr.contains("blocked[0].colour"), invalid.stderr)
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("config/denylist.json").path
        let valid = try node.ctl("validate", example)
        XCTAssertEqual(valid.status, 0, valid.stderr)
        // 1: a request the daemon refuses.
        try node.writeDenyList(#"{"version": 1, "blocked": []}"#)
        try node.startDaemon()
        let missing = try node.ctl("unblock", "31002")
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("not blocked"), missing.stderr)
        // The socket is 0660.
        var info = stat()
        XCTAssertEqual(stat(node.socketPath, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o660)
    }

    /// Without CAP_NET_ADMIN/CAP_NET_RAW the kernel says EPERM; the daemon says what to do.
    func testMissingCapabilitiesGiveAClearError() throws {
        try setUpNode()
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31002}]}"#)
        let result = try runCommand(["ip", "netns", "exec", node.node, "setpriv", "--bounding-set=-net_admin,-net_raw",
                                     TestPaths.nodeguardd, "--config", node.configPath, "--state-dir", node.stateDirectory,
                                     "--socket", node.socketPath])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("permission denied") && result.stderr.contains("CAP_NET_ADMIN"),
                      "status \(result.status), stdout '\(result.stdout)', stderr '\(result.stderr)'")
        XCTAssertTrue(try node.mangleRules().isEmpty, "nothing was written")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002))
    }
}
