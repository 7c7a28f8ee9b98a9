import XCTest

@testable import NodeGuardCore

/// Which foreign rules above NodeGuard's jump matter: only those that could
/// let a packet to a blocked port leave the hook chain before the jump.
final class BypassCheckTests: XCTestCase {
    let check = BypassCheck(RulePlanner.plan([BlockEntry(port: 31002), BlockEntry(port: 31900, transport: .udp)], family: .ipv6))

    func foreign(_ target: String, protocol number: UInt8 = 0, ports: ClosedRange<UInt16>? = nil,
                 inverted: Bool = false, identity: UInt64 = 1) -> ObservedRule {
        var rule = ObservedRule(spec: nil, target: target, comment: "")
        rule.protocolNumber = number
        rule.destinationPorts = ports
        rule.protocolInverted = inverted
        rule.identity = identity
        return rule
    }

    func testRulesThatCannotLetABlockedPacketThrough() {
        XCTAssertFalse(check.mayLetThrough(foreign("ACCEPT", protocol: 58)), "an ICMPv6 accept")
        XCTAssertFalse(check.mayLetThrough(foreign("MARK")), "non-terminating")
        XCTAssertFalse(check.mayLetThrough(foreign("DROP")))
        XCTAssertFalse(check.mayLetThrough(foreign("ACCEPT", protocol: 6, ports: 22...22)), "another port")
        XCTAssertFalse(check.mayLetThrough(foreign("ACCEPT", protocol: 6, ports: 31003...31899)), "a range without blocked tcp ports")
        XCTAssertFalse(check.mayLetThrough(foreign("ACCEPT", protocol: 17, ports: 31002...31002)), "31002 is blocked for tcp only")
        XCTAssertFalse(check.mayLetThrough(foreign("NODEGUARD")), "NodeGuard's own jump")
    }

    func testRulesThatCould() {
        XCTAssertTrue(check.mayLetThrough(foreign("ACCEPT")), "accepts everything")
        XCTAssertTrue(check.mayLetThrough(foreign("ACCEPT", protocol: 6, ports: 31002...31002)))
        XCTAssertTrue(check.mayLetThrough(foreign("ACCEPT", protocol: 6, ports: 30000...32767)))
        XCTAssertTrue(check.mayLetThrough(foreign("ACCEPT", protocol: 6)), "multiport, string, u32: ports unknown")
        XCTAssertTrue(check.mayLetThrough(foreign("ACCEPT", protocol: 17, inverted: true)), "! -p udp matches tcp")
        XCTAssertTrue(check.mayLetThrough(foreign("cali-PREROUTING")), "a chain may accept")
        XCTAssertTrue(check.mayLetThrough(foreign("RETURN", protocol: 17)), "RETURN from a hook chain is its policy")
        XCTAssertTrue(check.mayLetThrough(foreign("TPROXY", protocol: 6)))
        XCTAssertTrue(check.mayLetThrough(foreign("NFQUEUE")))
    }

    func testNothingBlockedNothingMatters() {
        XCTAssertFalse(BypassCheck(RulePlanner.plan([], family: .ipv4)).mayLetThrough(foreign("ACCEPT")))
    }

    func testTheJumpMayStayBelowHarmlessRulesButNotBelowOthers() {
        let hook = RulePlanner.hookRule
        let harmless = [foreign("ACCEPT", protocol: 58), foreign("MARK"), ObservedRule(hook)]
        XCTAssertEqual(ChainDiff.hookEdits(actual: harmless, hookRule: hook, mayLetThrough: check.mayLetThrough), [])
        let risky = [foreign("ACCEPT", protocol: 58), foreign("ACCEPT", protocol: 6), ObservedRule(hook)]
        XCTAssertEqual(ChainDiff.hookEdits(actual: risky, hookRule: hook, mayLetThrough: check.mayLetThrough),
                       [.delete(index: 2), .insert(index: 0, rule: hook)])
        // Without a check every rule above counts, as before.
        XCTAssertEqual(ChainDiff.hookEdits(actual: harmless, hookRule: hook), [.delete(index: 2), .insert(index: 0, rule: hook)])
    }
}
