/// Names the foreign rules that displace NodeGuard's jump as
/// `iptables-legacy-save` writes them, so an operator can find them; the
/// decoder alone can say little of matches NodeGuard does not write. Read
/// after the repair's commit, once per rule (by identity), never on a
/// repair's path.
struct CulpritNames {
    /// Names remembered at once; a flood of one-off rules starts it afresh.
    static let limit = 256
    private var names: [UInt64: String] = [:]

    /// The displacements of `changes`, each culprit named. Reads each table
    /// the save tool is needed for at most once.
    mutating func displacements(in changes: [TableChange]) -> [FightTracker.Displacement] {
        var saved: [ChangeWatch.Table: [String: [String]]?] = [:]
        return changes.compactMap { change in
            guard let rule = change.displacedBy.first else { return nil }
            if names[rule.identity] == nil {
                let table = ChangeWatch.Table(name: change.table, family: change.family)
                if saved[table] == nil { saved[table] = SavedRules.read(change.table, change.family) }
                let text = SavedRules.text(saved[table] ?? nil, chain: change.chain, index: rule.index, fallback: rule.description)
                if names.count >= Self.limit { names = [:] }
                // The save is read after the commit: a rule that moved since
                // (its target differs) is named as decoded instead.
                let target = rule.description.split(separator: " ").last.map { " " + $0 } ?? ""
                names[rule.identity] = text.hasSuffix(target) ? text : rule.description
            }
            return FightTracker.Displacement(site: change.site, identity: rule.identity, culprit: names[rule.identity] ?? rule.description)
        }
    }
}
