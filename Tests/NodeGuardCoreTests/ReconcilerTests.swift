import SystemPackage
import XCTest
@testable import NodeGuardCore

/// The reconciler and the plan-then-apply seam, driven through the in-memory
/// backend: no root, no kernel. `NodePortBlockTests`, `FaultTests` and
/// `FightTests` prove the same with real packets.
final class ReconcilerTests: XCTestCase {
    let entries = [BlockEntry(port: 31002), BlockEntry(port: 31900, transport: .udp)]
    var backend: FakeNetfilterBackend!
    var reconciler: Reconciler!

    override func setUp() {
        backend = FakeNetfilterBackend()
        reconciler = Reconciler(backend: backend, families: [.ipv4, .ipv6])
    }

    /// The mangle table holds exactly the plan: its chains and the jump on top of both hooks.
    func assertAsPlanned(_ family: AddressFamily, file: StaticString = #filePath, line: UInt = #line) {
        let plan = RulePlanner.plan(entries, family: family)
        for chain in plan.chains {
            XCTAssertEqual(backend.rules("mangle", family, chain.name).map(\.spec), chain.rules, "\(family) \(chain.name)", file: file, line: line)
        }
        for hook in TablePlan.hookChains {
            XCTAssertEqual(backend.rules("mangle", family, hook).first?.spec, RulePlanner.hookRule, "\(family) \(hook)", file: file, line: line)
        }
    }

    /// A foreign rule that lets everything through (matches NodeGuard does not decode).
    func foreignAccept(_ identity: UInt64) -> ObservedRule {
        var rule = ObservedRule(spec: nil, target: "ACCEPT", comment: "another agent")
        rule.identity = identity
        return rule
    }

    func testTheFirstApplyCreatesEveryChainAndCommitsOncePerTableAndTheSecondCommitsNothing() throws {
        let first = try reconciler.apply(entries)
        XCTAssertEqual(backend.commits, 2)
        XCTAssertEqual(reconciler.commitCount, 2)
        XCTAssertTrue(first.contains { $0.chain == "NODEGUARD-TCP" && $0.what.contains("created") })
        assertAsPlanned(.ipv4)
        assertAsPlanned(.ipv6)

        let second = try reconciler.apply(entries)
        XCTAssertEqual(second, [])
        XCTAssertEqual(backend.commits, 2, "a table already as planned must not be committed again")
    }

    func testEveryKindOfDriftIsRepairedAndSaidInWords() throws {
        try reconciler.apply(entries)
        let drifts: [(String, (inout FakeNetfilterBackend.Table) -> Void, String)] = [
            ("flushed chain", { $0.rules["NODEGUARD-TCP"] = [] }, "NODEGUARD-TCP"),
            ("deleted jump", { $0.rules["PREROUTING"]?.removeFirst() }, "PREROUTING"),
            ("foreign rule inside NodeGuard's chain", { $0.rules["NODEGUARD-UDP"]?.insert(ObservedRule(spec: nil, target: "ACCEPT", comment: "x"), at: 0) }, "NODEGUARD-UDP"),
            ("edited drop", { table in
                var spec = table.rules["NODEGUARD-TCP"]![0].spec!
                spec.target = "ACCEPT"
                table.rules["NODEGUARD-TCP"]![0] = FakeNetfilterBackend.observed(spec)
            }, "NODEGUARD-TCP"),
            ("duplicate jump", { $0.rules["OUTPUT"]?.append(FakeNetfilterBackend.observed(RulePlanner.hookRule)) }, "OUTPUT"),
            ("stale NodeGuard chain", { table in
                table.chainOrder.append("NODEGUARD-SCTP")
                table.rules["NODEGUARD-SCTP"] = []
            }, "NODEGUARD-SCTP"),
        ]
        for (name, drift, chain) in drifts {
            backend.mutate("mangle", .ipv4, drift)
            let changes = try reconciler.apply(entries)
            XCTAssertTrue(changes.contains { $0.family == .ipv4 && $0.chain == chain }, "\(name): \(changes)")
            XCTAssertFalse(changes.contains { $0.family == .ipv6 }, "\(name): IPv6 was not touched: \(changes)")
            assertAsPlanned(.ipv4)
            XCTAssertNil(backend.table("mangle", .ipv4)?.rules["NODEGUARD-SCTP"], name)
        }
    }

    func testAJumpPushedDownIsMovedBackAndTheRuleAboveItIsNamedAtItsNewPlace() throws {
        try reconciler.apply(entries)
        backend.mutate("mangle", .ipv4) { $0.rules["PREROUTING"]?.insert(self.foreignAccept(7), at: 0) }
        let changes = try reconciler.apply(entries)
        let hook = try XCTUnwrap(changes.first { $0.chain == "PREROUTING" })
        XCTAssertTrue(hook.what.contains("moved it back to rule 1"), hook.what)
        XCTAssertEqual(hook.displacedBy.map(\.identity), [7])
        XCTAssertEqual(hook.displacedBy.map(\.index), [1], "after the repair the foreign rule is rule 2")
        let prerouting = backend.rules("mangle", .ipv4, "PREROUTING")
        XCTAssertEqual(prerouting.first?.spec, RulePlanner.hookRule)
        XCTAssertEqual(prerouting.dropFirst().first?.identity, 7, "the foreign rule stays, below the jump")
    }

    func testWhileBackingOffTheJumpMayStayBelowTheOtherRule() throws {
        try reconciler.apply(entries)
        backend.mutate("mangle", .ipv4) { $0.rules["PREROUTING"]?.insert(self.foreignAccept(7), at: 0) }
        let site = HookSite(table: "mangle", family: .ipv4, chain: "PREROUTING")
        let changes = try reconciler.apply(entries, yielding: [site])
        XCTAssertEqual(changes, [])
        XCTAssertEqual(backend.rules("mangle", .ipv4, "PREROUTING").map(\.identity).first, 7)
    }

    func testACheckOfAnUnchangedTableTakesNoLockAndADriftedOneWaitsForIt() throws {
        try reconciler.apply(entries)
        let transactions = backend.transactions
        backend.lockHeldBy = (pid: 4242, command: "iptables-restore")
        XCTAssertEqual(try reconciler.apply(entries, checkFirst: true), [])
        XCTAssertEqual(backend.transactions, transactions, "nothing to repair: no transaction, no lock")
        XCTAssertGreaterThanOrEqual(backend.lockFreeReads, 2)

        backend.mutate("mangle", .ipv6) { $0.rules["NODEGUARD-TCP"] = [] }
        let error = capturedError { () throws(NodeGuardError) in try reconciler.apply(entries, checkFirst: true) }
        XCTAssertEqual(error?.code, .lockTimeout)
        XCTAssertTrue(error?.message.contains("iptables-restore") ?? false)

        backend.lockHeldBy = nil
        let changes = try reconciler.apply(entries, checkFirst: true)
        XCTAssertEqual(changes.map(\.chain), ["NODEGUARD-TCP"])
        assertAsPlanned(.ipv6)
    }

    func testAWriterThatIgnoresTheLockBetweenReadAndCommitMakesTheTransactionPlanAgainAndKeepsItsRule() throws {
        var writes = 0
        backend.beforeCommit = { backend, key in
            guard key.family == .ipv4, writes == 0 else { return }
            writes += 1
            backend.mutate("mangle", .ipv4) { $0.rules["INPUT"]?.append(ObservedRule(spec: nil, target: "MARK", comment: "lockless writer")) }
        }
        try reconciler.apply(entries)
        XCTAssertEqual(writes, 1)
        XCTAssertEqual(backend.transactions, 3, "IPv4 planned twice (the first commit lost the race), IPv6 once")
        XCTAssertEqual(backend.rules("mangle", .ipv4, "INPUT").map(\.comment), ["lockless writer"], "the other writer's rule survives")
        assertAsPlanned(.ipv4)
    }

    func testACommitThatKeepsLosingTheRaceFailsAfterTheAttemptsAndLeavesTheTableAsTheOtherWriterLeftIt() {
        backend.beforeCommit = { backend, key in
            backend.mutate(key.name, key.family) { $0.rules["INPUT"]?.append(ObservedRule(spec: nil, target: "MARK", comment: "busy writer")) }
        }
        let error = capturedError { () throws(NodeGuardError) in try reconciler.apply(entries) }
        XCTAssertEqual(error?.code, .netfilterFailure)
        XCTAssertEqual(error?.errno, .resourceTemporarilyUnavailable, "a lost race is told by its errno, as libiptc's EAGAIN")
        XCTAssertEqual(backend.transactions, backend.commitAttempts)
        XCTAssertEqual(backend.commits, 0)
        XCTAssertNil(backend.table("mangle", .ipv4)?.rules["NODEGUARD"], "nothing of NodeGuard's was committed")
    }

    func testATransactionThatFailsHalfWayChangesNothing() throws {
        try reconciler.apply([BlockEntry(port: 31002)])
        let before = backend.table("mangle", .ipv4)
        backend.failAtEdit = 2
        let error = capturedError { () throws(NodeGuardError) in try reconciler.apply(entries) }
        XCTAssertEqual(error?.code, .netfilterFailure)
        XCTAssertEqual(backend.table("mangle", .ipv4), before, "the edits before the failure did not reach the table")
    }

    func testVerifiedFingerprintsAreWhatWasCommittedSoALaterChangeDiffers() throws {
        try reconciler.apply(entries)
        var watch = ChangeWatch()
        let tables = [ChangeWatch.Table(name: "mangle", family: .ipv4), ChangeWatch.Table(name: "mangle", family: .ipv6)]
        watch.remember(tables, verified: reconciler.verifiedFingerprints)
        XCTAssertNil(watch.quickCheck(tables, backend: backend))
        XCTAssertNil(watch.deepCheck(tables, backend: backend))

        // Another program's rule elsewhere moves the sizes, not NodeGuard's part.
        backend.mutate("mangle", .ipv4) { $0.rules["POSTROUTING"]?.append(ObservedRule(spec: nil, target: "MARK", comment: "elsewhere")) }
        XCTAssertNil(watch.quickCheck(tables, backend: backend))
        // Same sizes, NodeGuard's rule edited: only the digest tells.
        backend.mutate("mangle", .ipv6) { table in
            var spec = table.rules["NODEGUARD-TCP"]![0].spec!
            spec.target = "ACCEPT"
            table.rules["NODEGUARD-TCP"]![0] = FakeNetfilterBackend.observed(spec)
        }
        XCTAssertNil(watch.quickCheck(tables, backend: backend), "the sizes did not move")
        XCTAssertEqual(watch.deepCheck(tables, backend: backend), .rules(tables[1]))
    }

    func testTheRawHoldIsAddedAndLiftedAndRemoveAllLeavesOnlyForeignRules() throws {
        try reconciler.apply(entries, holdInRaw: true)
        for family in [AddressFamily.ipv4, .ipv6] {
            XCTAssertEqual(backend.rules("raw", family, "PREROUTING").first?.spec, RulePlanner.rawHookRule)
            XCTAssertEqual(backend.rules("raw", family, "NODEGUARD-TCP").compactMap(\.spec).filter { $0.target == "DROP" }.map(\.tcpSynOnly), [true])
        }
        try reconciler.apply(entries)
        XCTAssertNil(backend.table("raw", .ipv4)?.rules["NODEGUARD"], "the hold is lifted")

        backend.mutate("mangle", .ipv4) { $0.rules["PREROUTING"]?.append(self.foreignAccept(9)) }
        let removed = try reconciler.removeAll()
        XCTAssertTrue(removed.contains { $0.chain == "PREROUTING" && $0.what.contains("jump") })
        for family in [AddressFamily.ipv4, .ipv6] {
            let table = try XCTUnwrap(backend.table("mangle", family))
            XCTAssertFalse(table.chainOrder.contains(where: RulePlanner.isNodeGuardChain), "\(family): \(table.chainOrder)")
            XCTAssertFalse(table.rules.values.joined().contains { RulePlanner.isNodeGuardChain($0.target) })
        }
        XCTAssertEqual(backend.rules("mangle", .ipv4, "PREROUTING").map(\.identity), [9])
    }

    func testAMissingTableIsAClearErrorAndNothingElseIsCommitted() {
        backend.unavailable = [.init(name: "mangle", family: .ipv6)]
        let error = capturedError { () throws(NodeGuardError) in try reconciler.apply(entries) }
        XCTAssertEqual(error?.code, .netfilterUnavailable)
        XCTAssertTrue(error?.message.contains("ipv6 mangle") ?? false, error?.message ?? "")
    }

    /// The planner is pure: the same view and plan give the same edits, and
    /// applying them gives a table the planner then leaves alone.
    func testRepairIsAPureFunctionOfTheViewAndThePlan() throws {
        var generator = SplitMix64(seed: 14)
        for _ in 0..<200 {
            let ports = (0..<Int.random(in: 0...40, using: &generator)).map { _ in UInt16.random(in: 30000...32767, using: &generator) }
            let wanted = Set(ports).map { BlockEntry(port: $0, transport: Bool.random(using: &generator) ? .tcp : .udp) }
            let plan = RulePlanner.plan(wanted, family: .ipv4)
            // Start from a random earlier list, then some foreign noise.
            let earlier = wanted.filter { _ in Bool.random(using: &generator) } + [BlockEntry(port: 30000)]
            backend = FakeNetfilterBackend()
            reconciler = Reconciler(backend: backend, families: [.ipv4])
            try reconciler.apply(earlier)
            backend.mutate("mangle", .ipv4) { $0.rules["PREROUTING"]?.insert(self.foreignAccept(1), at: 0) }

            let view = FakeTableView(try XCTUnwrap(backend.table("mangle", .ipv4)), family: .ipv4)
            let repair = try TableReconciler.repair(view, to: plan)
            XCTAssertEqual(try TableReconciler.repair(view, to: plan), repair)
            let outcome = try backend.transact("mangle", .ipv4) { view throws(NodeGuardError) in try TableReconciler.repair(view, to: plan) }
            XCTAssertEqual(outcome.repair, repair)
            let after = FakeTableView(try XCTUnwrap(backend.table("mangle", .ipv4)), family: .ipv4)
            XCTAssertTrue(try TableReconciler.repair(after, to: plan).isEmpty)
        }
    }
}
