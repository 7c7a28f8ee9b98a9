import FoundationEssentials

/// Chooses the backend for `nodeguardd --backend auto`: libiptc where the
/// node already uses legacy xtables (the kernel has a legacy table, as
/// kube-proxy's iptables-legacy mode, Docker or an iptables-legacy firewall
/// leave), nftables otherwise. Asking never creates a legacy table (opening
/// one through libiptc would): it reads the kernel's list of them.
public enum BackendSelection {
    public struct Choice: Sendable, Hashable {
        public var backend: BackendKind
        /// Why, for the log and `status`.
        public var reason: String
    }

    /// The legacy tables of the daemon's network namespace, IPv4 and IPv6
    /// (`/proc/net/ip_tables_names`, `/proc/net/ip6_tables_names`; absent on
    /// a kernel without legacy xtables or before anything loaded them).
    public static func legacyTables(procNet: String = "/proc/net") -> [String] {
        ["ip_tables_names", "ip6_tables_names"].flatMap { file -> [String] in
            guard let text = try? String(contentsOfFile: "\(procNet)/\(file)", encoding: .utf8) else { return [] }
            let family = file.hasPrefix("ip6") ? "ip6" : "ip"
            return text.split(separator: "\n").map { "\(family) \($0)" }
        }
    }

    public static func choose(_ choice: BackendChoice, legacyTables: [String]) -> Choice {
        switch choice {
        case .iptables: return Choice(backend: .iptables, reason: "--backend iptables")
        case .nftables: return Choice(backend: .nftables, reason: "--backend nftables")
        case .auto:
            if legacyTables.isEmpty {
                return Choice(backend: .nftables, reason: "--backend auto: the kernel has no legacy xtables table, so the node does not use them (none is created)")
            }
            let named = legacyTables.prefix(4).joined(separator: ", ") + (legacyTables.count > 4 ? ", ..." : "")
            return Choice(backend: .iptables, reason: "--backend auto: the node uses legacy xtables (tables \(named))")
        }
    }
}
