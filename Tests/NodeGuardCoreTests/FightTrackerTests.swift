import XCTest

@testable import NodeGuardCore

final class FightTrackerTests: XCTestCase {
    let rival = FightTracker.Displacement(culprit: "-j cali-PREROUTING", family: .ipv4, chain: "PREROUTING")
    let other = FightTracker.Displacement(culprit: "-j OTHER", family: .ipv4, chain: "PREROUTING")
    let t0 = ContinuousClock.now

    func testThreeDisplacementsByTheSameRuleWithinTheWindowStartAFight() {
        var tracker = FightTracker()
        XCTAssertNil(tracker.observe([rival], at: t0, hookWasFirst: true))
        XCTAssertNil(tracker.observe([other], at: t0 + .seconds(1), hookWasFirst: true), "another rule does not add up")
        XCTAssertNil(tracker.observe([rival], at: t0 + .seconds(100), hookWasFirst: true))
        guard case .started(let fight) = tracker.observe([rival], at: t0 + .seconds(200), hookWasFirst: true) else {
            return XCTFail("the third displacement starts the fight")
        }
        XCTAssertEqual(fight.displacement, rival)
        XCTAssertEqual(fight.backoff, FightTracker.firstBackoff)
        XCTAssertTrue(tracker.holding)
        XCTAssertFalse(tracker.hookMustBeFirst(at: t0 + .seconds(201)), "backing off")
        XCTAssertTrue(tracker.hookMustBeFirst(at: t0 + .seconds(230)), "retake after the backoff")
    }

    func testDisplacementsOutsideTheWindowDoNotAddUp() {
        var tracker = FightTracker()
        for minute in [0, 16, 32, 48] {
            XCTAssertNil(tracker.observe([rival], at: t0 + .seconds(minute * 60), hookWasFirst: true))
        }
        XCTAssertFalse(tracker.holding)
    }

    func testPushedDownAfterARetakeDoublesTheBackoffAndHoldingRuleOneEndsTheFight() {
        var tracker = FightTracker()
        for second in 0..<3 { _ = tracker.observe([rival], at: t0 + .seconds(second), hookWasFirst: true) }
        XCTAssertTrue(tracker.holding)
        // While yielding nothing is learned.
        XCTAssertNil(tracker.observe([], at: t0 + .seconds(10), hookWasFirst: false))
        // The retake itself finds the rival above (NodeGuard had yielded): not a new push.
        XCTAssertNil(tracker.observe([rival], at: t0 + .seconds(33), hookWasFirst: true))
        guard case .continued(let fight) = tracker.observe([rival], at: t0 + .seconds(40), hookWasFirst: true) else {
            return XCTFail("pushed down again after the retake")
        }
        XCTAssertEqual(fight.backoff, FightTracker.firstBackoff * 2)
        XCTAssertFalse(tracker.hookMustBeFirst(at: t0 + .seconds(99)))
        XCTAssertTrue(tracker.hookMustBeFirst(at: t0 + .seconds(100)))
        XCTAssertNil(tracker.observe([rival], at: t0 + .seconds(100), hookWasFirst: true), "second retake")
        XCTAssertNil(tracker.tick(at: t0 + .seconds(159)))
        guard case .ended = tracker.tick(at: t0 + .seconds(160)) else { return XCTFail("rule 1 held for a whole backoff") }
        XCTAssertFalse(tracker.holding)
        XCTAssertTrue(tracker.hookMustBeFirst(at: t0 + .seconds(161)))
    }

    func testTheBackoffIsCapped() {
        var tracker = FightTracker()
        var now = t0
        for _ in 0..<3 { _ = tracker.observe([rival], at: now, hookWasFirst: true) }
        for _ in 0..<12 {
            now = now + (tracker.fight?.backoff ?? .zero)
            _ = tracker.observe([rival], at: now, hookWasFirst: true)          // retake
            now = now + .seconds(1)
            _ = tracker.observe([rival], at: now, hookWasFirst: true)          // pushed down again
        }
        XCTAssertEqual(tracker.fight?.backoff, FightTracker.maximumBackoff)
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
