/// One edit of a chain, by 0-based position at the time it is applied.
public enum ChainEdit: Sendable, Hashable {
    case delete(index: Int)
    case insert(index: Int, rule: RuleSpec)
}

/// Computes the fewest practical edits that turn what is in the kernel into
/// what is wanted. Rules already right are left alone, so their counters survive.
public enum ChainDiff {
    /// Edits for a chain NodeGuard owns: every rule that is not wanted goes,
    /// missing ones are inserted where they belong.
    public static func edits(actual: [ObservedRule], desired: [RuleSpec]) -> [ChainEdit] {
        var remaining: [RuleSpec: Int] = [:]
        for rule in desired { remaining[rule, default: 0] += 1 }
        var current: [RuleSpec?] = actual.map(\.spec)
        var edits: [ChainEdit] = []

        // Keep the first occurrences of wanted rules; delete the rest from the end.
        var keep = [Bool](repeating: false, count: current.count)
        for (i, rule) in current.enumerated() {
            if let rule, let left = remaining[rule], left > 0 {
                keep[i] = true
                remaining[rule] = left - 1
            }
        }
        for i in current.indices.reversed() where !keep[i] {
            edits.append(.delete(index: i))
            current.remove(at: i)
        }
        // What is left is a sub-multiset of `desired`; put it in order.
        for (i, rule) in desired.enumerated() {
            if i < current.count, current[i] == rule { continue }
            if i + 1 < current.count, let j = current[(i + 1)...].firstIndex(of: rule) {
                edits.append(.delete(index: j))
                current.remove(at: j)
            }
            edits.append(.insert(index: i, rule: rule))
            current.insert(rule, at: i)
        }
        return edits
    }

    /// Edits for a built-in hook chain that NodeGuard shares with others: its
    /// jump must be rule 1 and appear once; foreign rules are never touched.
    public static func hookEdits(actual: [ObservedRule], hookRule: RuleSpec) -> [ChainEdit] {
        let mine = actual.indices.filter { RulePlanner.isNodeGuardChain(actual[$0].target) }
        if mine.first == 0, actual[0].spec == hookRule {
            return mine.dropFirst().reversed().map { .delete(index: $0) }   // only stray duplicates
        }
        return mine.reversed().map { .delete(index: $0) } + [.insert(index: 0, rule: hookRule)]
    }
}
