/// What can defeat NodeGuard's nftables drops. A drop in any base chain is
/// final and an accept ends only its own chain, so a foreign chain that
/// accepts before NodeGuard's cannot re-open a port; one that rewrites the
/// destination on the same hook before NodeGuard's chain can: NodeGuard then
/// sees the rewritten address and port, never the blocked NodePort.
/// `status` and `explain` name such chains.
///
/// "Before" is not always the priority a chain declares: every chain of type
/// nat runs inside the kernel's NAT hook (priority -100 on prerouting and
/// output, `nf_nat_register_fn`), its own priority only ordering it among
/// other nat chains, so a DNAT in a nat chain declared at -160 still comes
/// after NodeGuard's -150 (`NFTablesKeeperTests` shows it with packets).
/// What can come first is a filter or route chain that writes the
/// destination port or address (`tcp dport set`, `ip daddr set`).
public enum NFTablesDefeats {
    /// The base chains among `chains` that rewrite destinations on a hook
    /// NodeGuard guards before NodeGuard's chain on it: not of type nat, at a
    /// lower priority (at the same priority the order is not defined, so
    /// that counts too). NodeGuard's own table is never one of them.
    public static func rewritingBefore(_ chains: [NFTHookChain],
                                       priority: Int32 = NFTablesPlanner.priority) -> [NFTHookChain] {
        chains.filter { chain in
            chain.rewritesDestination && chain.type != "nat" && chain.priority <= priority
                && !(chain.family == "inet" && chain.table == NFTablesPlanner.table)
        }
        .sorted { ($0.hook.rawValue, $0.priority, $0.family, $0.table, $0.chain) < ($1.hook.rawValue, $1.priority, $1.family, $1.table, $1.chain) }
    }

    /// One line for an operator: which chain, where, and why it matters.
    public static func describe(_ chain: NFTHookChain) -> String {
        "table \(chain.family) \(chain.table) chain \(chain.chain) (hook \(chain.hook.rawValue), priority \(chain.priority)) "
            + "rewrites destinations before NodeGuard's chain (priority \(NFTablesPlanner.priority)): "
            + "a NodePort it rewrites reaches NodeGuard as the new address and port, and is not dropped"
    }
}
