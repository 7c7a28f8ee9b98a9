import Foundation
@testable import NodeGuardCore
import XCTest

/// The nftables backend against the real kernel, with real packets: the
/// keeper commits NodeGuard's `inet nodeguard` table through its netlink
/// socket in the node's namespace, in front of kube-proxy's nat written
/// three ways (iptables-legacy, iptables-nft, kube-proxy's nftables mode).
final class NFTablesKeeperTests: NodeTestCase {
    /// A keeper whose socket lives in the node's namespace (a netlink socket
    /// stays in the namespace it was opened in).
    func makeKeeper() throws -> NFTablesKeeper {
        try node.inNodeNamespace { NFTablesKeeper(transport: try NFTSocket()) }
    }

    static let story = [
        BlockEntry(port: 31002, reason: "SEC-1234 vault UI"),
        BlockEntry(port: 31900, transport: .udp),
    ]

    func nft(_ command: String) throws -> CommandResult {
        try node.inNode("nft \(command)")
    }

    func testTheStoryWhenKubeProxyUsesIptablesLegacy() throws {
        try setUpNode(nat: .legacy)
        try assertTheStory()
    }

    func testTheStoryWhenKubeProxyUsesIptablesNft() throws {
        try setUpNode(nat: .nft)
        try assertTheStory()
    }

    func testTheStoryWhenKubeProxyUsesNftablesMode() throws {
        try setUpNode(nat: .nftables)
        let kubeProxy = try nft("list table ip kube-proxy")
        XCTAssertTrue(kubeProxy.stdout.contains("31002"), "the fixture must load kube-proxy's nftables table: \(kubeProxy.stderr)")
        try assertTheStory()
    }

    private func assertTheStory() throws {
        let v4 = TestNode.nodeIPv4, v6 = TestNode.nodeIPv6
        for (host, origin) in [(v4, TestNode.Origin.client), (v6, .client), (v4, .node), (v6, .node)] {
            XCTAssertTrue(try node.isOpen("tcp", host, 31002, from: origin), "NodePort 31002 must answer \(origin) on \(host) before any block")
        }

        let keeper = try makeKeeper()
        let changes = try keeper.apply(Self.story)
        XCTAssertEqual(changes.map(\.what), ["was missing; created it with 4 element(s)"])
        XCTAssertTrue(keeper.heldByKernel, keeper.flagsRefused ?? "")

        try assertStoryBlocked()

        // The kernel's read-back, in nft's own words, says what each part is.
        let listed = try nft("list table inet nodeguard").stdout
        // nft 1.0.6 knows the owner flag, not persist: the kernel's flags are read back below.
        for line in ["flags owner", "type filter hook prerouting priority mangle; policy accept;",
                     "fib daddr type local jump guard comment \"NodeGuard: drop blocked NodePorts before DNAT\"",
                     "tcp . 31002 counter packets", "comment \"NodeGuard: block 31002/tcp: SEC-1234 vault UI\"",
                     "ct direction reply return comment \"NodeGuard: replies to established connections pass\""] {
            XCTAssertTrue(listed.contains(line), "nft list must show '\(line)':\n\(listed)")
        }
        XCTAssertEqual(try keeper.transport.read(NFTablesPlanner.table)?.flags, [.owner, .persist])
        // Drop counters count what was dropped, per family.
        let inspection = try keeper.inspect()
        for family in AddressFamily.allCases {
            let counters = inspection.first { $0.family == family }?.dropCounters[PortKey(port: 31002, transport: .tcp)]
            XCTAssertGreaterThan(counters?.packets ?? 0, 0, "\(family) drops of 31002/tcp counted")
            XCTAssertEqual(inspection.first { $0.family == family }?.hookFirst, ["PREROUTING": true, "OUTPUT": true])
        }
        // Applying the same list again changes nothing.
        XCTAssertEqual(try keeper.apply(Self.story), [])
        XCTAssertEqual(keeper.commitCount, 1)
    }

    /// While the keeper's socket is open the table is its own: nobody else
    /// deletes it, and `nft flush ruleset` (nftables.service) passes it by.
    func testWhileTheKeeperRunsNoOtherProcessDeletesOrFlushesTheTable() throws {
        try setUpNode(nat: .nftables)
        let keeper = try makeKeeper()
        try keeper.apply(Self.story)
        let delete = try nft("delete table inet nodeguard")
        XCTAssertFalse(delete.succeeded, "another process must not delete NodeGuard's table")
        XCTAssertTrue(delete.stderr.contains("Operation not permitted"), delete.stderr)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002), "31002 stays closed")

        XCTAssertTrue(try nft("flush ruleset").succeeded)
        let tables = try nft("list tables").stdout
        XCTAssertTrue(tables.contains("table inet nodeguard"), "flush ruleset must pass NodeGuard's table by: \(tables)")
        XCTAssertFalse(tables.contains("kube-proxy"), "while it flushes everything else: \(tables)")
        XCTAssertEqual(try keeper.apply(Self.story), [], "the table is intact")
    }

    /// A crash never opens a port: the kernel keeps the table when its
    /// owner's socket closes, and the next keeper adopts it without
    /// rebuilding it or adding anything twice.
    func testTheTableOutlivesItsOwnerAndTheNextKeeperAdoptsIt() throws {
        try setUpNode(nat: .nftables)
        do {
            let keeper = try makeKeeper()
            try keeper.apply(Self.story)
            XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        }
        // The socket is closed with the keeper: the table stays, without an owner.
        let orphan = try nft("list table inet nodeguard").stdout
        XCTAssertTrue(orphan.contains("tcp . 31002"), orphan)
        XCTAssertFalse(orphan.contains("owner"), "no owner once its socket closed: \(orphan)")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002), "the port stays closed while no daemon runs")

        let next = try makeKeeper()
        let changes = try next.apply(Self.story)
        XCTAssertEqual(changes.map(\.what), ["had no owner; took ownership"])
        let adopted = try nft("list table inet nodeguard").stdout
        XCTAssertTrue(adopted.contains("flags owner"), adopted)
        XCTAssertEqual(try next.transport.read(NFTablesPlanner.table)?.flags, [.owner, .persist])
        XCTAssertEqual(adopted.components(separatedBy: "tcp . 31002").count - 1, 2, "one element per family, not duplicated:\n\(adopted)")
        XCTAssertFalse(try nft("delete table inet nodeguard").succeeded, "owned again")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv6, 31002))

        // Removing the rules is deleting the table.
        XCTAssertEqual(try next.removeAll().map(\.what), ["deleted it"])
        XCTAssertFalse(try nft("list tables").stdout.contains("nodeguard"))
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002), "open again once removed")
    }

    /// allowFrom lets a source through in its own family only; a deny-list
    /// change is a change of elements.
    func testAllowedSourcesPassInTheirOwnFamilyAndAListChangeEditsElements() throws {
        try setUpNode(nat: .nftables)
        let keeper = try makeKeeper()
        let client = try CIDR(parsing: "198.18.0.2")
        try keeper.apply([BlockEntry(port: 31002, allowFrom: [client])])
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002), "the allowed IPv4 client gets through")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv6, 31002), "the same client over IPv6 is not allowed")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002, from: .node), "the node itself is not the allowed source")

        let changes = try keeper.apply([BlockEntry(port: 31003, family: .ipv4)])
        XCTAssertEqual(Set(changes.map(\.chain)), ["allow4", "drop4", "drop6"])
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv6, 31002), "31002 reopened")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31003), "31003 closed over IPv4")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv6, 31003), "and open over IPv6")
    }

    /// Every nat chain runs inside the kernel's NAT hook (-100): a DNAT in a
    /// nat chain declared at -160 still comes after NodeGuard's -150, so the
    /// port stays closed and nothing is reported. A filter chain that writes
    /// the destination port before NodeGuard's chain is what can defeat it,
    /// and is named.
    func testOnlyARewriteThatRunsBeforeNodeGuardsChainIsReportedAsADefeat() throws {
        try setUpNode(nat: .nftables)
        let socket = try node.inNodeNamespace { try NFTSocket() }
        let keeper = NFTablesKeeper(transport: socket)
        try keeper.apply(Self.story)
        XCTAssertEqual(NFTablesDefeats.rewritingBefore(try socket.hookChains()), [], "kube-proxy DNATs at -100, after NodeGuard")

        let earlyNat = "add table ip early; add chain ip early pre { type nat hook prerouting priority -160; }; "
            + "add rule ip early pre tcp dport 31002 dnat to \(TestNode.podIPv4):8200"
        XCTAssertTrue(try nft("'\(earlyNat)'").succeeded)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002), "a nat chain at -160 runs at -100: still closed")
        let counted = try keeper.inspect().first { $0.family == .ipv4 }?.dropCounters[PortKey(port: 31002, transport: .tcp)]
        XCTAssertGreaterThan(counted?.packets ?? 0, 0, "NodeGuard saw the packets to 31002 before the DNAT")
        let hooks = try socket.hookChains()
        XCTAssertTrue(hooks.contains { $0.table == "early" && $0.priority == -160 && $0.rewritesDestination }, "\(hooks)")
        XCTAssertEqual(NFTablesDefeats.rewritingBefore(hooks), [])

        let rewrite = "add table ip mangler; add chain ip mangler pre { type filter hook prerouting priority -300; }; "
            + "add rule ip mangler pre tcp dport 31002 tcp dport set 31003"
        XCTAssertTrue(try nft("'\(rewrite)'").succeeded)
        let found = NFTablesDefeats.rewritingBefore(try socket.hookChains())
        XCTAssertEqual(found.map { "\($0.family) \($0.table) \($0.chain) \($0.priority)" }, ["ip mangler pre -300"])
    }

    /// `nodeguardd --remove-rules` (the package's purge runs it) removes the
    /// nftables table an earlier run left, besides the legacy rules.
    func testRemoveRulesDeletesTheTableAnEarlierRunLeft() throws {
        try setUpNode(nat: .nftables)
        do { try makeKeeper().apply(Self.story) }
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002), "closed by the table the keeper left")
        let remove = [TestPaths.nodeguardd, "--remove-rules", "--state-dir", node.stateDirectory]
        let result = try runCommand(["ip", "netns", "exec", node.node] + remove)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("inet nodeguard table: deleted it"), result.stderr)
        XCTAssertFalse(try nft("list tables").stdout.contains("nodeguard"))
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002))
        // Nothing left: a second run has nothing to do, and no legacy table was created.
        let again = try runCommand(["ip", "netns", "exec", node.node] + remove)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("no NodeGuard rules were present"), again.stderr)
        XCTAssertEqual(try node.inNode("cat /proc/net/ip_tables_names 2>/dev/null; cat /proc/net/ip6_tables_names 2>/dev/null").stdout, "")
    }
}
