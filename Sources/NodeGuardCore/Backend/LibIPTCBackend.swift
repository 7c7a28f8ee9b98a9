import CNodeGuardIPTC
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The production backend: legacy xtables through libiptc (libip4tc and
/// libip6tc), via the CNodeGuardIPTC shim.
public struct LibIPTCBackend: NetfilterBackend {
    /// libiptc keeps global state (its error text, its caches): one call at a
    /// time in this process, whoever makes it.
    private static let libraryLock = ConditionLock()

    public var lockPath: String
    public var lockTimeout: Duration
    /// How many times a commit that lost a race (EAGAIN) is retried.
    public var commitAttempts = 5

    public init(lockPath: String = XtablesLock.path, lockTimeout: Duration = .seconds(10)) {
        self.lockPath = lockPath
        self.lockTimeout = lockTimeout
    }

    // Reads take no xtables lock, as iptables-save takes none: a reader
    // cannot lose anyone's update.
    private let reader = KernelTableReader()

    public func tableInfo(_ name: String, _ family: AddressFamily) throws(NodeGuardError) -> TableInfo {
        try reader.info(name, family)
    }

    public func tableFingerprint(_ name: String, _ family: AddressFamily) throws(NodeGuardError) -> TableFingerprint {
        try reader.fingerprint(name, family)
    }

    public func ownedFingerprint(_ name: String, _ family: AddressFamily) throws(NodeGuardError) -> TableFingerprint {
        try reader.ownedFingerprint(name, family)
    }

    public func savedRules(_ name: String, _ family: AddressFamily) -> [String: [String]]? {
        SavedRules.read(name, family)
    }

    public func tableExists(_ name: String, _ family: AddressFamily) -> Bool {
        let file = family == .ipv4 ? "/proc/net/ip_tables_names" : "/proc/net/ip6_tables_names"
        guard let bytes = try? readFile(file) else { return false }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").contains(Substring(name))
    }

    public func holdingLock<T>(wait: Duration, _ body: () throws(NodeGuardError) -> T) throws(NodeGuardError) -> T {
        try XtablesLock.withLock(path: lockPath, timeout: wait, body)
    }

    /// Who holds the lock this backend takes, if anyone (for `status`).
    public var lockHolder: (pid: Int32, command: String)? { XtablesLock.holder(of: lockPath) }

    public func readTable<T>(
        _ name: String, _ family: AddressFamily,
        _ body: (any TableView) throws(NodeGuardError) -> T
    ) throws(NodeGuardError) -> T {
        // Straight from the kernel, not through libiptc: a third of the memory.
        try body(try reader.snapshot(name, family))
    }

    public func transact(
        _ name: String, _ family: AddressFamily,
        _ plan: (any TableView) throws(NodeGuardError) -> TableRepair
    ) throws(NodeGuardError) -> TransactionOutcome {
        try XtablesLock.withLock(path: lockPath, timeout: lockTimeout) { () throws(NodeGuardError) in
            Self.libraryLock.lock()
            defer { Self.libraryLock.unlock() }
            // Read back while the lock is still held: a writer waiting for it
            // (iptables -w) cannot change the table before this, so whatever it
            // does next differs from the fingerprint and is seen.
            let readBack = { try? reader.ownedFingerprint(name, family) }
            var attempt = 1
            while true {
                let table = try IPTCTable(family: family, table: name)
                defer { table.close() }
                let repair = try plan(table)
                if repair.isEmpty { return TransactionOutcome(repair: repair, committed: false, fingerprint: readBack()) }
                for edit in repair.edits { try table.apply(edit) }
                do throws(NodeGuardError) {
                    try table.commit()
                    return TransactionOutcome(repair: repair, committed: true, fingerprint: readBack())
                } catch {
                    // A writer that ignores the lock changed the table between our read and commit.
                    guard error.errno == .resourceTemporarilyUnavailable && attempt < commitAttempts else { throw error }
                    attempt += 1
                }
            }
        }
    }
}

/// Turns an errno from libiptc into an error an operator can act on; the
/// errno stays in it, typed, for the code that tells one from another.
func netfilterError(_ code: Int32, family: AddressFamily, doing action: String) -> NodeGuardError {
    let tool = family == .ipv4 ? "iptables" : "ip6tables"
    let errno = Errno(rawValue: code)
    switch code {
    case EPERM, EACCES:
        return permissionError(action, needs: "CAP_NET_ADMIN and CAP_NET_RAW", errno: errno)
    case ENOPROTOOPT:
        return NodeGuardError(.netfilterUnavailable,
            "\(action): this kernel has no legacy \(tool) (ENOPROTOOPT); NodeGuard needs the \(family == .ipv4 ? "ip_tables and iptable_mangle" : "ip6_tables and ip6table_mangle") modules (CONFIG_\(family == .ipv4 ? "IP" : "IP6")_NF_IPTABLES, CONFIG_\(family == .ipv4 ? "IP" : "IP6")_NF_MANGLE)",
            errno: errno)
    default:
        let text = String(cString: ngiptc_strerror(family == .ipv4 ? AF_INET : AF_INET6, code))
        return NodeGuardError(.netfilterFailure, "\(action): \(text) (errno \(code))", errno: errno)
    }
}

/// EPERM or EACCES from netfilter: what NodeGuard lacks and how to give it.
func permissionError(_ action: String, needs capabilities: String, errno: Errno) -> NodeGuardError {
    NodeGuardError(.permissionDenied,
        "\(action): permission denied; NodeGuard needs \(capabilities) (run it as root, or grant \(capabilities))",
        errno: errno)
}

/// A table opened through libiptc: a view of it, and the edits of one
/// transaction, kept in libiptc's copy until `commit`.
final class IPTCTable: TableView {
    let family: AddressFamily
    private var table: OpaquePointer?
    /// libiptc's copy cannot say; `transact` reads the kernel for it.
    var ownedFingerprint: TableFingerprint? { nil }

    private var familyName: String { family == .ipv4 ? "IPv4" : "IPv6" }
    private var af: Int32 { family == .ipv4 ? AF_INET : AF_INET6 }

    let tableName: String

    init(family: AddressFamily, table name: String) throws(NodeGuardError) {
        self.family = family
        tableName = name
        var error: Int32 = 0
        table = ngiptc_open(family == .ipv4 ? AF_INET : AF_INET6, name, &error)
        if table == nil {
            throw netfilterError(error, family: family, doing: "reading the \(family == .ipv4 ? "IPv4" : "IPv6") \(name) table")
        }
    }

    func close() {
        ngiptc_close(table)
        table = nil
    }

    private func check(_ status: Int32, _ error: Int32, _ action: @autoclosure () -> String) throws(NodeGuardError) {
        guard status < 0 else { return }
        throw netfilterError(error, family: family, doing: "\(action()) in the \(familyName) \(tableName) table")
    }

    func commit() throws(NodeGuardError) {
        var error: Int32 = 0
        try check(ngiptc_commit(table, &error), error, "committing")
    }

    func chainNames() -> [String] {
        var names: [String] = []
        var name = ngiptc_first_chain(table)
        while let current = name {
            names.append(String(cString: current))
            name = ngiptc_next_chain(table)
        }
        return names
    }

    func rules(in chain: String) throws(NodeGuardError) -> [ObservedRule] {
        try rules(in: chain, limit: Int.max)
    }

    func rules(in chain: String, limit: Int) throws(NodeGuardError) -> [ObservedRule] {
        var error: Int32 = 0
        let all = ngiptc_rule_count(table, chain, &error)
        try check(all, error, "reading chain \(chain)")
        let count = Int32(min(Int(all), limit))
        guard count > 0 else { return [] }
        var infos = [ngiptc_rule_info](repeating: ngiptc_rule_info(), count: Int(count))
        let read = ngiptc_read_rules(table, chain, &infos, count, &error)
        try check(read, error, "reading chain \(chain)")
        return infos.prefix(Int(read)).map { Self.observed($0, family: family) }
    }

    func apply(_ edit: TableEdit) throws(NodeGuardError) {
        switch edit {
        case .createChain(let name): try createChain(name)
        case .flushChain(let name): try flushChain(name)
        case .deleteChain(let name): try deleteChain(name)
        case .insertRule(let rule, let chain, let index): try insertRule(rule, in: chain, at: index)
        case .deleteRule(let chain, let index): try deleteRule(in: chain, at: index)
        }
    }

    private func createChain(_ name: String) throws(NodeGuardError) {
        var error: Int32 = 0
        try check(ngiptc_create_chain(table, name, &error), error, "creating chain \(name)")
    }

    private func flushChain(_ name: String) throws(NodeGuardError) {
        var error: Int32 = 0
        try check(ngiptc_flush_chain(table, name, &error), error, "flushing chain \(name)")
    }

    private func deleteChain(_ name: String) throws(NodeGuardError) {
        var error: Int32 = 0
        try check(ngiptc_delete_chain(table, name, &error), error,
                  "deleting chain \(name) (is a rule outside NodeGuard still jumping to it?)")
    }

    private func insertRule(_ rule: RuleSpec, in chain: String, at index: Int) throws(NodeGuardError) {
        var spec = Self.cSpec(rule, family: family)
        var error: Int32 = 0
        try check(ngiptc_insert_rule(table, chain, UInt32(index), &spec, &error), error,
                  "inserting '\(rule.iptablesArguments)' into \(chain)")
    }

    private func deleteRule(in chain: String, at index: Int) throws(NodeGuardError) {
        var error: Int32 = 0
        try check(ngiptc_delete_rule(table, chain, UInt32(index), &error), error,
                  "deleting rule \(index + 1) of \(chain)")
    }

    // MARK: conversions between RuleSpec and the shim's C struct

    static func cSpec(_ rule: RuleSpec, family: AddressFamily) -> ngiptc_rule_spec {
        var spec = ngiptc_rule_spec()
        if let source = rule.source {
            copyBytes(source.address, into: &spec.source_address)
            spec.source_prefix_length = UInt8(source.prefixLength)
        }
        spec.protocol = rule.transport?.ipProtocolNumber ?? 0
        spec.match_local_destination = rule.matchLocalDestination ? 1 : 0
        switch rule.direction {
        case .original: spec.match_direction = UInt8(NGIPTC_CTDIR_ORIGINAL)
        case .reply: spec.match_direction = UInt8(NGIPTC_CTDIR_REPLY)
        case nil: spec.match_direction = 0
        }
        if let ports = rule.destinationPorts {
            spec.has_destination_ports = 1
            spec.destination_port_first = ports.lowerBound
            spec.destination_port_last = ports.upperBound
            spec.tcp_syn_only = rule.tcpSynOnly ? 1 : 0
        }
        copyCString(rule.comment, into: &spec.comment)
        copyCString(rule.target, into: &spec.target)
        return spec
    }

    static func observed(_ info: ngiptc_rule_info, family: AddressFamily) -> ObservedRule {
        var c = info.spec
        let comment = readCString(&c.comment)
        let target = readCString(&c.target)
        var spec: RuleSpec?
        if info.representable != 0 {
            let transport = TransportProtocol.allCases.first { $0.ipProtocolNumber == c.protocol }
            let protocolKnown = c.protocol == 0 || transport != nil
            var source: CIDR?
            if c.source_prefix_length > 0 {
                let bytes = leadingBytes(&c.source_address, family.addressByteCount)
                source = CIDR(family: family, address: bytes, prefixLength: Int(c.source_prefix_length))
            }
            if protocolKnown {
                spec = RuleSpec(
                    source: source, transport: transport,
                    matchLocalDestination: c.match_local_destination != 0,
                    direction: c.match_direction == NGIPTC_CTDIR_REPLY ? .reply
                        : c.match_direction == NGIPTC_CTDIR_ORIGINAL ? .original : nil,
                    destinationPorts: c.has_destination_ports != 0 ? c.destination_port_first...c.destination_port_last : nil,
                    tcpSynOnly: c.tcp_syn_only != 0, comment: comment, target: target)
            }
        }
        var observed = ObservedRule(spec: spec, target: target, comment: comment, packets: info.packets, bytes: info.bytes)
        observed.protocolNumber = c.protocol
        observed.protocolInverted = info.protocol_inverted != 0
        observed.untracks = info.untracks != 0
        observed.identity = info.identity
        if c.has_destination_ports != 0, c.destination_port_first <= c.destination_port_last {
            observed.destinationPorts = c.destination_port_first...c.destination_port_last
        }
        if info.nat_has_address != 0 {
            var raw = info.nat_address
            let bytes = leadingBytes(&raw, family.addressByteCount)
            var address = addressText(bytes, family: family)
            if info.nat_has_ports != 0 {
                if family == .ipv6 { address = "[\(address)]" }
                address += ":\(info.nat_port_first)"
                if info.nat_port_last != info.nat_port_first { address += "-\(info.nat_port_last)" }
            }
            observed.natDestination = address
        }
        return observed
    }

    private static func addressText(_ bytes: [UInt8], family: AddressFamily) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let af = family == .ipv4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(af, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
