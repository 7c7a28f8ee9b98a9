import Foundation
import SystemPackage
@testable import NodeGuardCore

/// An in-memory `NetfilterBackend`, as knftables ships a fake: tables of
/// chains of rules, transactions that apply a plan's edits to a copy and
/// swap it in at commit, and the faults the real kernel and other programs
/// cause. Lets the reconciler and the engine be tested without root.
///
/// It behaves as libiptc and the kernel do where the middle layer depends
/// on it: edits refer to the chain as earlier edits left it and fail on a bad
/// index or a missing or non-empty chain; a commit fails with EAGAIN when the
/// table changed since it was read; a table's sizes move with every insert
/// and delete; the owned fingerprint covers NodeGuard's chains and each hook
/// chain down to its jump, counters excluded.
final class FakeNetfilterBackend: NetfilterBackend, @unchecked Sendable {
    struct TableKey: Hashable {
        var name: String
        var family: AddressFamily
    }

    /// One table: chains in order (built-ins first), each a list of rules.
    struct Table: Equatable {
        var chainOrder: [String]
        var rules: [String: [ObservedRule]]
        var builtins: Set<String>

        init(builtins: [String]) {
            chainOrder = builtins
            rules = Dictionary(uniqueKeysWithValues: builtins.map { ($0, []) })
            self.builtins = Set(builtins)
        }
    }

    /// Targets that need no chain (libiptc knows them without a jump).
    static let standardTargets: Set<String> = ["ACCEPT", "DROP", "RETURN", "QUEUE"]

    static let builtinChains: [String: [String]] = [
        "mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "raw": ["PREROUTING", "OUTPUT"],
        "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "filter": ["INPUT", "FORWARD", "OUTPUT"],
    ]

    private let lock = NSLock()
    private var tables: [TableKey: Table] = [:]
    /// Bumped by every change to a table, NodeGuard's commits and foreign writes alike.
    private var generations: [TableKey: Int] = [:]

    // MARK: faults

    /// Tables the kernel does not have and cannot load (a kernel without legacy xtables).
    var unavailable: Set<TableKey> = []
    /// Another program holds the xtables lock: transactions and `holdingLock` fail with `.lockTimeout`.
    var lockHeldBy: (pid: Int32, command: String)?
    /// Runs once per commit attempt, between the read and the commit, as a
    /// writer that ignores the xtables lock would: if it changes the table,
    /// the commit fails with EAGAIN and the transaction reads and plans again.
    var beforeCommit: ((FakeNetfilterBackend, TableKey) -> Void)?
    /// Commits to the tables for which this says true fail outright, as the
    /// kernel refusing them would; nothing reaches the table.
    var refusesCommit: (TableKey) -> Bool = { _ in false }
    /// A transaction fails at its edit number `failAtEdit` (0-based) as libiptc
    /// refusing an edit would; nothing of it reaches the table.
    var failAtEdit: Int?
    /// How many times a commit that lost a race is retried, as LibIPTCBackend does.
    var commitAttempts = 5

    // MARK: what happened

    private(set) var commits = 0
    private(set) var transactions = 0
    private(set) var lockFreeReads = 0

    init() {}

    // MARK: test access

    /// Runs `body` on the table as another program would change it (no lock
    /// taken: that is the caller's business), creating the table if needed.
    func mutate(_ name: String, _ family: AddressFamily, _ body: (inout Table) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        let key = TableKey(name: name, family: family)
        var table = tables[key] ?? Table(builtins: Self.builtinChains[name] ?? [])
        let before = table
        body(&table)
        tables[key] = table
        if table != before { generations[key, default: 0] += 1 }
    }

    /// The table as it is now (nil if nothing created it yet).
    func table(_ name: String, _ family: AddressFamily) -> Table? {
        lock.lock()
        defer { lock.unlock() }
        return tables[TableKey(name: name, family: family)]
    }

    func rules(_ name: String, _ family: AddressFamily, _ chain: String) -> [ObservedRule] {
        table(name, family)?.rules[chain] ?? []
    }

    /// The rule as libiptc's decoder reads one NodeGuard wrote.
    static func observed(_ spec: RuleSpec) -> ObservedRule {
        var rule = ObservedRule(spec)
        rule.protocolNumber = spec.transport?.ipProtocolNumber ?? 0
        rule.destinationPorts = spec.destinationPorts
        rule.identity = UInt64(truncatingIfNeeded: spec.hashValue)
        return rule
    }

    // MARK: NetfilterBackend

    func transact(
        _ name: String, _ family: AddressFamily,
        _ plan: (any TableView) throws(NodeGuardError) -> TableRepair
    ) throws(NodeGuardError) -> TransactionOutcome {
        try checkLock()
        let key = TableKey(name: name, family: family)
        var attempt = 1
        while true {
            let (table, generation) = try read(key)
            transactions += 1
            let repair = try plan(FakeTableView(table, family: family))
            if repair.isEmpty { return TransactionOutcome(repair: repair, committed: false, fingerprint: try? ownedFingerprint(name, family)) }
            var edited = table
            for (number, edit) in repair.edits.enumerated() {
                if number == failAtEdit {
                    throw NodeGuardError(.netfilterFailure, "\(edit) in the fake \(family.rawValue) \(name) table: refused (injected)", errno: .invalidArgument)
                }
                try Self.apply(edit, to: &edited, family: family, table: name)
            }
            beforeCommit?(self, key)
            do throws(NodeGuardError) {
                try commit(edited, to: key, readAt: generation)
                commits += 1
                return TransactionOutcome(repair: repair, committed: true, fingerprint: try? ownedFingerprint(name, family))
            } catch {
                // As LibIPTCBackend: only a commit that lost a race is planned again, told by its errno.
                guard error.errno == .resourceTemporarilyUnavailable && attempt < commitAttempts else { throw error }
                attempt += 1
            }
        }
    }

    /// Swaps `table` in, failing as the kernel does: EAGAIN when the table
    /// changed since it was read at `generation`, another errno when refused.
    private func commit(_ table: Table, to key: TableKey, readAt generation: Int) throws(NodeGuardError) {
        let action = "committing the fake \(key.family.rawValue) \(key.name) table"
        if refusesCommit(key) {
            throw NodeGuardError(.netfilterFailure, "\(action): refused (injected)", errno: .invalidArgument)
        }
        let committed: Bool = lock.withLock {
            guard generations[key, default: 0] == generation else { return false }
            tables[key] = table
            generations[key, default: 0] += 1
            return true
        }
        // The error LibIPTCBackend makes of libiptc's EAGAIN, errno and message.
        guard committed else { throw netfilterError(EAGAIN, family: key.family, doing: action) }
    }

    func holdingLock<T>(wait: Duration, _ body: () throws(NodeGuardError) -> T) throws(NodeGuardError) -> T {
        try checkLock()
        return try body()
    }

    var lockHolder: (pid: Int32, command: String)? { lock.withLock { lockHeldBy } }

    func readTable<T>(
        _ name: String, _ family: AddressFamily,
        _ body: (any TableView) throws(NodeGuardError) -> T
    ) throws(NodeGuardError) -> T {
        let (table, _) = try read(TableKey(name: name, family: family))
        lock.withLock { lockFreeReads += 1 }
        return try body(FakeTableView(table, family: family))
    }

    /// Each rule as "-A CHAIN <decoded rule>", in the manner of iptables-save.
    func savedRules(_ name: String, _ family: AddressFamily) -> [String: [String]]? {
        guard let table = table(name, family) else { return nil }
        return Dictionary(uniqueKeysWithValues: table.rules.map { chain, rules in (chain, rules.map { "-A \(chain) \($0)" }) })
    }

    func tableExists(_ name: String, _ family: AddressFamily) -> Bool {
        lock.withLock { tables[TableKey(name: name, family: family)] != nil }
    }

    func tableInfo(_ name: String, _ family: AddressFamily) throws(NodeGuardError) -> TableInfo {
        let (table, _) = try read(TableKey(name: name, family: family))
        return Self.info(table)
    }

    func tableFingerprint(_ name: String, _ family: AddressFamily) throws(NodeGuardError) -> TableFingerprint {
        let (table, _) = try read(TableKey(name: name, family: family))
        var hasher = Hasher()
        for chain in table.chainOrder {
            hasher.combine(chain)
            for rule in table.rules[chain] ?? [] { hasher.combine(Self.identity(rule)) }
        }
        return TableFingerprint(info: Self.info(table), digest: UInt64(bitPattern: Int64(hasher.finalize())))
    }

    func ownedFingerprint(_ name: String, _ family: AddressFamily) throws(NodeGuardError) -> TableFingerprint {
        let (table, _) = try read(TableKey(name: name, family: family))
        return Self.ownedFingerprint(table)
    }

    static func ownedFingerprint(_ table: Table) -> TableFingerprint {
        var hasher = Hasher()
        let hooks = Set(TablePlan.hookChains)
        for chain in table.chainOrder where RulePlanner.isNodeGuardChain(chain) || hooks.contains(chain) {
            hasher.combine(chain)
            for rule in table.rules[chain] ?? [] {
                hasher.combine(identity(rule))
                if hooks.contains(chain) && RulePlanner.isNodeGuardChain(rule.target) { break }
            }
        }
        return TableFingerprint(info: info(table), digest: UInt64(bitPattern: Int64(hasher.finalize())))
    }

    // MARK: internals

    private func checkLock() throws(NodeGuardError) {
        if let holder = lockHolder {
            throw NodeGuardError(.lockTimeout, "the xtables lock is held by \(holder.command) (pid \(holder.pid))")
        }
    }

    /// A copy of the table, created empty on first use as opening a legacy table loads it.
    private func read(_ key: TableKey) throws(NodeGuardError) -> (Table, Int) {
        let result: (Table, Int)? = lock.withLock {
            if unavailable.contains(key) { return nil }
            let table = tables[key] ?? Table(builtins: Self.builtinChains[key.name] ?? [])
            tables[key] = table
            return (table, generations[key, default: 0])
        }
        guard let result else {
            throw NodeGuardError(.netfilterUnavailable, "reading the \(key.family.rawValue) \(key.name) table: the fake kernel has no such table")
        }
        return result
    }

    /// What a rule is, counters aside: as the kernel digest zeroes them.
    private static func identity(_ rule: ObservedRule) -> Int {
        var copy = rule
        copy.packets = 0
        copy.bytes = 0
        return copy.hashValue
    }

    /// Sizes that move as the kernel's do: one entry per rule plus a head and
    /// a tail per user chain; hook entries at each built-in chain's offset.
    private static func info(_ table: Table) -> TableInfo {
        var offset: UInt32 = 0
        var hookEntry: [UInt32] = []
        for chain in table.chainOrder {
            if table.builtins.contains(chain) { hookEntry.append(offset) } else { offset += 1 }
            offset += UInt32(table.rules[chain]?.count ?? 0) + 1
        }
        return TableInfo(validHooks: UInt32(table.builtins.count), hookEntry: hookEntry, underflow: [],
                         entryCount: offset, size: offset * 152)
    }

    private static func apply(_ edit: TableEdit, to table: inout Table, family: AddressFamily, table name: String) throws(NodeGuardError) {
        func refuse(_ why: String) -> NodeGuardError {
            NodeGuardError(.netfilterFailure, "\(edit) in the fake \(family.rawValue) \(name) table: \(why)")
        }
        switch edit {
        case .createChain(let chain):
            guard table.rules[chain] == nil else { throw refuse("Chain already exists") }
            table.chainOrder.append(chain)
            table.rules[chain] = []
        case .flushChain(let chain):
            guard table.rules[chain] != nil else { throw refuse("No chain/target/match by that name") }
            table.rules[chain] = []
        case .deleteChain(let chain):
            guard let rules = table.rules[chain], !table.builtins.contains(chain) else { throw refuse("No chain/target/match by that name") }
            guard rules.isEmpty else { throw refuse("Directory not empty") }
            let referenced = table.rules.values.contains { $0.contains { $0.target == chain } }
            guard !referenced else { throw refuse("Too many links") }
            table.rules[chain] = nil
            table.chainOrder.removeAll { $0 == chain }
        case .insertRule(let rule, let chain, let index):
            guard var rules = table.rules[chain] else { throw refuse("No chain/target/match by that name") }
            guard index <= rules.count else { throw refuse("Index of insertion too big") }
            guard Self.standardTargets.contains(rule.target) || table.rules[rule.target] != nil else {
                throw refuse("No chain/target/match by that name (jump to \(rule.target))")
            }
            rules.insert(observed(rule), at: index)
            table.rules[chain] = rules
        case .deleteRule(let chain, let index):
            guard var rules = table.rules[chain] else { throw refuse("No chain/target/match by that name") }
            guard index < rules.count else { throw refuse("Index of deletion too big") }
            rules.remove(at: index)
            table.rules[chain] = rules
        }
    }
}

/// A read of one fake table: a copy, so later changes do not show.
final class FakeTableView: TableView {
    let family: AddressFamily
    private let table: FakeNetfilterBackend.Table

    init(_ table: FakeNetfilterBackend.Table, family: AddressFamily) {
        self.table = table
        self.family = family
    }

    func chainNames() -> [String] { table.chainOrder }

    func rules(in chain: String) throws(NodeGuardError) -> [ObservedRule] {
        guard let rules = table.rules[chain] else {
            throw NodeGuardError(.netfilterFailure, "reading chain \(chain) in the fake \(family.rawValue) table: no such chain")
        }
        return rules
    }

    var ownedFingerprint: TableFingerprint? { FakeNetfilterBackend.ownedFingerprint(table) }
}
