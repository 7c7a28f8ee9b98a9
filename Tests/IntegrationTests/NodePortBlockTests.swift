import XCTest

/// The story NodeGuard exists for: a filter-table DROP does not close a
/// NodePort, `nodeguardctl block` does, for remote and local clients, IPv4 and
/// IPv6, without breaking pod traffic or replies to the node's own connections.
final class NodePortBlockTests: NodeTestCase {
    static let expectedIPv4 = [
        "-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment \"NodeGuard: drop blocked NodePorts before DNAT\" -j NODEGUARD",
        "-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment \"NodeGuard: drop blocked NodePorts before DNAT\" -j NODEGUARD",
        "-A NODEGUARD -m conntrack --ctdir REPLY -m comment --comment \"NodeGuard: replies to established connections pass\" -j RETURN",
        "-A NODEGUARD -p tcp -m comment --comment \"NodeGuard: tcp ports\" -j NODEGUARD-TCP",
        "-A NODEGUARD -p udp -m comment --comment \"NodeGuard: udp ports\" -j NODEGUARD-UDP",
        "-A NODEGUARD-TCP -p tcp -m tcp --dport 31002 -m comment --comment \"NodeGuard: block 31002/tcp: SEC-1234 vault UI\" -j DROP",
        "-A NODEGUARD-UDP -p udp -m udp --dport 31900 -m comment --comment \"NodeGuard: block 31900/udp\" -j DROP",
    ]

    func testFilterDropFailsAndNodeGuardBlockClosesTheNodePort() throws {
        try setUpNode(nat: .legacy)
        try assertTheStory()
    }

    /// A node whose kube-proxy uses iptables-nft: NodeGuard's legacy mangle
    /// hook still runs before the nft nat table's DNAT.
    func testBlockWorksWhenKubeProxyUsesTheNftBackend() throws {
        try setUpNode(nat: .nft)
        let nftNat = try runCommand(["ip", "netns", "exec", node.node, "iptables-nft-save", "-t", "nat"])
        XCTAssertTrue(nftNat.stdout.contains("--dport 31002"), "the fixture must load the nat table through nft")
        let legacyNat = try runCommand(["ip", "netns", "exec", node.node, "iptables-legacy-save", "-t", "nat"])
        XCTAssertFalse(legacyNat.stdout.contains("KUBE-NODEPORTS"), "the legacy nat table must stay empty")
        try assertTheStory()
    }

    private func assertTheStory() throws {
        let v4 = TestNode.nodeIPv4, v6 = TestNode.nodeIPv6

        // 1. Before: the NodePort answers remote and local clients, IPv4 and IPv6.
        for (host, origin) in [(v4, TestNode.Origin.client), (v6, .client), (v4, .node), (v6, .node)] {
            XCTAssertTrue(try node.isOpen("tcp", host, 31002, from: origin), "NodePort 31002 must answer \(origin) on \(host) before any block")
        }
        XCTAssertTrue(try node.isOpen("udp", v4, 31900), "UDP NodePort 31900 must answer before any block")

        // The manual "fix" that does not work: kube-proxy DNATs before filter INPUT.
        try node.inNode("iptables-legacy -I INPUT -p tcp --dport 31002 -j DROP && ip6tables-legacy -I INPUT -p tcp --dport 31002 -j DROP")
        XCTAssertTrue(try node.isOpen("tcp", v4, 31002), "a filter INPUT DROP does not close a NodePort (IPv4)")
        XCTAssertTrue(try node.isOpen("tcp", v6, 31002), "a filter INPUT DROP does not close a NodePort (IPv6)")
        // The futile rule goes again: it would drop replies to the node's own
        // connections from port 31002, which this test checks NodeGuard does not.
        try node.inNode("iptables-legacy -D INPUT -p tcp --dport 31002 -j DROP && ip6tables-legacy -D INPUT -p tcp --dport 31002 -j DROP")

        // 2. NodeGuard closes it.
        try node.startDaemon()
        let block = try node.ctl("block", "31002", "--reason", "SEC-1234 vault UI")
        XCTAssertEqual(block.status, 0, block.stderr)
        XCTAssertEqual(try node.ctl("block", "31900/udp").status, 0)

        try assertStoryBlocked()

        // The kernel's own read-back is exactly NodeGuard's rules, and explains itself.
        XCTAssertEqual(try node.mangleRules(), Self.expectedIPv4)
        XCTAssertEqual(try node.mangleRules(ipv6: true), Self.expectedIPv4)

        // Drop counters count what was dropped.
        let entries = try node.status()["entries"] as? [[String: Any]] ?? []
        let vault = entries.first { ($0["port"] as? Int) == 31002 }
        let dropped = (vault?["dropped"] as? [String: Any])?["packets"] as? Int ?? 0
        XCTAssertGreaterThan(dropped, 0, "status must show the drops for 31002: \(entries)")
        XCTAssertEqual(vault?["source"] as? String, "runtime")

        // 3. Unblock: open again.
        XCTAssertEqual(try node.ctl("unblock", "31002").status, 0)
        XCTAssertEqual(try node.ctl("unblock", "31900/udp").status, 0)
        for (host, origin) in [(v4, TestNode.Origin.client), (v6, .client), (v4, .node), (v6, .node)] {
            XCTAssertTrue(try node.isOpen("tcp", host, 31002, from: origin), "31002 must answer \(origin) on \(host) after unblock")
        }
        XCTAssertTrue(try node.isOpen("udp", v4, 31900), "UDP NodePort 31900 must answer after unblock")
        XCTAssertFalse(try node.mangleRules().contains { $0.contains("--dport 31002") })
    }

    /// allowFrom sources keep access, others are dropped, per family.
    func testAllowFromKeepsListedSourcesOpen() throws {
        try setUpNode()
        try node.writeDenyList("""
            {"version": 1, "blocked": [
              {"port": 31002, "allowFrom": ["198.18.0.2/32"]},
              {"port": 31003, "allowFrom": ["203.0.113.0/24", "2001:db8:18::/64"]}
            ]}
            """)
        try node.startDaemon()
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002), "the allowed IPv4 client keeps access")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv6, 31002), "no IPv6 source is allowed for 31002")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31003), "the client is not in 31003's IPv4 allow list")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv6, 31003), "the client's IPv6 network is allowed for 31003")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002, from: .node), "the node itself is not allowed for 31002")
    }

    /// An entry whose allowFrom holds 0.0.0.0/0 and ::/0 blocks nothing:
    /// explain says so instead of "closed", and packets agree.
    func testExplainSaysAnEntryThatAllowsEveryoneBlocksNothing() throws {
        try setUpNode()
        try node.writeDenyList("""
            {"version": 1, "blocked": [
              {"port": 31002, "allowFrom": ["0.0.0.0/0", "::/0"]},
              {"port": 31003, "allowFrom": ["0.0.0.0/0"]}
            ]}
            """)
        try node.startDaemon()
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv6, 31002))
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv6, 31003))
        func explain(_ port: String) throws -> [String: Any] {
            let result = try node.ctl("explain", port, "--json")
            XCTAssertEqual(result.status, 0, result.stderr)
            return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        }
        let everyone = try explain("31002")
        XCTAssertEqual(everyone["verdict"] as? String, "open: allowFrom lets every client through, so the entry for 31002/tcp blocks nothing")
        let half = try explain("31003")
        XCTAssertEqual(half["verdict"] as? String, "at risk: see defeats")
        XCTAssertTrue((half["defeats"] as? [String])?.contains {
            $0.hasPrefix("allowFrom lets every IPv4 source through (0.0.0.0/0)") } == true, "\(half)")
    }
}
