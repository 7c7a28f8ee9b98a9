import Logging
import XCTest

@testable import NodeGuardCore

final class JournalLogHandlerTests: XCTestCase {
    func testFieldsCarryMessagePriorityIdentifierAndMetadata() {
        let fields = JournalLogHandler.fields(
            level: .info, message: "blocked 31002/tcp",
            metadata: ["port": "31002", "protocol": "tcp", "action": "block"], identifier: "nodeguardd")
        XCTAssertEqual(fields, [
            "MESSAGE=blocked 31002/tcp", "PRIORITY=6", "SYSLOG_IDENTIFIER=nodeguardd",
            "ACTION=block", "PORT=31002", "PROTOCOL=tcp",
        ])
    }

    func testPrioritiesFollowSyslog() {
        XCTAssertEqual(JournalLogHandler.priority(.critical), 2)
        XCTAssertEqual(JournalLogHandler.priority(.error), 3)
        XCTAssertEqual(JournalLogHandler.priority(.warning), 4)
        XCTAssertEqual(JournalLogHandler.priority(.notice), 5)
        XCTAssertEqual(JournalLogHandler.priority(.info), 6)
        XCTAssertEqual(JournalLogHandler.priority(.debug), 7)
        XCTAssertEqual(JournalLogHandler.priority(.trace), 7)
    }

    func testFieldNamesAreMadeValidOrDropped() {
        XCTAssertEqual(JournalLogHandler.fieldName("port"), "PORT")
        XCTAssertEqual(JournalLogHandler.fieldName("peer-uid"), "PEER_UID")
        XCTAssertEqual(JournalLogHandler.fieldName("_hidden"), "HIDDEN", "a leading underscore is for trusted fields")
        XCTAssertEqual(JournalLogHandler.fieldName("1st"), "ST")
        XCTAssertNil(JournalLogHandler.fieldName("message"), "metadata must not override MESSAGE")
        XCTAssertNil(JournalLogHandler.fieldName("___"))
        XCTAssertNil(JournalLogHandler.fieldName(String(repeating: "A", count: 65)))
    }

    func testJournalStreamMatchesOnlyTheSameDeviceAndInode() {
        XCTAssertTrue(JournalLogHandler.journalStream("8:12345", matchesDevice: 8, inode: 12345))
        XCTAssertFalse(JournalLogHandler.journalStream("8:12345", matchesDevice: 8, inode: 12346))
        XCTAssertFalse(JournalLogHandler.journalStream("9:12345", matchesDevice: 8, inode: 12345))
        XCTAssertFalse(JournalLogHandler.journalStream("garbage", matchesDevice: 8, inode: 12345))
        XCTAssertFalse(JournalLogHandler.journalStream("", matchesDevice: 0, inode: 0))
    }
}

final class SystemdNotifierTests: XCTestCase {
    func testTheLoopComesRoundTwicePerWatchdogTimeout() {
        // Built without NOTIFY_SOCKET/WATCHDOG_USEC in a test process: no watchdog.
        let plain = SystemdNotifier(isEnabled: false, watchdogTimeout: nil)
        XCTAssertEqual(plain.loopInterval(verifyInterval: .seconds(1)), .seconds(1))
        let watched = SystemdNotifier(isEnabled: true, watchdogTimeout: .seconds(10))
        XCTAssertEqual(watched.loopInterval(verifyInterval: .seconds(1)), .seconds(1), "verify already comes round often enough")
        XCTAssertEqual(watched.loopInterval(verifyInterval: .seconds(30)), .seconds(5), "half the watchdog timeout")
    }
}

final class AuditLogTests: XCTestCase {
    func testALineIsOneJSONObjectWithWhenWhatWhoAndResult() throws {
        let line = AuditLog.line(time: Date(timeIntervalSince1970: 0), action: "block",
                                 origin: .socket(pid: 42, uid: 1000, gid: 1001),
                                 details: ["port": .string("31002/tcp")], error: nil)
        XCTAssertEqual(line, #"{"action":"block","origin":{"gid":1001,"kind":"socket","pid":42,"uid":1000},"port":"31002/tcp","result":"ok","time":"1970-01-01T00:00:00Z"}"# + "\n")
        let failed = AuditLog.line(time: Date(timeIntervalSince1970: 0), action: "reload", origin: .signal, details: [:], error: "bad\nfile")
        XCTAssertEqual(failed.filter { $0 == "\n" }.count, 1, "one record, one line, whatever the error text")
        XCTAssertTrue(failed.contains(#""result":"error""#) && failed.contains(#""kind":"signal""#))
    }

    func testRecordsAreAppended() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let audit = AuditLog(directory: directory)
        try audit.record("block", origin: .daemon, details: ["port": .string("1/tcp")])
        try audit.record("unblock", origin: .daemon, details: ["port": .string("1/tcp")])
        let lines = try String(contentsOfFile: audit.path, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines[0].contains(#""action":"block""#) && lines[1].contains(#""action":"unblock""#))
    }
}

final class MetricsTests: XCTestCase {
    func testRendersThePrometheusTextFormat() {
        let key = PortKey(port: 31002, transport: .tcp)
        let snapshot = MetricsSnapshot(
            inspections: [
                TableInspection(family: .ipv6, hookFirst: ["OUTPUT": true, "PREROUTING": false], dropCounters: [key: DropCounters(packets: 1, bytes: 80)]),
                TableInspection(family: .ipv4, hookFirst: ["OUTPUT": true, "PREROUTING": true], dropCounters: [key: DropCounters(packets: 12, bytes: 720)]),
            ],
            blockedBySource: [.config: 1], repairs: 3, commits: 4, healthy: false,
            lastVerifyDuration: .microseconds(1500), lastVerify: Date(timeIntervalSince1970: 1_800_000_000), lastApply: nil)
        XCTAssertEqual(snapshot.render(), """
            # HELP nodeguard_dropped_packets_total Packets dropped before DNAT, per blocked port and family.
            # TYPE nodeguard_dropped_packets_total counter
            nodeguard_dropped_packets_total{family="ipv4",port="31002",protocol="tcp"} 12
            nodeguard_dropped_packets_total{family="ipv6",port="31002",protocol="tcp"} 1
            # HELP nodeguard_dropped_bytes_total Bytes dropped before DNAT, per blocked port and family.
            # TYPE nodeguard_dropped_bytes_total counter
            nodeguard_dropped_bytes_total{family="ipv4",port="31002",protocol="tcp"} 720
            nodeguard_dropped_bytes_total{family="ipv6",port="31002",protocol="tcp"} 80
            # HELP nodeguard_blocked_ports Blocked ports, by where the entry comes from.
            # TYPE nodeguard_blocked_ports gauge
            nodeguard_blocked_ports{source="config"} 1
            nodeguard_blocked_ports{source="runtime"} 0
            # HELP nodeguard_hooks_first 1 when NodeGuard's jump is rule 1 of the hook chain.
            # TYPE nodeguard_hooks_first gauge
            nodeguard_hooks_first{chain="OUTPUT",family="ipv4"} 1
            nodeguard_hooks_first{chain="PREROUTING",family="ipv4"} 1
            nodeguard_hooks_first{chain="OUTPUT",family="ipv6"} 1
            nodeguard_hooks_first{chain="PREROUTING",family="ipv6"} 0
            # HELP nodeguard_healthy 1 when the last verify succeeded and the hooks are first.
            # TYPE nodeguard_healthy gauge
            nodeguard_healthy 0
            # HELP nodeguard_repairs_total Verify passes that found drift and repaired it.
            # TYPE nodeguard_repairs_total counter
            nodeguard_repairs_total 3
            # HELP nodeguard_commits_total Commits to the mangle tables.
            # TYPE nodeguard_commits_total counter
            nodeguard_commits_total 4
            # HELP nodeguard_verify_duration_seconds Duration of the last verify pass.
            # TYPE nodeguard_verify_duration_seconds gauge
            nodeguard_verify_duration_seconds 0.001500
            # HELP nodeguard_last_verify_timestamp_seconds When the last verify pass ended.
            # TYPE nodeguard_last_verify_timestamp_seconds gauge
            nodeguard_last_verify_timestamp_seconds 1800000000.000

            """)
    }
}

final class NodePortParsingTests: XCTestCase {
    func testParsesKubeProxyNodePortRulesFromSaveOutput() {
        let text = """
            *nat
            :KUBE-NODEPORTS - [0:0]
            -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS
            -A KUBE-NODEPORTS -p tcp -m comment --comment "vault/vault-ui:http" -m tcp --dport 31002 -j KUBE-EXT-VAULT
            -A KUBE-NODEPORTS -p udp -m comment --comment "dns/resolver:dns" -m udp --dport 31900 -j KUBE-EXT-DNS
            -A KUBE-NODEPORTS -p tcp -m comment --comment "odd/\\"quoted\\" name:x" -m tcp --dport 32001 -j KUBE-EXT-ODD
            COMMIT
            """
        let ports = NodePortReader.parseSave(text, family: .ipv6, source: "iptables-nft")
        XCTAssertEqual(ports.map(\.key), [PortKey(port: 31002, transport: .tcp), PortKey(port: 31900, transport: .udp),
                                          PortKey(port: 32001, transport: .tcp)])
        XCTAssertEqual(ports.map(\.service), ["vault/vault-ui:http", "dns/resolver:dns", "odd/\"quoted\" name:x"])
        XCTAssertTrue(ports.allSatisfy { $0.family == .ipv6 && $0.source == "iptables-nft" })
    }
}
