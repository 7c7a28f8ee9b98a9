import FoundationEssentials

/// kube-proxy's nftables mode (Kubernetes 1.29+): a table `kube-proxy` per
/// family whose verdict map `service-nodeports` sends `proto . port` to a
/// chain `external-<hash>-<ns>/<name>/<proto>/<port name>`, and whose
/// `endpoint-<hash>-<ns>/<name>/<proto>/<port name>__<address>/<port>` chains
/// hold the DNATs. Read with `nft -j list table`, which has no side effects.
public enum KubeProxyNftables {
    public static let table = "kube-proxy"

    /// The NodePorts of `family`'s kube-proxy table; nil when there is no
    /// such table or no `nft` program to read it with.
    public static func read(family: AddressFamily) throws(NodeGuardError) -> [NodePort]? {
        guard let nft = findProgram("nft") else { return nil }
        let nftFamily = family == .ipv4 ? "ip" : "ip6"
        let result = try runProgram([nft, "-j", "list", "table", nftFamily, table], timeout: .seconds(10))
        let stderr = String(decoding: result.stderr, as: UTF8.self)
        guard result.status == 0 else {
            if stderr.contains("No such file or directory") { return nil }
            throw NodeGuardError(.ioFailure, "nft list table \(nftFamily) \(table) exited with \(result.status): \(stderr.trimmingWhitespace)")
        }
        do {
            return try parse(JSON.parse(result.stdout), family: family)
        } catch {
            throw NodeGuardError(.ioFailure, "nft -j list table \(nftFamily) \(table) printed JSON NodeGuard cannot read: \(error)")
        }
    }

    /// Turns `nft -j list table` output into NodePorts with their endpoints.
    public static func parse(_ document: JSONValue, family: AddressFamily) -> [NodePort] {
        let items = document["nftables"]?.arrayValue ?? []
        var elements: [(key: PortKey, chain: String)] = []
        var endpoints: [String: [String]] = [:]   // "ns/name/proto/port" -> destinations
        for item in items {
            if let map = item["map"], map["name"]?.stringValue == "service-nodeports" {
                for element in map["elem"]?.arrayValue ?? [] {
                    guard let pair = element.arrayValue, pair.count == 2 else { continue }
                    var key = pair[0]
                    if let wrapped = key["elem"]?["val"] { key = wrapped }
                    guard let parts = key["concat"]?.arrayValue, parts.count == 2,
                          let transport = parts[0].stringValue.flatMap(TransportProtocol.init(rawValue:)),
                          let port = parts[1].integerValue, let port16 = UInt16(exactly: port) else { continue }
                    let verdict = pair[1]
                    guard let chain = (verdict["goto"] ?? verdict["jump"])?["target"]?.stringValue else { continue }
                    elements.append((PortKey(port: port16, transport: transport), chain))
                }
            }
            if let rule = item["rule"], let chain = rule["chain"]?.stringValue, chain.hasPrefix("endpoint-"),
               let service = serviceID(ofChain: chain) {
                for expression in rule["expr"]?.arrayValue ?? [] {
                    guard let dnat = expression["dnat"], let address = dnat["addr"]?.stringValue else { continue }
                    var destination = address
                    if let port = dnat["port"]?.integerValue {
                        destination = (family == .ipv6 ? "[\(address)]" : address) + ":\(port)"
                    }
                    endpoints[service, default: []].append(destination)
                }
            }
        }
        return elements.compactMap { element in
            guard let id = serviceID(ofChain: element.chain) else { return nil }
            return NodePort(key: element.key, family: family, service: serviceName(id), source: "nftables",
                            endpoints: Array(Set(endpoints[id] ?? [])).sorted())
        }
    }

    /// "external-UVTPQ5XX-vault/vault-ui/tcp/http" -> "vault/vault-ui/tcp/http";
    /// an endpoint chain's "__<address>/<port>" suffix is dropped.
    static func serviceID(ofChain chain: String) -> String? {
        let parts = chain.split(separator: "-", maxSplits: 2)
        guard parts.count == 3 else { return nil }
        var id = String(parts[2])
        if let cut = id.firstRange(of: "__") { id = String(id[..<cut.lowerBound]) }
        return id.split(separator: "/").count == 4 ? id : nil
    }

    /// "vault/vault-ui/tcp/http" -> "vault/vault-ui:http", as kube-proxy's
    /// iptables comments name it.
    static func serviceName(_ id: String) -> String {
        let parts = id.split(separator: "/")
        return "\(parts[0])/\(parts[1]):\(parts[3])"
    }
}
