import FoundationEssentials

/// One rule of a nat table, in the few fields NodeGuard needs to follow
/// kube-proxy's, Docker's and CNI's DNATs.
public struct NatRule: Sendable, Hashable {
    public var chain: String
    public var transport: TransportProtocol?
    /// A single destination port (tcp/udp/sctp --dport, or --dports with one port).
    public var destinationPort: UInt16?
    public var comment: String
    /// A chain to jump to, or a target such as DNAT, MARK, RETURN.
    public var target: String
    /// For DNAT: "10.244.1.5:8200", "[fd00::5]:8200" or an address alone.
    public var natDestination: String?

    public init(chain: String, transport: TransportProtocol? = nil, destinationPort: UInt16? = nil,
                comment: String = "", target: String, natDestination: String? = nil) {
        self.chain = chain
        self.transport = transport
        self.destinationPort = destinationPort
        self.comment = comment
        self.target = target
        self.natDestination = natDestination
    }
}

/// A nat table as one backend holds it.
public struct NatTable: Sendable {
    public var family: AddressFamily
    /// "iptables-legacy" or "iptables-nft".
    public var source: String
    public var chains: Set<String>
    public private(set) var byChain: [String: [NatRule]] = [:]

    public init(family: AddressFamily, source: String, chains: Set<String>, rules: [NatRule]) {
        self.family = family
        self.source = source
        self.chains = chains.union(rules.map(\.chain))
        for rule in rules { byChain[rule.chain, default: []].append(rule) }
    }

    /// Rules already grouped by chain, each group in table order.
    public init(family: AddressFamily, source: String, chains: Set<String>, byChain: [String: [NatRule]]) {
        self.family = family
        self.source = source
        self.chains = chains.union(byChain.keys)
        self.byChain = byChain
    }

    public func rules(in chain: String) -> [NatRule] { byChain[chain] ?? [] }

    /// The DNAT destinations reachable from `chain` through kube-proxy's
    /// chains (KUBE-EXT -> KUBE-SVC/KUBE-SVL -> KUBE-SEP -> DNAT).
    public func dnatDestinations(from chain: String) -> [String] {
        var seen: Set<String> = []
        var queue = [chain]
        var found: [String] = []
        while let current = queue.popLast() {
            guard seen.insert(current).inserted, seen.count < 10_000 else { continue }
            for rule in rules(in: current) {
                if let destination = rule.natDestination { found.append(destination) }
                if chains.contains(rule.target) && rule.target != "KUBE-MARK-MASQ" { queue.append(rule.target) }
            }
        }
        return Array(Set(found)).sorted()
    }
}

public enum NatTableReader {
    /// The legacy nat table read straight from the kernel, without the xtables
    /// lock; nil when the kernel has none (reading it would create it).
    public static func legacy(backend: any NetfilterBackend, family: AddressFamily) throws(NodeGuardError) -> NatTable? {
        guard backend.tableExists("nat", family) else { return nil }
        return try backend.readTable("nat", family) { table throws(NodeGuardError) -> NatTable in
            var byChain: [String: [NatRule]] = [:]
            let names = table.chainNames()
            for chain in names where mayLeadToEndpoints(chain) {
                // Only KUBE-NODEPORTS' comments are read (they name the services).
                let keepComment = chain == "KUBE-NODEPORTS"
                var kept: [NatRule] = []
                for rule in try table.rules(in: chain) where rule.target != "KUBE-MARK-MASQ" {
                    let transport = TransportProtocol.allCases.first { $0.ipProtocolNumber == rule.protocolNumber }
                    let port = rule.destinationPorts.flatMap { $0.count == 1 ? $0.lowerBound : nil }
                    kept.append(NatRule(chain: chain, transport: transport, destinationPort: port,
                                        comment: keepComment ? rule.comment : "",
                                        target: rule.target, natDestination: rule.natDestination))
                }
                if !kept.isEmpty { byChain[chain] = kept }
            }
            return NatTable(family: family, source: "iptables-legacy", chains: Set(names), byChain: byChain)
        }
    }

    /// Whether a chain's rules can matter to the dataplane: kube-proxy's path
    /// from a NodePort to its endpoints (KUBE-NODEPORTS, KUBE-EXT/FW/SVC/SVL/SEP)
    /// and every chain that is not kube-proxy's (Docker, CNI, others). Its other
    /// chains count only by name: KUBE-SERVICES alone holds a rule per
    /// service, a third of a big table that need not be decoded.
    static func mayLeadToEndpoints(_ chain: String) -> Bool {
        guard chain.hasPrefix("KUBE-") else { return true }
        return chain == "KUBE-NODEPORTS" || ["KUBE-EXT-", "KUBE-FW-", "KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-"].contains { chain.hasPrefix($0) }
    }

    /// An nft-backed nat table (iptables-nft) through `iptables-nft-save`;
    /// nil when the tool is not installed or the table does not exist.
    public static func nft(family: AddressFamily) throws(NodeGuardError) -> NatTable? {
        let tool = family == .ipv4 ? "iptables-nft-save" : "ip6tables-nft-save"
        guard let path = findProgram(tool) else { return nil }
        let result = try runProgram([path, "-t", "nat"], timeout: .seconds(10))
        guard result.status == 0 else {
            let reason = String(decoding: result.stderr, as: UTF8.self).trimmingWhitespace
            throw NodeGuardError(.ioFailure, "\(tool) -t nat exited with \(result.status): \(reason)")
        }
        return parseSave(String(decoding: result.stdout, as: UTF8.self), family: family, source: "iptables-nft")
    }

    /// Parses iptables-save output (`:CHAIN` and `-A CHAIN ...` lines).
    public static func parseSave(_ text: String, family: AddressFamily, source: String) -> NatTable? {
        var chains: Set<String> = []
        var rules: [NatRule] = []
        var sawTable = false
        for line in text.split(separator: "\n") {
            if line == "*nat" { sawTable = true }
            if line.hasPrefix(":") {
                chains.insert(String(line.dropFirst().prefix { $0 != " " }))
                continue
            }
            guard line.hasPrefix("-A ") else { continue }
            let words = saveWords(String(line))
            guard words.count >= 2 else { continue }
            func value(after flag: String) -> String? {
                words.firstIndex(of: flag).flatMap { $0 + 1 < words.count ? words[$0 + 1] : nil }
            }
            let transport = value(after: "-p").flatMap(TransportProtocol.init(rawValue:))
            let port = (value(after: "--dport") ?? value(after: "--dports")).flatMap(UInt16.init)
            rules.append(NatRule(chain: words[1], transport: transport, destinationPort: port,
                                 comment: value(after: "--comment") ?? "", target: value(after: "-j") ?? value(after: "-g") ?? "",
                                 natDestination: value(after: "--to-destination")))
        }
        guard sawTable else { return nil }
        return NatTable(family: family, source: source, chains: chains, rules: rules)
    }

    /// Splits an iptables-save line into words, honouring its double quotes
    /// and backslash escapes.
    static func saveWords(_ line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var quoted = false, escaped = false, started = false
        for character in line {
            if escaped { current.append(character); escaped = false; continue }
            switch character {
            case "\\" where quoted: escaped = true
            case "\"": quoted.toggle(); started = true
            case " " where !quoted:
                if started { words.append(current); current = ""; started = false }
            default: current.append(character); started = true
            }
        }
        if started { words.append(current) }
        return words
    }
}

/// The first of the usual sbin/bin directories that holds `name`.
func findProgram(_ name: String) -> String? {
    ["/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"].map { $0 + name }.first(where: FileManager.default.isExecutableFile)
}
