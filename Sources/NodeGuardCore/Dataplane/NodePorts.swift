import Foundation

/// A NodePort kube-proxy exposes on this node.
public struct NodePort: Sendable, Hashable, Comparable {
    public var key: PortKey
    public var family: AddressFamily
    /// kube-proxy's rule comment: "namespace/name:port".
    public var service: String
    /// Where it was read: "iptables-legacy" or "iptables-nft".
    public var source: String

    public static func < (a: Self, b: Self) -> Bool {
        (a.key, a.family.rawValue, a.source) < (b.key, b.family.rawValue, b.source)
    }
}

/// Reads the NodePorts kube-proxy (iptables mode) exposes, from its
/// KUBE-NODEPORTS chain, without side effects: the legacy nat table through
/// libiptc only if it already exists, an nft-backed one through
/// iptables-nft-save.
public enum NodePortReader {
    public static let chain = "KUBE-NODEPORTS"

    public struct Result: Sendable {
        public var nodePorts: [NodePort]
        /// Sources that could not be read, with why.
        public var problems: [String]
    }

    public static func read(backend: any NetfilterBackend, families: [AddressFamily]) -> Result {
        var ports: [NodePort] = []
        var problems: [String] = []
        for family in families {
            do { ports += try legacy(backend: backend, family: family) } catch {
                problems.append("iptables-legacy \(family.rawValue) nat: \(error.message)")
            }
            switch nft(family: family) {
            case .success(let found): ports += found
            case .failure(let error): problems.append(error.message)
            }
        }
        return Result(nodePorts: Array(Set(ports)).sorted(), problems: problems)
    }

    static func legacy(backend: any NetfilterBackend, family: AddressFamily) throws(NodeGuardError) -> [NodePort] {
        // libiptc would create a missing nat table (and register its hooks).
        guard backend.tableExists("nat", family) else { return [] }
        let (rules, _) = try backend.withTable("nat", family) { table throws(NodeGuardError) -> [ObservedRule] in
            table.chainNames().contains(chain) ? try table.rules(in: chain) : []
        }
        return rules.compactMap { rule in
            guard let transport = TransportProtocol.allCases.first(where: { $0.ipProtocolNumber == rule.protocolNumber }),
                  let ports = rule.destinationPorts, ports.count == 1 else { return nil }
            return NodePort(key: PortKey(port: ports.lowerBound, transport: transport), family: family,
                            service: rule.comment, source: "iptables-legacy")
        }
    }

    static func nft(family: AddressFamily) -> Swift.Result<[NodePort], NodeGuardError> {
        let tool = family == .ipv4 ? "iptables-nft-save" : "ip6tables-nft-save"
        guard let path = ["/usr/sbin/", "/sbin/", "/usr/bin/"].map({ $0 + tool }).first(where: FileManager.default.isExecutableFile) else {
            return .success([])   // no nft backend installed: nothing of kube-proxy's can be there
        }
        let result: (status: Int32, stdout: Data, stderr: Data)
        do { result = try runProgram([path, "-t", "nat"], timeout: .seconds(5)) } catch {
            return .failure(NodeGuardError(.ioFailure, "\(tool): \(error.message)"))
        }
        guard result.status == 0 else {
            let reason = String(decoding: result.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return .failure(NodeGuardError(.ioFailure, "\(tool) -t nat exited with \(result.status): \(reason)"))
        }
        let data = result.stdout
        return .success(parseSave(String(decoding: data, as: UTF8.self), family: family, source: "iptables-nft"))
    }

    /// Parses `-A KUBE-NODEPORTS -p tcp -m comment --comment "ns/name:port" -m tcp --dport 31002 -j ...`
    /// lines of iptables-save output.
    static func parseSave(_ text: String, family: AddressFamily, source: String) -> [NodePort] {
        text.split(separator: "\n").compactMap { line -> NodePort? in
            guard line.hasPrefix("-A \(chain) ") else { return nil }
            let words = saveWords(String(line))
            func value(after flag: String) -> String? {
                words.firstIndex(of: flag).flatMap { $0 + 1 < words.count ? words[$0 + 1] : nil }
            }
            guard let proto = value(after: "-p").flatMap(TransportProtocol.init(rawValue:)),
                  let port = value(after: "--dport").flatMap(UInt16.init) else { return nil }
            return NodePort(key: PortKey(port: port, transport: proto), family: family,
                            service: value(after: "--comment") ?? "", source: source)
        }
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
