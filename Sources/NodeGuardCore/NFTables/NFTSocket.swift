import CNodeGuardNFT
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// NodeGuard's one netlink socket for nftables, through the CNodeGuardNFT
/// shim: every transaction goes through it, so a table committed with the
/// `owner` flag belongs to it, and only it may change the table while it is
/// open. Not thread-safe: the reconcile loop owns it and makes every call.
public final class NFTSocket {
    private var socket: OpaquePointer?

    public init() throws(NodeGuardError) {
        var error: Int32 = 0
        guard let socket = ngnft_open(&error) else {
            throw nftError(error, doing: "opening a netlink socket for nftables")
        }
        self.socket = socket
    }

    deinit { ngnft_close(socket) }

    /// Closes the socket now: an owned table loses its owner (and, unless it
    /// persists, goes with it). Every later call throws.
    public func close() {
        ngnft_close(socket)
        socket = nil
    }

    private func openSocket() throws(NodeGuardError) -> OpaquePointer {
        guard let socket else { throw NodeGuardError(.netfilterFailure, "the nftables socket is closed") }
        return socket
    }

    /// The ruleset's generation id now: every commit, by anyone, moves it.
    public func generation() throws(NodeGuardError) -> UInt32 {
        var generation: UInt32 = 0
        var error: Int32 = 0
        guard ngnft_generation(try openSocket(), &generation, &error) == 0 else {
            throw nftError(error, doing: "reading the nftables generation")
        }
        return generation
    }

    /// Sends `edits` to table inet `table` as one batch: all take effect or
    /// none does. A refusal names the edit the kernel refused first.
    public func commit(_ table: String, _ edits: [NFTEdit]) throws(NodeGuardError) {
        guard !edits.isEmpty else { return }
        let socket = try openSocket()
        try Self.checkName(table, "table")
        var error: Int32 = 0
        guard let batch = ngnft_batch_begin(socket, &error) else {
            throw nftError(error, doing: "starting a transaction on table inet \(table)")
        }
        defer { ngnft_batch_free(batch) }
        for edit in edits {
            try Self.add(edit, table: table, to: batch)
        }
        var failed = -1
        guard ngnft_batch_commit(batch, &failed, &error) != 0 else { return }
        let refused = edits.indices.contains(failed) ? edits[failed] : nil
        throw commitError(error, table: table, refused: refused)
    }

    /// Table inet `table` as the kernel holds it, or nil when there is none.
    public func read(_ table: String) throws(NodeGuardError) -> NFTTableView? {
        var error: Int32 = 0
        guard let view = ngnft_read_table(try openSocket(), table, &error) else {
            if error == ENOENT { return nil }
            throw nftError(error, doing: "reading table inet \(table)")
        }
        defer { ngnft_view_free(view) }
        var info = ngnft_table_info()
        ngnft_view_table(view, &info)
        var chains: [NFTObservedChain] = []
        for index in 0..<ngnft_view_chain_count(view) {
            var chain = ngnft_chain_info()
            ngnft_view_chain(view, index, &chain)
            var rules: [NFTObservedRule] = []
            for ruleIndex in 0..<chain.rule_count {
                var rule = ngnft_rule_info()
                ngnft_view_rule(view, index, ruleIndex, &rule)
                rules.append(Self.observedRule(rule))
            }
            chains.append(Self.observedChain(chain, rules: rules))
        }
        var sets: [NFTObservedSet] = []
        for index in 0..<ngnft_view_set_count(view) {
            var set = ngnft_set_info()
            ngnft_view_set(view, index, &set)
            let spec = set.representable != 0 ? Self.set(set.spec) : nil
            var elements: [NFTObservedElement] = []
            if let spec {
                for elementIndex in 0..<set.element_count {
                    var element = ngnft_element()
                    ngnft_view_element(view, index, elementIndex, &element)
                    elements.append(Self.observedElement(element, in: spec))
                }
            }
            sets.append(NFTObservedSet(set: spec, name: readCString(&set.spec.name), elements: elements))
        }
        return NFTTableView(flags: NFTTableFlags(rawValue: info.flags), ownedBySocket: info.owned_by_socket != 0,
                            hasOwner: info.has_owner != 0, generation: info.generation, chains: chains, sets: sets)
    }

    /// Every base chain on prerouting or output, of every inet, ip and ip6 table.
    public func hookChains() throws(NodeGuardError) -> [NFTHookChain] {
        var count = 0
        var error: Int32 = 0
        guard let chains = ngnft_list_hook_chains(try openSocket(), &count, &error) else {
            throw nftError(error, doing: "listing the nftables base chains")
        }
        defer { free(chains) }
        return UnsafeBufferPointer(start: chains, count: count).compactMap { chain in
            var chain = chain
            // NFPROTO_INET 1, NFPROTO_IPV4 2, NFPROTO_IPV6 10 (linux/netfilter.h).
            let family = switch chain.family {
            case 1: "inet"
            case 2: "ip"
            default: "ip6"
            }
            guard let hook = Self.hook(chain.hook) else { return nil }
            return NFTHookChain(family: family, table: readCString(&chain.table), chain: readCString(&chain.chain),
                                hook: hook, priority: chain.priority, type: readCString(&chain.type),
                                rewritesDestination: chain.rewrites_destination != 0)
        }
    }

    // MARK: the batch

    private static func add(_ edit: NFTEdit, table: String, to batch: OpaquePointer) throws(NodeGuardError) {
        var error: Int32 = 0
        let status: Int32
        switch edit {
        case .addTable(let flags):
            status = ngnft_batch_add_table(batch, table, flags.rawValue, &error)
        case .deleteTable:
            status = ngnft_batch_delete_table(batch, table, &error)
        case .addSet(let set):
            var spec = try cSet(set)
            status = ngnft_batch_add_set(batch, table, &spec, &error)
        case .deleteSet(let name):
            try checkName(name, "set")
            status = ngnft_batch_delete_set(batch, table, name, &error)
        case .addElements(let set, let elements), .deleteElements(let set, let elements):
            var spec = try cSet(set)
            let cElements = elements.map(cElement)
            if case .addElements = edit {
                status = ngnft_batch_add_elements(batch, table, &spec, cElements, cElements.count, &error)
            } else {
                status = ngnft_batch_delete_elements(batch, table, &spec, cElements, cElements.count, &error)
            }
        case .addChain(let chain):
            var spec = try cChain(chain)
            status = ngnft_batch_add_chain(batch, table, &spec, &error)
        case .flushChain(let name):
            try checkName(name, "chain")
            status = ngnft_batch_flush_chain(batch, table, name, &error)
        case .deleteChain(let name):
            try checkName(name, "chain")
            status = ngnft_batch_delete_chain(batch, table, name, &error)
        case .addRule(let chain, let rule):
            try checkName(chain, "chain")
            var spec = try cRule(rule)
            status = ngnft_batch_add_rule(batch, table, chain, &spec, &error)
        }
        guard status != 0 else { return }
        if error == EINVAL {
            throw NodeGuardError(.netfilterFailure,
                "cannot encode '\(edit)' for table inet \(table): outside the nftables shim's vocabulary (a source lookup needs the rule's family to be the source's; elements need tcp, udp or sctp, first port <= last, a prefix that fits)",
                errno: Errno(rawValue: error))
        }
        throw nftError(error, doing: "preparing '\(edit)' for table inet \(table)")
    }

    /// The error of a refused commit: which edit, and the fix where one is known.
    private func commitError(_ code: Int32, table: String, refused: NFTEdit?) -> NodeGuardError {
        let what = refused.map { "'\($0)' was refused" } ?? "the batch was refused"
        let action = "committing to table inet \(table): \(what)"
        let errno = Errno(rawValue: code)
        switch code {
        case EPERM:
            // The same errno says "no CAP_NET_ADMIN" and "owned by another socket": look.
            if let view = try? read(table), view.hasOwner, !view.ownedBySocket {
                return NodeGuardError(.netfilterFailure,
                    "\(action): another process owns table inet \(table) (the owner flag); only it may change the table while it runs: stop it (another nodeguardd?) and NodeGuard takes the table over",
                    errno: errno)
            }
        case EOPNOTSUPP:
            if case .addTable = refused {
                return NodeGuardError(.netfilterFailure,
                    "\(action): this kernel does not take these table flags (owner needs Linux 5.12, persist 6.9)",
                    errno: errno)
            }
        case ENOENT:
            return NodeGuardError(.netfilterFailure,
                "\(action): something it names does not exist (did another program delete the table, a chain or a set?)",
                errno: errno)
        case EBUSY:
            return NodeGuardError(.netfilterFailure,
                "\(action): still in use (a rule jumps to the chain or looks the set up)", errno: errno)
        case EEXIST:
            return NodeGuardError(.netfilterFailure,
                "\(action): it contradicts what the kernel holds (a set of that name with another key, or an element that overlaps another)",
                errno: errno)
        default:
            break
        }
        return nftError(code, doing: action)
    }

    // MARK: conversions between the Swift values and the shim's C structs

    private static func checkName(_ name: String, _ kind: String) throws(NodeGuardError) {
        guard !name.isEmpty, name.utf8.count <= NFTLimits.nameBytes, !name.utf8.contains(0) else {
            throw NodeGuardError(.netfilterFailure,
                "\(kind) name '\(name)' is empty or longer than \(NFTLimits.nameBytes) bytes")
        }
    }

    static func cSet(_ set: NFTSet) throws(NodeGuardError) -> ngnft_set_spec {
        try checkName(set.name, "set")
        var spec = ngnft_set_spec()
        copyCString(set.name, into: &spec.name)
        spec.source_family = set.sourceFamily.map(familyNumber) ?? 0
        spec.counters = set.counters ? 1 : 0
        copyCString(NFTLimits.fitting(comment: set.comment), into: &spec.comment)
        return spec
    }

    static func set(_ spec: ngnft_set_spec) -> NFTSet {
        var spec = spec
        return NFTSet(name: readCString(&spec.name), sourceFamily: family(spec.source_family),
                      counters: spec.counters != 0, comment: readCString(&spec.comment))
    }

    static func cElement(_ element: NFTElement) -> ngnft_element {
        var c = ngnft_element()
        if let source = element.source {
            copyBytes(source.address, into: &c.source_address)
            c.source_prefix_length = UInt8(clamping: source.prefixLength)
        }
        c.protocol = element.transport.ipProtocolNumber
        c.port_first = element.ports.lowerBound
        c.port_last = element.ports.upperBound
        copyCString(NFTLimits.fitting(comment: element.comment), into: &c.comment)
        return c
    }

    static func observedElement(_ element: ngnft_element, in set: NFTSet) -> NFTObservedElement {
        var c = element
        var source: CIDR?
        if let family = set.sourceFamily {
            source = CIDR(family: family, address: leadingBytes(&c.source_address, family.addressByteCount),
                          prefixLength: Int(c.source_prefix_length))
        }
        // The shim reads back only elements of tcp, udp or sctp.
        let transport = TransportProtocol.allCases.first { $0.ipProtocolNumber == c.protocol } ?? .tcp
        let decoded = NFTElement(source: source, transport: transport, ports: c.port_first...max(c.port_first, c.port_last),
                                 comment: readCString(&c.comment))
        return NFTObservedElement(element: decoded, packets: c.packets, bytes: c.bytes)
    }

    static func cChain(_ chain: NFTChain) throws(NodeGuardError) -> ngnft_chain_spec {
        try checkName(chain.name, "chain")
        var spec = ngnft_chain_spec()
        copyCString(chain.name, into: &spec.name)
        switch chain.hook {
        case .prerouting: spec.hook = NGNFT_HOOK_PREROUTING
        case .output: spec.hook = NGNFT_HOOK_OUTPUT
        case nil: spec.hook = NGNFT_HOOK_NONE
        }
        spec.priority = chain.priority
        return spec
    }

    static func observedChain(_ chain: ngnft_chain_info, rules: [NFTObservedRule]) -> NFTObservedChain {
        var c = chain
        let hookNumber = c.is_base != 0 ? c.spec.hook : nil
        return NFTObservedChain(name: readCString(&c.spec.name), hook: hookNumber.flatMap(hook),
                                priority: c.is_base != 0 ? c.spec.priority : 0,
                                type: c.is_base != 0 ? readCString(&c.type) : "",
                                policyAccepts: c.is_base == 0 || c.policy == 1 /* NF_ACCEPT */,
                                rules: rules, hookNumber: hookNumber)
    }

    static func cRule(_ rule: NFTRule) throws(NodeGuardError) -> ngnft_rule_spec {
        var spec = ngnft_rule_spec()
        spec.match_local_destination = rule.matchLocalDestination ? 1 : 0
        spec.match_reply = rule.matchReply ? 1 : 0
        spec.nfproto = rule.family.map(familyNumber) ?? 0
        if let set = rule.lookup {
            try checkName(set, "set")
            copyCString(set, into: &spec.lookup_set)
            spec.lookup_source_family = rule.lookupSourceFamily.map(familyNumber) ?? 0
        }
        switch rule.verdict {
        case .accept: spec.verdict = UInt8(NGNFT_VERDICT_ACCEPT)
        case .drop: spec.verdict = UInt8(NGNFT_VERDICT_DROP)
        case .return: spec.verdict = UInt8(NGNFT_VERDICT_RETURN)
        case .jump(let chain):
            try checkName(chain, "chain")
            spec.verdict = UInt8(NGNFT_VERDICT_JUMP)
            copyCString(chain, into: &spec.jump_chain)
        }
        copyCString(NFTLimits.fitting(comment: rule.comment), into: &spec.comment)
        return spec
    }

    static func observedRule(_ info: ngnft_rule_info) -> NFTObservedRule {
        var c = info.spec
        let comment = readCString(&c.comment)
        var rule: NFTRule?
        if info.representable != 0 {
            let verdict: NFTVerdict? = switch Int32(c.verdict) {
            case NGNFT_VERDICT_ACCEPT: .accept
            case NGNFT_VERDICT_DROP: .drop
            case NGNFT_VERDICT_RETURN: .return
            case NGNFT_VERDICT_JUMP: .jump(readCString(&c.jump_chain))
            default: nil   // a rule without a verdict: nothing NodeGuard writes
            }
            let lookup = readCString(&c.lookup_set)
            rule = verdict.map { verdict in
                NFTRule(matchLocalDestination: c.match_local_destination != 0, matchReply: c.match_reply != 0,
                        family: family(c.nfproto), lookup: lookup.isEmpty ? nil : lookup,
                        lookupSourceFamily: family(c.lookup_source_family), verdict: verdict, comment: comment)
            }
        }
        return NFTObservedRule(rule: rule, comment: comment, handle: info.handle)
    }

    private static func familyNumber(_ family: AddressFamily) -> UInt8 {
        UInt8(family == .ipv4 ? AF_INET : AF_INET6)
    }

    private static func family(_ number: UInt8) -> AddressFamily? {
        switch Int32(number) {
        case AF_INET: .ipv4
        case AF_INET6: .ipv6
        default: nil
        }
    }

    private static func hook(_ number: Int32) -> NFTHook? {
        switch number {
        case NGNFT_HOOK_PREROUTING: .prerouting
        case NGNFT_HOOK_OUTPUT: .output
        default: nil
        }
    }
}

/// The ruleset's events: every commit, by anyone, sends the new generation.
/// Poll `fd` for input, then `drain` it.
public final class NFTMonitor {
    private let monitor: OpaquePointer
    /// How many netlink messages the last `drain` read.
    public private(set) var messagesRead = 0

    public init() throws(NodeGuardError) {
        var error: Int32 = 0
        guard let monitor = ngnft_monitor_open(&error) else {
            throw nftError(error, doing: "subscribing to nftables events")
        }
        self.monitor = monitor
    }

    deinit { ngnft_monitor_close(monitor) }

    public var fd: Int32 { ngnft_monitor_fd(monitor) }

    /// Reads every pending event: the newest generation among them (nil if
    /// none), and whether any named table inet `table`, or events were lost
    /// (then anything may have changed: so it does too when reading fails).
    public func drain(table: String) -> (generation: UInt32?, concernsTable: Bool) {
        // The shim leaves it alone when no NEWGEN came; the kernel's
        // generation is never 0 (nf_tables_commit skips 0 when it wraps).
        var generation: UInt32 = 0
        var concerns: UInt8 = 0
        var error: Int32 = 0
        let read = ngnft_monitor_drain(monitor, table, &generation, &concerns, &error)
        guard read >= 0 else {
            messagesRead = 0
            return (nil, true)
        }
        messagesRead = Int(read)
        return (generation == 0 ? nil : generation, concerns != 0)
    }
}

/// Turns an errno from the nftables shim into an error an operator can act
/// on; the errno stays in it, typed, for the code that tells one from another.
func nftError(_ code: Int32, doing action: String) -> NodeGuardError {
    let errno = Errno(rawValue: code)
    switch code {
    case EPERM, EACCES:
        return permissionError(action, needs: "CAP_NET_ADMIN", errno: errno)
    case EPROTONOSUPPORT, EAFNOSUPPORT:
        return NodeGuardError(.netfilterUnavailable,
            "\(action): this kernel has no nftables for inet tables (CONFIG_NF_TABLES, CONFIG_NF_TABLES_INET)",
            errno: errno)
    case EAGAIN:
        return NodeGuardError(.netfilterFailure,
            "\(action): the ruleset kept changing while it was read; read again", errno: errno)
    default:
        return NodeGuardError(.netfilterFailure, "\(action): \(errno) (errno \(code))", errno: errno)
    }
}
