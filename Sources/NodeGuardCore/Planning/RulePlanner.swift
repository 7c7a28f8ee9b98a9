/// Turns a deny-list into the chains and rules of one family's mangle table.
///
/// Layout (what `iptables-legacy -t mangle -S` shows):
///
///     PREROUTING/OUTPUT rule 1: -m addrtype --dst-type LOCAL -j NODEGUARD
///     NODEGUARD:       -m conntrack --ctdir REPLY -j RETURN   (replies pass; untracked packets do not)
///                      -p tcp -j NODEGUARD-TCP        (one rule per protocol in use)
///     NODEGUARD-TCP:   one rule per blocked port (its own counter), while there are at most 16;
///                      beyond that a 16-way dispatch by port range into NODEGUARD-TCP-7,
///                      NODEGUARD-TCP-7A, ... (a trie on the port's hex digits).
///
/// So a packet to an unblocked port walks at most 16 rules per level and
/// four levels, however long the list: the cost grows with log16 of it.
public enum RulePlanner {
    public static let entryChain = "NODEGUARD"
    /// A chain holds per-port rules directly up to this many ports.
    public static let leafCapacity = 16
    /// The kernel keeps 255 bytes of a comment (plus NUL).
    public static let maximumCommentBytes = 255

    /// The chain a protocol's packets jump to from the entry chain: "NODEGUARD-TCP".
    public static func transportChain(_ transport: TransportProtocol) -> String {
        "\(entryChain)-\(transport.rawValue.uppercased())"
    }

    public static func isNodeGuardChain(_ name: String) -> Bool {
        name == entryChain || name.hasPrefix(entryChain + "-")
    }

    /// Every packet to the node's own addresses enters NodeGuard's chain; the
    /// chain's first rule lets replies to connections go (`replyRule`). Only
    /// packets conntrack tracks have a direction, so asking for ORIGINAL here
    /// let packets exempted from tracking (`-j CT --notrack` in raw) or
    /// invalid ones through to a blocked port.
    public static let hookRule = RuleSpec(
        matchLocalDestination: true,
        comment: "NodeGuard: drop blocked NodePorts before DNAT", target: entryChain)

    /// Rule 1 of the entry chain: replies to connections (the node's own
    /// outgoing ones, from a local port that happens to be blocked) pass.
    public static let replyRule = RuleSpec(
        direction: .reply, comment: "NodeGuard: replies to established connections pass", target: "RETURN")

    /// The jump in the raw table while NodeGuard holds ports closed during a
    /// fight for mangle's first place. Conntrack runs after raw, so it cannot
    /// ask for the original direction; TCP rules there match only SYNs instead.
    public static let rawHookRule = RuleSpec(
        matchLocalDestination: true,
        comment: "NodeGuard: hold blocked NodePorts while another agent disputes mangle", target: entryChain)

    /// The raw-table copy of a plan: the same chains, TCP drops limited to
    /// connection-opening SYNs so replies to the node's own connections pass.
    public static func holdPlan(_ entries: [BlockEntry], family: AddressFamily) -> TablePlan {
        var plan = plan(entries, family: family)
        plan.table = "raw"
        plan.hookRule = rawHookRule
        // No connection has a direction before conntrack, which runs after raw.
        plan.chains[0].rules.removeAll { $0 == replyRule }
        for c in plan.chains.indices {
            for r in plan.chains[c].rules.indices where plan.chains[c].rules[r].target == "DROP"
                && plan.chains[c].rules[r].transport == .tcp {
                plan.chains[c].rules[r].tcpSynOnly = true
            }
        }
        return plan
    }

    public static func plan(_ entries: [BlockEntry], family: AddressFamily) -> TablePlan {
        let mine = entries.filter { $0.family.includes(family) }
        var entryRules: [RuleSpec] = []
        var chains: [ChainPlan] = []
        for transport in TransportProtocol.allCases {
            let ports = mine.filter { $0.transport == transport }.sorted { $0.port < $1.port }
            guard !ports.isEmpty else { continue }
            let name = transportChain(transport)
            entryRules.append(RuleSpec(transport: transport, comment: "NodeGuard: \(transport.rawValue) ports", target: name))
            chains += rangeChains(name: name, transport: transport, family: family,
                                  start: 0, span: 65536, entries: ports)
        }
        return TablePlan(family: family, chains: [ChainPlan(name: entryChain, rules: [replyRule] + entryRules)] + chains,
                         hookRule: hookRule)
    }

    /// The chain for ports in [start, start + span) and the chains below it.
    static func rangeChains(name: String, transport: TransportProtocol, family: AddressFamily,
                            start: Int, span: Int, entries: [BlockEntry]) -> [ChainPlan] {
        if entries.count <= leafCapacity || span <= 16 {
            return [ChainPlan(name: name, rules: entries.flatMap { portRules($0, family: family) })]
        }
        let childSpan = span / 16
        var rules: [RuleSpec] = []
        var below: [ChainPlan] = []
        // entries are sorted by port, so each child's entries are contiguous.
        var index = entries.startIndex
        while index < entries.endIndex {
            let child = (Int(entries[index].port) - start) / childSpan
            let childStart = start + child * childSpan
            var end = index
            while end < entries.endIndex, Int(entries[end].port) < childStart + childSpan { end += 1 }
            let group = Array(entries[index..<end])
            if group.count == 1 {
                rules += portRules(group[0], family: family)
            } else {
                let hexDigits = 4 - String(childSpan - 1, radix: 16).count
                let prefix = String(childStart >> (16 - 4 * hexDigits), radix: 16, uppercase: true)
                let padded = String(repeating: "0", count: hexDigits - prefix.count) + prefix
                let childName = "\(transportChain(transport))-\(padded)"
                let range = UInt16(childStart)...UInt16(childStart + childSpan - 1)
                rules.append(RuleSpec(transport: transport, destinationPorts: range,
                                      comment: "NodeGuard: \(transport.rawValue) ports \(range.lowerBound)-\(range.upperBound)",
                                      target: childName))
                below += rangeChains(name: childName, transport: transport, family: family,
                                     start: childStart, span: childSpan, entries: group)
            }
            index = end
        }
        return [ChainPlan(name: name, rules: rules)] + below
    }

    /// The rules for one blocked port: RETURN for each allowed source of this
    /// family, then the DROP that counts what was blocked.
    static func portRules(_ entry: BlockEntry, family: AddressFamily) -> [RuleSpec] {
        let ports = entry.port...entry.port
        var rules = entry.allowFrom.filter { $0.family == family }.map { cidr in
            RuleSpec(source: cidr, transport: entry.transport, destinationPorts: ports,
                     comment: "NodeGuard: allow \(cidr) to \(entry.key)", target: "RETURN")
        }
        var comment = "NodeGuard: block \(entry.key)"
        if let reason = entry.reason, !reason.isEmpty { comment += ": \(reason)" }
        rules.append(RuleSpec(transport: entry.transport, destinationPorts: ports,
                              comment: truncatedComment(comment), target: "DROP"))
        return rules
    }

    /// Cuts `text` to what the kernel keeps, at a character boundary.
    static func truncatedComment(_ text: String) -> String {
        text.cut(toUTF8Bytes: maximumCommentBytes)
    }
}
