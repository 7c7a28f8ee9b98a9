import XCTest
@testable import NodeGuardControl

/// The typed answers: each one's wire form is pinned key by key (the wire
/// format of protocol version 1 must not change), each goes through the
/// envelope and back unchanged, and an answer that lacks what the CLI reads
/// is an error naming the field, never a silent "-".
final class ControlResultTests: XCTestCase {
    static let entry = BlockEntry(port: 32000, transport: .tcp, family: .both, reason: "SEC-1",
                                  allowFrom: [try! CIDR(parsing: "198.18.0.0/24"), try! CIDR(parsing: "2001:db8:1::/64")])
    static let dataplane = DataplaneSummary(kubeProxy: ["iptables-legacy"], others: ["docker"], ebpf: nil,
                                            warnings: ["w"], summary: "kube-proxy: iptables-legacy", reads: 3)
    static let fight = StatusReport.FightReport(
        culprit: "-A PREROUTING -j ACCEPT", family: .ipv4, table: "mangle", chain: "PREROUTING", displacements: 3,
        since: "2026-11-27T13:57:31Z", backoffSeconds: 30, retakeInSeconds: 12, holding: "raw", advice: "append")

    /// Every answer the daemon sends, with every optional field set, and a few with none.
    static let results: [any ControlResult] = [
        BlockResult(port: PortKey(port: 31002, transport: .tcp), source: .runtime, changed: true, changes: ["a", "b"]),
        BlockResult(port: PortKey(port: 31002, transport: .udp), source: .config, changed: false),
        UnblockResult(port: PortKey(port: 31002, transport: .sctp), changes: []),
        ReloadResult(entries: 4096, changes: ["ipv4 mangle NODEGUARD-TCP: added 1 rule(s)"]),
        MetricsResult(text: "# HELP x\nx 1\n"),
        EntryList(entries: [
            EntryReport(entry: entry, source: .config, untracked: ["-A PREROUTING -j CT --notrack"], services: ["ns/svc:http"],
                        warning: nil, dropped: DropCount(packets: UInt64.max, bytes: 0)),
            EntryReport(entry: BlockEntry(port: 1), source: .runtime, warning: "no NodePort on this node uses 1/tcp"),
        ]),
        EntryList(entries: []),
        NodePortsReport(nodeports: [NodePortReport(key: PortKey(port: 31002, transport: .tcp), family: .ipv6, service: "ns/svc:http",
                                                   source: "iptables-legacy", endpoints: ["[2001:db8::2]:80"], blocked: true)],
                        problems: ["nft: not installed"], dataplane: dataplane),
        ExplainReport(key: PortKey(port: 31002, transport: .tcp),
                      rewrites: [.init(by: "kube-proxy service ns/svc:http", kind: "kube-proxy", family: .ipv4,
                                       source: "iptables-legacy", to: ["10.0.0.2:80"])],
                      dataplane: DataplaneSummary(kubeProxy: [], others: [], ebpf: "cilium-kube-proxy-replacement",
                                                  warnings: [], summary: "eBPF", reads: 1),
                      nodeguard: .init(blocked: true, source: .runtime, families: [.ipv4, .ipv6], where: "mangle PREROUTING",
                                       dropped: ["ipv4": DropCount(packets: 2, bytes: 120), "ipv6": DropCount(packets: 0, bytes: 0)]),
                      defeats: ["d"], untracked: [], verdict: "closed: NodeGuard drops 31002/tcp before any DNAT"),
        ExplainReport(key: PortKey(port: 9, transport: .udp), rewrites: [], dataplane: dataplane, nodeguard: .notBlocked,
                      defeats: [], untracked: [], verdict: "open: NodeGuard does not block 9/udp"),
        StatusReport(healthy: false, pid: 4711, startedAt: "2026-11-27T13:57:31Z", configPath: "/etc/nodeguard/denylist.json",
                     stateDirectory: "/var/lib/nodeguard", families: [.ipv4, .ipv6], entries: [], dataplane: dataplane,
                     hooks: ["ipv4": ["PREROUTING": true, "OUTPUT": false]], hooksFirst: false, hooksEffective: true,
                     repairs: 2, commits: 5, fullReads: 7, verifyIntervalMs: 1000, deepCheckIntervalMs: 1000, watchIntervalMs: 100,
                     lastVerify: "2026-11-27T13:57:32Z", lastVerifyMicroseconds: 1234, lastApply: "2026-11-27T13:57:31Z",
                     lastError: "e", xtablesLock: .init(waitingMs: 250, repairPending: true, heldBy: .init(pid: 99, command: "flock")),
                     fights: [fight, fight]),
        StatusReport(healthy: true, pid: 1, startedAt: "s", configPath: "c", stateDirectory: "d", families: [.ipv4], entries: [],
                     dataplane: dataplane, hooks: [:], hooksFirst: true, hooksEffective: true, repairs: 0, commits: 1, fullReads: 0,
                     verifyIntervalMs: 1000, deepCheckIntervalMs: 1000, watchIntervalMs: 100),
    ]

    private func wire(_ result: some ControlResult) -> String {
        guard case .success(let value) = ControlResponse(result) else { XCTFail("\(result) did not encode"); return "" }
        return JSON.serialize(value)
    }

    /// As the daemon sends it and nodeguardctl reads it: through the envelope's line.
    private func assertRoundTrips<R: ControlResult>(_ result: R, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let sent = ControlResponse(result).encoded()
            guard case .success(let value) = try ControlResponse.decode(Array(sent.utf8)) else {
                return XCTFail("\(sent) is not a success", file: file, line: line)
            }
            XCTAssertEqual(try R(result: value), result, sent, file: file, line: line)
        } catch {
            XCTFail("\(R.self): \(error)", file: file, line: line)
        }
    }

    func testEveryAnswerRoundTripsThroughTheWire() {
        for result in Self.results { assertRoundTrips(result) }
    }

    // MARK: the wire form, key by key (protocol version 1)

    func testChangeAnswers() {
        XCTAssertEqual(wire(BlockResult(port: PortKey(port: 31002, transport: .tcp), source: .runtime, changed: true, changes: ["c"])),
                       #"{"changed":true,"changes":["c"],"port":"31002/tcp","source":"runtime"}"#)
        XCTAssertEqual(wire(BlockResult(port: PortKey(port: 31002, transport: .tcp), source: .config, changed: false)),
                       #"{"changed":false,"port":"31002/tcp","source":"config"}"#)
        XCTAssertEqual(wire(UnblockResult(port: PortKey(port: 31002, transport: .udp), changes: [])),
                       #"{"changed":true,"changes":[],"port":"31002/udp"}"#)
        XCTAssertEqual(wire(ReloadResult(entries: 2, changes: ["c"])), #"{"changes":["c"],"entries":2}"#)
        XCTAssertEqual(wire(MetricsResult(text: "a\n")), #"{"text":"a\n"}"#)
    }

    func testEntriesAreTheDenyListsFieldsAndTheReports() {
        let list = Self.results[5] as! EntryList
        XCTAssertEqual(wire(list), """
            {"entries":[{"allowFrom":["198.18.0.0/24","2001:db8:1::/64"],"dropped":{"bytes":0,"packets":18446744073709551615},\
            "family":"both","port":32000,"protocol":"tcp","reason":"SEC-1","services":["ns/svc:http"],"source":"config",\
            "untracked":["-A PREROUTING -j CT --notrack"]},\
            {"family":"both","port":1,"protocol":"tcp","source":"runtime","warning":"no NodePort on this node uses 1/tcp"}]}
            """)
        // The entry's own fields are written as the deny-list writes them.
        for report in list.entries {
            guard case .object(var fields) = try! JSONValueEncoder().encode(report) else { return XCTFail() }
            for key in ["source", "untracked", "services", "warning", "dropped"] { fields[key] = nil }
            XCTAssertEqual(.object(fields), DenyListCodec.encodeEntry(report.entry))
        }
    }

    func testNodePortsAndTheDataplane() {
        XCTAssertEqual(wire(Self.results[7] as! NodePortsReport), """
            {"dataplane":{"kubeProxy":["iptables-legacy"],"others":["docker"],"reads":3,"summary":"kube-proxy: iptables-legacy","warnings":["w"]},\
            "nodeports":[{"blocked":true,"endpoints":["[2001:db8::2]:80"],"family":"ipv6","port":31002,"protocol":"tcp",\
            "service":"ns/svc:http","source":"iptables-legacy"}],"problems":["nft: not installed"]}
            """)
    }

    func testExplain() {
        XCTAssertEqual(wire(Self.results[8] as! ExplainReport), """
            {"dataplane":{"ebpf":"cilium-kube-proxy-replacement","kubeProxy":[],"others":[],"reads":1,"summary":"eBPF","warnings":[]},\
            "defeats":["d"],"nodeguard":{"blocked":true,"dropped":{"ipv4":{"bytes":120,"packets":2},"ipv6":{"bytes":0,"packets":0}},\
            "families":["ipv4","ipv6"],"source":"runtime","where":"mangle PREROUTING"},"port":31002,"protocol":"tcp",\
            "rewrites":[{"by":"kube-proxy service ns/svc:http","family":"ipv4","kind":"kube-proxy","source":"iptables-legacy","to":["10.0.0.2:80"]}],\
            "untracked":[],"verdict":"closed: NodeGuard drops 31002/tcp before any DNAT"}
            """)
        XCTAssertTrue(wire(Self.results[9] as! ExplainReport).contains(#""nodeguard":{"blocked":false}"#))
    }

    func testStatus() {
        let fight = #"{"advice":"append","backoffSeconds":30,"chain":"PREROUTING","culprit":"-A PREROUTING -j ACCEPT","displacements":3,"family":"ipv4","holding":"raw","retakeInSeconds":12,"since":"2026-11-27T13:57:31Z","table":"mangle"}"#
        XCTAssertEqual(wire(Self.results[10] as! StatusReport), """
            {"commits":5,"configPath":"/etc/nodeguard/denylist.json",\
            "dataplane":{"kubeProxy":["iptables-legacy"],"others":["docker"],"reads":3,"summary":"kube-proxy: iptables-legacy","warnings":["w"]},\
            "deepCheckIntervalMs":1000,"entries":[],"families":["ipv4","ipv6"],"fight":\(fight),"fights":[\(fight),\(fight)],\
            "fullReads":7,"healthy":false,"hooks":{"ipv4":{"OUTPUT":false,"PREROUTING":true}},"hooksEffective":true,"hooksFirst":false,\
            "lastApply":"2026-11-27T13:57:31Z","lastError":"e","lastVerify":"2026-11-27T13:57:32Z","lastVerifyMicroseconds":1234,\
            "pid":4711,"repairs":2,"startedAt":"2026-11-27T13:57:31Z","stateDirectory":"/var/lib/nodeguard","verifyIntervalMs":1000,\
            "watchIntervalMs":100,"xtablesLock":{"heldBy":{"command":"flock","pid":99},"repairPending":true,"waitingMs":250}}
            """)
        // Without a fight, a lock wait or a verify yet, those keys are absent (not null).
        let quiet = wire(Self.results[11] as! StatusReport)
        for key in ["fight", "fights", "xtablesLock", "lastVerify", "lastVerifyMicroseconds", "lastApply", "lastError"] {
            XCTAssertFalse(quiet.contains("\"\(key)\""), key)
        }
    }

    // MARK: what the CLI does with an answer it cannot read

    private func readError<R: ControlResult>(_ type: R.Type, _ text: String) -> NodeGuardError? {
        do {
            _ = try R(result: try! JSON.parse(text))
            return nil
        } catch {
            return error
        }
    }

    func testAMissingOrRenamedKeyIsAnErrorThatNamesIt() {
        var status = try! JSONValueEncoder().encode(Self.results[10] as! StatusReport)
        guard case .object(var fields) = status else { return XCTFail() }
        fields["hooksFirstRenamed"] = fields.removeValue(forKey: "hooksFirst")
        status = .object(fields)
        let error = readError(StatusReport.self, JSON.serialize(status))
        XCTAssertEqual(error?.code, .invalidRequest)
        XCTAssertTrue(error?.message.contains("hooksFirst: missing") ?? false, error?.message ?? "no error")
        XCTAssertTrue(error?.message.contains("StatusReport") ?? false, error?.message ?? "no error")

        let nested = readError(EntryList.self, #"{"entries":[{"port":1,"family":"both","protocol":"tcp"}]}"#)
        XCTAssertTrue(nested?.message.contains("entries[0].source: missing") ?? false, nested?.message ?? "no error")
        let wrongType = readError(NodePortsReport.self,
                                  #"{"nodeports":[{"port":"31002"}],"problems":[],"dataplane":{}}"#)
        XCTAssertTrue(wrongType?.message.contains("nodeports[0].port: expected a number, found a string") ?? false,
                      wrongType?.message ?? "no error")
        let unknownSource = readError(BlockResult.self, #"{"port":"1/tcp","source":"elsewhere","changed":true}"#)
        XCTAssertNotNil(unknownSource)
    }

    func testKeysANewerDaemonAddsAreIgnored() {
        let newer = #"{"changes":["c"],"entries":2,"durationMs":5}"#
        XCTAssertEqual(try ReloadResult(result: JSON.parse(newer)), ReloadResult(entries: 2, changes: ["c"]))
    }

    func testAFailureAnswerIsNotAResult() {
        let error = NodeGuardError(.notFound, "31002/tcp is not blocked")
        XCTAssertEqual(try ControlResponse.decode(Array(ControlResponse.failure(error).encoded().utf8)), .failure(error))
    }

    // MARK: the JSONValue coder itself

    func testIntegersStayExactAndOutOfRangeIsAnError() {
        struct Counters: Codable, Equatable { var big: UInt64; var small: Int8; var negative: Int }
        let value = Counters(big: .max, small: -128, negative: Int.min)
        let encoded = try! JSONValueEncoder().encode(value)
        XCTAssertEqual(encoded["big"], .number("18446744073709551615"))
        XCTAssertEqual(try JSONValueDecoder().decode(Counters.self, from: encoded), value)
        XCTAssertThrowsError(try JSONValueDecoder().decode(Counters.self, from: .object([
            "big": .number("1"), "small": .number("128"), "negative": .number("0"),
        ])))
        XCTAssertThrowsError(try JSONValueDecoder().decode(Counters.self, from: .object([
            "big": .number("1.5"), "small": .number("1"), "negative": .number("0"),
        ])))
    }

    func testNonFiniteNumbersCannotBeEncoded() {
        struct Ratio: Codable { var value: Double }
        XCTAssertThrowsError(try JSONValueEncoder().encode(Ratio(value: .nan)))
        XCTAssertEqual(try JSONValueEncoder().encode(Ratio(value: 0.5)), .object(["value": .number("0.5")]))
    }
}
