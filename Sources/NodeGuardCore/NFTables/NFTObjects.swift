/// The objects of NodeGuard's nftables table as Swift values: what the
/// planner wants and what a read of the kernel found, in the vocabulary of
/// the C shim (`CNodeGuardNFT.h`). No netlink here.

/// A set keyed by `[source address .] l4proto . port`, each element a range.
public struct NFTSet: Sendable, Hashable {
    public var name: String
    /// The family of the source address at the head of the key, or nil for
    /// a key of protocol and port only.
    public var sourceFamily: AddressFamily?
    /// A packet and byte counter on every element.
    public var counters: Bool
    public var comment: String
    public init(name: String, sourceFamily: AddressFamily? = nil, counters: Bool = false, comment: String = "") {
        self.name = name
        self.sourceFamily = sourceFamily
        self.counters = counters
        self.comment = comment
    }
}

/// One element: a source prefix (when the set's key has one), a protocol and
/// a range of ports.
public struct NFTElement: Sendable, Hashable {
    public var source: CIDR?
    public var transport: TransportProtocol
    public var ports: ClosedRange<UInt16>
    public var comment: String
    public init(source: CIDR? = nil, transport: TransportProtocol, ports: ClosedRange<UInt16>, comment: String = "") {
        self.source = source
        self.transport = transport
        self.ports = ports
        self.comment = comment
    }
    /// What identifies the element in its set (the comment does not).
    public var key: Key { Key(source: source, transport: transport, ports: ports) }
    public struct Key: Sendable, Hashable {
        public var source: CIDR?
        public var transport: TransportProtocol
        public var ports: ClosedRange<UInt16>
    }
}

public enum NFTHook: String, Sendable, Hashable, CaseIterable {
    case prerouting, output
}

public struct NFTChain: Sendable, Hashable {
    public var name: String
    /// Base chains only: the hook and the priority (type filter, policy accept).
    public var hook: NFTHook?
    public var priority: Int32
    public var rules: [NFTRule]
    public init(name: String, hook: NFTHook? = nil, priority: Int32 = 0, rules: [NFTRule] = []) {
        self.name = name
        self.hook = hook
        self.priority = priority
        self.rules = rules
    }
}

public enum NFTVerdict: Sendable, Hashable {
    case accept, drop, `return`
    case jump(String)
}

/// One rule, its matches in this order: `fib daddr type local`, `ct direction
/// reply`, `meta nfproto`, a lookup of `[saddr .] l4proto . th dport` in a set;
/// then the verdict. The comment says what it is.
public struct NFTRule: Sendable, Hashable {
    public var matchLocalDestination = false
    public var matchReply = false
    public var family: AddressFamily?
    /// The set looked up, and its key's source family (the key's layout).
    public var lookup: String?
    public var lookupSourceFamily: AddressFamily?
    public var verdict: NFTVerdict
    public var comment: String
    public init(matchLocalDestination: Bool = false, matchReply: Bool = false, family: AddressFamily? = nil,
                lookup: String? = nil, lookupSourceFamily: AddressFamily? = nil,
                verdict: NFTVerdict, comment: String) {
        self.matchLocalDestination = matchLocalDestination
        self.matchReply = matchReply
        self.family = family
        self.lookup = lookup
        self.lookupSourceFamily = lookupSourceFamily
        self.verdict = verdict
        self.comment = comment
    }
}

/// A rule as read back: decoded when it is one NodeGuard could have written
/// (`rule` non-nil), otherwise only its comment is known.
public struct NFTObservedRule: Sendable, Hashable {
    public var rule: NFTRule?
    public var comment: String
    public var handle: UInt64
    public init(rule: NFTRule?, comment: String, handle: UInt64) {
        self.rule = rule
        self.comment = comment
        self.handle = handle
    }
}

public struct NFTObservedChain: Sendable, Hashable {
    public var name: String
    public var hook: NFTHook?
    public var priority: Int32
    /// Base chains: "filter", "nat", "route"; and the policy accepts.
    public var type: String
    public var policyAccepts: Bool
    public var rules: [NFTObservedRule]
    /// A base chain's hook as the kernel numbers it (NF_INET_*), also for the
    /// hooks `hook` cannot name (input, forward, ...); nil for a regular chain.
    public var hookNumber: Int32?
    public init(name: String, hook: NFTHook?, priority: Int32, type: String = "filter",
                policyAccepts: Bool = true, rules: [NFTObservedRule], hookNumber: Int32? = nil) {
        self.name = name
        self.hook = hook
        self.priority = priority
        self.type = type
        self.policyAccepts = policyAccepts
        self.rules = rules
        self.hookNumber = hookNumber ?? hook.map { $0 == .prerouting ? 0 : 3 }
    }
}

/// An element as read back, with its counters (zero where the set has none).
public struct NFTObservedElement: Sendable, Hashable {
    public var element: NFTElement
    public var packets: UInt64
    public var bytes: UInt64
    public init(element: NFTElement, packets: UInt64 = 0, bytes: UInt64 = 0) {
        self.element = element
        self.packets = packets
        self.bytes = bytes
    }
}

public struct NFTObservedSet: Sendable, Hashable {
    /// nil when the set's key, flags or expressions are not NodeGuard's.
    public var set: NFTSet?
    public var name: String
    public var elements: [NFTObservedElement]
    public init(set: NFTSet?, name: String, elements: [NFTObservedElement]) {
        self.set = set
        self.name = name
        self.elements = elements
    }
}

/// NodeGuard's table as one read found it.
public struct NFTTableView: Sendable, Hashable {
    public var flags: NFTTableFlags
    /// The table has an owner, and it is the socket the view was read through.
    public var ownedBySocket: Bool
    /// The table has an owner (any socket).
    public var hasOwner: Bool
    public var generation: UInt32
    public var chains: [NFTObservedChain]
    public var sets: [NFTObservedSet]
    public init(flags: NFTTableFlags, ownedBySocket: Bool, hasOwner: Bool, generation: UInt32,
                chains: [NFTObservedChain], sets: [NFTObservedSet]) {
        self.flags = flags
        self.ownedBySocket = ownedBySocket
        self.hasOwner = hasOwner
        self.generation = generation
        self.chains = chains
        self.sets = sets
    }
}

public struct NFTTableFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let dormant = NFTTableFlags(rawValue: 0x1)
    public static let owner = NFTTableFlags(rawValue: 0x2)
    public static let persist = NFTTableFlags(rawValue: 0x4)
}

/// What the kernel keeps of names and comments (CNodeGuardNFT.h, nft's
/// limits): a longer table, chain or set name is refused, a longer comment
/// is cut by `fitting(comment:)`, so plan with the cut comment or it never
/// reads back equal.
public enum NFTLimits {
    public static let nameBytes = 63
    public static let commentBytes = 127

    /// `comment` cut to at most `commentBytes` bytes of UTF-8, at a character's end.
    public static func fitting(comment: String) -> String {
        comment.cut(toUTF8Bytes: commentBytes)
    }
}

/// One change to the table; a transaction sends a list of them as one batch.
public enum NFTEdit: Sendable, Hashable, CustomStringConvertible {
    case addTable(flags: NFTTableFlags)
    case deleteTable
    case addSet(NFTSet)
    case deleteSet(String)
    case addElements(NFTSet, [NFTElement])
    case deleteElements(NFTSet, [NFTElement])
    /// The chain alone (its hook and priority); its rules are `.addRule` edits.
    case addChain(NFTChain)
    case flushChain(String)
    case deleteChain(String)
    case addRule(chain: String, NFTRule)

    public var description: String {
        switch self {
        case .addTable(let flags): "add table (flags \(flags.rawValue))"
        case .deleteTable: "delete table"
        case .addSet(let set): "add set \(set.name)"
        case .deleteSet(let name): "delete set \(name)"
        case .addElements(let set, let elements): "add \(elements.count) element(s) to \(set.name)"
        case .deleteElements(let set, let elements): "delete \(elements.count) element(s) from \(set.name)"
        case .addChain(let chain): "add chain \(chain.name)"
        case .flushChain(let name): "flush chain \(name)"
        case .deleteChain(let name): "delete chain \(name)"
        case .addRule(let chain, let rule): "add rule to \(chain): \(rule.comment)"
        }
    }
}

/// A foreign or own base chain on prerouting or output, of any table.
public struct NFTHookChain: Sendable, Hashable {
    /// "inet", "ip" or "ip6".
    public var family: String
    public var table: String
    public var chain: String
    public var hook: NFTHook
    public var priority: Int32
    public var type: String
    /// Some rule of it DNATs or redirects.
    public var rewritesDestination: Bool
    public init(family: String, table: String, chain: String, hook: NFTHook, priority: Int32,
                type: String, rewritesDestination: Bool) {
        self.family = family
        self.table = table
        self.chain = chain
        self.hook = hook
        self.priority = priority
        self.type = type
        self.rewritesDestination = rewritesDestination
    }
}
