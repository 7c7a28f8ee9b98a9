import CNodeGuardLinux
import FoundationEssentials

/// A NodePort kube-proxy exposes on this node.
public struct NodePort: Sendable, Hashable, Comparable {
    public var key: PortKey
    public var family: AddressFamily
    /// "namespace/name:port", as kube-proxy names the service port.
    public var service: String
    /// Where it was read: "iptables-legacy", "iptables-nft" or "nftables".
    public var source: String
    /// Where kube-proxy DNATs it: "10.244.1.5:8200", ...
    public var endpoints: [String] = []

    public static func < (a: Self, b: Self) -> Bool {
        (a.key, a.family.rawValue, a.source) < (b.key, b.family.rawValue, b.source)
    }
}

/// A DNAT of a node port by someone other than kube-proxy's NodePort chains.
public struct PortRewrite: Sendable, Hashable {
    public enum Kind: String, Sendable {
        case docker = "Docker published port"
        case cniHostPort = "CNI hostPort"
        case other = "DNAT"
    }
    public var key: PortKey
    public var family: AddressFamily
    public var kind: Kind
    public var chain: String
    public var source: String
    public var to: String
}

/// What rewrites NodePorts on this node, and whether NodeGuard's mangle
/// drops come first.
public struct DataplaneReport: Sendable {
    /// kube-proxy modes found: "iptables-legacy", "iptables-nft", "nftables", "ipvs". Empty: absent.
    public var kubeProxy: [String] = []
    /// An eBPF dataplane that balances NodePorts before netfilter, if one is seen.
    public var ebpf: String?
    /// Other rewriters: "docker", "cni-hostport".
    public var others: [String] = []
    public var nodePorts: [NodePort] = []
    public var rewrites: [PortRewrite] = []
    /// Sources that could not be read, with why.
    public var problems: [String] = []
    /// Things that make NodeGuard's blocks ineffective or partial.
    public var defeats: [String] = []
    /// What NodeGuard cannot read or tell on this node, its blocks unaffected.
    public var limits: [String] = []
    /// Both, as `status` and the log show them.
    public var warnings: [String] { defeats + limits }

    public var summary: String {
        var parts = [kubeProxy.isEmpty ? "kube-proxy: absent" : "kube-proxy: " + kubeProxy.joined(separator: ", ")]
        if let ebpf { parts.append("eBPF: \(ebpf)") }
        if !others.isEmpty { parts.append("also: " + others.joined(separator: ", ")) }
        return parts.joined(separator: "; ")
    }
}

public enum DataplaneReader {
    static let ciliumReplacementWarning = """
        Cilium's eBPF kube-proxy replacement load-balances NodePorts at tc/XDP and at connect(), \
        before netfilter: NodeGuard's mangle drops never see those packets, so its blocks do not \
        close NodePorts on this node. Block them in Cilium (a CiliumClusterwideNetworkPolicy or \
        host firewall policy) instead.
        """

    static func interfaceExists(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: "/sys/class/net/\(name)")
    }

    public static func read(backend: any NetfilterBackend, families: [AddressFamily]) -> DataplaneReport {
        var report = DataplaneReport()
        var modes: Set<String> = []
        var cilium = interfaceExists("cilium_host")
        var ports: [NodePort] = []
        for family in families {
            var tables: [NatTable] = []
            do { if let table = try NatTableReader.legacy(backend: backend, family: family) { tables.append(table) } } catch {
                report.problems.append("iptables-legacy \(family.rawValue) nat: \(error.message)")
            }
            do { if let table = try NatTableReader.nft(family: family) { tables.append(table) } } catch {
                report.problems.append(error.message)
            }
            for table in tables {
                if table.chains.contains("KUBE-NODE-PORT") { modes.insert("ipvs") } else if table.chains.contains("KUBE-SERVICES") {
                    modes.insert(table.source)
                }
                if table.chains.contains(where: { $0.hasPrefix("CILIUM_") }) { cilium = true }
                if table.chains.contains("DOCKER") { report.others.append("docker") }
                if table.chains.contains("CNI-HOSTPORT-DNAT") { report.others.append("cni-hostport") }
                ports += kubeNodePorts(table)
                report.rewrites += rewrites(table)
            }
            do {
                if let found = try KubeProxyNftables.read(family: family) {
                    modes.insert("nftables")
                    ports += found
                }
            } catch {
                report.problems.append(error.message)
            }
        }
        if interfaceExists("kube-ipvs0") { modes.insert("ipvs") }
        report.kubeProxy = modes.sorted()
        report.others = Array(Set(report.others)).sorted()
        report.nodePorts = Array(Set(ports)).sorted()
        report.rewrites = Array(Set(report.rewrites)).sorted { ($0.key, $0.family.rawValue, $0.chain) < ($1.key, $1.family.rawValue, $1.chain) }
        if cilium {
            if modes.isEmpty {
                report.ebpf = "cilium-kube-proxy-replacement"
                report.defeats.append(ciliumReplacementWarning)
            } else {
                report.ebpf = "cilium"
            }
        }
        if modes.contains("ipvs") {
            report.limits.append("kube-proxy runs in IPVS mode: NodeGuard's drops work (mangle runs before IPVS), but service names are not read from IPVS")
        }
        return report
    }

    /// kube-proxy's KUBE-NODEPORTS chain (iptables mode): one rule per
    /// NodePort, commented with the service port.
    static func kubeNodePorts(_ table: NatTable) -> [NodePort] {
        table.rules(in: "KUBE-NODEPORTS").compactMap { rule in
            guard let transport = rule.transport, let port = rule.destinationPort else { return nil }
            return NodePort(key: PortKey(port: port, transport: transport), family: table.family, service: rule.comment,
                            source: table.source, endpoints: table.dnatDestinations(from: rule.target))
        }
    }

    /// DNATs matched by destination port outside kube-proxy's chains: Docker
    /// published ports, CNI portmap hostPorts, and anything else.
    static func rewrites(_ table: NatTable) -> [PortRewrite] {
        table.byChain.flatMap { chain, rules in
            rules.compactMap { rule -> PortRewrite? in
                guard !chain.hasPrefix("KUBE-"), let destination = rule.natDestination,
                      let transport = rule.transport, let port = rule.destinationPort else { return nil }
                let kind: PortRewrite.Kind = chain == "DOCKER" ? .docker : chain.hasPrefix("CNI-") ? .cniHostPort : .other
                return PortRewrite(key: PortKey(port: port, transport: transport), family: table.family, kind: kind,
                                   chain: chain, source: table.source, to: destination)
            }
        }
    }
}

/// Keeps the last `DataplaneReport` until something it was read from
/// changes: the legacy nat tables (fingerprint), nftables (ruleset
/// generation) or the marker interfaces. A 5,000-service nat table is
/// re-read only when kube-proxy changed it.
public final class DataplaneCache {
    /// What the report was read from: each legacy nat table (its digest, or
    /// only its sizes), the nftables generation, the marker interfaces.
    struct TablesKey<Legacy: Equatable>: Equatable {
        var legacy: [String: Legacy] = [:]
        var nftGeneration: UInt32?
        var interfaces: [Bool] = []
    }
    typealias Key = TablesKey<TableFingerprint>

    /// What is cheap to ask (sizes, not digests), and how many times the
    /// xtables lock had been released.
    struct QuickKey: Equatable {
        var sizes: TablesKey<TableInfo>
        var lockReleases: Int
    }

    private var key: Key?
    private var quickKey: QuickKey?
    private var lastDigest: ContinuousClock.Instant?
    /// How stale a same-size nat change (kube-proxy moving an endpoint) may
    /// show in a report while requests keep coming.
    static let digestInterval: Duration = .seconds(1)
    private var report: DataplaneReport?
    /// Full reads, for metrics and tests.
    public private(set) var reads = 0

    public init() {}

    /// `lockReleases` counts the releases of the xtables lock seen so far:
    /// kube-proxy rewrites nat under it, so while it has not moved and the
    /// sizes stand, even the digest of a 100,000-rule nat table need not be
    /// taken again, however many clients ask. (A writer that skips the lock
    /// and keeps every size is seen at the next release, or the next change.)
    public func report(backend: any NetfilterBackend, families: [AddressFamily], lockReleases: Int = 0) -> DataplaneReport {
        let quick = Self.quickKey(backend: backend, families: families, lockReleases: lockReleases)
        if let quick, quick == quickKey, let report { return report }
        // Releases of the lock come with every change to any table (NodeGuard's
        // own repairs too): a digest of nat at most once per `digestInterval`
        // while the sizes stand, however many clients ask.
        let now = ContinuousClock.now
        if let quick, quick.sizes == quickKey?.sizes, let report, let digested = lastDigest,
           now - digested < Self.digestInterval { return report }
        lastDigest = now
        let current = Self.currentKey(backend: backend, families: families)
        quickKey = current == nil ? nil : quick
        if let current, current == key, let report { return report }
        // Only requests read the dataplane; the control server gives the
        // heap back once their client has its answer (releaseFreeHeap).
        let fresh = DataplaneReader.read(backend: backend, families: families)
        reads += 1
        report = fresh
        key = current
        return fresh
    }

    static func quickKey(backend: any NetfilterBackend, families: [AddressFamily], lockReleases: Int) -> QuickKey? {
        key(families: families, backend: backend) { family throws(NodeGuardError) in try backend.tableInfo("nat", family) }
            .map { QuickKey(sizes: $0, lockReleases: lockReleases) }
    }

    static func currentKey(backend: any NetfilterBackend, families: [AddressFamily]) -> Key? {
        key(families: families, backend: backend) { family throws(NodeGuardError) in try backend.tableFingerprint("nat", family) }
    }

    /// Each existing legacy nat table as `read` tells it, the nftables
    /// generation and the marker interfaces; nil if a table cannot be read.
    static func key<Legacy>(families: [AddressFamily], backend: any NetfilterBackend,
                            _ read: (AddressFamily) throws(NodeGuardError) -> Legacy) -> TablesKey<Legacy>? {
        var key = TablesKey<Legacy>()
        for family in families where backend.tableExists("nat", family) {
            guard let value = try? read(family) else { return nil }
            key.legacy[family.rawValue] = value
        }
        var generation: UInt32 = 0
        if nglinux_nftables_generation(&generation) == 0 { key.nftGeneration = generation }
        key.interfaces = ["cilium_host", "kube-ipvs0"].map(DataplaneReader.interfaceExists)
        return key
    }
}
