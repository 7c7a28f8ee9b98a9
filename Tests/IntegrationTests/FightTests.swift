import Foundation
import NodeGuardCore
import XCTest

/// Another agent that also insists on rule 1 of mangle PREROUTING, and whose
/// chain accepts everything (as Calico's accepts established flows first):
/// NodeGuard notices the fight, stops rewriting the chain, keeps the ports
/// closed from the raw table, and names the culprit.
final class FightTests: NodeTestCase {
    func testAFightIsDetectedTheCulpritReportedAndThePortsHeldFromRaw() throws {
        try setUpNode()
        try node.startDaemon()
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        XCTAssertEqual(try node.ctl("block", "31900/udp").status, 0)

        let rival = try ChildProcess(["ip", "netns", "exec", node.node, "sh", "-c", rivalForMangleRuleOne])
        defer { rival.signal(SIGKILL); rival.wait() }

        XCTAssertTrue(try node.eventually(15) { try node.status()["fight"] != nil }, "no fight reported:\n\(node.daemonLog)")
        let fight = try XCTUnwrap(node.status()["fight"] as? [String: Any])
        // Named as iptables-save writes it, with the site it disputes.
        XCTAssertEqual(fight["culprit"] as? String, "-A PREROUTING -j RIVAL-PRE")
        XCTAssertEqual(fight["chain"] as? String, "PREROUTING")
        XCTAssertEqual(fight["table"] as? String, "mangle")
        XCTAssertEqual(fight["family"] as? String, "ipv4")
        XCTAssertEqual((try node.status()["fights"] as? [Any])?.count, 1, "only ipv4 mangle PREROUTING is disputed")
        // The other hook chains keep NodeGuard's jump first.
        let hooks = try XCTUnwrap(node.status()["hooks"] as? [String: [String: Bool]])
        XCTAssertEqual(hooks["ipv4"]?["OUTPUT"], true)
        XCTAssertEqual(hooks["ipv6"]?["PREROUTING"], true)
        XCTAssertEqual(fight["holding"] as? String, "raw")
        XCTAssertTrue((fight["advice"] as? String)?.contains("FELIX_CHAININSERTMODE=Append") == true, "\(fight)")
        XCTAssertEqual(try node.status()["healthy"] as? Bool, false, "a fight needs a person")
        XCTAssertTrue(node.daemonLog.contains("fight: '-A PREROUTING -j RIVAL-PRE' was put above NodeGuard's jump in ipv4 mangle PREROUTING 3 times;"), node.daemonLog)

        // NodeGuard backs off: the rival keeps rule 1 and NodeGuard's repairs stop growing.
        usleep(700_000)
        let repairs = try XCTUnwrap(node.status()["repairs"] as? Int)
        usleep(1_500_000)
        XCTAssertEqual(try node.status()["repairs"] as? Int, repairs, "NodeGuard must not keep fighting:\n\(node.daemonLog)")
        let mangle = try node.mangleRules()
        XCTAssertEqual(mangle.first, "-A PREROUTING -j RIVAL-PRE")
        XCTAssertTrue(mangle.contains { $0.hasPrefix("-A PREROUTING") && $0.hasSuffix("-j NODEGUARD") }, "the jump stays, lower down: \(mangle)")

        // The raw table holds the ports closed although mangle's ACCEPT comes first.
        let raw = try node.inNode("iptables-legacy-save -t raw").stdout
        XCTAssertTrue(raw.contains("-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment \"NodeGuard: hold blocked NodePorts while another agent disputes mangle\" -j NODEGUARD"), raw)
        XCTAssertTrue(raw.contains("--dport 31002 --tcp-flags FIN,SYN,RST,ACK SYN"), raw)
        XCTAssertTrue(try node.inNode("ip6tables-legacy-save -t raw").stdout.contains("-j NODEGUARD"), "IPv6 is held too")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertFalse(try node.answers("udp", TestNode.nodeIPv4, 31900))
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002, from: .node))
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31003), "other NodePorts keep working")
        let audit = try String(contentsOfFile: node.stateDirectory + "/audit.log", encoding: .utf8)
        XCTAssertTrue(audit.contains("\"action\":\"fight-start\"") && audit.contains("RIVAL-PRE"), audit)

        // A rival for the hold itself, in raw: detected and backed off the same
        // way, not repaired ten times a second.
        let rawRival = try ChildProcess(["ip", "netns", "exec", node.node, "sh", "-c", """
            while true; do
              if [ "$(iptables-legacy -w -t raw -S PREROUTING | sed -n 2p)" != "-A PREROUTING -p tcp -j ACCEPT" ]; then
                iptables-legacy -w -t raw -D PREROUTING -p tcp -j ACCEPT 2>/dev/null
                iptables-legacy -w -t raw -I PREROUTING 1 -p tcp -j ACCEPT
              fi
              sleep 0.1
            done
            """])
        defer { rawRival.signal(SIGKILL); rawRival.wait() }
        XCTAssertTrue(try node.eventually(15) {
            (try node.status()["fights"] as? [[String: Any]])?.contains { $0["table"] as? String == "raw" } == true
        }, "no fight over the raw hold reported:\n\(node.daemonLog)")
        let rawFight = try XCTUnwrap((node.status()["fights"] as? [[String: Any]])?.first { $0["table"] as? String == "raw" })
        XCTAssertEqual(rawFight["culprit"] as? String, "-A PREROUTING -p tcp -j ACCEPT")
        XCTAssertEqual(rawFight["family"] as? String, "ipv4")
        XCTAssertEqual(rawFight["chain"] as? String, "PREROUTING")
        usleep(700_000)
        let rawRepairs = try XCTUnwrap(node.status()["repairs"] as? Int)
        usleep(1_500_000)
        XCTAssertEqual(try node.status()["repairs"] as? Int, rawRepairs, "NodeGuard must not keep fighting in raw:\n\(node.daemonLog)")
        rawRival.signal(SIGKILL)
        rawRival.wait()

        // --remove-rules leaves nothing behind in raw either.
        rival.signal(SIGKILL)
        rival.wait()
        node.stopDaemon()
        let removal = try runCommand(["ip", "netns", "exec", node.node, TestPaths.nodeguardd, "--remove-rules", "--state-dir", node.stateDirectory])
        XCTAssertEqual(removal.status, 0, removal.stderr)
        XCTAssertFalse(try node.inNode("iptables-legacy-save -t raw; ip6tables-legacy-save -t raw").stdout.contains("NODEGUARD"))
    }

    /// Different one-off rules that look alike to the decoder are not one
    /// rule three times; rules that cannot let a blocked packet through (a
    /// firewall manager's ICMPv6 accepts, re-inserted first on every reload)
    /// are no fight at all, and NodeGuard's jump may stay below them.
    func testLookalikesAndHarmlessRulesStartNoFight() throws {
        try setUpNode()
        try node.startDaemon()
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        let jump = try XCTUnwrap(try node.mangleRules().first)
        for match in ["-m string --string evil --algo bm", "-m multiport --dports 31002,31003", "-m u32 --u32 0>>22&0x3C@4=0x1"] {
            try node.inNode("iptables-legacy -w -t mangle -I PREROUTING 1 -p tcp \(match) -j ACCEPT")
            XCTAssertTrue(try node.eventually { try node.mangleRules().first == jump }, "repaired:\n\(node.daemonLog)")
            try node.inNode("iptables-legacy -w -t mangle -D PREROUTING -p tcp \(match) -j ACCEPT")
        }
        XCTAssertNil(try node.status()["fight"], "three different rules are no fight:\n\(node.daemonLog)")
        XCTAssertEqual(try node.status()["healthy"] as? Bool, true)

        // A firewall manager's reloads: ICMPv6 accepts put first, five times.
        let repairs = try XCTUnwrap(node.status()["repairs"] as? Int)
        for _ in 0..<5 {
            try node.inNode("""
                ip6tables-legacy -w -t mangle -D PREROUTING -p ipv6-icmp -j ACCEPT 2>/dev/null; \
                ip6tables-legacy -w -t mangle -I PREROUTING 1 -p ipv6-icmp -j ACCEPT
                """)
            usleep(100_000)
        }
        usleep(500_000)
        let status = try node.status()
        XCTAssertNil(status["fight"], node.daemonLog)
        XCTAssertEqual(status["healthy"] as? Bool, true, "a rule that cannot match a NodePort packet is no danger")
        XCTAssertEqual(status["hooksEffective"] as? Bool, true)
        XCTAssertEqual(status["hooksFirst"] as? Bool, false, "the jump stays below the harmless rule")
        XCTAssertEqual(status["repairs"] as? Int, repairs, "nothing to repair:\n\(node.daemonLog)")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv6, 31002))
    }
}
