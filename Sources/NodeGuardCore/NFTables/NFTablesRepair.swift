/// What brings NodeGuard's nftables table in line with a plan: a pure
/// function from a read of the table (nil: there is none) to the edits of one
/// batch, and the same in words for the log and the audit trail.
///
/// The chains and sets are the same for every deny-list, so a deny-list
/// change, or an element someone removed, is a change of elements only. Any
/// other difference (a chain, rule or set that is not exactly NodeGuard's, or
/// one too many) is repaired by replacing the whole table in the same batch:
/// the kernel applies a batch at once, so no packet sees the table half built.
public enum NFTablesRepair {
    public struct Repair: Sendable, Hashable {
        public var edits: [NFTEdit] = []
        public var changes: [TableChange] = []
        public var isEmpty: Bool { edits.isEmpty }
    }

    public static func repair(_ view: NFTTableView?, to plan: NFTablesPlan, flags: NFTTableFlags) -> Repair {
        guard let view else {
            var repair = build(plan, flags: flags)
            repair.changes = [change(nil, "table", "was missing; created it with \(plan.elementCount) element(s)")]
            return repair
        }
        if let difference = structuralDifference(view, plan) {
            var repair = build(plan, flags: flags)
            repair.edits.insert(.deleteTable, at: 0)
            repair.changes = [change(nil, "table", "\(difference); replaced the table (its counters restart)")]
            return repair
        }
        var repair = Repair()
        if view.flags != flags || (flags.contains(.owner) && !view.ownedBySocket) {
            repair.edits.append(.addTable(flags: flags))
            repair.changes.append(change(nil, "table", flagsSummary(view, flags)))
        }
        for set in plan.sets {
            let observed = view.sets.first { $0.name == set.name }?.elements.map(\.element) ?? []
            let wanted = plan.elements[set.name] ?? []
            let wantedByKey = Dictionary(wanted.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
            let observedByKey = Dictionary(observed.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
            // An element whose comment changed is replaced: its key is its identity.
            let stale = observed.filter { wantedByKey[$0.key] != $0 }
            let missing = wanted.filter { observedByKey[$0.key] != $0 }
            if !stale.isEmpty { repair.edits.append(.deleteElements(set, stale)) }
            if !missing.isEmpty { repair.edits.append(.addElements(set, missing)) }
            if let summary = elementSummary(removed: stale, added: missing) {
                repair.changes.append(change(set.sourceFamily ?? family(ofDropSet: set), set.name, summary))
            }
        }
        return repair
    }

    /// Removing everything is deleting the table.
    public static func removal(_ view: NFTTableView?) -> Repair {
        guard view != nil else { return Repair() }
        return Repair(edits: [.deleteTable], changes: [change(nil, "table", "deleted it")])
    }

    /// The whole table, for a batch that creates it.
    static func build(_ plan: NFTablesPlan, flags: NFTTableFlags) -> Repair {
        var edits: [NFTEdit] = [.addTable(flags: flags)]
        for set in plan.sets {
            edits.append(.addSet(set))
            if let elements = plan.elements[set.name], !elements.isEmpty { edits.append(.addElements(set, elements)) }
        }
        for chain in plan.chains {
            var empty = chain
            empty.rules = []
            edits.append(.addChain(empty))
            edits += chain.rules.map { .addRule(chain: chain.name, $0) }
        }
        return Repair(edits: edits)
    }

    /// Why the table's chains or sets are not the plan's, or nil when they are.
    static func structuralDifference(_ view: NFTTableView, _ plan: NFTablesPlan) -> String? {
        for set in plan.sets {
            guard let observed = view.sets.first(where: { $0.name == set.name }) else { return "set \(set.name) was missing" }
            if observed.set != set { return "set \(set.name) was not NodeGuard's (another key, flags or expression)" }
        }
        if let extra = view.sets.first(where: { observed in !plan.sets.contains { $0.name == observed.name } }) {
            return "set \(extra.name) is not NodeGuard's"
        }
        for chain in plan.chains {
            guard let observed = view.chains.first(where: { $0.name == chain.name }) else { return "chain \(chain.name) was missing" }
            if observed.hook != chain.hook || (chain.hook != nil && (observed.priority != chain.priority
                || observed.type != "filter" || !observed.policyAccepts)) {
                return "chain \(chain.name) was not hooked as NodeGuard hooks it"
            }
            if observed.rules.map(\.rule) != chain.rules.map(Optional.some) {
                return "chain \(chain.name) " + ruleDifference(observed.rules, chain.rules)
            }
        }
        if let extra = view.chains.first(where: { observed in !plan.chains.contains { $0.name == observed.name } }) {
            return "chain \(extra.name) is not NodeGuard's"
        }
        return nil
    }

    private static func ruleDifference(_ observed: [NFTObservedRule], _ wanted: [NFTRule]) -> String {
        if observed.count != wanted.count { return "held \(observed.count) rule(s), not \(wanted.count)" }
        let index = observed.indices.first { observed[$0].rule != wanted[$0] } ?? 0
        return "rule \(index + 1) ('\(observed[index].comment)') was edited"
    }

    private static func flagsSummary(_ view: NFTTableView, _ flags: NFTTableFlags) -> String {
        if flags.contains(.owner) && !view.ownedBySocket {
            return view.hasOwner ? "held by another process; took it over" : "had no owner; took ownership"
        }
        return "flags were \(view.flags.rawValue), not \(flags.rawValue); set them"
    }

    private static func elementSummary(removed: [NFTElement], added: [NFTElement]) -> String? {
        func named(_ elements: [NFTElement]) -> String {
            let first = elements.prefix(3).map(describe).joined(separator: ", ")
            return elements.count > 3 ? "\(first) and \(elements.count - 3) more" : first
        }
        var parts: [String] = []
        if !removed.isEmpty { parts.append("removed \(removed.count) element(s) (\(named(removed)))") }
        if !added.isEmpty { parts.append("added \(added.count) element(s) (\(named(added)))") }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    static func describe(_ element: NFTElement) -> String {
        let ports = element.ports.count == 1 ? "\(element.ports.lowerBound)" : "\(element.ports.lowerBound)-\(element.ports.upperBound)"
        let key = "\(ports)/\(element.transport.rawValue)"
        return element.source.map { "\($0) to \(key)" } ?? key
    }

    /// The family a drop set serves (its key has no source to say it).
    static func family(ofDropSet set: NFTSet) -> AddressFamily? {
        AddressFamily.allCases.first { NFTablesPlanner.dropSet($0).name == set.name }
    }

    static func change(_ family: AddressFamily?, _ object: String, _ what: String) -> TableChange {
        TableChange(family: family, table: NFTablesPlanner.table, chain: object, what: what)
    }
}

extension NFTablesPlan {
    var elementCount: Int { elements.values.reduce(0) { $0 + $1.count } }
}
