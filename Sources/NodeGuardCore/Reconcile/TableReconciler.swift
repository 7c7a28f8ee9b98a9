/// Something NodeGuard found different from the plan and changed, in words
/// for the log: on start-up that is creating its rules, later it is a repair.
public struct TableChange: Sendable, Hashable, CustomStringConvertible {
    public var family: AddressFamily
    public var table = "mangle"
    public var chain: String
    public var what: String
    /// For a hook chain whose jump was pushed down: the foreign rules that
    /// stood above it, rule 1 first, as iptables-save prints them.
    public var foreignAbove: [String] = []
    public var description: String { "\(family.rawValue) \(table) \(chain): \(what)" }
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
    public var dropCounters: [PortKey: DropCounters]
}

/// Brings one open table snapshot in line with a plan. Foreign chains and
/// rules are never touched, except foreign rules put inside NodeGuard's chains.
public enum TableReconciler {
    /// With `hookMustBeFirst` false, NodeGuard's jump may stay below other
    /// rules (see `ChainDiff.hookEdits`).
    public static func reconcile(_ table: any TableSnapshot, to plan: TablePlan,
                                 hookMustBeFirst: Bool = true) throws(NodeGuardError) -> [TableChange] {
        var changes: [TableChange] = []
        func note(_ chain: String, _ what: String, foreignAbove: [String] = []) {
            changes.append(TableChange(family: plan.family, table: plan.table, chain: chain, what: what, foreignAbove: foreignAbove))
        }
        let existing = Set(table.chainNames())
        // Chains first, so every jump has a target when it is inserted.
        for chain in plan.chains where !existing.contains(chain.name) {
            try table.createChain(chain.name)
            note(chain.name, "chain was missing; created it")
        }
        for chain in plan.chains {
            let actual = try table.rules(in: chain.name)
            let edits = ChainDiff.edits(actual: actual, desired: chain.rules)
            if edits.isEmpty { continue }
            try apply(edits, to: table, chain: chain.name)
            note(chain.name, summary(of: edits, actual: actual))
        }
        for hook in TablePlan.hookChains {
            let actual = try table.rules(in: hook)
            let edits = ChainDiff.hookEdits(actual: actual, hookRule: plan.hookRule, mustBeFirst: hookMustBeFirst)
            if edits.isEmpty { continue }
            try apply(edits, to: table, chain: hook)
            let firstMine = actual.firstIndex { RulePlanner.isNodeGuardChain($0.target) } ?? 0
            note(hook, hookSummary(actual: actual, hookRule: plan.hookRule, mustBeFirst: hookMustBeFirst),
                 foreignAbove: actual[0..<firstMine].map(\.description))
        }
        let wanted = Set(plan.chains.map(\.name))
        let stale = existing.filter { RulePlanner.isNodeGuardChain($0) && !wanted.contains($0) }.sorted()
        // Flush all before deleting any: stale chains may jump to each other.
        for name in stale { try table.flushChain(name) }
        for name in stale {
            try table.deleteChain(name)
            note(name, "chain no longer needed; deleted it")
        }
        return changes
    }

    /// Removes every NodeGuard jump and chain (for uninstalling, and to lift the raw hold).
    public static func removeAll(_ table: any TableSnapshot, tableName: String = "mangle") throws(NodeGuardError) -> [TableChange] {
        var changes: [TableChange] = []
        let names = table.chainNames()
        for hook in TablePlan.hookChains where names.contains(hook) {
            let actual = try table.rules(in: hook)
            for index in actual.indices.reversed() where RulePlanner.isNodeGuardChain(actual[index].target) {
                try table.deleteRule(in: hook, at: index)
                changes.append(TableChange(family: table.family, table: tableName, chain: hook, what: "deleted NodeGuard's jump (rule \(index + 1))"))
            }
        }
        let mine = names.filter(RulePlanner.isNodeGuardChain)
        for name in mine { try table.flushChain(name) }
        for name in mine {
            try table.deleteChain(name)
            changes.append(TableChange(family: table.family, table: tableName, chain: name, what: "deleted chain"))
        }
        return changes
    }

    public static func inspect(_ table: any TableSnapshot) throws(NodeGuardError) -> TableInspection {
        var hookFirst: [String: Bool] = [:]
        for hook in TablePlan.hookChains {
            let rules = try table.rules(in: hook)
            hookFirst[hook] = rules.first?.spec == RulePlanner.hookRule
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
        return TableInspection(family: table.family, hookFirst: hookFirst, dropCounters: counters)
    }

    private static func apply(_ edits: [ChainEdit], to table: any TableSnapshot, chain: String) throws(NodeGuardError) {
        for edit in edits {
            switch edit {
            case .delete(let index): try table.deleteRule(in: chain, at: index)
            case .insert(let index, let rule): try table.insertRule(rule, in: chain, at: index)
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

    private static func hookSummary(actual: [ObservedRule], hookRule: RuleSpec, mustBeFirst: Bool) -> String {
        let mine = actual.indices.filter { RulePlanner.isNodeGuardChain(actual[$0].target) }
        guard let first = mine.first else {
            return "NodeGuard's jump was missing; inserted it as " + (mustBeFirst ? "rule 1" : "the last rule (backing off)")
        }
        if first > 0 {
            let above = actual[0..<first].map { "'\($0)'" }.joined(separator: ", ")
            return "NodeGuard's jump was rule \(first + 1), below \(above); moved it back to rule 1"
        }
        if actual[first].spec != hookRule { return "NodeGuard's jump was edited ('\(actual[first])'); restored it" }
        return "NodeGuard's jump appeared \(mine.count) times; kept one as rule 1"
    }
}
