import SystemPackage
import XCTest
@testable import NodeGuardCore

/// The nftables planner, repair and keeper without root, through the
/// in-memory table (`FakeNFTables`). The real kernel proves the same with
/// packets in the integration tests.
final class NFTablesTests: XCTestCase {
    func cidr(_ text: String) throws -> CIDR {
        try CIDR(parsing: text)
    }

    func entries() throws -> [BlockEntry] {
        [
            BlockEntry(port: 31002, reason: "CVE-2026-0001"),
            BlockEntry(port: 31003, transport: .udp, family: .ipv4),
            BlockEntry(port: 31004, transport: .sctp, family: .ipv6, allowFrom: [try cidr("2001:db8::/32")]),
            BlockEntry(port: 31005, allowFrom: [try cidr("10.0.0.0/8"), try cidr("10.1.0.0/16"), try cidr("192.0.2.7"),
                                                try cidr("10.0.0.0/8"), try cidr("2001:db8:1::/48")]),
        ]
    }

    // MARK: planner

    func testThePlanPutsEachPortInItsFamiliesDropSetAndEachAllowedSourceInItsFamilysAllowSet() throws {
        let plan = NFTablesPlanner.plan(try entries())
        func keys(_ set: String) -> [String] { (plan.elements[set] ?? []).map(NFTablesRepair.describe) }
        XCTAssertEqual(keys("drop4"), ["31002/tcp", "31005/tcp", "31003/udp"])
        XCTAssertEqual(keys("drop6"), ["31002/tcp", "31005/tcp", "31004/sctp"])
        // 10.1.0.0/16 lies inside 10.0.0.0/8, and the duplicate goes: an interval set refuses overlaps.
        XCTAssertEqual(keys("allow4"), ["10.0.0.0/8 to 31005/tcp", "192.0.2.7/32 to 31005/tcp"])
        XCTAssertEqual(keys("allow6"), ["2001:db8:1::/48 to 31005/tcp", "2001:db8::/32 to 31004/sctp"])
        XCTAssertEqual(plan.elements["drop4"]?.first?.comment, "NodeGuard: block 31002/tcp: CVE-2026-0001")
    }

    func testTheChainsAreTheSameForEveryDenyList() throws {
        XCTAssertEqual(NFTablesPlanner.plan([]).chains, NFTablesPlanner.plan(try entries()).chains)
        XCTAssertEqual(NFTablesPlanner.plan([]).sets, NFTablesPlanner.plan(try entries()).sets)
        let chains = NFTablesPlanner.plan([]).chains
        XCTAssertEqual(chains.map(\.name), ["guard", "prerouting", "output"])
        XCTAssertEqual(chains.compactMap(\.hook), [.prerouting, .output])
        XCTAssertTrue(chains.filter { $0.hook != nil }.allSatisfy { $0.priority == -150 && $0.rules.count == 1 })
        // Replies pass first; then allowed sources; then the drops.
        XCTAssertEqual(chains[0].rules.map(\.verdict), [.return, .return, .return, .drop, .drop])
        XCTAssertTrue(chains[0].rules[0].matchReply)
        XCTAssertTrue(chains.allSatisfy { $0.rules.allSatisfy { !$0.comment.isEmpty } }, "every rule says what it is")
    }

    func testLongCommentsAreCutAtACharacterBoundaryWithinWhatNftKeeps() {
        let reason = String(repeating: "é", count: 200)
        let plan = NFTablesPlanner.plan([BlockEntry(port: 31002, reason: reason)])
        let comment = try? XCTUnwrap(plan.elements["drop4"]?.first?.comment)
        XCTAssertLessThanOrEqual(comment?.utf8.count ?? .max, NFTLimits.commentBytes)
        XCTAssertTrue(comment?.hasSuffix("...") ?? false)
    }

    // MARK: repair

    func testAMissingTableIsBuiltInOneBatchAndThenNothingIsLeftToRepair() throws {
        let fake = FakeNFTables()
        let plan = NFTablesPlanner.plan(try entries())
        let first = NFTablesRepair.repair(nil, to: plan, flags: NFTablesPlanner.heldFlags)
        XCTAssertEqual(first.edits.first, .addTable(flags: [.owner, .persist]))
        // Every jump target is added before the jump.
        let guardIndex = try XCTUnwrap(first.edits.firstIndex { if case .addChain(let c) = $0 { c.name == "guard" } else { false } })
        let jumpIndex = try XCTUnwrap(first.edits.firstIndex { if case .addRule(_, let r) = $0 { r.verdict == .jump("guard") } else { false } })
        XCTAssertLessThan(guardIndex, jumpIndex)
        try fake.commit("nodeguard", first.edits)
        XCTAssertEqual(NFTablesRepair.repair(fake.table, to: plan, flags: NFTablesPlanner.heldFlags), NFTablesRepair.Repair())
    }

    func testADenyListChangeEditsElementsOnly() throws {
        let fake = FakeNFTables()
        let keeper = NFTablesKeeper(transport: fake)
        var list = try entries()
        try keeper.apply(list)
        list.removeFirst()
        list.append(BlockEntry(port: 31010, transport: .udp))
        list[0].reason = "changed"
        let changes = try keeper.apply(list)
        let edits = try XCTUnwrap(fake.commits.last)
        XCTAssertTrue(edits.allSatisfy {
            switch $0 {
            case .addElements, .deleteElements: true
            default: false
            }
        }, "\(edits)")
        XCTAssertEqual(Set(changes.map(\.chain)), ["drop4", "drop6"])
        XCTAssertEqual(fake.table.map { NFTablesRepair.repair($0, to: NFTablesPlanner.plan(list), flags: keeper.flags) }, NFTablesRepair.Repair())
        // The reason is in the comment: the element for 31003/udp was replaced.
        let drop4 = fake.table?.sets.first { $0.name == "drop4" }?.elements.map(\.element) ?? []
        XCTAssertEqual(drop4.first { $0.ports == 31003...31003 }?.comment, "NodeGuard: block 31003/udp: changed")
        XCTAssertFalse(drop4.contains { $0.ports == 31002...31002 })
    }

    func testAnElementSomeoneRemovedIsAddedBack() throws {
        let fake = FakeNFTables()
        let keeper = NFTablesKeeper(transport: fake)
        let list = try entries()
        try keeper.apply(list)
        let set = NFTablesPlanner.dropSet(.ipv4)
        try fake.commit("nodeguard", [.deleteElements(set, [NFTElement(transport: .tcp, ports: 31002...31002)])])
        let changes = try keeper.apply(list)
        XCTAssertEqual(changes.map(\.description), ["ipv4 nodeguard drop4: added 1 element(s) (31002/tcp)"])
    }

    func testAnEditedRuleOrForeignChainReplacesTheWholeTableInOneBatch() throws {
        let fake = FakeNFTables()
        let keeper = NFTablesKeeper(transport: fake)
        let list = try entries()
        try keeper.apply(list)
        fake.ownerExited()
        // Someone replaced the IPv4 drop rule with one NodeGuard did not write.
        let guardIndex = try XCTUnwrap(fake.table?.chains.firstIndex { $0.name == "guard" })
        fake.table?.chains[guardIndex].rules[3] = NFTObservedRule(rule: nil, comment: "NodeGuard: drop blocked IPv4 ports", handle: 9)
        var changes = try keeper.apply(list)
        XCTAssertEqual(changes.count, 1)
        XCTAssertTrue(changes[0].what.contains("rule 4 ('NodeGuard: drop blocked IPv4 ports') was edited; replaced the table"), changes[0].what)
        XCTAssertEqual(fake.commits.last?.first, .deleteTable)
        XCTAssertEqual(fake.table?.chains.first { $0.name == "guard" }?.rules[3].rule?.verdict, .drop)
        XCTAssertTrue(fake.table?.ownedBySocket ?? false)

        try fake.commit("nodeguard", [.addChain(NFTChain(name: "sneaky", hook: .prerouting, priority: -151))])
        changes = try keeper.apply(list)
        XCTAssertTrue(changes[0].what.hasPrefix("chain sneaky is not NodeGuard's"), changes[0].what)
        XCTAssertFalse(fake.table?.chains.contains { $0.name == "sneaky" } ?? true)
    }

    func testAnOwnerlessTableLeftByAnEarlierRunIsAdoptedWithoutRebuildingIt() throws {
        let fake = FakeNFTables()
        let list = try entries()
        try NFTablesKeeper(transport: fake).apply(list)
        fake.ownerExited()
        fake.count(PortKey(port: 31002, transport: .tcp), family: .ipv4, packets: 5, bytes: 300)
        let keeper = NFTablesKeeper(transport: fake)
        let changes = try keeper.apply(list)
        XCTAssertEqual(changes.map(\.description), ["inet nodeguard table: had no owner; took ownership"])
        XCTAssertEqual(fake.commits.last, [.addTable(flags: [.owner, .persist])])
        // Adopting is not rebuilding: the counters are still there.
        let inspection = try keeper.inspect()
        XCTAssertEqual(inspection.first { $0.family == .ipv4 }?.dropCounters[PortKey(port: 31002, transport: .tcp)],
                       DropCounters(packets: 5, bytes: 300))
    }

    // MARK: keeper

    func testAKernelWithoutPersistGetsATableWithoutFlagsAndSaysSo() throws {
        let fake = FakeNFTables()
        fake.unknownFlags = [.persist]
        let keeper = NFTablesKeeper(transport: fake)
        try keeper.apply(try entries())
        XCTAssertEqual(fake.table?.flags, [])
        XCTAssertFalse(keeper.heldByKernel)
        XCTAssertTrue(keeper.flagsRefused?.contains("not held by the kernel") ?? false, keeper.flagsRefused ?? "nil")
        XCTAssertEqual(fake.refusedCommits, 1)
        XCTAssertEqual(fake.table?.sets.first { $0.name == "drop4" }?.elements.count, 3)
        // Never an owner without persist: its table would vanish with the daemon.
        XCTAssertFalse(fake.commits.joined().contains(.addTable(flags: [.owner])))
    }

    func testOnlyARefusedTableFlagMakesTheKeeperDropTheFlags() throws {
        let fake = FakeNFTables()
        let keeper = NFTablesKeeper(transport: fake)
        try keeper.apply(try entries())
        // A batch of element edits refused with EOPNOTSUPP is an error, not a kernel without persist.
        let other = NFTablesKeeper(transport: RefusingTransport(fake))
        XCTAssertThrowsError(try other.apply([BlockEntry(port: 31010)]))
        XCTAssertTrue(other.heldByKernel)
        XCTAssertNil(other.flagsRefused)
    }

    func testABatchThatLosesARaceIsPlannedAgainOnAFreshRead() throws {
        let fake = FakeNFTables()
        let keeper = NFTablesKeeper(transport: fake)
        var list = try entries()
        try keeper.apply(list)
        fake.ownerExited()
        list.removeFirst()
        // Between the keeper's read and its batch, another writer deletes the
        // element the batch is about to delete: the batch fails with ENOENT.
        fake.beforeCommit = { fake in
            fake.beforeCommit = nil
            let gone = NFTElement(transport: .tcp, ports: 31002...31002)
            try? fake.commit("nodeguard", [.deleteElements(NFTablesPlanner.dropSet(.ipv4), [gone])])
        }
        try keeper.apply(list)
        XCTAssertEqual(fake.refusedCommits, 1)
        XCTAssertEqual(NFTablesRepair.repair(fake.table, to: NFTablesPlanner.plan(list), flags: keeper.flags), NFTablesRepair.Repair())
    }

    func testAFailedBatchChangesNothingAndNamesTheEdit() throws {
        let fake = FakeNFTables()
        let keeper = NFTablesKeeper(transport: fake)
        try keeper.apply(try entries())
        let before = fake.table
        XCTAssertThrowsError(try fake.commit("nodeguard", [.addElements(NFTablesPlanner.dropSet(.ipv4), [NFTElement(transport: .tcp, ports: 31010...31010)]),
                                                            .deleteSet("missing")])) { error in
            XCTAssertTrue("\(error)".contains("delete set missing"), "\(error)")
        }
        XCTAssertEqual(fake.table, before)
    }

    func testRemovingDeletesTheTableAndNothingWhenThereIsNone() throws {
        let fake = FakeNFTables()
        let keeper = NFTablesKeeper(transport: fake)
        XCTAssertEqual(try keeper.removeAll(), [])
        XCTAssertTrue(fake.commits.isEmpty)
        try keeper.apply(try entries())
        XCTAssertEqual(try keeper.removeAll().map(\.what), ["deleted it"])
        XCTAssertNil(fake.table)
    }

    func testInspectionReportsEachFamilysCountersAndHooks() throws {
        let fake = FakeNFTables()
        let keeper = NFTablesKeeper(transport: fake)
        XCTAssertEqual(try keeper.inspect().map(\.hookFirst), [["PREROUTING": false, "OUTPUT": false], ["PREROUTING": false, "OUTPUT": false]])
        try keeper.apply(try entries())
        fake.count(PortKey(port: 31004, transport: .sctp), family: .ipv6, packets: 2, bytes: 120)
        let inspection = try keeper.inspect()
        XCTAssertEqual(inspection.map(\.family), [.ipv4, .ipv6])
        XCTAssertEqual(inspection.map(\.hookFirst), [["PREROUTING": true, "OUTPUT": true], ["PREROUTING": true, "OUTPUT": true]])
        XCTAssertEqual(inspection[1].dropCounters[PortKey(port: 31004, transport: .sctp)], DropCounters(packets: 2, bytes: 120))
        XCTAssertEqual(inspection[0].dropCounters.count, 3)
        XCTAssertNil(inspection[0].dropCounters[PortKey(port: 31004, transport: .sctp)])
    }
}

/// Refuses every batch that does not set the table's flags with EOPNOTSUPP,
/// as a kernel lacking an expression would.
final class RefusingTransport: NFTablesTransport {
    let fake: FakeNFTables
    init(_ fake: FakeNFTables) { self.fake = fake }
    func read(_ table: String) throws(NodeGuardError) -> NFTTableView? { try fake.read(table) }
    func commit(_ table: String, _ edits: [NFTEdit]) throws(NodeGuardError) {
        throw NodeGuardError(.netfilterFailure, "expression not supported", errno: .notSupported)
    }
}
