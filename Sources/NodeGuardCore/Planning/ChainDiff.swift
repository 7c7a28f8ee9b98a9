/// One edit of a chain, by 0-based position at the time it is applied.
public enum ChainEdit: Sendable, Hashable {
    case delete(index: Int)
    case insert(index: Int, rule: RuleSpec)
}

/// Computes the fewest practical edits that turn what is in the kernel into
/// what is wanted. Rules already right are left alone, so their counters survive.
public enum ChainDiff {
    /// Edits for a chain NodeGuard owns: the longest run of rules already in
    /// the right order stays (an LCS), everything else is deleted, and the
    /// missing rules are inserted where they belong.
    public static func edits(actual: [ObservedRule], desired: [RuleSpec]) -> [ChainEdit] {
        // Nearly every chain is as planned: no table of subsequences for those
        // (with 2,768 ports a repair compares some 200 chains to fix one).
        if actual.count == desired.count && actual.indices.allSatisfy({ actual[$0].spec == desired[$0] }) { return [] }
        let current = actual.map(\.spec)
        let (keepActual, keepDesired) = longestCommonSubsequence(current, desired)
        // Delete from the end so earlier indices stay valid; then insert in
        // ascending order, each at its final position.
        let deletions = current.indices.reversed().filter { !keepActual[$0] }.map { ChainEdit.delete(index: $0) }
        let insertions = desired.indices.filter { !keepDesired[$0] }.map { ChainEdit.insert(index: $0, rule: desired[$0]) }
        return deletions + insertions
    }

    /// Which elements of `a` and `b` form a longest common subsequence. A foreign
    /// rule (nil) never matches.
    static func longestCommonSubsequence(_ a: [RuleSpec?], _ b: [RuleSpec]) -> (a: [Bool], b: [Bool]) {
        let n = a.count, m = b.count
        // lengths[i * (m + 1) + j]: LCS length of a[i...] and b[j...].
        var lengths = [Int](repeating: 0, count: (n + 1) * (m + 1))
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                lengths[i * (m + 1) + j] = a[i] == b[j]
                    ? lengths[(i + 1) * (m + 1) + j + 1] + 1
                    : max(lengths[(i + 1) * (m + 1) + j], lengths[i * (m + 1) + j + 1])
            }
        }
        var inA = [Bool](repeating: false, count: n), inB = [Bool](repeating: false, count: m)
        var i = 0, j = 0
        while i < n && j < m {
            if a[i] == b[j] {
                inA[i] = true
                inB[j] = true
                i += 1
                j += 1
            } else if lengths[(i + 1) * (m + 1) + j] >= lengths[i * (m + 1) + j + 1] {
                i += 1
            } else {
                j += 1
            }
        }
        return (inA, inB)
    }

    /// Edits for a built-in hook chain that NodeGuard shares with others: its
    /// jump must appear once, above every rule that `mayLetThrough` says could
    /// let a blocked packet leave the chain first (by default any rule: rule 1);
    /// foreign rules are never touched. With `mustBeFirst` false (backing off
    /// from a fight) the jump may stay where it is; a missing one is appended,
    /// below the other agent's rules.
    public static func hookEdits(actual: [ObservedRule], hookRule: RuleSpec, mustBeFirst: Bool = true,
                                 mayLetThrough: (ObservedRule) -> Bool = { _ in true }) -> [ChainEdit] {
        let mine = actual.indices.filter { RulePlanner.isNodeGuardChain(actual[$0].target) }
        if let first = mine.first, actual[first].spec == hookRule,
           !mustBeFirst || !actual[0..<first].contains(where: mayLetThrough) {
            return mine.dropFirst().reversed().map { .delete(index: $0) }   // only stray duplicates
        }
        let position = mustBeFirst ? 0 : (mine.first ?? actual.count)
        return mine.reversed().map { .delete(index: $0) } + [.insert(index: position, rule: hookRule)]
    }
}
