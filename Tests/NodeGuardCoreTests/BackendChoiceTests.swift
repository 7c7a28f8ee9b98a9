import Foundation
import XCTest
@testable import NodeGuardCore

/// `--backend auto` and what can defeat the nftables drops, without root.
final class BackendChoiceTests: XCTestCase {
    func testAutoKeepsLegacyXtablesWhereTheNodeUsesThemAndNftablesOtherwise() {
        let legacy = BackendSelection.choose(.auto, legacyTables: ["ip nat", "ip filter", "ip6 nat"])
        XCTAssertEqual(legacy.backend, .iptables)
        XCTAssertTrue(legacy.reason.contains("ip nat, ip filter, ip6 nat"), legacy.reason)
        let none = BackendSelection.choose(.auto, legacyTables: [])
        XCTAssertEqual(none.backend, .nftables)
        XCTAssertTrue(none.reason.contains("no legacy xtables table"), none.reason)
        // An explicit choice is kept whatever the node has.
        XCTAssertEqual(BackendSelection.choose(.iptables, legacyTables: []).backend, .iptables)
        XCTAssertEqual(BackendSelection.choose(.nftables, legacyTables: ["ip nat"]).backend, .nftables)
    }

    func testTheLegacyTablesAreReadFromTheKernelsListsWithoutOpeningAny() throws {
        let procNet = FileManager.default.temporaryDirectory.appendingPathComponent("ng-procnet-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: procNet, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: procNet) }
        XCTAssertEqual(BackendSelection.legacyTables(procNet: procNet.path), [], "no lists: a kernel without legacy xtables")
        try "nat\nfilter\n".write(to: procNet.appendingPathComponent("ip_tables_names"), atomically: true, encoding: .utf8)
        try "mangle\n".write(to: procNet.appendingPathComponent("ip6_tables_names"), atomically: true, encoding: .utf8)
        XCTAssertEqual(BackendSelection.legacyTables(procNet: procNet.path), ["ip nat", "ip filter", "ip6 mangle"])
    }

    func chain(_ table: String, _ name: String, _ hook: NFTHook, _ priority: Int32, rewrites: Bool,
               type: String = "filter", family: String = "ip") -> NFTHookChain {
        NFTHookChain(family: family, table: table, chain: name, hook: hook, priority: priority,
                     type: type, rewritesDestination: rewrites)
    }

    func testOnlyADestinationRewriteOutsideNatBeforeNodeGuardsChainCanDefeatIt() {
        let chains = [
            chain("early", "pre", .prerouting, -160, rewrites: true),            // defeats: `tcp dport set` before -150
            chain("same", "pre", .prerouting, -150, rewrites: true),             // same priority: order undefined, counts
            chain("kube-proxy", "nat-prerouting", .prerouting, -100, rewrites: true, type: "nat"),  // after NodeGuard
            chain("early-nat", "pre", .prerouting, -160, rewrites: true, type: "nat"),  // runs in the NAT hook at -100
            chain("raw", "accept-all", .prerouting, -300, rewrites: false),      // an accept cannot re-open a port
            chain("early", "out", .output, -200, rewrites: true),
            chain(NFTablesPlanner.table, "prerouting", .prerouting, -150, rewrites: true, family: "inet"),
        ]
        let found = NFTablesDefeats.rewritingBefore(chains)
        XCTAssertEqual(found.map { "\($0.table) \($0.chain)" }, ["early out", "early pre", "same pre"])
        XCTAssertTrue(NFTablesDefeats.describe(found[1]).contains("table ip early chain pre (hook prerouting, priority -160)"))
    }
}
