import Foundation
import NodeGuardCore
import SystemPackage
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The nftables shim (CNodeGuardNFT) and NFTSocket against the real kernel,
/// each test in the node namespace of its own TestNode: what is committed
/// reads back exactly, edits by nft are never mistaken for NodeGuard's, the
/// owner flag holds the table against other processes, element counters
/// count real packets, events arrive, and foreign DNAT chains are found.
final class NFTSocketTests: NodeTestCase {
    static let table = "nodeguard"

    static let blocked = NFTSet(name: "blocked", counters: true, comment: "NodeGuard: blocked ports")
    static let allow4 = NFTSet(name: "allow4", sourceFamily: .ipv4, comment: "NodeGuard: allowed sources (IPv4)")
    static let allow6 = NFTSet(name: "allow6", sourceFamily: .ipv6)

    static let vault = NFTElement(transport: .tcp, ports: 31002...31002, comment: "SEC-1234 vault UI")
    static let udpRange = NFTElement(transport: .udp, ports: 31000...31010)
    static let tenNet = NFTElement(source: try! CIDR(parsing: "10.0.0.0/8"), transport: .tcp, ports: 31002...31002)
    static let docNet6 = NFTElement(source: try! CIDR(parsing: "2001:db8:99::/48"), transport: .tcp, ports: 31002...31003,
                                    comment: "documentation prefix")

    static let toGuard = NFTRule(matchLocalDestination: true, verdict: .jump("guard"),
                                 comment: "NodeGuard: drop blocked NodePorts before DNAT")
    /// Every kind of the vocabulary: fib, ct, nfproto, the three key layouts, every verdict.
    static let guardRules = [
        NFTRule(matchReply: true, verdict: .return, comment: "NodeGuard: replies to established connections pass"),
        NFTRule(family: .ipv4, lookup: "allow4", lookupSourceFamily: .ipv4, verdict: .return,
                comment: "NodeGuard: allowed sources (IPv4)"),
        NFTRule(family: .ipv6, lookup: "allow6", lookupSourceFamily: .ipv6, verdict: .accept,
                comment: "NodeGuard: allowed sources (IPv6)"),
        NFTRule(lookup: "blocked", verdict: .drop, comment: "NodeGuard: blocked ports"),
    ]

    /// The whole table in one batch.
    static func tableEdits(flags: NFTTableFlags = [.owner, .persist]) -> [NFTEdit] {
        [
            .addTable(flags: flags),
            .addSet(blocked), .addSet(allow4), .addSet(allow6),
            .addElements(blocked, [vault, udpRange]),
            .addElements(allow4, [tenNet]),
            .addElements(allow6, [docNet6]),
            .addChain(NFTChain(name: "guard")),
            .addChain(NFTChain(name: "prerouting", hook: .prerouting, priority: -150)),
            .addChain(NFTChain(name: "output", hook: .output, priority: -150)),
            .addRule(chain: "prerouting", toGuard),
            .addRule(chain: "output", toGuard),
        ] + guardRules.map { .addRule(chain: "guard", $0) }
    }

    /// An NFTSocket (or anything else) made in the node's network namespace.
    private func inNode<T>(_ body: @escaping () throws -> T) throws -> T {
        try node.inNodeNamespace(body)
    }

    @discardableResult
    private func nft(_ arguments: String...) throws -> CommandResult {
        try runCommand(["ip", "netns", "exec", node.node, "nft"] + arguments)
    }

    private func nftScript(_ script: String) throws {
        let result = try runCommand(["ip", "netns", "exec", node.node, "nft", "-f", "-"], input: script)
        XCTAssertTrue(result.succeeded, "nft -f failed: \(result.stderr)")
    }

    private func chain(_ view: NFTTableView, _ name: String) -> NFTObservedChain? {
        view.chains.first { $0.name == name }
    }

    private func set(_ view: NFTTableView, _ name: String) -> NFTObservedSet? {
        view.sets.first { $0.name == name }
    }

    // MARK: a. what is written reads back

    func testCommittedTableReadsBackExactlyAndNftShowsIt() throws {
        try setUpNode(nat: .none)
        let socket = try inNode { try NFTSocket() }
        try socket.commit(Self.table, Self.tableEdits())
        let read = try socket.read(Self.table)
        let view = try XCTUnwrap(read, "the table must exist after the commit")

        XCTAssertEqual(view.flags, [.owner, .persist])
        XCTAssertTrue(view.hasOwner)
        XCTAssertTrue(view.ownedBySocket, "the committing socket owns the table")
        XCTAssertEqual(view.generation, try socket.generation(), "nothing else committed since the read")

        XCTAssertEqual(Set(view.chains.map(\.name)), ["guard", "prerouting", "output"])
        for (name, hook) in [("prerouting", NFTHook.prerouting), ("output", .output)] {
            let base = try XCTUnwrap(chain(view, name))
            XCTAssertEqual(base.hook, hook)
            XCTAssertEqual(base.priority, -150)
            XCTAssertEqual(base.type, "filter")
            XCTAssertTrue(base.policyAccepts)
            XCTAssertEqual(base.rules.map(\.rule), [Self.toGuard])
        }
        let guardChain = try XCTUnwrap(chain(view, "guard"))
        XCTAssertNil(guardChain.hook)
        XCTAssertNil(guardChain.hookNumber)
        XCTAssertEqual(guardChain.rules.map(\.rule), Self.guardRules, "every rule decodes as written")
        XCTAssertEqual(guardChain.rules.map(\.comment), Self.guardRules.map(\.comment))
        XCTAssertEqual(Set(guardChain.rules.map(\.handle)).count, Self.guardRules.count, "each rule has its own handle")

        XCTAssertEqual(view.sets.map(\.name), ["blocked", "allow4", "allow6"])
        XCTAssertEqual(set(view, "blocked")?.set, Self.blocked)
        XCTAssertEqual(set(view, "allow4")?.set, Self.allow4)
        XCTAssertEqual(set(view, "allow6")?.set, Self.allow6)
        XCTAssertEqual(Set(set(view, "blocked")?.elements.map(\.element) ?? []), [Self.vault, Self.udpRange])
        XCTAssertEqual(set(view, "allow4")?.elements.map(\.element), [Self.tenNet])
        XCTAssertEqual(set(view, "allow6")?.elements.map(\.element), [Self.docNet6])

        // The real nft reads the same table: types, elements, comments, counters.
        let listing = try nft("list", "table", "inet", Self.table)
        XCTAssertTrue(listing.succeeded, listing.stderr)
        for expected in [
            "type inet_proto . inet_service", "type ipv4_addr . inet_proto . inet_service",
            "type ipv6_addr . inet_proto . inet_service", "tcp . 31002 counter packets 0 bytes 0 comment \"SEC-1234 vault UI\"",
            "udp . 31000-31010 counter packets 0 bytes 0", "10.0.0.0/8 . tcp . 31002", "2001:db8:99::/48 . tcp . 31002-31003",
            "comment \"NodeGuard: blocked ports\"",
            "type filter hook prerouting priority mangle; policy accept;",
            "fib daddr type local jump guard comment \"NodeGuard: drop blocked NodePorts before DNAT\"",
            "ct direction reply return comment \"NodeGuard: replies to established connections pass\"",
            "ip saddr . meta l4proto . th dport @allow4 return",
            "ip6 saddr . meta l4proto . th dport @allow6 accept",
            "meta l4proto . th dport @blocked drop comment \"NodeGuard: blocked ports\"",
        ] {
            XCTAssertTrue(listing.stdout.contains(expected), "nft list lacks '\(expected)':\n\(listing.stdout)")
        }
    }

    /// A refused batch changes nothing and names the edit the kernel refused.
    func testRefusedBatchNamesTheEditAndChangesNothing() throws {
        try setUpNode(nat: .none)
        let socket = try inNode { try NFTSocket() }
        try socket.commit(Self.table, Self.tableEdits())
        let before = try XCTUnwrap(try socket.read(Self.table))
        let bad = NFTRule(verdict: .drop, comment: "into a chain that is not there")
        do {
            try socket.commit(Self.table, [.flushChain("guard"), .addRule(chain: "missing", bad)])
            XCTFail("a rule for a missing chain must be refused")
        } catch {
            XCTAssertEqual(error.errno, .noSuchFileOrDirectory)
            XCTAssertTrue(error.message.contains("add rule to missing"), error.message)
        }
        let after = try XCTUnwrap(try socket.read(Self.table))
        XCTAssertEqual(chain(after, "guard")?.rules, chain(before, "guard")?.rules, "the flush before it did not happen either")
    }

    /// Many elements go in several messages, still one edit: a refusal after
    /// them names the right edit, and undoes them.
    func testLargeElementEditsStayOneEditOfTheBatch() throws {
        try setUpNode(nat: .none)
        let socket = try inNode { try NFTSocket() }
        try socket.commit(Self.table, Self.tableEdits())
        let many = (0..<600).map { NFTElement(transport: .tcp, ports: UInt16(40_000 + $0)...UInt16(40_000 + $0), comment: "port \($0)") }
        try socket.commit(Self.table, [.addElements(Self.blocked, many)])
        let grown = try XCTUnwrap(set(try XCTUnwrap(try socket.read(Self.table)), "blocked"))
        XCTAssertEqual(grown.elements.count, 602)
        XCTAssertEqual(Set(grown.elements.map(\.element)), Set(many + [Self.vault, Self.udpRange]))

        let bad = NFTRule(verdict: .drop, comment: "last")
        do {
            try socket.commit(Self.table, [.deleteElements(Self.blocked, many), .addChain(NFTChain(name: "more")),
                                           .addRule(chain: "missing", bad)])
            XCTFail("a rule for a missing chain must be refused")
        } catch {
            XCTAssertEqual(error.errno, .noSuchFileOrDirectory)
            XCTAssertTrue(error.message.contains("'add rule to missing: last' was refused"), error.message)
        }
        let after = try XCTUnwrap(try socket.read(Self.table))
        XCTAssertEqual(set(after, "blocked")?.elements.count, 602, "the deletions did not happen")
        XCTAssertNil(chain(after, "more"))
    }

    // MARK: b. foreign edits are seen

    func testRulesAndSetsEditedByNftAreNotNodeGuards() throws {
        try setUpNode(nat: .none)
        let writer = try inNode { try NFTSocket() }
        try writer.commit(Self.table, Self.tableEdits())
        let dropRule = try XCTUnwrap(chain(try XCTUnwrap(try writer.read(Self.table)), "guard")?.rules.last)
        writer.close()   // the table stays (persist) and loses its owner: nft may edit it

        let t = Self.table
        // The same rule with a counter, in place, keeping NodeGuard's comment.
        XCTAssertTrue(try nft("replace", "rule", "inet", t, "guard", "handle", String(dropRule.handle),
                              "meta", "l4proto", ".", "th", "dport", "@blocked", "counter", "drop",
                              "comment", "\"NodeGuard: blocked ports\"").succeeded)
        // Original instead of reply, and a goto instead of a jump.
        XCTAssertTrue(try nft("add", "rule", "inet", t, "guard", "ct", "direction", "original", "return",
                              "comment", "\"NodeGuard: replies to established connections pass\"").succeeded)
        XCTAssertTrue(try nft("add", "rule", "inet", t, "prerouting", "fib", "daddr", "type", "local", "goto", "guard").succeeded)
        // One nft writes exactly as NodeGuard does: it reads as NodeGuard's rule, its own comment.
        XCTAssertTrue(try nft("add", "rule", "inet", t, "guard", "ct", "direction", "reply", "return", "comment", "\"by hand\"").succeeded)
        // Sets: another key, and NodeGuard's key without the counter it had.
        XCTAssertTrue(try nft("add", "set", "inet", t, "ports", "{ type inet_service; flags interval; }").succeeded)
        XCTAssertTrue(try nft("add", "set", "inet", t, "pairs", "{ type ipv4_addr . inet_service; flags interval; }").succeeded)

        let reader = try inNode { try NFTSocket() }
        let view = try XCTUnwrap(try reader.read(t))
        XCTAssertFalse(view.hasOwner)
        let guardRules = try XCTUnwrap(chain(view, "guard")?.rules)
        XCTAssertEqual(guardRules.count, Self.guardRules.count + 2)
        XCTAssertEqual(guardRules.prefix(3).map(\.rule), Array(Self.guardRules.prefix(3)), "untouched rules are still NodeGuard's")
        XCTAssertNil(guardRules[3].rule, "a counter added by nft makes the rule foreign")
        XCTAssertEqual(guardRules[3].comment, "NodeGuard: blocked ports", "its comment is still read")
        XCTAssertEqual(guardRules[3].handle, dropRule.handle, "replaced in place")
        XCTAssertNil(guardRules[4].rule, "ct direction original is not NodeGuard's reply match")
        XCTAssertEqual(guardRules[5].rule, NFTRule(matchReply: true, verdict: .return, comment: "by hand"))
        let prerouting = try XCTUnwrap(chain(view, "prerouting")?.rules)
        XCTAssertEqual(prerouting.map(\.rule), [Self.toGuard, nil], "a goto is not NodeGuard's jump")

        XCTAssertNil(try XCTUnwrap(set(view, "ports")).set, "a single-field key is not NodeGuard's")
        XCTAssertNil(try XCTUnwrap(set(view, "pairs")).set, "an address . port key is not NodeGuard's")
        XCTAssertEqual(try XCTUnwrap(set(view, "ports")).elements, [])
        XCTAssertEqual(set(view, "blocked")?.set, Self.blocked, "NodeGuard's sets are untouched")
    }

    /// An element nft adds that NodeGuard could not have (a range of
    /// addresses that is no prefix) makes its set foreign.
    func testAnElementNodeGuardCannotWriteMakesTheSetForeign() throws {
        try setUpNode(nat: .none)
        let socket = try inNode { try NFTSocket() }
        try socket.commit(Self.table, Self.tableEdits(flags: []))   // no owner: nft may add
        XCTAssertTrue(try nft("add", "element", "inet", Self.table, "allow4",
                              "{ 192.0.2.1-192.0.2.6 . tcp . 31002 }").succeeded)
        let view = try XCTUnwrap(try socket.read(Self.table))
        XCTAssertNil(set(view, "allow4")?.set)
        XCTAssertEqual(set(view, "allow6")?.set, Self.allow6)
    }

    // MARK: c. the owner flag

    func testOwnedTableResistsOthersAndOutlivesItsOwner() throws {
        try setUpNode(nat: .none)
        let t = Self.table
        let owner = try inNode { try NFTSocket() }
        try owner.commit(t, Self.tableEdits())

        let delete = try nft("delete", "table", "inet", t)
        XCTAssertFalse(delete.succeeded, "another process must not delete an owned table")
        XCTAssertTrue(delete.stderr.contains("Operation not permitted"), delete.stderr)
        XCTAssertTrue(try nft("flush", "ruleset").succeeded)
        XCTAssertEqual(chain(try XCTUnwrap(try owner.read(t)), "guard")?.rules.count, Self.guardRules.count,
                       "nft flush ruleset leaves an owned table alone")

        // Another NodeGuard socket is another process's, to the kernel.
        let other = try inNode { try NFTSocket() }
        do {
            try other.commit(t, [.addTable(flags: [.owner, .persist])])
            XCTFail("a second socket must not take an owned table")
        } catch {
            XCTAssertEqual(error.errno, .notPermitted)
            XCTAssertTrue(error.message.contains("another process owns table inet \(t)"), error.message)
        }

        owner.close()
        let orphan = try XCTUnwrap(try other.read(t), "persist keeps the table when its owner goes")
        XCTAssertFalse(orphan.hasOwner)
        XCTAssertFalse(orphan.flags.contains(.owner))
        XCTAssertEqual(chain(orphan, "guard")?.rules.map(\.rule), Self.guardRules)
        XCTAssertEqual(set(orphan, "blocked")?.elements.count, 2)

        try other.commit(t, [.addTable(flags: [.owner, .persist])])
        let adopted = try XCTUnwrap(try other.read(t))
        XCTAssertTrue(adopted.ownedBySocket, "setting owner again adopts the orphan")
        XCTAssertEqual(adopted.flags, [.owner, .persist])
        XCTAssertEqual(chain(adopted, "guard")?.rules.map(\.rule), Self.guardRules, "adopting changes no content")
        XCTAssertFalse(try nft("delete", "table", "inet", t).succeeded, "the new owner holds it")
    }

    // MARK: d. counters and packets

    func testDropSetCountsDroppedPacketsAndAllowsTheRest() throws {
        try setUpNode(nat: .nftables)
        let v4 = TestNode.nodeIPv4, v6 = TestNode.nodeIPv6
        XCTAssertTrue(try node.isOpen("tcp", v4, 31002), "the NodePort answers before the table exists")
        let socket = try inNode { try NFTSocket() }
        try socket.commit(Self.table, Self.tableEdits())

        XCTAssertFalse(try node.answers("tcp", v4, 31002), "31002/tcp is in the drop set (IPv4)")
        XCTAssertFalse(try node.answers("tcp", v6, 31002), "31002/tcp is in the drop set (IPv6)")
        XCTAssertFalse(try node.answers("tcp", v4, 31002, from: .node), "and for the node itself (output)")
        XCTAssertTrue(try node.isOpen("tcp", v4, 31003), "31003/tcp is in no set")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.podIPv4, 31002), "routed traffic to a pod is not a local destination")

        let blocked = try XCTUnwrap(set(try XCTUnwrap(try socket.read(Self.table)), "blocked"))
        let vault = try XCTUnwrap(blocked.elements.first { $0.element == Self.vault })
        XCTAssertGreaterThanOrEqual(vault.packets, 3, "three connection attempts, each at least one SYN")
        XCTAssertGreaterThanOrEqual(vault.bytes, vault.packets * 40)
        XCTAssertEqual(blocked.elements.first { $0.element == Self.udpRange }?.packets, 0)

        // A source the allow sets hold passes: their keys match real packets.
        let client4 = NFTElement(source: try CIDR(parsing: "198.18.0.2/32"), transport: .tcp, ports: 31002...31002)
        let client6 = NFTElement(source: try CIDR(parsing: "2001:db8:18::/64"), transport: .tcp, ports: 31000...31005)
        try socket.commit(Self.table, [.addElements(Self.allow4, [client4]), .addElements(Self.allow6, [client6])])
        XCTAssertTrue(try node.isOpen("tcp", v4, 31002), "the client's IPv4 address is allowed")
        XCTAssertTrue(try node.isOpen("tcp", v6, 31002), "the client's IPv6 prefix is allowed")
        XCTAssertFalse(try node.answers("tcp", v4, 31002, from: .node), "the node's own address is not")
    }

    // MARK: e. events

    func testMonitorReportsGenerationsAndWhatConcernsTheTable() throws {
        try setUpNode(nat: .none)
        let (socket, monitor) = try inNode { (try NFTSocket(), try NFTMonitor()) }
        let quiet = monitor.drain(table: Self.table)
        XCTAssertEqual(monitor.messagesRead, 0, "nothing happened yet")
        XCTAssertNil(quiet.generation)
        XCTAssertFalse(quiet.concernsTable)

        XCTAssertTrue(try nft("add", "table", "inet", "other").succeeded)
        XCTAssertTrue(waitReadable(monitor.fd), "a commit by nft must send an event")
        let foreign = monitor.drain(table: Self.table)
        XCTAssertGreaterThan(monitor.messagesRead, 0)
        XCTAssertEqual(foreign.generation, try socket.generation())
        XCTAssertFalse(foreign.concernsTable, "table inet other is not NodeGuard's")

        try socket.commit(Self.table, Self.tableEdits())
        XCTAssertTrue(waitReadable(monitor.fd))
        let own = monitor.drain(table: Self.table)
        XCTAssertEqual(own.generation, try socket.generation())
        XCTAssertTrue(own.concernsTable)
        XCTAssertNotEqual(own.generation, foreign.generation)

        // Only the element changes: the table is still concerned.
        XCTAssertTrue(try nft("add", "table", "ip", "x").succeeded)
        try socket.commit(Self.table, [.deleteElements(Self.blocked, [Self.udpRange])])
        XCTAssertTrue(waitReadable(monitor.fd))
        XCTAssertTrue(monitor.drain(table: Self.table).concernsTable)

        let drained = monitor.drain(table: Self.table)
        XCTAssertEqual(monitor.messagesRead, 0)
        XCTAssertNil(drained.generation)
        XCTAssertFalse(drained.concernsTable)
    }

    private func waitReadable(_ fd: Int32, milliseconds: Int32 = 2000) -> Bool {
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&ready, 1, milliseconds) == 1
    }

    // MARK: f. base chains of every table

    func testHookChainsFindForeignDNATBeforeAndAfterNodeGuard() throws {
        try setUpNode(nat: .nftables)
        try node.loadKubeProxyNat(.nft)   // iptables-nft's table ip nat: PREROUTING -> ... -> -j DNAT
        try nftScript("""
            table ip early {
                chain foreign {
                    type nat hook prerouting priority -160; policy accept;
                    tcp dport 31002 dnat to 10.0.0.1:80
                }
            }
            """)
        let socket = try inNode { try NFTSocket() }
        try socket.commit(Self.table, Self.tableEdits())
        let chains = try socket.hookChains()
        func find(_ family: String, _ table: String, _ chain: String) -> NFTHookChain? {
            chains.first { $0.family == family && $0.table == table && $0.chain == chain }
        }

        XCTAssertEqual(find("ip", "early", "foreign"),
                       NFTHookChain(family: "ip", table: "early", chain: "foreign", hook: .prerouting, priority: -160,
                                    type: "nat", rewritesDestination: true))
        for hook in NFTHook.allCases {
            XCTAssertEqual(find("inet", Self.table, hook.rawValue),
                           NFTHookChain(family: "inet", table: Self.table, chain: hook.rawValue, hook: hook, priority: -150,
                                        type: "filter", rewritesDestination: false))
        }
        // DNAT behind jumps (iptables-nft) and behind verdict maps (kube-proxy's nftables mode).
        XCTAssertEqual(find("ip", "nat", "PREROUTING")?.rewritesDestination, true)
        XCTAssertEqual(find("ip", "nat", "OUTPUT")?.rewritesDestination, true)
        XCTAssertNil(find("ip", "nat", "POSTROUTING"), "only prerouting and output are listed")
        for family in ["ip", "ip6"] {
            XCTAssertEqual(find(family, "kube-proxy", "nat-prerouting")?.rewritesDestination, true, family)
            XCTAssertEqual(find(family, "kube-proxy", "nat-output")?.rewritesDestination, true, family)
            XCTAssertEqual(find(family, "kube-proxy", "filter-prerouting")?.rewritesDestination, false, family)
            XCTAssertEqual(find(family, "kube-proxy", "filter-prerouting")?.priority, -110, family)
        }
    }
}
