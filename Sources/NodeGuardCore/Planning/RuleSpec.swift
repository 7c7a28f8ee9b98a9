/// Which way a packet travels in its connection (`-m conntrack --ctdir`).
/// A packet conntrack does not track (untracked, invalid) matches neither.
public enum ConntrackDirection: String, Sendable, Hashable {
    case original = "ORIGINAL", reply = "REPLY"
}

/// One rule as NodeGuard writes it, in the shape the C shim can build and
/// decode. Two rules are the same rule exactly when their specs are equal.
public struct RuleSpec: Sendable, Hashable {
    public var source: CIDR?
    public var transport: TransportProtocol?
    public var matchLocalDestination = false
    public var direction: ConntrackDirection?
    public var destinationPorts: ClosedRange<UInt16>?
    /// TCP only, with ports: match connection-opening SYNs only (`--syn`).
    public var tcpSynOnly = false
    public var comment: String
    public var target: String

    public init(source: CIDR? = nil, transport: TransportProtocol? = nil,
                matchLocalDestination: Bool = false, direction: ConntrackDirection? = nil,
                destinationPorts: ClosedRange<UInt16>? = nil, tcpSynOnly: Bool = false, comment: String, target: String) {
        self.source = source
        self.transport = transport
        self.matchLocalDestination = matchLocalDestination
        self.direction = direction
        self.destinationPorts = destinationPorts
        self.tcpSynOnly = tcpSynOnly
        self.comment = comment
        self.target = target
    }

    /// The rule as `iptables-legacy-save` prints it after `-A CHAIN`, so
    /// tests can compare the kernel's own read-back with the plan, and logs
    /// can show an operator the rule in a form they know.
    public var iptablesArguments: String {
        var parts: [String] = []
        if let source { parts.append("-s \(source)") }
        if let transport { parts.append("-p \(transport.rawValue)") }
        if matchLocalDestination { parts.append("-m addrtype --dst-type LOCAL") }
        if let direction { parts.append("-m conntrack --ctdir \(direction.rawValue)") }
        if let ports = destinationPorts, let transport {
            let range = ports.lowerBound == ports.upperBound ? "\(ports.lowerBound)" : "\(ports.lowerBound):\(ports.upperBound)"
            parts.append("-m \(transport.rawValue) --dport \(range)" + (tcpSynOnly ? " --tcp-flags FIN,SYN,RST,ACK SYN" : ""))
        }
        if !comment.isEmpty { parts.append("-m comment --comment \(RuleSpec.saveQuoted(comment))") }
        parts.append("-j \(target)")
        return parts.joined(separator: " ")
    }

    /// Quotes a string as iptables' xtables_save_string does.
    static func saveQuoted(_ value: String) -> String {
        let plain = value.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-"
        }
        if plain && !value.isEmpty { return value }
        var out = "\""
        for scalar in value.unicodeScalars {
            if scalar == "\"" || scalar == "\\" || scalar == "'" { out += "\\" }
            out.unicodeScalars.append(scalar)
        }
        return out + "\""
    }
}

/// A rule read back from the kernel.
public struct ObservedRule: Sendable, Hashable, CustomStringConvertible {
    /// The decoded rule, or nil when it is not one NodeGuard could have written
    /// (another match, another target, an edited field).
    public var spec: RuleSpec?
    /// The target (verdict or chain), known even for foreign rules.
    public var target: String
    /// The rule's comment, if it has a comment match.
    public var comment: String
    public var packets: UInt64
    public var bytes: UInt64
    /// The IP protocol and tcp/udp/sctp destination ports, read even from
    /// foreign rules (kube-proxy's NodePort rules, for one).
    public var protocolNumber: UInt8 = 0
    public var destinationPorts: ClosedRange<UInt16>?
    /// For a DNAT rule: where it sends packets ("10.244.1.5:8200",
    /// "[fd00::5]:8200", or an address alone).
    public var natDestination: String?
    /// `! -p PROTO`: the protocol match is inverted.
    public var protocolInverted = false
    /// CT --notrack or NOTRACK: the packet leaves connection tracking.
    public var untracks = false
    /// The same rule has the same identity wherever it stands in its chain
    /// (its bytes, counters zeroed, jumps by name): what tells one foreign
    /// rule from another that merely looks alike in `description`. Read for
    /// the rules of built-in chains only (0 elsewhere): that is where other
    /// programs displace NodeGuard's jump.
    public var identity: UInt64 = 0

    public init(spec: RuleSpec?, target: String, comment: String, packets: UInt64 = 0, bytes: UInt64 = 0) {
        self.spec = spec
        self.target = target
        self.comment = comment
        self.packets = packets
        self.bytes = bytes
    }

    public init(_ spec: RuleSpec) {
        self.init(spec: spec, target: spec.target, comment: spec.comment)
    }

    /// Whether the rule may match a packet to `key`, judged by what the
    /// decoder reads of any rule: its protocol and tcp/udp/sctp destination
    /// ports. Matches it cannot read (multiport, string, u32, ...) count as
    /// "may": the answer errs towards yes.
    public func mayMatch(_ key: PortKey) -> Bool {
        let number = key.transport.ipProtocolNumber
        let protocolMatches: Bool
        if protocolNumber == 0 {
            protocolMatches = true
        } else if protocolInverted {
            protocolMatches = protocolNumber != number
        } else {
            protocolMatches = protocolNumber == number
        }
        guard protocolMatches else { return false }
        guard let ports = destinationPorts, !protocolInverted else { return true }
        return ports.contains(key.port)
    }

    /// What a log line shows of the rule.
    public var description: String {
        if let spec { return spec.iptablesArguments }
        let comment = comment.isEmpty ? "" : " -m comment --comment \(RuleSpec.saveQuoted(comment))"
        return "[a rule with matches NodeGuard does not write]\(comment) -j \(target)"
    }
}

public struct ChainPlan: Sendable, Hashable {
    public var name: String
    public var rules: [RuleSpec]
}

/// Everything NodeGuard wants in one family's mangle table.
public struct TablePlan: Sendable, Hashable {
    public var family: AddressFamily
    /// "mangle" normally; "raw" for the hold kept during a fight.
    public var table = "mangle"
    /// NodeGuard's chains, the entry chain first.
    public var chains: [ChainPlan]
    /// The jump that must be rule 1 of each hook chain.
    public var hookRule: RuleSpec
    public static let hookChains = ["PREROUTING", "OUTPUT"]
}
