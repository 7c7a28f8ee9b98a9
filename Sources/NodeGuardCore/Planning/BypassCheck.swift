/// Tells a foreign rule above NodeGuard's jump that could let a blocked
/// packet through from one that cannot. A packet leaves a hook chain early
/// only through an accepting verdict (ACCEPT, RETURN to an accepting policy,
/// a jump into a chain that may accept, a queue to user space, TPROXY...).
/// A rule whose target cannot end the chain that way, or whose matches cannot
/// match a packet to any blocked port, is harmless: NodeGuard's jump may stay
/// below it, and it is never counted towards a fight. Firewall managers that
/// put ICMPv6 accepts or MARK rules first on every reload are such rules.
public struct BypassCheck: Sendable {
    /// Targets after which a packet goes on to the next rule, or is dropped:
    /// none of them can carry a blocked packet past NodeGuard's jump.
    public static let cannotAccept: Set<String> = [
        "DROP", "REJECT", "MARK", "CONNMARK", "LOG", "NFLOG", "ULOG", "TOS", "DSCP", "TTL", "HL", "TCPMSS",
        "CLASSIFY", "CHECKSUM", "TEE", "SECMARK", "CONNSECMARK", "AUDIT", "ECN", "IDLETIMER", "LED",
        "RATEEST", "TRACE", "HMARK", "CT", "NOTRACK",
    ]

    /// Each protocol's blocked ports, sorted.
    private let ports: [TransportProtocol: [UInt16]]

    /// The ports `plan` drops (each DROP rule's protocol and ports).
    public init(_ plan: TablePlan) {
        var ports: [TransportProtocol: Set<UInt16>] = [:]
        for rule in plan.chains.flatMap(\.rules) where rule.target == "DROP" {
            guard let transport = rule.transport, let range = rule.destinationPorts else { continue }
            ports[transport, default: []].formUnion(range)
        }
        self.ports = ports.mapValues { $0.sorted() }
    }

    /// Whether `rule`, standing above NodeGuard's jump, could let a packet to
    /// a blocked port leave the chain before the jump. Errs towards yes.
    public func mayLetThrough(_ rule: ObservedRule) -> Bool {
        if Self.cannotAccept.contains(rule.target) || RulePlanner.isNodeGuardChain(rule.target) { return false }
        for (transport, blocked) in ports {
            if let range = rule.destinationPorts, !rule.protocolInverted {
                // It names one range of ports: only a blocked port inside it counts.
                if let port = Self.first(in: blocked, atLeast: range.lowerBound), range.contains(port),
                   rule.mayMatch(PortKey(port: port, transport: transport)) { return true }
            } else if rule.mayMatch(PortKey(port: blocked[0], transport: transport)) {
                return true   // no port read: its protocol decides
            }
        }
        return false
    }

    /// The first element of sorted `ports` at or above `port` (binary search).
    private static func first(in ports: [UInt16], atLeast port: UInt16) -> UInt16? {
        var low = 0, high = ports.count
        while low < high {
            let middle = (low + high) / 2
            if ports[middle] < port { low = middle + 1 } else { high = middle }
        }
        return low < ports.count ? ports[low] : nil
    }
}
