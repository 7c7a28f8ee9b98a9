import XCTest
@testable import NodeGuardCore

/// The engine's own answers, through the fake backend, read as nodeguardctl
/// reads them: the daemon and the CLI share the result types, and this checks
/// that every answer decodes into its type and encodes back to exactly the
/// JSON the engine sent (no key the types do not know, none they need missing).
extension EngineTests {
    @discardableResult
    func assertAnswerReadsAsItself<R: ControlResult>(_ request: ControlRequest, as type: R.Type,
                                                     file: StaticString = #filePath, line: UInt = #line) throws -> R {
        let response = engine.handle(request, from: .daemon)
        guard case .success(let value) = response else {
            XCTFail("\(request.command): \(response)", file: file, line: line)
            throw NodeGuardError(.invalidRequest, "\(request.command) failed")
        }
        let typed = try R(result: value)
        XCTAssertEqual(try JSONValueEncoder().encode(typed), value, "\(request.command): \(JSON.serialize(value))", file: file, line: line)
        return typed
    }

    func testEveryAnswerOfTheEngineDecodesIntoTheTypeTheCLIReads() throws {
        let entry = BlockEntry(port: 31005, transport: .udp, family: .ipv4, reason: "SEC-1", allowFrom: [cidr("198.18.0.0/24")])
        XCTAssertEqual(try assertAnswerReadsAsItself(.block(entry), as: BlockResult.self).changed, true)
        XCTAssertEqual(try assertAnswerReadsAsItself(.block(entry), as: BlockResult.self).changed, false)
        XCTAssertEqual(try assertAnswerReadsAsItself(.block(BlockEntry(port: 31002)), as: BlockResult.self).source, .config)
        let list = try assertAnswerReadsAsItself(.list, as: EntryList.self)
        XCTAssertEqual(list.entries.map(\.entry), [BlockEntry(port: 31002), entry])
        XCTAssertEqual(list.entries.map(\.source), [.config, .runtime])
        let status = try assertAnswerReadsAsItself(.status, as: StatusReport.self)
        XCTAssertEqual(status.entries.map(\.entry), [BlockEntry(port: 31002), entry])
        XCTAssertEqual(status.families, [.ipv4, .ipv6])
        XCTAssertTrue(status.hooksFirst)
        let explain = try assertAnswerReadsAsItself(.explain(entry.key), as: ExplainReport.self)
        XCTAssertTrue(explain.nodeguard.blocked)
        XCTAssertEqual(explain.nodeguard.families, [.ipv4])
        XCTAssertFalse(try assertAnswerReadsAsItself(.explain(PortKey(port: 9, transport: .tcp)), as: ExplainReport.self).nodeguard.blocked)
        try assertAnswerReadsAsItself(.nodeports, as: NodePortsReport.self)
        XCTAssertTrue(try assertAnswerReadsAsItself(.metrics, as: MetricsResult.self).text.contains("nodeguard_"))
        XCTAssertEqual(try assertAnswerReadsAsItself(.reload, as: ReloadResult.self).entries, 1)
        XCTAssertEqual(try assertAnswerReadsAsItself(.unblock(entry.key), as: UnblockResult.self).port, "31005/udp")
    }
}
