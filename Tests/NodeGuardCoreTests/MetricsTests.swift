import Logging
import XCTest

@testable import NodeGuardCore

final class MetricsTests: XCTestCase {
    func testRendersThePrometheusTextFormat() {
        let key = PortKey(port: 31002, transport: .tcp)
        let snapshot = MetricsSnapshot(
            inspections: [
                TableInspection(family: .ipv6, hookFirst: ["OUTPUT": true, "PREROUTING": false], dropCounters: [key: DropCounters(packets: 1, bytes: 80)]),
                TableInspection(family: .ipv4, hookFirst: ["OUTPUT": true, "PREROUTING": true], dropCounters: [key: DropCounters(packets: 12, bytes: 720)]),
            ],
            blockedBySource: [.config: 1], repairs: 3, commits: 4, healthy: false,
            lastVerifyDuration: .microseconds(1500), lastVerify: Date(timeIntervalSince1970: 1_800_000_000), lastApply: nil,
            changeChecks: ["quick": 120, "deep": 9], fullReads: 2)
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
            # HELP nodeguard_change_checks_total Cheap checks for changes to NodeGuard's tables (quick: sizes, deep: rule digests).
            # TYPE nodeguard_change_checks_total counter
            nodeguard_change_checks_total{kind="deep"} 9
            nodeguard_change_checks_total{kind="quick"} 120
            # HELP nodeguard_full_reads_total Full reads of NodeGuard's chains (after a change was seen, or the periodic one).
            # TYPE nodeguard_full_reads_total counter
            nodeguard_full_reads_total 2
            # HELP nodeguard_verify_duration_seconds Duration of the last full read and repair pass.
            # TYPE nodeguard_verify_duration_seconds gauge
            nodeguard_verify_duration_seconds 0.001500
            # HELP nodeguard_last_verify_timestamp_seconds When the tables were last confirmed as planned.
            # TYPE nodeguard_last_verify_timestamp_seconds gauge
            nodeguard_last_verify_timestamp_seconds 1800000000.000

            """)
    }
}
