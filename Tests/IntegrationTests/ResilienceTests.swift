import NodeGuardCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A blocked port stays blocked: through a crash, against drift, and next to
/// another writer of the same table.
final class ResilienceTests: NodeTestCase {
    func testSigkillKeepsThePortClosedAndRestartAdoptsTheRules() throws {
        try setUpNode()
        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31003, "reason": "from the file"}]}"#)
        try node.startDaemon()
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        let rulesBefore = try node.mangleRules(), rules6Before = try node.mangleRules(ipv6: true)

        node.stopDaemon(SIGKILL)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002), "31002 must stay closed while the daemon is down")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv6, 31002, from: .node), "31002 must stay closed locally while the daemon is down")
        XCTAssertEqual(try node.mangleRules(), rulesBefore, "the kernel keeps the rules while the daemon is down")

        try node.startDaemon()
        // Adopted as they are: no duplicates, and nothing needed committing.
        XCTAssertEqual(try node.mangleRules(), rulesBefore)
        XCTAssertEqual(try node.mangleRules(ipv6: true), rules6Before)
        XCTAssertEqual(try node.status()["commits"] as? Int, 0, "restarting over correct rules must commit nothing")
        let list = try node.ctl("list", "--json").stdout
        XCTAssertTrue(list.contains("\"port\": 31002") && list.contains("\"source\": \"runtime\""), "runtime entry must be back: \(list)")
        XCTAssertTrue(list.contains("\"port\": 31003"), list)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31003))

        // SIGTERM: a clean exit that also leaves the rules in place.
        node.stopDaemon(SIGTERM)
        XCTAssertEqual(try node.mangleRules(), rulesBefore)
        XCTAssertTrue(node.daemonLog.contains("stopped; NodeGuard's rules stay in the kernel"), node.daemonLog)
    }

    func testDriftIsRepaired() throws {
        try setUpNode()
        try node.startDaemon()
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        let wanted = try node.mangleRules()
        let jump = wanted.first { $0.hasPrefix("-A PREROUTING") }!

        // A foreign rule inserted above NodeGuard's jump: the jump goes back on top, the foreign rule stays.
        try node.inNode("iptables-legacy -w -t mangle -I PREROUTING 1 -p tcp --dport 31002 -j ACCEPT")
        XCTAssertTrue(try node.eventually {
            let rules = try node.mangleRules()
            return rules.first == jump && rules.contains("-A PREROUTING -p tcp -m tcp --dport 31002 -j ACCEPT")
        }, "jump must be rule 1 again, foreign rule kept")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))

        // A flushed NodeGuard chain.
        try node.inNode("iptables-legacy -w -t mangle -F NODEGUARD-TCP")
        XCTAssertTrue(try node.eventually { try node.mangleRules().contains { $0.contains("--dport 31002") && $0.hasSuffix("-j DROP") } })
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))

        // A deleted jump (IPv6 OUTPUT).
        try node.inNode("ip6tables-legacy -w -t mangle -D OUTPUT 1")
        XCTAssertTrue(try node.eventually { try node.mangleRules(ipv6: true).contains { $0.hasPrefix("-A OUTPUT") && $0.hasSuffix("-j NODEGUARD") } })
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv6, 31002, from: .node))

        // An edited NodeGuard rule: DROP turned into ACCEPT with the same comment.
        try node.inNode("iptables-legacy -w -t mangle -R NODEGUARD-TCP 1 -p tcp --dport 31002 -m comment --comment 'NodeGuard: block 31002/tcp' -j ACCEPT")
        XCTAssertTrue(try node.eventually {
            Set(try node.mangleRules()) == Set(wanted + ["-A PREROUTING -p tcp -m tcp --dport 31002 -j ACCEPT"])
        }, "the edited rule must be restored")
        XCTAssertTrue(node.daemonLog.contains("-j ACCEPT"), node.daemonLog)

        // Everything flushed and deleted at once, as `iptables -t mangle -F; -X` does.
        try node.inNode("iptables-legacy -w -t mangle -F && iptables-legacy -w -t mangle -X")
        XCTAssertTrue(try node.eventually { Set(try node.mangleRules()) == Set(wanted) })
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))

        XCTAssertGreaterThanOrEqual(try node.status()["repairs"] as? Int ?? 0, 5)
        XCTAssertTrue(node.daemonLog.contains("below '-p tcp -m tcp --dport 31002 -j ACCEPT'"), "the repair log names the foreign rule:\n\(node.daemonLog)")
        XCTAssertTrue(node.daemonLog.contains("NodeGuard's jump was missing"), node.daemonLog)
    }

    /// Another process adds and deletes its own mangle chains through
    /// `iptables-legacy -w` while NodeGuard applies changes: both hold the
    /// xtables lock, so neither loses an update.
    func testConcurrentWriterLosesNoUpdates() throws {
        try setUpNode()
        try node.startDaemon(extraArguments: ["--verify-interval", "50ms"])
        let rounds = 150
        let other = try ChildProcess(["ip", "netns", "exec", node.node, "sh", "-c", """
            for i in $(seq 1 \(rounds)); do
              iptables-legacy -w -t mangle -N OTHER-$i || exit 1
              iptables-legacy -w -t mangle -A OTHER-$i -p tcp --dport $((40000 + i)) -j MARK --set-mark $i || exit 1
              iptables-legacy -w -t mangle -A POSTROUTING -j OTHER-$i || exit 1
              if [ $((i % 2)) -eq 0 ]; then
                iptables-legacy -w -t mangle -D POSTROUTING -j OTHER-$i || exit 1
                iptables-legacy -w -t mangle -F OTHER-$i && iptables-legacy -w -t mangle -X OTHER-$i || exit 1
              fi
            done
            """])
        var blocked: [Int] = []
        var i = 0
        while other.isRunning || i < 60 {
            let port = 30000 + i
            XCTAssertEqual(try node.ctl("block", String(port)).status, 0)
            blocked.append(port)
            if i % 3 == 2 {
                XCTAssertEqual(try node.ctl("unblock", String(blocked.removeFirst())).status, 0)
            }
            i += 1
        }
        XCTAssertEqual(other.wait(), 0, "the other writer's commands must all succeed")

        let rules = try node.mangleRules()
        // Every update of the other writer is there: the odd chains with their rule and jump.
        for n in 1...rounds {
            let chain = "OTHER-\(n)"
            let hasJump = rules.contains("-A POSTROUTING -j \(chain)")
            let hasRule = rules.contains { $0.hasPrefix("-A \(chain) ") && $0.contains("--dport \(40000 + n)") }
            XCTAssertEqual(hasJump, n % 2 == 1, "jump to \(chain)")
            XCTAssertEqual(hasRule, n % 2 == 1, "rule of \(chain)")
        }
        // And every update of NodeGuard: exactly the ports still blocked.
        let dropped = Set(rules.filter { $0.hasSuffix("-j DROP") }.compactMap { line -> Int? in
            guard let range = line.range(of: "--dport ") else { return nil }
            return Int(line[range.upperBound...].prefix(while: \.isNumber))
        })
        XCTAssertEqual(dropped, Set(blocked), "NodeGuard's rules must be exactly the blocked ports")
        XCTAssertTrue(rules.first!.hasSuffix("-j NODEGUARD"))
    }
}
