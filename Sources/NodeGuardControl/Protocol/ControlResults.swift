/// The `result` of each command's success answer, typed. The daemon builds
/// these and `ControlResponse(_:)` encodes them; nodeguardctl reads the same
/// types back with `init(result:)`, so a key renamed on one side is renamed
/// on the other, and a key the CLI needs but the answer lacks is an error
/// that names it, not a "-" in the output.
///
/// Codable (through `JSONValueEncoder`/`JSONValueDecoder`) rather than the
/// strict reader that requests and deny-lists go through: an answer comes
/// from the daemon, not from a person, and an older CLI must still read a
/// newer daemon's answer that has more keys. Optional fields are left out
/// of the answer when nil, as the wire format always did.
public protocol ControlResult: Codable, Sendable, Hashable {}

extension ControlResult {
    /// Reads the `result` of a success answer.
    public init(result: JSONValue) throws(NodeGuardError) {
        do {
            self = try JSONValueDecoder().decode(Self.self, from: result)
        } catch {
            throw NodeGuardError(.invalidRequest,
                "the daemon's answer is not what this nodeguardctl reads as \(Self.self) (\(Self.problem(error))); use the nodeguardctl that came with the daemon")
        }
    }

    private static func problem(_ error: any Error) -> String {
        switch error as? DecodingError {
        case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?, .dataCorrupted(let context)?:
            return context.debugDescription
        case .keyNotFound(let key, let context)?:
            return "\(jsonPath(context.codingPath + [key])): missing"
        default:
            return "\(error)"
        }
    }
}

extension ControlResponse {
    /// A success answer with `result` encoded as the wire format has it.
    public init(_ result: some ControlResult) {
        do {
            self = .success(try JSONValueEncoder().encode(result))
        } catch {
            // Only a number JSON cannot write (NaN, infinity) gets here; no result holds one.
            self = .failure(NodeGuardError(.ioFailure, "cannot encode the answer: \(error)"))
        }
    }
}

/// Where an effective entry comes from.
public enum EntrySource: String, Sendable, Codable {
    case config, runtime
}

/// Packets and bytes a rule dropped.
public struct DropCount: Codable, Sendable, Hashable {
    public var packets: UInt64
    public var bytes: UInt64

    public init(packets: UInt64, bytes: UInt64) {
        self.packets = packets
        self.bytes = bytes
    }
}

// MARK: block, unblock, reload, metrics

/// `block`: `changed` false when the port was already blocked so (then no `changes`).
public struct BlockResult: ControlResult {
    /// As `PortKey` writes it: "31002/tcp".
    public var port: String
    public var source: EntrySource
    public var changed: Bool
    /// What the commit changed in the tables, one line each.
    public var changes: [String]?

    public init(port: PortKey, source: EntrySource, changed: Bool, changes: [String]? = nil) {
        self.port = port.description
        self.source = source
        self.changed = changed
        self.changes = changes
    }
}

/// `unblock`.
public struct UnblockResult: ControlResult {
    public var port: String
    public var changed: Bool
    public var changes: [String]

    public init(port: PortKey, changes: [String]) {
        self.port = port.description
        self.changed = true
        self.changes = changes
    }
}

/// `reload`: how many entries the file holds now.
public struct ReloadResult: ControlResult {
    public var entries: Int
    public var changes: [String]

    public init(entries: Int, changes: [String]) {
        self.entries = entries
        self.changes = changes
    }
}

/// `metrics`: the Prometheus text format.
public struct MetricsResult: ControlResult {
    public var text: String

    public init(text: String) { self.text = text }
}

// MARK: list, and status's entries

/// `list`.
public struct EntryList: ControlResult {
    public var entries: [EntryReport]

    public init(entries: [EntryReport]) { self.entries = entries }
}

/// One effective entry: its fields as the deny-list writes them, and what
/// the daemon knows of it.
public struct EntryReport: Codable, Sendable, Hashable {
    public var entry: BlockEntry
    public var source: EntrySource
    /// Raw-table rules that take the port out of connection tracking.
    public var untracked: [String]?
    /// The services (`namespace/name:port`) whose NodePort this is.
    public var services: [String]?
    /// Set when no NodePort on the node uses the port.
    public var warning: String?
    /// Both families' drops (`status` only).
    public var dropped: DropCount?

    public init(entry: BlockEntry, source: EntrySource, untracked: [String]? = nil, services: [String]? = nil,
                warning: String? = nil, dropped: DropCount? = nil) {
        self.entry = entry
        self.source = source
        self.untracked = untracked
        self.services = services
        self.warning = warning
        self.dropped = dropped
    }

    private enum CodingKeys: String, CodingKey {
        case source, untracked, services, warning, dropped
    }

    // The entry's fields sit beside the report's in one object.
    public init(from decoder: any Decoder) throws {
        entry = try BlockEntry(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        source = try container.decode(EntrySource.self, forKey: .source)
        untracked = try container.decodeIfPresent([String].self, forKey: .untracked)
        services = try container.decodeIfPresent([String].self, forKey: .services)
        warning = try container.decodeIfPresent(String.self, forKey: .warning)
        dropped = try container.decodeIfPresent(DropCount.self, forKey: .dropped)
    }

    public func encode(to encoder: any Encoder) throws {
        try entry.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(source, forKey: .source)
        try container.encodeIfPresent(untracked, forKey: .untracked)
        try container.encodeIfPresent(services, forKey: .services)
        try container.encodeIfPresent(warning, forKey: .warning)
        try container.encodeIfPresent(dropped, forKey: .dropped)
    }
}

// MARK: the dataplane, nodeports

/// What rewrites NodePorts on the node (`status`, `nodeports`, `explain`).
public struct DataplaneSummary: Codable, Sendable, Hashable {
    /// kube-proxy's modes found, e.g. "iptables-legacy".
    public var kubeProxy: [String]
    /// Other rewriters: "docker", "cni-hostport".
    public var others: [String]
    /// An eBPF dataplane, if one was found ("cilium-kube-proxy-replacement").
    public var ebpf: String?
    public var warnings: [String]
    public var summary: String
    /// How many times the daemon has read the dataplane.
    public var reads: Int

    public init(kubeProxy: [String], others: [String], ebpf: String?, warnings: [String], summary: String, reads: Int) {
        self.kubeProxy = kubeProxy
        self.others = others
        self.ebpf = ebpf
        self.warnings = warnings
        self.summary = summary
        self.reads = reads
    }
}

/// `nodeports`.
public struct NodePortsReport: ControlResult {
    public var nodeports: [NodePortReport]
    /// Sources that could not be read.
    public var problems: [String]
    public var dataplane: DataplaneSummary

    public init(nodeports: [NodePortReport], problems: [String], dataplane: DataplaneSummary) {
        self.nodeports = nodeports
        self.problems = problems
        self.dataplane = dataplane
    }
}

/// One NodePort of one family.
public struct NodePortReport: Codable, Sendable, Hashable {
    public var port: UInt16
    public var transport: TransportProtocol
    public var family: AddressFamily
    /// `namespace/name:port`.
    public var service: String
    /// Where it was read (e.g. "iptables-legacy").
    public var source: String
    /// The DNAT destinations.
    public var endpoints: [String]
    /// Whether NodeGuard blocks it in this family.
    public var blocked: Bool

    public init(key: PortKey, family: AddressFamily, service: String, source: String, endpoints: [String], blocked: Bool) {
        self.port = key.port
        self.transport = key.transport
        self.family = family
        self.service = service
        self.source = source
        self.endpoints = endpoints
        self.blocked = blocked
    }

    public var key: PortKey { PortKey(port: port, transport: transport) }

    private enum CodingKeys: String, CodingKey {
        case port, transport = "protocol", family, service, source, endpoints, blocked
    }
}

// MARK: explain

/// `explain PORT`: the path a packet to the port takes on the node.
public struct ExplainReport: ControlResult {
    public var port: UInt16
    public var transport: TransportProtocol
    public var rewrites: [Rewrite]
    public var dataplane: DataplaneSummary
    public var nodeguard: Drop
    /// What could let a packet through despite the block.
    public var defeats: [String]
    /// Raw-table rules that take its packets out of connection tracking (NodeGuard drops those too).
    public var untracked: [String]
    /// "closed: ...", "open: ..." or "at risk: ...".
    public var verdict: String

    public init(key: PortKey, rewrites: [Rewrite], dataplane: DataplaneSummary, nodeguard: Drop,
                defeats: [String], untracked: [String], verdict: String) {
        self.port = key.port
        self.transport = key.transport
        self.rewrites = rewrites
        self.dataplane = dataplane
        self.nodeguard = nodeguard
        self.defeats = defeats
        self.untracked = untracked
        self.verdict = verdict
    }

    public var key: PortKey { PortKey(port: port, transport: transport) }

    private enum CodingKeys: String, CodingKey {
        case port, transport = "protocol", rewrites, dataplane, nodeguard, defeats, untracked, verdict
    }

    /// Who rewrites the port, and to where.
    public struct Rewrite: Codable, Sendable, Hashable {
        /// "kube-proxy service NAMESPACE/NAME:PORT", "docker (nat chain DOCKER)", ...
        public var by: String
        /// "kube-proxy", "docker", "cni-hostport" or "dnat".
        public var kind: String
        public var family: AddressFamily
        public var source: String
        public var to: [String]

        public init(by: String, kind: String, family: AddressFamily, source: String, to: [String]) {
            self.by = by
            self.kind = kind
            self.family = family
            self.source = source
            self.to = to
        }
    }

    /// Whether and where NodeGuard drops the port; the rest only when `blocked`.
    public struct Drop: Codable, Sendable, Hashable {
        public var blocked: Bool
        public var source: EntrySource?
        public var families: [AddressFamily]?
        public var `where`: String?
        /// By family ("ipv4", "ipv6").
        public var dropped: [String: DropCount]?

        public static let notBlocked = Drop(blocked: false, source: nil, families: nil, where: nil, dropped: nil)

        public init(blocked: Bool, source: EntrySource?, families: [AddressFamily]?, where: String?, dropped: [String: DropCount]?) {
            self.blocked = blocked
            self.source = source
            self.families = families
            self.where = `where`
            self.dropped = dropped
        }
    }
}

// MARK: status

/// `status`: the daemon's health and everything it guards.
public struct StatusReport: ControlResult {
    /// False on a failed read, a jump below a rule that could let a blocked
    /// packet through, a fight, or a repair that waits for the lock.
    public var healthy: Bool
    public var pid: Int
    /// ISO 8601, UTC.
    public var startedAt: String
    public var configPath: String
    public var stateDirectory: String
    public var families: [AddressFamily]
    public var entries: [EntryReport]
    public var dataplane: DataplaneSummary
    /// By family, then hook chain ("PREROUTING", "OUTPUT"): whether NodeGuard's jump is rule 1.
    public var hooks: [String: [String: Bool]]
    public var hooksFirst: Bool
    /// Nothing above the jump could let a blocked packet through.
    public var hooksEffective: Bool
    public var repairs: Int
    public var commits: Int
    public var fullReads: Int
    public var verifyIntervalMs: Int
    public var deepCheckIntervalMs: Int
    public var watchIntervalMs: Int
    public var lastVerify: String?
    public var lastVerifyMicroseconds: Int?
    public var lastApply: String?
    public var lastError: String?
    /// While NodeGuard waits for another program's xtables lock.
    public var xtablesLock: LockWait?
    /// The first of `fights` (a mangle site first).
    public var fight: FightReport?
    /// One per disputed hook site; absent without a fight.
    public var fights: [FightReport]?

    public init(healthy: Bool, pid: Int, startedAt: String, configPath: String, stateDirectory: String,
                families: [AddressFamily], entries: [EntryReport], dataplane: DataplaneSummary,
                hooks: [String: [String: Bool]], hooksFirst: Bool, hooksEffective: Bool,
                repairs: Int, commits: Int, fullReads: Int,
                verifyIntervalMs: Int, deepCheckIntervalMs: Int, watchIntervalMs: Int,
                lastVerify: String? = nil, lastVerifyMicroseconds: Int? = nil, lastApply: String? = nil,
                lastError: String? = nil, xtablesLock: LockWait? = nil, fights: [FightReport] = []) {
        self.healthy = healthy
        self.pid = pid
        self.startedAt = startedAt
        self.configPath = configPath
        self.stateDirectory = stateDirectory
        self.families = families
        self.entries = entries
        self.dataplane = dataplane
        self.hooks = hooks
        self.hooksFirst = hooksFirst
        self.hooksEffective = hooksEffective
        self.repairs = repairs
        self.commits = commits
        self.fullReads = fullReads
        self.verifyIntervalMs = verifyIntervalMs
        self.deepCheckIntervalMs = deepCheckIntervalMs
        self.watchIntervalMs = watchIntervalMs
        self.lastVerify = lastVerify
        self.lastVerifyMicroseconds = lastVerifyMicroseconds
        self.lastApply = lastApply
        self.lastError = lastError
        self.xtablesLock = xtablesLock
        self.fight = fights.first
        self.fights = fights.isEmpty ? nil : fights
    }

    /// What NodeGuard waits for, and on whom.
    public struct LockWait: Codable, Sendable, Hashable {
        public var waitingMs: Int
        /// A repair waits for the lock (not only a request).
        public var repairPending: Bool
        public var heldBy: Holder?

        public init(waitingMs: Int, repairPending: Bool, heldBy: Holder?) {
            self.waitingMs = waitingMs
            self.repairPending = repairPending
            self.heldBy = heldBy
        }

        public struct Holder: Codable, Sendable, Hashable {
            public var pid: Int
            public var command: String

            public init(pid: Int, command: String) {
                self.pid = pid
                self.command = command
            }
        }
    }

    /// Another agent that keeps putting a rule above NodeGuard's jump at one hook site.
    public struct FightReport: Codable, Sendable, Hashable {
        /// The rule, as `iptables-legacy-save` writes it.
        public var culprit: String
        public var family: AddressFamily
        public var table: String
        public var chain: String
        public var displacements: Int
        /// ISO 8601, UTC.
        public var since: String
        public var backoffSeconds: Int
        public var retakeInSeconds: Int
        /// "raw" while the blocked ports are held closed from the raw table.
        public var holding: String?
        public var advice: String

        public init(culprit: String, family: AddressFamily, table: String, chain: String, displacements: Int,
                    since: String, backoffSeconds: Int, retakeInSeconds: Int, holding: String?, advice: String) {
            self.culprit = culprit
            self.family = family
            self.table = table
            self.chain = chain
            self.displacements = displacements
            self.since = since
            self.backoffSeconds = backoffSeconds
            self.retakeInSeconds = retakeInSeconds
            self.holding = holding
            self.advice = advice
        }
    }
}
