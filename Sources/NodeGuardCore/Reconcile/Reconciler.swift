import FoundationEssentials

/// Applies a deny-list to the IPv4 and IPv6 mangle tables through a backend:
/// plan, read, change only what differs, commit once per table.
/// Not thread-safe: the reconcile loop owns it.
public final class Reconciler {
    public let backend: any NetfilterBackend
    public let families: [AddressFamily]
    /// How many commits this process made (a no-op apply makes none).
    public private(set) var commitCount = 0
    /// The verify loop applies the same list again and again: plan it once.
    private var planned: (entries: [BlockEntry], plans: [AddressFamily: TablePlan])?
    private var plannedHold: (entries: [BlockEntry], plans: [AddressFamily: TablePlan])?
    /// Whether the raw table may still hold NodeGuard rules (a hold, or one
    /// left by an earlier run): only then is it opened to remove them.
    private var rawMayHoldRules = true
    /// Each table the last `apply` made match its plan, fingerprinted as it
    /// was found or left (under the lock, or from the very snapshot that was
    /// checked): the known-good state the change watch compares against.
    public private(set) var verifiedFingerprints: [ChangeWatch.Table: TableFingerprint] = [:]

    public init(backend: any NetfilterBackend, families: [AddressFamily] = Reconciler.availableFamilies()) {
        self.backend = backend
        self.families = families
    }

    /// IPv6 is skipped only where the kernel has no IPv6 stack at all (then
    /// there is no IPv6 traffic to block either).
    public static func availableFamilies() -> [AddressFamily] {
        FileManager.default.fileExists(atPath: "/proc/net/if_inet6") ? [.ipv4, .ipv6] : [.ipv4]
    }

    /// Makes the kernel match `entries`; returns what it had to change.
    /// At the hook sites in `yielding` NodeGuard's jump may stay below other
    /// rules (backing off from a fight); `holdInRaw` keeps a copy of the drops
    /// in the raw table, which runs before mangle, and false removes it.
    /// With `checkFirst`, each table's repair is planned on a lock-free read
    /// first, and the table opened through libiptc (under the xtables lock,
    /// with its copy of every rule) only if that repair is not empty, and
    /// only if the lock is free (`.lockTimeout` otherwise): for the periodic
    /// full read, which nearly always finds nothing to do and never waits.
    @discardableResult
    public func apply(_ entries: [BlockEntry], yielding: Set<HookSite> = [], holdInRaw: Bool = false,
                      checkFirst: Bool = false) throws(NodeGuardError) -> [TableChange] {
        if planned?.entries != entries {
            planned = (entries, Dictionary(uniqueKeysWithValues: families.map { ($0, RulePlanner.plan(entries, family: $0)) }))
        }
        verifiedFingerprints = [:]
        var changes: [TableChange] = []
        for family in families {
            guard let plan = planned?.plans[family] else { continue }
            let (found, committed) = try reconcile("mangle", family, checkFirst: checkFirst) { table throws(NodeGuardError) in
                try TableReconciler.repair(table, to: plan, yielding: Self.chains(yielding, "mangle", family))
            }
            if committed { commitCount += 1 }
            changes += found
        }
        changes += try holdInRaw ? applyHold(entries, yielding: yielding, checkFirst: checkFirst) : liftHold()
        return changes
    }

    /// The hook chains of `table` and `family` among `sites`.
    static func chains(_ sites: Set<HookSite>, _ table: String, _ family: AddressFamily) -> Set<String> {
        Set(sites.filter { $0.table == table && $0.family == family }.map(\.chain))
    }

    private func applyHold(_ entries: [BlockEntry], yielding: Set<HookSite>,
                           checkFirst: Bool) throws(NodeGuardError) -> [TableChange] {
        if plannedHold?.entries != entries {
            plannedHold = (entries, Dictionary(uniqueKeysWithValues: families.map { ($0, RulePlanner.holdPlan(entries, family: $0)) }))
        }
        rawMayHoldRules = true
        var changes: [TableChange] = []
        for family in families {
            guard let plan = plannedHold?.plans[family] else { continue }
            let (found, committed) = try reconcile("raw", family, checkFirst: checkFirst) { table throws(NodeGuardError) in
                try TableReconciler.repair(table, to: plan, yielding: Self.chains(yielding, "raw", family))
            }
            if committed { commitCount += 1 }
            changes += found
        }
        return changes
    }

    private func liftHold() throws(NodeGuardError) -> [TableChange] {
        guard rawMayHoldRules else { return [] }
        var changes: [TableChange] = []
        for family in families where backend.tableExists("raw", family) {
            let outcome = try backend.transact("raw", family) { table throws(NodeGuardError) in
                try TableReconciler.removal(table, tableName: "raw")
            }
            if outcome.committed { commitCount += 1 }
            changes += outcome.repair.changes
        }
        rawMayHoldRules = false
        return changes
    }

    /// Removes every NodeGuard rule and chain, without creating a table that is not there.
    @discardableResult
    public func removeAll() throws(NodeGuardError) -> [TableChange] {
        var changes: [TableChange] = []
        for family in families where backend.mangleTableExists(family) {
            let outcome = try backend.transact("mangle", family) { table throws(NodeGuardError) in
                try TableReconciler.removal(table)
            }
            if outcome.committed { commitCount += 1 }
            changes += outcome.repair.changes
        }
        rawMayHoldRules = true
        return changes + (try liftHold())
    }

    /// Counters and hook positions, judged against the plan of `entries`.
    public func inspect(_ entries: [BlockEntry]) throws(NodeGuardError) -> [TableInspection] {
        var result: [TableInspection] = []
        for family in families where backend.mangleTableExists(family) {
            let plan = planned?.entries == entries ? planned?.plans[family] : nil
            let bypass = BypassCheck(plan ?? RulePlanner.plan(entries, family: family))
            let inspection = try backend.readTable("mangle", family) { table throws(NodeGuardError) in
                try TableReconciler.inspect(table, bypass: bypass)
            }
            result.append(inspection)
        }
        return result
    }

    /// Plans with `plan` on the table and commits what it finds; with
    /// `checkFirst`, plans on a lock-free read first and takes the lock only
    /// when that repair is not empty.
    private func reconcile(
        _ name: String, _ family: AddressFamily, checkFirst: Bool,
        _ plan: (any TableView) throws(NodeGuardError) -> TableRepair
    ) throws(NodeGuardError) -> (result: [TableChange], committed: Bool) {
        let table = ChangeWatch.Table(name: name, family: family)
        if checkFirst {
            // A failed read leaves the decision to the transaction below,
            // which reports errors itself.
            var fingerprint: TableFingerprint?
            let clean = (try? backend.readTable(name, family) { view throws(NodeGuardError) -> Bool in
                guard try plan(view).isEmpty else { return false }
                fingerprint = view.ownedFingerprint
                return true
            }) ?? false
            if clean {
                verifiedFingerprints[table] = fingerprint
                return ([], false)
            }
        }
        let outcome = checkFirst
            ? try backend.holdingLock(wait: .zero) { () throws(NodeGuardError) in try backend.transact(name, family, plan) }
            : try backend.transact(name, family, plan)
        verifiedFingerprints[table] = outcome.fingerprint
        return (outcome.repair.changes, outcome.committed)
    }
}
