/// Raw-table rules that take packets to blocked ports out of connection
/// tracking (`-j CT --notrack`, `-j NOTRACK`). Such a packet skips every
/// DNAT and reaches whatever listens on the node itself; NodeGuard drops it
/// all the same (its chain lets only tracked replies through), and names the
/// rule so an operator knows why it exists.
public enum UntrackingRules {
    /// For each key, the raw rules that may exempt its packets, as
    /// "ipv4 raw PREROUTING: -A PREROUTING ... -j CT --notrack".
    public static func find(for keys: [PortKey], backend: any NetfilterBackend,
                            families: [AddressFamily]) -> [PortKey: [String]] {
        var found: [PortKey: [String]] = [:]
        guard !keys.isEmpty else { return found }
        for family in families where backend.tableExists("raw", family) {
            // (chain, index, rule) of every untracking rule, read without the lock.
            typealias Found = (chain: String, index: Int, rule: ObservedRule)
            let untracking = (try? backend.readTable("raw", family) { table throws(NodeGuardError) -> [Found] in
                var rules: [Found] = []
                for chain in table.chainNames() {
                    for (index, rule) in try table.rules(in: chain).enumerated() where rule.untracks {
                        rules.append((chain, index, rule))
                    }
                }
                return rules
            }) ?? []
            let matching = untracking.filter { candidate in keys.contains { candidate.rule.mayMatch($0) } }
            guard !matching.isEmpty else { continue }
            let saved = backend.savedRules("raw", family)
            for (chain, index, rule) in matching {
                let text = SavedRules.text(saved, chain: chain, index: index, fallback: "-A \(chain) \(rule)")
                for key in keys where rule.mayMatch(key) {
                    found[key, default: []].append("\(family.rawValue) raw \(chain): \(text)")
                }
            }
        }
        return found
    }
}
