import Foundation
import XCTest

/// Drop counters and the daemon's figures, from `nodeguardctl metrics` and the
/// node_exporter textfile, counting packets the kernel really dropped.
final class MetricsIntegrationTests: NodeTestCase {
    func testMetricsCountRealDropsAndTheTextfileFollowsChanges() throws {
        try setUpNode()
        let textfile = node.directory.appendingPathComponent("nodeguard.prom").path
        try node.startDaemon(extraArguments: ["--verify-interval", "100ms", "--metrics-textfile", textfile])
        XCTAssertTrue(try String(contentsOfFile: textfile, encoding: .utf8).contains("nodeguard_blocked_ports{source=\"runtime\"} 0"))

        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        XCTAssertTrue(try String(contentsOfFile: textfile, encoding: .utf8).contains("nodeguard_blocked_ports{source=\"runtime\"} 1"),
                      "the textfile is rewritten after a change")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))

        let metrics = try node.ctl("metrics")
        XCTAssertEqual(metrics.status, 0, metrics.stderr)
        let line = metrics.stdout.split(separator: "\n").first {
            $0.hasPrefix("nodeguard_dropped_packets_total{family=\"ipv4\",port=\"31002\",protocol=\"tcp\"} ")
        }
        let dropped = line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        XCTAssertGreaterThan(dropped, 0, "the SYNs the client sent were dropped and counted: \(metrics.stdout)")
        XCTAssertTrue(metrics.stdout.contains("nodeguard_hooks_first{chain=\"PREROUTING\",family=\"ipv6\"} 1"))
        XCTAssertTrue(metrics.stdout.contains("nodeguard_healthy 1"))
        // No temporary file is left next to the textfile.
        let siblings = try FileManager.default.contentsOfDirectory(atPath: node.directory.path)
        XCTAssertFalse(siblings.contains { $0.hasPrefix("nodeguard.prom.tmp") }, "\(siblings)")
        // node_exporter reads it as a user of its own.
        var info = stat()
        XCTAssertEqual(stat(textfile, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o644)
    }
}
