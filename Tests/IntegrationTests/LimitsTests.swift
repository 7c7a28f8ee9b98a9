import Foundation
import NodeGuardCore
import XCTest

/// Issue 14: the limits that bound the work NodeGuard does under the xtables
/// lock, on a real kernel. A request of thousands of sources is refused
/// before anything changes; a list exactly at the limits is applied, and a
/// foreign rule in a chain at the per-entry limit is repaired with the
/// other rules (and their counters) kept.
final class LimitsTests: NodeTestCase {
    func send(_ request: ControlRequest) throws -> ControlResponse {
        try ControlClient(socketPath: node.socketPath).send(request)
    }

    /// Issue 14's request: one `block` with 4,073 sources held the lock for
    /// seconds when a foreign rule met its chain. Now it is refused, through
    /// the CLI and the socket, and nothing changes.
    func testABlockWithFourThousandSourcesIsRefusedAndChangesNothing() throws {
        try setUpNode()
        try node.startDaemon()
        XCTAssertEqual(try node.ctl("block", "31003").status, 0)
        let rules = try node.mangleRules(), rules6 = try node.mangleRules(ipv6: true)
        let state = try Data(contentsOf: URL(fileURLWithPath: node.stateDirectory + "/runtime.json"))

        let sources = (0..<4073).map { "10.0.\($0 >> 8).\($0 & 255)/32" }
        // Through the CLI, 70 (its argument parser takes seconds for thousands of options).
        let cli = try node.ctl(["block", "31002"] + sources.prefix(70).flatMap { ["--allow-from", $0] })
        XCTAssertEqual(cli.status, 1, cli.stderr)
        XCTAssertTrue(cli.stderr.contains("entry.allowFrom: 70 sources; at most 64 per entry (use wider CIDRs that cover several sources)"), cli.stderr)
        let entry = BlockEntry(port: 31002, allowFrom: try sources.map { try CIDR(parsing: $0) })
        guard case .failure(let error) = try send(.block(entry)) else { return XCTFail("a block of 4,073 sources was accepted") }
        XCTAssertEqual(error.code, .invalidRequest)
        XCTAssertTrue(error.message.hasPrefix("entry.allowFrom: 4073 sources; at most 64 per entry"), error.message)

        XCTAssertEqual(try node.mangleRules(), rules, "the kernel is untouched")
        XCTAssertEqual(try node.mangleRules(ipv6: true), rules6)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: node.stateDirectory + "/runtime.json")), state, "the state is untouched")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002), "31002 stays open: the refused block changed nothing")
        XCTAssertEqual(try node.status()["healthy"] as? Bool, true)

        // A block that lets every IPv4 source through is done, and the CLI says what it means.
        let open = try node.ctl("block", "31004", "--allow-from", "0.0.0.0/0")
        XCTAssertEqual(open.status, 0, open.stderr)
        XCTAssertTrue(open.stderr.contains("nodeguardctl: warning: lets every IPv4 source through (0.0.0.0/0), so 31004/tcp is not blocked over IPv4 at all"), open.stderr)
    }

    /// A deny-list one entry short of the limits (4,095 entries, 4,032
    /// sources), then a block at the per-entry limit that brings the effective
    /// list exactly to them: applied. One more entry is refused (a block or a
    /// reload), naming where the entries come from. A foreign rule inserted in
    /// the middle of the blocked entry's chain is repaired: the other rules stay,
    /// counters and all.
    func testAListAtTheLimitsIsAppliedAndRepairedAndOneMoreEntryIsRefused() throws {
        try setUpNode()
        let perEntry = DenyListLimits.sourcesPerEntry
        let sourced = DenyListLimits.sources / perEntry - 1
        var entries: [String] = []
        var source = 0
        for i in 0..<DenyListLimits.entries - 1 {
            // 30000 up, leaving out 31002 (the block below).
            let port = 30000 + i + (30000 + i >= 31002 ? 1 : 0)
            var allow: [String] = []
            if i < sourced {
                allow = (0..<perEntry).map { _ in source += 1; return "\"10.\(source >> 16).\((source >> 8) & 255).\(source & 255)/32\"" }
            }
            let transport = port <= 32767 ? "tcp" : "udp"
            entries.append(#"{"port": \#(port > 32767 ? port - 2768 : port), "protocol": "\#(transport)", "allowFrom": [\#(allow.joined(separator: ","))]}"#)
        }
        try node.writeDenyList(#"{"version": 1, "blocked": [\#(entries.joined(separator: ",\n"))]}"#)
        let validate = try node.ctl("validate", node.configPath)
        XCTAssertEqual(validate.status, 0, validate.stderr)
        try node.startDaemon()

        // The client (198.18.0.2) is one of the 64 sources; the node itself is not.
        let allow = ["198.18.0.2/32"] + (1..<perEntry).map { "203.0.\($0 >> 8).\($0 & 255)/32" }
        let block = try node.ctl(["block", "31002"] + allow.flatMap { ["--allow-from", $0] })
        XCTAssertEqual(block.status, 0, block.stderr)
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002), "the allowed client keeps access")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002, from: .node), "the node itself is not allowed")

        // Exactly at the limits: one more entry is refused, and changes nothing.
        let before = try node.mangleRules()
        let more = try node.ctl("block", "29999")
        XCTAssertEqual(more.status, 1)
        XCTAssertTrue(more.stderr.contains("the effective list would hold 4097 entries (4095 from \(node.configPath), 2 runtime); at most 4096"), more.stderr)
        guard case .failure(let refused) = try send(.block(BlockEntry(port: 29999))) else { return XCTFail("a 4,097th entry was accepted") }
        XCTAssertEqual(refused.code, .limitExceeded)
        try node.writeDenyList(#"{"version": 1, "blocked": [\#(entries.joined(separator: ",\n")), {"port": 29999}]}"#)
        let reload = try node.ctl("reload")
        XCTAssertEqual(reload.status, 1)
        XCTAssertTrue(reload.stderr.contains("the effective list would hold 4097 entries (4096 from"), reload.stderr)
        XCTAssertEqual(try node.mangleRules(), before, "refusals change nothing")

        // A foreign rule in the middle of 31002's chain (its 64 RETURNs and DROP among others').
        let chain = try XCTUnwrap(before.first { $0.contains("--dport 31002 ") && $0.hasSuffix("-j DROP") }?.split(separator: " ")[1])
        let chainLength = before.filter { $0.hasPrefix("-A \(chain) ") }.count
        XCTAssertGreaterThanOrEqual(chainLength, perEntry + 1)
        let counted = try clientCounter()
        XCTAssertGreaterThan(counted, 0, "the client's packets went through its RETURN rule")
        try node.inNode("iptables-legacy -w -t mangle -I \(chain) \(chainLength / 2) -p tcp -j ACCEPT")
        XCTAssertTrue(try node.eventually(5) { try node.mangleRules() == before }, "the chain is repaired")
        // The log line follows the commit (and the audit record's fsync): wait for it too.
        XCTAssertTrue(node.eventually(5) { node.daemonLog.contains("repaired drift: ipv4 mangle \(chain): removed 1 rule(s)") },
                      node.daemonLog.suffix(2000).description)
        XCTAssertGreaterThanOrEqual(try clientCounter(), counted, "the client's RETURN rule was kept, with its counter")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002, from: .node))
    }

    /// Packets counted by the RETURN rule that lets the client through to 31002.
    private func clientCounter() throws -> Int {
        let save = try node.inNode("iptables-legacy-save -c -t mangle").stdout
        let line = save.split(separator: "\n").first { $0.contains("-s 198.18.0.2/32") && $0.contains("--dport 31002 ") }
        guard let line, line.hasPrefix("["), let end = line.firstIndex(of: ":") else { return -1 }
        return Int(line[line.index(after: line.startIndex)..<end]) ?? -1
    }

    /// `validate` says when an entry blocks nothing; exit 0 (the daemon
    /// accepts such a list), exit 1 with --strict.
    func testValidateWarnsAboutAnEntryThatBlocksNothing() throws {
        try node.writeDenyList("""
            {"version": 1, "blocked": [
              {"port": 31002, "allowFrom": ["198.18.0.0/24"]},
              {"port": 31003, "allowFrom": ["0.0.0.0/0", "::/0"]},
              {"port": 31004, "family": "ipv4", "allowFrom": ["0.0.0.0/1", "128.0.0.0/1"]},
              {"port": 31005, "allowFrom": ["::/0"]}
            ]}
            """)
        let result = try node.ctl("validate", node.configPath)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, "\(node.configPath): valid, 4 entries, 3 warnings\n")
        let lines = result.stderr.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 3, result.stderr)
        XCTAssertTrue(lines[0].hasPrefix("nodeguardctl: \(node.configPath): warning: blocked[1].allowFrom: lets every IPv4 and IPv6 source through (0.0.0.0/0, ::/0), so the entry blocks nothing"), lines[0])
        XCTAssertTrue(lines[1].contains("warning: blocked[2].allowFrom: lets every IPv4 source through (2 networks that together cover every address), so the entry blocks nothing"), lines[1])
        XCTAssertTrue(lines[2].contains("warning: blocked[3].allowFrom: lets every IPv6 source through (::/0), so 31005/tcp is not blocked over IPv6 at all"), lines[2])
        let strict = try node.ctl("validate", "--strict", node.configPath)
        XCTAssertEqual(strict.status, 1)
        XCTAssertTrue(strict.stderr.contains("not accepted with --strict: 4 entries, 3 warnings"), strict.stderr)

        try node.writeDenyList(#"{"version": 1, "blocked": [{"port": 31002, "allowFrom": ["198.18.0.0/24"]}]}"#)
        let clean = try node.ctl("validate", "--strict", node.configPath)
        XCTAssertEqual(clean.status, 0, clean.stderr)
        XCTAssertEqual(clean.stderr, "")
    }
}
