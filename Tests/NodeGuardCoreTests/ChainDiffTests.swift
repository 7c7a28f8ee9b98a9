import XCTest
@testable import NodeGuardCore

/// A model of a kernel chain: each rule has an identity (so we can tell a rule
/// that stayed, with its counters, from one deleted and re-inserted) and a spec
/// (nil for a rule NodeGuard could not have written).
struct ModelRule: Equatable {
    var id: Int
    var spec: RuleSpec?
    var target: String
}

enum ChainModel {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Applies `edits` in order, as the backend does. Inserted rules get fresh ids (negative).
    static func apply(_ edits: [ChainEdit], to chain: [ModelRule]) throws -> [ModelRule] {
        var chain = chain
        var nextID = -1
        for edit in edits {
            switch edit {
            case .delete(let index):
                guard chain.indices.contains(index) else {
                    throw Failure(description: "delete at \(index) in a chain of \(chain.count)")
                }
                chain.remove(at: index)
            case .insert(let index, let rule):
                guard (0...chain.count).contains(index) else {
                    throw Failure(description: "insert at \(index) in a chain of \(chain.count)")
                }
                chain.insert(ModelRule(id: nextID, spec: rule, target: rule.target), at: index)
                nextID -= 1
            }
        }
        return chain
    }

    /// Applies edits to plain specs (the kernel chain as `RuleSpec?`).
    static func apply(_ edits: [ChainEdit], to specs: [RuleSpec?]) throws -> [RuleSpec?] {
        try apply(edits, to: rules(specs)).map(\.spec)
    }

    static func rules(_ specs: [RuleSpec?]) -> [ModelRule] {
        specs.enumerated().map { ModelRule(id: $0.offset, spec: $0.element, target: $0.element?.target ?? "FOREIGN") }
    }

    static func observed(_ specs: [RuleSpec?]) -> [ObservedRule] {
        specs.map { spec in
            if let spec { ObservedRule(spec) } else { ObservedRule(spec: nil, target: "ACCEPT", comment: "someone else's") }
        }
    }
}

final class ChainDiffTests: XCTestCase {
    /// A pool of distinct rules.
    private static let pool: [RuleSpec] = (0..<24).map { (i: Int) -> RuleSpec in
        let port = UInt16(30000 + i)
        let transport: TransportProtocol = i % 3 == 0 ? .udp : .tcp
        let target = i % 5 == 0 ? "RETURN" : "DROP"
        return RuleSpec(transport: transport, destinationPorts: port...port, comment: "NodeGuard: block \(port)", target: target)
    }

    private func rule(_ i: Int) -> RuleSpec { Self.pool[i] }

    /// Runs the diff on `actual`, applies it, checks the result is `desired`, and returns the edits.
    @discardableResult
    private func check(actual: [RuleSpec?], desired: [RuleSpec],
                       file: StaticString = #filePath, line: UInt = #line) -> [ChainEdit] {
        let edits = ChainDiff.edits(actual: ChainModel.observed(actual), desired: desired)
        do {
            let result = try ChainModel.apply(edits, to: actual)
            XCTAssertEqual(result, desired.map { Optional($0) }, "edits \(edits)", file: file, line: line)
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
        return edits
    }

    private func deletes(_ edits: [ChainEdit]) -> Int {
        edits.filter { if case .delete = $0 { true } else { false } }.count
    }

    private func inserts(_ edits: [ChainEdit]) -> Int {
        edits.filter { if case .insert = $0 { true } else { false } }.count
    }

    // MARK: edits for NodeGuard's own chains

    func testIdenticalChainNeedsNoEdits() {
        let rules = (0..<10).map(rule)
        XCTAssertEqual(check(actual: rules, desired: rules), [])
        XCTAssertEqual(check(actual: [], desired: []), [])
    }

    func testEmptyToFull() {
        let desired = (0..<8).map(rule)
        let edits = check(actual: [], desired: desired)
        XCTAssertEqual(edits, desired.enumerated().map { .insert(index: $0.offset, rule: $0.element) })
    }

    func testFullToEmpty() {
        let actual = (0..<8).map(rule)
        let edits = check(actual: actual, desired: [])
        // deleted from the end so every index is valid when applied
        XCTAssertEqual(edits, (0..<8).reversed().map { .delete(index: $0) })
    }

    func testForeignRuleAtTheTopIsRemoved() {
        let desired = (0..<5).map(rule)
        let edits = check(actual: [nil] + desired, desired: desired)
        XCTAssertEqual(edits, [.delete(index: 0)])
    }

    func testForeignRuleInTheMiddleIsRemoved() {
        let desired = (0..<6).map(rule)
        let actual: [RuleSpec?] = Array(desired[0..<3]) + [nil, nil] + Array(desired[3...])
        XCTAssertEqual(check(actual: actual, desired: desired), [.delete(index: 4), .delete(index: 3)])
    }

    func testDuplicateIsRemovedAndTheFirstKept() {
        let desired = (0..<4).map(rule)
        let actual: [RuleSpec?] = [rule(0), rule(1), rule(1), rule(2), rule(3), rule(3)]
        let edits = check(actual: actual, desired: desired)
        XCTAssertEqual(edits, [.delete(index: 5), .delete(index: 2)])
        let survivors = try? ChainModel.apply(edits, to: ChainModel.rules(actual)).map(\.id)
        XCTAssertEqual(survivors, [0, 1, 3, 4], "the first copy of each rule keeps its counters")
    }

    func testWantedDuplicatesAreKept() {
        let desired = [rule(0), rule(0), rule(1)]
        XCTAssertEqual(check(actual: desired, desired: desired), [])
        check(actual: [rule(0), rule(1)], desired: desired)
        check(actual: [rule(0), rule(0), rule(0), rule(1)], desired: desired)
    }

    func testReorderedRules() {
        let desired = (0..<6).map(rule)
        check(actual: desired.reversed(), desired: desired)
        check(actual: [rule(1), rule(0), rule(2), rule(3), rule(4), rule(5)], desired: desired)
        check(actual: [rule(5), rule(0), rule(1), rule(2), rule(3), rule(4)], desired: desired)
        check(actual: [rule(1), rule(2), rule(3), rule(4), rule(5), rule(0)], desired: desired)
        // A swap of neighbours costs one move (a delete and an insert).
        let swap = check(actual: [rule(1), rule(0)], desired: [rule(0), rule(1)])
        XCTAssertEqual(swap.count, 2)
        // One rule out of place moves alone; the others keep their counters.
        let moved = check(actual: [rule(3), rule(0), rule(1), rule(2)], desired: (0..<4).map(rule))
        XCTAssertEqual(moved, [.delete(index: 0), .insert(index: 3, rule: rule(3))])
    }

    func testInsertionOnlyNeverDeletes() {
        // The list grew: the rules already there are a subsequence of what is wanted.
        let desired = (0..<10).map(rule)
        let cases: [[RuleSpec?]] = [
            [rule(0), rule(2), rule(4), rule(9)],
            [rule(9)],
            [rule(0)],
            Array(desired.dropFirst()),
            Array(desired.dropLast()),
            [rule(1), rule(2), rule(3), rule(7), rule(8)],
        ]
        for actual in cases {
            let edits = check(actual: actual, desired: desired)
            XCTAssertEqual(deletes(edits), 0, "\(edits)")
            XCTAssertEqual(inserts(edits), desired.count - actual.count)
            // every rule that was there is still there, with its counters
            let survivors = (try? ChainModel.apply(edits, to: ChainModel.rules(actual)).map(\.id).filter { $0 >= 0 }) ?? []
            XCTAssertEqual(survivors, Array(actual.indices))
        }
    }

    func testRemovalOnlyNeverInserts() {
        let actual = (0..<10).map(rule)
        for removed in [[0], [9], [3, 4, 5], [0, 2, 4, 6, 8]] {
            let desired = actual.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
            let edits = check(actual: actual, desired: desired)
            XCTAssertEqual(inserts(edits), 0, "\(edits)")
            XCTAssertEqual(deletes(edits), removed.count)
        }
    }

    func testRandomPermutationsAndSubsetsProperty() throws {
        var rng = SplitMix64(seed: 0xD1FF)
        for round in 0..<500 {
            let desiredCount = Int.random(in: 0...12, using: &rng)
            var desired = Array(Self.pool.shuffled(using: &rng).prefix(desiredCount))
            if desiredCount > 1, Int.random(in: 0..<6, using: &rng) == 0 {
                desired.append(desired.randomElement(using: &rng)!)   // a wanted duplicate
                desired.shuffle(using: &rng)
            }
            // actual: some of desired (maybe shuffled), plus strangers, foreign rules and duplicates
            var actual: [RuleSpec?] = desired.filter { _ in Int.random(in: 0..<4, using: &rng) != 0 }
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: actual.shuffle(using: &rng)
            case 1 where actual.count > 1:
                actual.swapAt(Int.random(in: actual.indices, using: &rng), Int.random(in: actual.indices, using: &rng))
            default: break
            }
            for _ in 0..<Int.random(in: 0...3, using: &rng) {
                let extra: RuleSpec? = switch Int.random(in: 0..<3, using: &rng) {
                case 0: nil
                case 1: Self.pool.randomElement(using: &rng)!
                default: actual.compactMap { $0 }.randomElement(using: &rng)
                }
                actual.insert(extra, at: Int.random(in: 0...actual.count, using: &rng))
            }

            let edits = ChainDiff.edits(actual: ChainModel.observed(actual), desired: desired)
            let before = ChainModel.rules(actual)
            let after = try ChainModel.apply(edits, to: before)
            XCTAssertEqual(after.map(\.spec), desired.map { Optional($0) }, "round \(round): \(actual) -> \(desired)")

            // No edit is wasted: a rule is only deleted if it is unwanted, a duplicate, or moved.
            XCTAssertLessThanOrEqual(deletes(edits), actual.count, "round \(round)")
            XCTAssertLessThanOrEqual(inserts(edits), desired.count, "round \(round)")
            // Foreign rules never survive in NodeGuard's own chains.
            XCTAssertFalse(after.contains { $0.spec == nil })

            // If what is there is already in the right order (a subsequence of desired),
            // nothing is deleted and every rule keeps its counters.
            if actual.allSatisfy({ $0 != nil }), isSubsequence(actual.compactMap { $0 }, of: desired) {
                XCTAssertEqual(deletes(edits), 0, "round \(round)")
                XCTAssertEqual(after.filter { $0.id >= 0 }.map(\.id), Array(actual.indices), "round \(round)")
            }
            // Applying the diff again to the result gives nothing to do.
            XCTAssertEqual(ChainDiff.edits(actual: ChainModel.observed(after.map(\.spec)), desired: desired), [])
        }
    }

    // MARK: the linear diff against the quadratic one it replaced

    /// The O(n x m) dynamic-programming LCS that ChainDiff used before issue 14,
    /// kept as the oracle: its length is the most rules any diff can keep.
    static func oracleLCSLength(_ a: [RuleSpec?], _ b: [RuleSpec]) -> Int {
        let n = a.count, m = b.count
        var lengths = [Int](repeating: 0, count: (n + 1) * (m + 1))
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                lengths[i * (m + 1) + j] = a[i] == b[j]
                    ? lengths[(i + 1) * (m + 1) + j + 1] + 1
                    : max(lengths[(i + 1) * (m + 1) + j], lengths[i * (m + 1) + j + 1])
            }
        }
        return n == 0 || m == 0 ? 0 : lengths[0]
    }

    /// Random chains of every shape the kernel can hold (foreign rules,
    /// strangers, duplicates, reorderings, wanted duplicates): the edits turn
    /// actual into desired, and the rules they keep, with their counters, are
    /// exactly as many as the oracle's longest common subsequence.
    func testKeptRulesAreAsManyAsTheQuadraticLCSKeepsProperty() throws {
        var rng = SplitMix64(seed: 0x11C5)
        for round in 0..<2000 {
            let poolSize = Int.random(in: 1...Self.pool.count, using: &rng)
            let pool = Array(Self.pool.prefix(poolSize))
            let desiredCount = Int.random(in: 0...30, using: &rng)
            let wantedDuplicates = Int.random(in: 0..<5, using: &rng) == 0
            var desired: [RuleSpec] = wantedDuplicates
                ? (0..<desiredCount).map { _ in pool.randomElement(using: &rng)! }
                : Array(pool.shuffled(using: &rng).prefix(desiredCount))
            if Bool.random(using: &rng) { desired.sort { $0.destinationPorts!.lowerBound < $1.destinationPorts!.lowerBound } }
            var actual: [RuleSpec?] = (0..<Int.random(in: 0...30, using: &rng)).map { _ in
                Int.random(in: 0..<6, using: &rng) == 0 ? nil : pool.randomElement(using: &rng)!
            }
            if Bool.random(using: &rng) {
                // Mostly right: desired with a few changes, the usual repair.
                actual = desired.map { Optional($0) }
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: actual.insert(nil, at: Int.random(in: 0...actual.count, using: &rng))
                    case 1 where !actual.isEmpty: actual.remove(at: Int.random(in: actual.indices, using: &rng))
                    default: actual.insert(pool.randomElement(using: &rng)!, at: Int.random(in: 0...actual.count, using: &rng))
                    }
                }
            }
            let edits = ChainDiff.edits(actual: ChainModel.observed(actual), desired: desired)
            let after = try ChainModel.apply(edits, to: ChainModel.rules(actual))
            XCTAssertEqual(after.map(\.spec), desired.map { Optional($0) }, "round \(round): \(actual) -> \(desired)")
            let kept = after.filter { $0.id >= 0 }.count
            let oracle = Self.oracleLCSLength(actual, desired)
            XCTAssertEqual(kept, oracle, "round \(round): kept \(kept) rules where the quadratic LCS keeps \(oracle)")
            XCTAssertEqual(deletes(edits), actual.count - oracle, "round \(round)")
            XCTAssertEqual(inserts(edits), desired.count - oracle, "round \(round)")
            // The contract: deletions first, from the end; then insertions ascending.
            let deleteIndices = edits.compactMap { if case .delete(let index) = $0 { index } else { nil } }
            let insertIndices = edits.compactMap { if case .insert(let index, _) = $0 { index } else { nil } }
            XCTAssertEqual(deleteIndices, deleteIndices.sorted(by: >), "round \(round)")
            XCTAssertEqual(insertIndices, insertIndices.sorted(), "round \(round)")
            if let lastDelete = edits.lastIndex(where: { if case .delete = $0 { true } else { false } }),
               let firstInsert = edits.firstIndex(where: { if case .insert = $0 { true } else { false } }) {
                XCTAssertLessThan(lastDelete, firstInsert, "round \(round): every deletion before any insertion")
            }
        }
    }

    /// Issue 14's chain: thousands of rules of one entry with a foreign rule
    /// inserted in the middle. One deletion, every other rule kept, and no
    /// n x m table: 8,000 rules took the old diff 64 million cells (half a GB)
    /// and seconds under the xtables lock.
    func testAForeignRuleInAHugeChainCostsOneDeletionAndLittleTime() throws {
        let desired: [RuleSpec] = (0..<8000).map { (i: Int) -> RuleSpec in
            RuleSpec(source: CIDR(family: .ipv4, address: [10, UInt8(i >> 16), UInt8((i >> 8) & 255), UInt8(i & 255)], prefixLength: 32),
                     transport: .tcp, destinationPorts: 32000...32000, comment: "NodeGuard: allow \(i)", target: "RETURN")
        }
        var actual = desired.map { Optional($0) }
        actual.insert(nil, at: 4000)
        let clock = ContinuousClock()
        let start = clock.now
        let edits = ChainDiff.edits(actual: ChainModel.observed(actual), desired: desired)
        let elapsed = clock.now - start
        XCTAssertEqual(edits, [.delete(index: 4000)])
        XCTAssertLessThan(elapsed, .seconds(1), "a linear diff of 8,000 rules takes milliseconds")
        // The same with the whole chain reversed: the worst order, still fast and still right.
        let reversed = Array(actual.reversed())
        let reverseStart = clock.now
        let reorder = ChainDiff.edits(actual: ChainModel.observed(reversed), desired: desired)
        XCTAssertLessThan(clock.now - reverseStart, .seconds(1))
        XCTAssertEqual(try ChainModel.apply(reorder, to: reversed), desired.map { Optional($0) })
        XCTAssertEqual(deletes(reorder), 8000, "one rule stays; the foreign one and 7,999 others go")
    }

    private func isSubsequence(_ small: [RuleSpec], of big: [RuleSpec]) -> Bool {
        var index = big.startIndex
        for rule in small {
            guard let found = big[index...].firstIndex(of: rule) else { return false }
            index = found + 1
        }
        return true
    }

    func testRulesDifferingInAnyFieldAreDifferentRules() {
        let base = RuleSpec(source: cidr("10.0.0.0/8"), transport: .tcp, destinationPorts: 1...1, comment: "c", target: "RETURN")
        var variants: [RuleSpec] = []
        var v = base; v.source = cidr("10.0.0.0/9"); variants.append(v)
        v = base; v.transport = .udp; variants.append(v)
        v = base; v.destinationPorts = 1...2; variants.append(v)
        v = base; v.comment = "c2"; variants.append(v)
        v = base; v.target = "DROP"; variants.append(v)
        v = base; v.matchLocalDestination = true; variants.append(v)
        for variant in variants {
            let edits = check(actual: [variant], desired: [base])
            XCTAssertEqual(edits, [.delete(index: 0), .insert(index: 0, rule: base)])
        }
    }

    // MARK: hook chains

    private let hook = RulePlanner.hookRule

    private func foreign(_ name: String) -> ObservedRule {
        ObservedRule(spec: nil, target: name, comment: "\(name) rule")
    }

    private func applyHook(_ edits: [ChainEdit], to rules: [ObservedRule],
                           file: StaticString = #filePath, line: UInt = #line) -> [ObservedRule] {
        var chain = rules
        for edit in edits {
            switch edit {
            case .delete(let index):
                guard chain.indices.contains(index) else { XCTFail("bad delete \(index)", file: file, line: line); return chain }
                chain.remove(at: index)
            case .insert(let index, let rule):
                guard (0...chain.count).contains(index) else { XCTFail("bad insert \(index)", file: file, line: line); return chain }
                chain.insert(ObservedRule(rule), at: index)
            }
        }
        return chain
    }

    func testHookAlreadyFirstNeedsNoEdits() {
        XCTAssertEqual(ChainDiff.hookEdits(actual: [ObservedRule(hook)], hookRule: hook), [])
        XCTAssertEqual(ChainDiff.hookEdits(actual: [ObservedRule(hook), foreign("KUBE-SERVICES"), foreign("ACCEPT")], hookRule: hook), [])
    }

    func testForeignRuleAboveTheHookIsKeptAndTheHookMovesFirst() {
        let actual = [foreign("KUBE-SERVICES"), ObservedRule(hook)]
        let edits = ChainDiff.hookEdits(actual: actual, hookRule: hook)
        XCTAssertEqual(edits, [.delete(index: 1), .insert(index: 0, rule: hook)])
        let result = applyHook(edits, to: actual)
        XCTAssertEqual(result.map(\.target), ["NODEGUARD", "KUBE-SERVICES"])
        XCTAssertEqual(result[0].spec, hook)
        XCTAssertEqual(result[1], actual[0])
    }

    func testBackingOffLeavesTheHookBelowAForeignRuleAndAppendsAMissingOne() {
        let actual = [foreign("RIVAL"), ObservedRule(hook), foreign("KUBE-SERVICES")]
        XCTAssertEqual(ChainDiff.hookEdits(actual: actual, hookRule: hook, mustBeFirst: false), [])
        let missing = [foreign("RIVAL"), foreign("KUBE-SERVICES")]
        let edits = ChainDiff.hookEdits(actual: missing, hookRule: hook, mustBeFirst: false)
        XCTAssertEqual(applyHook(edits, to: missing).map(\.target), ["RIVAL", "KUBE-SERVICES", "NODEGUARD"])
        let duplicated = [foreign("RIVAL"), ObservedRule(hook), ObservedRule(hook)]
        XCTAssertEqual(applyHook(ChainDiff.hookEdits(actual: duplicated, hookRule: hook, mustBeFirst: false), to: duplicated).map(\.target),
                       ["RIVAL", "NODEGUARD"])
    }

    func testMissingHookIsInsertedFirst() {
        XCTAssertEqual(ChainDiff.hookEdits(actual: [], hookRule: hook), [.insert(index: 0, rule: hook)])
        let actual = [foreign("KUBE-SERVICES"), foreign("CILIUM")]
        let edits = ChainDiff.hookEdits(actual: actual, hookRule: hook)
        XCTAssertEqual(edits, [.insert(index: 0, rule: hook)])
        XCTAssertEqual(applyHook(edits, to: actual).map(\.target), ["NODEGUARD", "KUBE-SERVICES", "CILIUM"])
    }

    func testTwoJumpsLeaveOne() {
        let actual = [ObservedRule(hook), foreign("KUBE-SERVICES"), ObservedRule(hook)]
        let edits = ChainDiff.hookEdits(actual: actual, hookRule: hook)
        XCTAssertEqual(edits, [.delete(index: 2)])
        XCTAssertEqual(applyHook(edits, to: actual).map(\.target), ["NODEGUARD", "KUBE-SERVICES"])

        let later = [foreign("A"), ObservedRule(hook), foreign("B"), ObservedRule(hook)]
        let result = applyHook(ChainDiff.hookEdits(actual: later, hookRule: hook), to: later)
        XCTAssertEqual(result.map(\.target), ["NODEGUARD", "A", "B"])
        XCTAssertEqual(result.filter { RulePlanner.isNodeGuardChain($0.target) }.count, 1)
    }

    func testStaleHookRuleIsReplaced() {
        // A NodeGuard jump that is not the current hook rule (an older comment, say).
        var old = hook
        old.comment = "NodeGuard v0"
        let actual = [ObservedRule(old), foreign("KUBE-SERVICES")]
        let result = applyHook(ChainDiff.hookEdits(actual: actual, hookRule: hook), to: actual)
        XCTAssertEqual(result.map(\.spec), [hook, nil])
        // A stray jump into a NodeGuard sub-chain is NodeGuard's too, and goes.
        let stray = [ObservedRule(hook), ObservedRule(RuleSpec(comment: "", target: "NODEGUARD-TCP"))]
        XCTAssertEqual(ChainDiff.hookEdits(actual: stray, hookRule: hook), [.delete(index: 1)])
    }

    func testForeignRulesAreNeverDeletedProperty() {
        var rng = SplitMix64(seed: 0x400C)
        let foreignTargets = ["KUBE-SERVICES", "ACCEPT", "DROP", "MARK", "CILIUM_PRE_mangle", "NODEGUARDX", "RETURN"]
        var stale = hook
        stale.comment = "old"
        for round in 0..<500 {
            var actual: [ObservedRule] = []
            for i in 0..<Int.random(in: 0...8, using: &rng) {
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: actual.append(ObservedRule(hook))
                case 1: actual.append(ObservedRule(stale))
                case 2:
                    let target = foreignTargets.randomElement(using: &rng)!
                    actual.append(ObservedRule(RuleSpec(comment: "f\(i)", target: target)))
                default:
                    actual.append(ObservedRule(spec: nil, target: foreignTargets.randomElement(using: &rng)!, comment: "f\(i)"))
                }
            }
            let edits = ChainDiff.hookEdits(actual: actual, hookRule: hook)
            let result = applyHook(edits, to: actual)
            XCTAssertEqual(result.first?.spec, hook, "round \(round)")
            XCTAssertEqual(result.filter { RulePlanner.isNodeGuardChain($0.target) }.count, 1, "round \(round)")
            let foreignBefore = actual.filter { !RulePlanner.isNodeGuardChain($0.target) }
            let foreignAfter = result.filter { !RulePlanner.isNodeGuardChain($0.target) }
            XCTAssertEqual(foreignAfter, foreignBefore, "round \(round): foreign rules kept, in order")
            // Only NodeGuard rules are ever deleted.
            var check = actual
            for edit in edits {
                switch edit {
                case .delete(let index):
                    guard check.indices.contains(index) else { XCTFail("round \(round): bad delete \(index)"); return }
                    XCTAssertTrue(RulePlanner.isNodeGuardChain(check[index].target), "round \(round) deletes a foreign rule")
                    check.remove(at: index)
                case .insert(let index, let rule):
                    check.insert(ObservedRule(rule), at: index)
                }
            }
            // Already right: nothing to do.
            XCTAssertEqual(ChainDiff.hookEdits(actual: result, hookRule: hook), [], "round \(round)")
        }
    }
}
