/// One edit of a chain, by 0-based position at the time it is applied.
public enum ChainEdit: Sendable, Hashable {
    case delete(index: Int)
    case insert(index: Int, rule: RuleSpec)
}

/// Computes the fewest practical edits that turn what is in the kernel into
/// what is wanted. Rules already right are left alone, so their counters survive.
public enum ChainDiff {
    /// Edits for a chain NodeGuard owns: the longest run of rules already in
    /// the right order stays (a longest common subsequence), everything else
    /// is deleted, and the missing rules are inserted where they belong.
    ///
    /// The output: deletions first, from the last rule up (so each index is
    /// valid when applied), then insertions in ascending order, each at its
    /// final position. Rules that stay are never touched, so their counters
    /// survive; of two copies of a wanted rule, the first stays.
    ///
    /// Cost: O((n + m) log n) time and O(n + m) memory for n actual and m
    /// desired rules, because NodeGuard's desired rules within a chain are
    /// distinct (RulePlannerTests). The quadratic table this replaces held the
    /// xtables lock for seconds on a chain of 4,000 rules (issue 14).
    public static func edits(actual: [ObservedRule], desired: [RuleSpec]) -> [ChainEdit] {
        // Nearly every chain is as planned: nothing to build for those
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

    /// Which elements of `a` and `b` form a longest common subsequence. A
    /// foreign rule (nil) never matches.
    ///
    /// Each element of `a` is replaced by the positions in `b` that hold the
    /// same rule; a common subsequence is then a run of those positions that
    /// strictly increases along `a`, and the longest is found by patience
    /// sorting (Hunt-Szymanski): `tails[k]` ends the best run of length k + 1
    /// found so far, the one with the smallest position in `b`. An element's
    /// positions are tried from the last down, so one element never extends a
    /// run with itself. Work: O((n + r) log n) for r matching pairs; r <= n
    /// when `b` holds distinct rules, as NodeGuard's plans do, and wanted
    /// duplicates are still handled exactly.
    static func longestCommonSubsequence(_ a: [RuleSpec?], _ b: [RuleSpec]) -> (a: [Bool], b: [Bool]) {
        var positions: [RuleSpec: [Int]] = [:]
        positions.reserveCapacity(b.count)
        for (j, rule) in b.enumerated() { positions[rule, default: []].append(j) }

        // A run's last step: a[i] kept as b[j], after the run ending at `previous` (-1: none).
        struct Step { var i: Int, j: Int, previous: Int }
        var steps: [Step] = []
        var tails: [Int] = []        // index into steps
        for (i, rule) in a.enumerated() {
            guard let rule, let matches = positions[rule] else { continue }
            for j in matches.reversed() {
                // The first run whose last position is not below j.
                var low = 0, high = tails.count
                while low < high {
                    let middle = (low + high) / 2
                    if steps[tails[middle]].j < j { low = middle + 1 } else { high = middle }
                }
                // A run of that length already ends at j with an earlier rule
                // of `a`: keep it, so the first of two copies is the one kept.
                if low < tails.count && steps[tails[low]].j == j { continue }
                steps.append(Step(i: i, j: j, previous: low > 0 ? tails[low - 1] : -1))
                if low == tails.count { tails.append(steps.count - 1) } else { tails[low] = steps.count - 1 }
            }
        }
        var inA = [Bool](repeating: false, count: a.count), inB = [Bool](repeating: false, count: b.count)
        var step = tails.last ?? -1
        while step >= 0 {
            inA[steps[step].i] = true
            inB[steps[step].j] = true
            step = steps[step].previous
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
