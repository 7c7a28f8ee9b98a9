import XCTest

@testable import NodeGuardCore

final class FightTrackerTests: XCTestCase {
    let site = HookSite(table: "mangle", family: .ipv4, chain: "PREROUTING")
    var rival: FightTracker.Displacement { .init(site: site, identity: 1, culprit: "-A PREROUTING -j cali-PREROUTING") }
    var other: FightTracker.Displacement { .init(site: site, identity: 2, culprit: "-A PREROUTING -j OTHER") }
    let t0 = ContinuousClock.now

    func started(_ events: [FightTracker.Event]) -> FightTracker.Fight? {
        for event in events { if case .started(let fight) = event { return fight } }
        return nil
    }

    func testThreeDisplacementsByTheSameRuleWithinTheWindowStartAFight() {
        var tracker = FightTracker()
        XCTAssertTrue(tracker.observe([rival], at: t0, yielded: []).isEmpty)
        XCTAssertTrue(tracker.observe([other], at: t0 + .seconds(1), yielded: []).isEmpty, "another rule does not add up")
        XCTAssertTrue(tracker.observe([rival], at: t0 + .seconds(100), yielded: []).isEmpty)
        guard let fight = started(tracker.observe([rival], at: t0 + .seconds(200), yielded: [])) else {
            return XCTFail("the third displacement starts the fight")
        }
        XCTAssertEqual(fight.displacement, rival)
        XCTAssertEqual(fight.backoff, FightTracker.firstBackoff)
        XCTAssertTrue(tracker.holding)
        XCTAssertEqual(tracker.yielding(at: t0 + .seconds(201)), [site], "backing off")
        XCTAssertEqual(tracker.yielding(at: t0 + .seconds(230)), [], "retake after the backoff")
    }

    func testRulesThatMerelyLookAlikeDoNotAddUp() {
        // Three one-off ACCEPT rules (string, multiport, u32) that the decoder
        // describes the same way are three different rules.
        var tracker = FightTracker()
        for identity in UInt64(10)..<13 {
            let lookalike = FightTracker.Displacement(site: site, identity: identity,
                                                      culprit: "[a rule with matches NodeGuard does not write] -j ACCEPT")
            XCTAssertTrue(tracker.observe([lookalike], at: t0 + .seconds(Int(identity)), yielded: []).isEmpty)
        }
        XCTAssertFalse(tracker.holding)
        // The same rule under another text (named better later) is still the same rule.
        var renamed = rival
        for second in 0..<2 { _ = tracker.observe([rival], at: t0 + .seconds(20 + second), yielded: []) }
        renamed.culprit = "-A PREROUTING -j cali-PREROUTING (renamed)"
        XCTAssertNotNil(started(tracker.observe([renamed], at: t0 + .seconds(30), yielded: [])))
    }

    func testTheSameRuleAtAnotherSiteIsAnotherFightAndOnlyTheDisputedSiteYields() {
        var tracker = FightTracker()
        let output = HookSite(table: "mangle", family: .ipv6, chain: "OUTPUT")
        let raw = HookSite(table: "raw", family: .ipv4, chain: "PREROUTING")
        for second in 0..<2 {
            _ = tracker.observe([rival, .init(site: output, identity: 1, culprit: "x")], at: t0 + .seconds(second), yielded: [])
        }
        XCTAssertNotNil(started(tracker.observe([rival], at: t0 + .seconds(2), yielded: [])))
        XCTAssertEqual(tracker.yielding(at: t0 + .seconds(3)), [site], "ipv6 mangle OUTPUT was displaced only twice")
        // The hold in raw is disputed too: a second fight, backed off the same way.
        for second in 3..<6 {
            _ = tracker.observe([.init(site: raw, identity: 7, culprit: "-A PREROUTING -j RIVAL")], at: t0 + .seconds(second),
                                yielded: tracker.yielding(at: t0 + .seconds(second)))
        }
        XCTAssertEqual(Set(tracker.fights.keys), [site, raw])
        XCTAssertEqual(tracker.yielding(at: t0 + .seconds(6)), [site, raw])
        XCTAssertEqual(tracker.ordered.map(\.displacement.site), [site, raw], "mangle first")
        XCTAssertTrue(tracker.holding)
    }

    func testDisplacementsOutsideTheWindowDoNotAddUp() {
        var tracker = FightTracker()
        for minute in [0, 16, 32, 48] {
            XCTAssertTrue(tracker.observe([rival], at: t0 + .seconds(minute * 60), yielded: []).isEmpty)
        }
        XCTAssertFalse(tracker.holding)
    }

    func testPushedDownAfterARetakeDoublesTheBackoffAndHoldingTheSiteEndsTheFight() {
        var tracker = FightTracker()
        for second in 0..<3 { _ = tracker.observe([rival], at: t0 + .seconds(second), yielded: []) }
        XCTAssertTrue(tracker.holding)
        // While yielding nothing is learned.
        XCTAssertTrue(tracker.observe([], at: t0 + .seconds(10), yielded: [site]).isEmpty)
        // The retake itself finds the rival above (NodeGuard had yielded): not a new push.
        XCTAssertTrue(tracker.observe([rival], at: t0 + .seconds(33), yielded: []).isEmpty)
        guard case .continued(let fight)? = tracker.observe([rival], at: t0 + .seconds(40), yielded: []).first else {
            return XCTFail("pushed down again after the retake")
        }
        XCTAssertEqual(fight.backoff, FightTracker.firstBackoff * 2)
        XCTAssertEqual(tracker.yielding(at: t0 + .seconds(99)), [site])
        XCTAssertEqual(tracker.yielding(at: t0 + .seconds(100)), [])
        XCTAssertTrue(tracker.observe([rival], at: t0 + .seconds(100), yielded: []).isEmpty, "second retake")
        XCTAssertTrue(tracker.tick(at: t0 + .seconds(159)).isEmpty)
        guard case .ended? = tracker.tick(at: t0 + .seconds(160)).first else { return XCTFail("the site held for a whole backoff") }
        XCTAssertFalse(tracker.holding)
        XCTAssertEqual(tracker.yielding(at: t0 + .seconds(161)), [])
    }

    func testTheBackoffIsCapped() {
        var tracker = FightTracker()
        var now = t0
        for _ in 0..<3 { _ = tracker.observe([rival], at: now, yielded: []) }
        for _ in 0..<12 {
            now = now + (tracker.fights[site]?.backoff ?? .zero)
            _ = tracker.observe([rival], at: now, yielded: [])          // retake
            now = now + .seconds(1)
            _ = tracker.observe([rival], at: now, yielded: [])          // pushed down again
        }
        XCTAssertEqual(tracker.fights[site]?.backoff, FightTracker.maximumBackoff)
    }

    func testAFloodOfOneOffRulesIsForgottenNotHoarded() {
        var tracker = FightTracker()
        for identity in 0..<UInt64(FightTracker.memoryLimit * 4) {
            _ = tracker.observe([.init(site: site, identity: identity, culprit: "x")], at: t0, yielded: [])
        }
        XCTAssertFalse(tracker.holding)
        // Still counts a real rival afterwards.
        for second in 1...3 { _ = tracker.observe([rival], at: t0 + .seconds(second), yielded: []) }
        XCTAssertTrue(tracker.holding)
    }

    func testTheHoldPlanCopiesTheDropsWithTCPLimitedToSYNs() {
        let entries = [BlockEntry(port: 31002, transport: .tcp), BlockEntry(port: 31900, transport: .udp)]
        let hold = RulePlanner.holdPlan(entries, family: .ipv4)
        XCTAssertEqual(hold.table, "raw")
        XCTAssertEqual(hold.hookRule, RulePlanner.rawHookRule)
        XCTAssertNil(hold.hookRule.direction, "conntrack has not run yet in raw")
        let drops = hold.chains.flatMap(\.rules).filter { $0.target == "DROP" }
        XCTAssertEqual(drops.map(\.iptablesArguments), [
            "-p tcp -m tcp --dport 31002 --tcp-flags FIN,SYN,RST,ACK SYN -m comment --comment \"NodeGuard: block 31002/tcp\" -j DROP",
            "-p udp -m udp --dport 31900 -m comment --comment \"NodeGuard: block 31900/udp\" -j DROP",
        ])
        XCTAssertEqual(hold.chains.map(\.name), RulePlanner.plan(entries, family: .ipv4).chains.map(\.name))
    }
}
