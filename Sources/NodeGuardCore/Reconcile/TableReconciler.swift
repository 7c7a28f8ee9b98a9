/// Something NodeGuard found different from the plan and changed, in words
/// for the log: on start-up that is creating its rules, later it is a repair.
public struct TableChange: Sendable, Hashable, CustomStringConvertible {
    /// nil for a change to nftables' inet table as a whole (both families).
    public var family: AddressFamily?
    public var table = "mangle"
    /// The chain, or for nftables also a set or "table".
    public var chain: String
    public var what: String
    /// For a hook chain whose jump was pushed down: the foreign rules above
    /// it that could let a blocked packet through (`BypassCheck`), the
    /// highest first, at most `DisplacingRule.reportLimit` of them.
    public var displacedBy: [DisplacingRule] = []
    public var description: String { "\(familyName) \(table) \(chain): \(what)" }
    /// "ipv4", "ipv6", or "inet" for both.
    public var familyName: String { family?.rawValue ?? "inet" }
    /// The hook chain a legacy change is in (nil for nftables' whole table).
    public var site: HookSite? { family.map { HookSite(table: table, family: $0, chain: chain) } }
}

/// A hook chain NodeGuard jumps from: "ipv4 mangle PREROUTING".
public struct HookSite: Sendable, Hashable, CustomStringConvertible {
    public var table: String
    public var family: AddressFamily
    public var chain: String
    public init(table: String, family: AddressFamily, chain: String) {
        self.table = table
        self.family = family
        self.chain = chain
    }
    public var description: String { "\(family.rawValue) \(table) \(chain)" }
}

/// A foreign rule found above NodeGuard's jump that could let a blocked
/// packet through.
public struct DisplacingRule: Sendable, Hashable {
    /// At most this many are kept and named per repair: a bulk insert of
    /// thousands of rules is summarised, not copied into every log line.
    public static let reportLimit = 3
    /// `ObservedRule.identity`: the same rule, however often it is re-inserted.
    public var identity: UInt64
    /// What NodeGuard's decoder can say of it (see `SavedRules` for the full text).
    public var description: String
    /// Its 0-based position in the chain after the repair.
    public var index: Int
}

/// Drop counters of one blocked port in one family.
public struct DropCounters: Sendable, Hashable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    public init(packets: UInt64 = 0, bytes: UInt64 = 0) {
        self.packets = packets
        self.bytes = bytes
    }
    public static func + (a: Self, b: Self) -> Self { Self(packets: a.packets + b.packets, bytes: a.bytes + b.bytes) }
}

/// What a read of one family's table shows, for `status`.
public struct TableInspection: Sendable, Hashable {
    public var family: AddressFamily
    /// Per hook chain: is NodeGuard's jump rule 1?
    public var hookFirst: [String: Bool]
    /// Per hook chain: is the jump there, with no rule above it that could let
    /// a blocked packet through (`BypassCheck`)? What health means.
    public var hookEffective: [String: Bool]
    public var dropCounters: [PortKey: DropCounters]

    public init(family: AddressFamily, hookFirst: [String: Bool], hookEffective: [String: Bool]? = nil,
                dropCounters: [PortKey: DropCounters]) {
        self.family = family
        self.hookFirst = hookFirst
        self.hookEffective = hookEffective ?? hookFirst
        self.dropCounters = dropCounters
    }
}

/// Plans what brings one table in line with a plan: a pure function from a
/// view of the table to the edits (and their description); the backend's
/// transaction applies them. Foreign chains and rules are never touched,
/// except foreign rules put inside NodeGuard's chains.
public enum TableReconciler {
    /// In the hook chains named in `yielding` (backing off from a fight),
    /// NodeGuard's jump may stay below other rules (see `ChainDiff.hookEdits`);
    /// elsewhere it must stand above every rule that could let a blocked packet
    /// through, and may stay below rules that cannot.
    public static func repair(_ table: any TableView, to plan: TablePlan,
                              yielding: Set<String> = []) throws(NodeGuardError) -> TableRepair {
        var repair = TableRepair()
        func note(_ chain: String, _ what: String, displacedBy: [DisplacingRule] = []) {
            repair.changes.append(TableChange(family: plan.family, table: plan.table, chain: chain, what: what, displacedBy: displacedBy))
        }
        let existing = Set(table.chainNames())
        // Chains first, so every jump has a target when it is inserted.
        for chain in plan.chains where !existing.contains(chain.name) {
            repair.edits.append(.createChain(chain.name))
            note(chain.name, "chain was missing; created it")
        }
        for chain in plan.chains {
            let actual = existing.contains(chain.name) ? try table.rules(in: chain.name) : []
            let edits = ChainDiff.edits(actual: actual, desired: chain.rules)
            if edits.isEmpty { continue }
            repair.edits += tableEdits(edits, chain: chain.name)
            note(chain.name, summary(of: edits, actual: actual))
        }
        let bypass = BypassCheck(plan)
        for hook in TablePlan.hookChains {
            let actual = try hookRules(table, hook)
            let mustBeFirst = !yielding.contains(hook)
            let edits = ChainDiff.hookEdits(actual: actual, hookRule: plan.hookRule, mustBeFirst: mustBeFirst,
                                            mayLetThrough: bypass.mayLetThrough)
            if edits.isEmpty { continue }
            repair.edits += tableEdits(edits, chain: hook)
            let firstMine = actual.firstIndex { RulePlanner.isNodeGuardChain($0.target) } ?? actual.count
            // Inserting the jump as rule 1 moves every rule above it down one.
            let shift = edits.contains { if case .insert(0, _) = $0 { return true } else { return false } } ? 1 : 0
            let displacing = actual[0..<firstMine].indices.lazy.filter { bypass.mayLetThrough(actual[$0]) }
                .prefix(DisplacingRule.reportLimit)
                .map { DisplacingRule(identity: actual[$0].identity, description: actual[$0].description, index: $0 + shift) }
            note(hook, hookSummary(actual: actual, hookRule: plan.hookRule, mustBeFirst: mustBeFirst, bypass: bypass),
                 displacedBy: Array(displacing))
        }
        let wanted = Set(plan.chains.map(\.name))
        let stale = existing.filter { RulePlanner.isNodeGuardChain($0) && !wanted.contains($0) }.sorted()
        // Flush all before deleting any: stale chains may jump to each other.
        repair.edits += stale.map { .flushChain($0) }
        for name in stale {
            repair.edits.append(.deleteChain(name))
            note(name, "chain no longer needed; deleted it")
        }
        return repair
    }

    /// The head of a hook chain down to NodeGuard's jump: its first
    /// `hookHead` rules, or all of them when the jump is not among those.
    /// Another program's thousands of rules further down are not decoded on
    /// every repair; a stray second jump down there is harmless (its packets
    /// already passed NodeGuard's drops) and is left alone.
    static func hookRules(_ table: any TableView, _ hook: String) throws(NodeGuardError) -> [ObservedRule] {
        let head = try table.rules(in: hook, limit: hookHead)
        if head.count < hookHead || head.contains(where: { RulePlanner.isNodeGuardChain($0.target) }) { return head }
        return try table.rules(in: hook)
    }

    static let hookHead = 64

    /// Every NodeGuard jump and chain removed (for uninstalling, and to lift the raw hold).
    public static func removal(_ table: any TableView, tableName: String = "mangle") throws(NodeGuardError) -> TableRepair {
        var repair = TableRepair()
        let names = table.chainNames()
        for hook in TablePlan.hookChains where names.contains(hook) {
            let actual = try table.rules(in: hook)
            for index in actual.indices.reversed() where RulePlanner.isNodeGuardChain(actual[index].target) {
                repair.edits.append(.deleteRule(chain: hook, index: index))
                repair.changes.append(TableChange(family: table.family, table: tableName, chain: hook, what: "deleted NodeGuard's jump (rule \(index + 1))"))
            }
        }
        let mine = names.filter(RulePlanner.isNodeGuardChain)
        repair.edits += mine.map { .flushChain($0) }
        for name in mine {
            repair.edits.append(.deleteChain(name))
            repair.changes.append(TableChange(family: table.family, table: tableName, chain: name, what: "deleted chain"))
        }
        return repair
    }

    public static func inspect(_ table: any TableView, bypass: BypassCheck) throws(NodeGuardError) -> TableInspection {
        var hookFirst: [String: Bool] = [:]
        var hookEffective: [String: Bool] = [:]
        for hook in TablePlan.hookChains {
            let rules = try hookRules(table, hook)
            hookFirst[hook] = rules.first?.spec == RulePlanner.hookRule
            let jump = rules.firstIndex { $0.spec == RulePlanner.hookRule }
            hookEffective[hook] = jump.map { !rules[0..<$0].contains(where: bypass.mayLetThrough) } ?? false
        }
        var counters: [PortKey: DropCounters] = [:]
        for chain in table.chainNames() where RulePlanner.isNodeGuardChain(chain) {
            for rule in try table.rules(in: chain) {
                guard let spec = rule.spec, spec.target == "DROP", let transport = spec.transport,
                      let ports = spec.destinationPorts, ports.count == 1 else { continue }
                let key = PortKey(port: ports.lowerBound, transport: transport)
                counters[key, default: DropCounters()] = counters[key, default: DropCounters()]
                    + DropCounters(packets: rule.packets, bytes: rule.bytes)
            }
        }
        return TableInspection(family: table.family, hookFirst: hookFirst, hookEffective: hookEffective, dropCounters: counters)
    }

    private static func tableEdits(_ edits: [ChainEdit], chain: String) -> [TableEdit] {
        edits.map { edit in
            switch edit {
            case .delete(let index): .deleteRule(chain: chain, index: index)
            case .insert(let index, let rule): .insertRule(rule, chain: chain, index: index)
            }
        }
    }

    private static func summary(of edits: [ChainEdit], actual: [ObservedRule]) -> String {
        var removed: [String] = []
        var deletedIndices: [Int] = []
        var added = 0
        for edit in edits {
            switch edit {
            case .delete(let index): deletedIndices.append(index)
            case .insert: added += 1
            }
        }
        // Deletions of unknown rules come first and from the end, so their
        // indices refer to `actual` directly.
        for index in deletedIndices.prefix(3) where index < actual.count {
            removed.append("rule \(index + 1) '\(actual[index])'")
        }
        var parts: [String] = []
        if !deletedIndices.isEmpty {
            parts.append("removed \(deletedIndices.count) rule(s)" + (removed.isEmpty ? "" : " (\(removed.joined(separator: ", ")))"))
        }
        if added > 0 { parts.append("added \(added) rule(s)") }
        if actual.isEmpty && added > 0 { parts.insert("chain was empty", at: 0) }
        return parts.joined(separator: "; ")
    }

    private static func hookSummary(actual: [ObservedRule], hookRule: RuleSpec, mustBeFirst: Bool, bypass: BypassCheck) -> String {
        let mine = actual.indices.filter { RulePlanner.isNodeGuardChain(actual[$0].target) }
        guard let first = mine.first else {
            return "NodeGuard's jump was missing; inserted it as " + (mustBeFirst ? "rule 1" : "the last rule (backing off)")
        }
        if first > 0 && mustBeFirst && actual[0..<first].contains(where: bypass.mayLetThrough) {
            // Named, but never all of them: thousands of rules may stand above.
            let risky = actual[0..<first].filter(bypass.mayLetThrough)
            let named = risky.prefix(DisplacingRule.reportLimit).map { "'\($0)'" }.joined(separator: ", ")
            let more = risky.count > DisplacingRule.reportLimit ? " and \(risky.count - DisplacingRule.reportLimit) more" : ""
            return "NodeGuard's jump was rule \(first + 1), below \(named)\(more); moved it back to rule 1"
        }
        if actual[first].spec != hookRule { return "NodeGuard's jump was edited ('\(actual[first])'); restored it" }
        return "NodeGuard's jump appeared \(mine.count) times; kept one"
    }
}
