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

        let rival = try ChildProcess(["ip", "netns", "exec", node.node, "sh", "-c", """
            iptables-legacy -w -t mangle -N RIVAL-PRE && iptables-legacy -w -t mangle -A RIVAL-PRE -j ACCEPT || exit 1
            while true; do
              if [ "$(iptables-legacy -w -t mangle -S PREROUTING | sed -n 2p)" != "-A PREROUTING -j RIVAL-PRE" ]; then
                iptables-legacy -w -t mangle -D PREROUTING -j RIVAL-PRE 2>/dev/null
                iptables-legacy -w -t mangle -I PREROUTING 1 -j RIVAL-PRE
              fi
              sleep 0.1
            done
            """])
        defer { rival.signal(SIGKILL); rival.wait() }

        XCTAssertTrue(try node.eventually(15) { try node.status()["fight"] != nil }, "no fight reported:\n\(node.daemonLog)")
        let fight = try XCTUnwrap(node.status()["fight"] as? [String: Any])
        XCTAssertEqual(fight["culprit"] as? String, "-j RIVAL-PRE")
        XCTAssertEqual(fight["chain"] as? String, "PREROUTING")
        XCTAssertEqual(fight["holding"] as? String, "raw")
        XCTAssertTrue((fight["advice"] as? String)?.contains("FELIX_CHAININSERTMODE=Append") == true, "\(fight)")
        XCTAssertEqual(try node.status()["healthy"] as? Bool, false, "a fight needs a person")
        XCTAssertTrue(node.daemonLog.contains("fight: '-j RIVAL-PRE' was put above NodeGuard's jump in ipv4 mangle PREROUTING 3 times;"), node.daemonLog)

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

        // --remove-rules leaves nothing behind in raw either.
        rival.signal(SIGKILL)
        rival.wait()
        node.stopDaemon()
        let removal = try runCommand(["ip", "netns", "exec", node.node, TestPaths.nodeguardd, "--remove-rules", "--state-dir", node.stateDirectory])
        XCTAssertEqual(removal.status, 0, removal.stderr)
        XCTAssertFalse(try node.inNode("iptables-legacy-save -t raw; ip6tables-legacy-save -t raw").stdout.contains("NODEGUARD"))
    }
}
