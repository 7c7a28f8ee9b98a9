/// The netfilter API NodeGuard keeps its rules through: `status --json`
/// reports it as "backend", `nodeguardd --backend` chooses it.
public enum BackendKind: String, Sendable, Hashable, Codable, CaseIterable {
    /// Legacy xtables through libiptc: chains in the mangle tables.
    case iptables
    /// nftables through libnftnl: one `inet nodeguard` table held by the kernel.
    case nftables
}

/// What `nodeguardd --backend` accepts: a backend, or `auto` to choose one
/// from what the node already uses (`BackendSelection`).
public enum BackendChoice: String, Sendable, Hashable, CaseIterable {
    case auto, iptables, nftables
}
