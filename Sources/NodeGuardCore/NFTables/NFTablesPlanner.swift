/// Turns a deny-list into NodeGuard's nftables table (what `nft list table
/// inet nodeguard` shows):
///
///     set allow4 { type ipv4_addr . inet_proto . inet_service; flags interval }   allowFrom sources
///     set allow6 { type ipv6_addr . inet_proto . inet_service; flags interval }
///     set drop4  { type inet_proto . inet_service; flags interval; counter }        blocked ports
///     set drop6  { ... }
///     chain guard {
///         ct direction reply return                                   replies pass; untracked packets do not
///         meta nfproto ipv4 ip saddr . meta l4proto . th dport @allow4 return
///         meta nfproto ipv6 ip6 saddr . meta l4proto . th dport @allow6 return
///         meta nfproto ipv4 meta l4proto . th dport @drop4 drop
///         meta nfproto ipv6 meta l4proto . th dport @drop6 drop
///     }
///     chain prerouting { type filter hook prerouting priority -150; fib daddr type local jump guard }
///     chain output     { type filter hook output priority -150; fib daddr type local jump guard }
///
/// The chains are the same for every deny-list: a list changes only set
/// elements, and a packet costs two set lookups however many ports are
/// blocked. Each blocked port is an element of its family's drop set with its
/// own counter. Priority -150: after conntrack (-200), before kube-proxy's
/// filter (-110) and DNAT (-100) and firewalld's mangle (-140).
public enum NFTablesPlanner {
    public static let table = "nodeguard"
    public static let priority: Int32 = -150
    public static let guardChain = "guard"
    /// The flags NodeGuard wants on its table: held by its socket while it
    /// runs, kept by the kernel when it exits (see `NFTablesKeeper`).
    public static let heldFlags: NFTTableFlags = [.owner, .persist]

    public static func dropSet(_ family: AddressFamily) -> NFTSet {
        NFTSet(name: family == .ipv4 ? "drop4" : "drop6", counters: true,
               comment: "NodeGuard: blocked \(family.displayName) ports")
    }

    public static func allowSet(_ family: AddressFamily) -> NFTSet {
        NFTSet(name: family == .ipv4 ? "allow4" : "allow6", sourceFamily: family,
               comment: "NodeGuard: \(family.displayName) sources allowed to blocked ports")
    }

    static let sets: [NFTSet] = AddressFamily.allCases.flatMap { [allowSet($0), dropSet($0)] }

    static let hookComment = "NodeGuard: drop blocked NodePorts before DNAT"

    /// The chains, jump targets first (a batch adds them in this order).
    static let chains: [NFTChain] = {
        var rules = [NFTRule(matchReply: true, verdict: .return, comment: "NodeGuard: replies to established connections pass")]
        for family in AddressFamily.allCases {
            rules.append(NFTRule(family: family, lookup: allowSet(family).name, lookupSourceFamily: family,
                                 verdict: .return, comment: "NodeGuard: allowed \(family.displayName) sources pass"))
        }
        for family in AddressFamily.allCases {
            rules.append(NFTRule(family: family, lookup: dropSet(family).name, verdict: .drop,
                                 comment: "NodeGuard: drop blocked \(family.displayName) ports"))
        }
        let hooks = NFTHook.allCases.map { hook in
            NFTChain(name: hook.rawValue, hook: hook, priority: priority,
                     rules: [NFTRule(matchLocalDestination: true, verdict: .jump(guardChain), comment: hookComment)])
        }
        return [NFTChain(name: guardChain, rules: rules)] + hooks
    }()

    /// What the table holds for `entries`: the fixed chains and sets, and each
    /// set's elements.
    public static func plan(_ entries: [BlockEntry]) -> NFTablesPlan {
        var elements: [String: [NFTElement]] = [:]
        for family in AddressFamily.allCases {
            let mine = entries.filter { $0.family.includes(family) }.sorted { $0.key < $1.key }
            elements[dropSet(family).name] = mine.map { entry in
                var comment = "NodeGuard: block \(entry.key)"
                if let reason = entry.reason, !reason.isEmpty { comment += ": \(reason)" }
                return NFTElement(transport: entry.transport, ports: entry.port...entry.port,
                                  comment: NFTLimits.fitting(comment: comment))
            }
            elements[allowSet(family).name] = mine.flatMap { entry in
                disjoint(entry.allowFrom.filter { $0.family == family }).map { cidr in
                    NFTElement(source: cidr, transport: entry.transport, ports: entry.port...entry.port,
                               comment: NFTLimits.fitting(comment: "NodeGuard: allow \(cidr) to \(entry.key)"))
                }
            }
        }
        return NFTablesPlan(sets: sets, elements: elements, chains: chains)
    }

    /// An interval set refuses overlapping elements, and prefixes either nest
    /// or are disjoint: in address order, widest first, a prefix that starts
    /// inside the last one kept lies inside it. Keeping the others leaves the
    /// same addresses, without overlaps or duplicates.
    static func disjoint(_ cidrs: [CIDR]) -> [CIDR] {
        let ordered = cidrs.sorted {
            ($0.addressRange.lowerBound, $1.addressRange.upperBound) < ($1.addressRange.lowerBound, $0.addressRange.upperBound)
        }
        var kept: [CIDR] = []
        for cidr in ordered where kept.last.map({ cidr.addressRange.lowerBound > $0.addressRange.upperBound }) ?? true {
            kept.append(cidr)
        }
        return kept
    }
}

/// What NodeGuard's table should hold.
public struct NFTablesPlan: Sendable, Hashable {
    public var sets: [NFTSet]
    /// Each set's elements, by set name.
    public var elements: [String: [NFTElement]]
    public var chains: [NFTChain]
}
