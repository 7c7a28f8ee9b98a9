import Foundation
import XCTest
import NodeGuardCore

/// The real daemon's answers read as nodeguardctl reads them: each decodes
/// into its typed result, and that encodes back to exactly what the daemon
/// sent, so the shared types hold every key the daemon writes. And the
/// CLI's ways to name the socket, against a running daemon.
final class ControlAnswerTests: NodeTestCase {
    @discardableResult
    func assertReadsAsItself<R: ControlResult>(_ request: ControlRequest, as type: R.Type,
                                               file: StaticString = #filePath, line: UInt = #line) throws -> R? {
        guard case .success(let value) = try ControlClient(socketPath: node.socketPath).send(request) else {
            XCTFail("\(request.command) failed", file: file, line: line)
            return nil
        }
        let typed = try R(result: value)
        XCTAssertEqual(try JSONValueEncoder().encode(typed), value, "\(request.command): \(JSON.serialize(value))", file: file, line: line)
        return typed
    }

    func testEveryAnswerReadsAsItsTypedResultAndBack() throws {
        try setUpNode(nat: .legacy)
        try node.startDaemon()
        let block = try assertReadsAsItself(.block(BlockEntry(port: 31002, reason: "SEC-1", allowFrom: [try CIDR(parsing: "198.18.0.0/24")])),
                                            as: BlockResult.self)
        XCTAssertEqual(block?.changed, true)
        XCTAssertEqual(try assertReadsAsItself(.block(BlockEntry(port: 31002, reason: "SEC-1", allowFrom: [try CIDR(parsing: "198.18.0.0/24")])),
                                               as: BlockResult.self)?.changes, nil)
        try assertReadsAsItself(.block(BlockEntry(port: 31555, transport: .udp, family: .ipv4)), as: BlockResult.self)
        let status = try XCTUnwrap(try assertReadsAsItself(.status, as: StatusReport.self))
        XCTAssertTrue(status.healthy)
        XCTAssertEqual(status.entries.map(\.entry.key.description), ["31002/tcp", "31555/udp"])
        XCTAssertEqual(status.entries.first?.services, ["vault/vault-ui:http"])
        XCTAssertNotNil(status.entries.first?.dropped)
        try assertReadsAsItself(.list, as: EntryList.self)
        try assertReadsAsItself(.nodeports, as: NodePortsReport.self)
        let explain = try XCTUnwrap(try assertReadsAsItself(.explain(PortKey(port: 31002, transport: .tcp)), as: ExplainReport.self))
        XCTAssertTrue(explain.nodeguard.blocked)
        XCTAssertEqual(explain.nodeguard.dropped?.keys.sorted(), ["ipv4", "ipv6"])
        try assertReadsAsItself(.explain(PortKey(port: 31003, transport: .tcp)), as: ExplainReport.self)
        try assertReadsAsItself(.metrics, as: MetricsResult.self)
        try assertReadsAsItself(.reload, as: ReloadResult.self)
        try assertReadsAsItself(.unblock(PortKey(port: 31555, transport: .udp)), as: UnblockResult.self)
    }

    func testTheSocketBeforeTheSubcommandAfterItOrFromTheEnvironment() throws {
        try setUpNode(nat: .legacy)
        try node.startDaemon()
        let ctl = TestPaths.nodeguardctl
        XCTAssertEqual(try runCommand([ctl, "--socket", node.socketPath, "block", "31002"]).status, 0)
        for arguments in [["--socket", node.socketPath, "status"], ["status", "--socket", node.socketPath]] {
            let status = try runCommand([ctl] + arguments)
            XCTAssertEqual(status.status, 0, "\(arguments): \(status.stderr)")
            XCTAssertTrue(status.stdout.contains("nodeguardd:  healthy") && status.stdout.contains("31002/tcp"), status.stdout)
        }
        let fromEnvironment = try runCommand([ctl, "explain", "31002"], environment: ["NODEGUARD_SOCKET": node.socketPath])
        XCTAssertEqual(fromEnvironment.status, 0, fromEnvironment.stderr)
        XCTAssertTrue(fromEnvironment.stdout.contains("verdict:      closed"), fromEnvironment.stdout)
        // The flag wins over the environment.
        let flagWins = try runCommand([ctl, "--socket", node.socketPath, "list"], environment: ["NODEGUARD_SOCKET": "/nonexistent.sock"])
        XCTAssertEqual(flagWins.status, 0, flagWins.stderr)
        XCTAssertEqual(try runCommand([ctl, "list"], environment: ["NODEGUARD_SOCKET": "/nonexistent.sock"]).status, 3)
    }
}
