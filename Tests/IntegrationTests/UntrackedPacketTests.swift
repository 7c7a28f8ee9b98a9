import Foundation
import XCTest

/// A raw-table `-j CT --notrack` takes a packet out of connection tracking
/// before mangle: it then has no direction, no DNAT happens, and it reaches
/// whatever listens on the node itself. NodeGuard drops it all the same, and
/// says which raw rule exempts a blocked port from tracking.
final class UntrackedPacketTests: NodeTestCase {
    func testUntrackedPacketsToABlockedPortAreDroppedAndTheRawRuleIsNamed() throws {
        try setUpNode()
        let v4 = TestNode.nodeIPv4, v6 = TestNode.nodeIPv6
        // Something on the node itself listens on the NodePort's number.
        try node.startServers(in: node.node, name: "node", ports: ["tcp:31002", "udp:31900"])
        for tool in ["iptables-legacy", "ip6tables-legacy"] {
            for chain in ["PREROUTING", "OUTPUT"] {
                try node.inNode("""
                    \(tool) -w -t raw -A \(chain) -p tcp --dport 31002 -j CT --notrack && \
                    \(tool) -w -t raw -A \(chain) -p udp --dport 31900 -j NOTRACK
                    """)
            }
        }
        // Untracked, the packets skip kube-proxy's DNAT and the node answers.
        XCTAssertTrue(try node.isOpen("tcp", v4, 31002), "the fixture: an untracked packet reaches the node's listener")

        try node.startDaemon()
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        XCTAssertEqual(try node.ctl("block", "31900/udp").status, 0)
        XCTAssertEqual(try node.ctl("block", "31005").status, 0)
        for (host, origin) in [(v4, TestNode.Origin.client), (v6, .client), (v4, .node), (v6, .node)] {
            XCTAssertFalse(try node.answers("tcp", host, 31002, from: origin), "untracked 31002/tcp answered \(origin) on \(host)")
            XCTAssertFalse(try node.answers("udp", host, 31900, from: origin), "untracked 31900/udp answered \(origin) on \(host)")
        }
        // Tracked traffic is as before: other ports open, replies to the node's own connections arrive.
        XCTAssertTrue(try node.isOpen("tcp", v4, 31003))
        XCTAssertTrue(try node.isOpen("tcp", TestNode.podIPv4, 8200, from: .node, sourcePort: 31005),
                      "replies to the node's own connection from blocked local port 31005 arrive")

        // explain and status name the raw rules.
        let explain = try node.ctl("explain", "31002", "--json")
        XCTAssertEqual(explain.status, 0, explain.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(explain.stdout.utf8)) as? [String: Any])
        let untracked = try XCTUnwrap(object["untracked"] as? [String], explain.stdout)
        XCTAssertTrue(untracked.contains { $0.contains("ipv4 raw PREROUTING") && $0.contains("--dport 31002") && $0.contains("--notrack") }, "\(untracked)")
        XCTAssertTrue(untracked.contains { $0.contains("ipv6 raw OUTPUT") }, "\(untracked)")
        XCTAssertTrue((object["verdict"] as? String)?.hasPrefix("closed") == true, explain.stdout)
        let entries = try XCTUnwrap(node.status()["entries"] as? [[String: Any]])
        let udp = try XCTUnwrap(entries.first { ($0["port"] as? Int) == 31900 })
        XCTAssertTrue((udp["untracked"] as? [String])?.contains { $0.contains("-j NOTRACK") } == true, "\(udp)")
        XCTAssertEqual(try node.status()["healthy"] as? Bool, true, "NodeGuard drops untracked packets: nothing is at risk")
    }
}
