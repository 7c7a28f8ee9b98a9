import FoundationEssentials

/// NodeGuard's figures in the Prometheus text exposition format, for
/// `nodeguardctl metrics` and node_exporter's textfile collector.
public struct MetricsSnapshot: Sendable {
    public var inspections: [TableInspection]
    public var blockedBySource: [EntrySource: Int]
    public var repairs: Int
    public var commits: Int
    public var healthy: Bool
    public var lastVerifyDuration: Duration?
    public var lastVerify: Date?
    public var lastApply: Date?
    /// Change checks by tier ("quick" sizes, "deep" digests) and full reads.
    public var changeChecks: [String: Int] = [:]
    public var fullReads = 0

    public func render() -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            out += "# HELP nodeguard_\(name) \(help)\n# TYPE nodeguard_\(name) \(type)\n"
            for sample in samples { out += "nodeguard_\(name)\(sample.labels) \(sample.value)\n" }
        }
        let perPort = inspections.sorted { $0.family.rawValue < $1.family.rawValue }.flatMap { inspection in
            inspection.dropCounters.sorted { $0.key < $1.key }.map { (inspection.family, $0.key, $0.value) }
        }
        let portLabels = { (f: AddressFamily, k: PortKey) in
            "{family=\"\(f.rawValue)\",port=\"\(k.port)\",protocol=\"\(k.transport.rawValue)\"}"
        }
        family("dropped_packets_total", "counter", "Packets dropped before DNAT, per blocked port and family.",
               perPort.map { (portLabels($0.0, $0.1), String($0.2.packets)) })
        family("dropped_bytes_total", "counter", "Bytes dropped before DNAT, per blocked port and family.",
               perPort.map { (portLabels($0.0, $0.1), String($0.2.bytes)) })
        family("blocked_ports", "gauge", "Blocked ports, by where the entry comes from.",
               [EntrySource.config, .runtime].map { ("{source=\"\($0.rawValue)\"}", String(blockedBySource[$0] ?? 0)) })
        family("hooks_first", "gauge", "1 when NodeGuard's jump is rule 1 of the hook chain.",
               inspections.sorted { $0.family.rawValue < $1.family.rawValue }.flatMap { inspection in
                   inspection.hookFirst.sorted { $0.key < $1.key }.map {
                       ("{chain=\"\($0.key)\",family=\"\(inspection.family.rawValue)\"}", $0.value ? "1" : "0")
                   }
               })
        family("healthy", "gauge", "1 when the last verify succeeded and the hooks are first.", [("", healthy ? "1" : "0")])
        family("repairs_total", "counter", "Verify passes that found drift and repaired it.", [("", String(repairs))])
        family("commits_total", "counter", "Commits to the mangle tables.", [("", String(commits))])
        family("change_checks_total", "counter", "Cheap checks for changes to NodeGuard's tables (quick: sizes, deep: rule digests).",
               changeChecks.sorted { $0.key < $1.key }.map { ("{kind=\"\($0.key)\"}", String($0.value)) })
        family("full_reads_total", "counter", "Full reads of NodeGuard's chains (after a change was seen, or the periodic one).",
               [("", String(fullReads))])
        if let lastVerifyDuration {
            family("verify_duration_seconds", "gauge", "Duration of the last full read and repair pass.",
                   [("", Self.seconds(lastVerifyDuration))])
        }
        if let lastVerify {
            family("last_verify_timestamp_seconds", "gauge", "When the tables were last confirmed as planned.",
                   [("", fixedPoint(lastVerify.timeIntervalSince1970, decimals: 3))])
        }
        if let lastApply {
            family("last_apply_timestamp_seconds", "gauge", "When a deny-list was last applied.",
                   [("", fixedPoint(lastApply.timeIntervalSince1970, decimals: 3))])
        }
        return out
    }

    static func seconds(_ duration: Duration) -> String {
        let value = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return fixedPoint(value, decimals: 6)
    }
}
