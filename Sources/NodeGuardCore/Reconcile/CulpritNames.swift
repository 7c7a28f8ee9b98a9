/// Names the foreign rules that displace NodeGuard's jump as
/// `iptables-legacy-save` writes them, so an operator can find them; the
/// decoder alone can say little of matches NodeGuard does not write. The
/// save tool runs only when a fight starts (a one-off displacement is named
/// as decoded), after the repair's commit, once per rule (by identity):
/// never on a repair's path.
struct CulpritNames {
    /// Names remembered at once; a flood of fights starts it afresh.
    static let limit = 256
    private var names: [UInt64: String] = [:]

    /// The displacements of `changes`, each culprit named as well as is
    /// known so far.
    func displacements(in changes: [TableChange]) -> [FightTracker.Displacement] {
        changes.compactMap { change in
            guard let site = change.site, let rule = change.displacedBy.first else { return nil }
            return FightTracker.Displacement(site: site, identity: rule.identity, culprit: names[rule.identity] ?? rule.description)
        }
    }

    /// `displacement`'s culprit as the backend's save tool writes it, read
    /// from the table `changes` just left (where the rule's position is known).
    mutating func name(_ displacement: FightTracker.Displacement, in changes: [TableChange],
                       backend: any NetfilterBackend) -> String {
        if let known = names[displacement.identity] { return known }
        guard let change = changes.first(where: { $0.site == displacement.site }), let family = change.family,
              let rule = change.displacedBy.first(where: { $0.identity == displacement.identity }) else { return displacement.culprit }
        let saved = backend.savedRules(change.table, family)
        let text = SavedRules.text(saved, chain: change.chain, index: rule.index, fallback: rule.description)
        // The save is read after the commit: a rule that moved since (its
        // target differs) is named as decoded instead.
        let target = rule.description.split(separator: " ").last.map { " " + $0 } ?? ""
        if names.count >= Self.limit { names = [:] }
        names[rule.identity] = text.hasSuffix(target) ? text : rule.description
        return names[rule.identity] ?? rule.description
    }
}
