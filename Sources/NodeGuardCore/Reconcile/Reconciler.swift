import Foundation

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
    /// `hookMustBeFirst` false lets NodeGuard's jump stay below other rules
    /// (backing off from a fight); `holdInRaw` keeps a copy of the drops in
    /// the raw table, which runs before mangle, and false removes it.
    @discardableResult
    public func apply(_ entries: [BlockEntry], hookMustBeFirst: Bool = true, holdInRaw: Bool = false) throws(NodeGuardError) -> [TableChange] {
        if planned?.entries != entries {
            planned = (entries, Dictionary(uniqueKeysWithValues: families.map { ($0, RulePlanner.plan(entries, family: $0)) }))
        }
        var changes: [TableChange] = []
        for family in families {
            guard let plan = planned?.plans[family] else { continue }
            let (found, committed) = try backend.withMangleTable(family) { table throws(NodeGuardError) in
                try TableReconciler.reconcile(table, to: plan, hookMustBeFirst: hookMustBeFirst)
            }
            if committed { commitCount += 1 }
            changes += found
        }
        changes += try holdInRaw ? applyHold(entries) : liftHold()
        return changes
    }

    private func applyHold(_ entries: [BlockEntry]) throws(NodeGuardError) -> [TableChange] {
        if plannedHold?.entries != entries {
            plannedHold = (entries, Dictionary(uniqueKeysWithValues: families.map { ($0, RulePlanner.holdPlan(entries, family: $0)) }))
        }
        rawMayHoldRules = true
        var changes: [TableChange] = []
        for family in families {
            guard let plan = plannedHold?.plans[family] else { continue }
            let (found, committed) = try backend.withTable("raw", family) { table throws(NodeGuardError) in
                try TableReconciler.reconcile(table, to: plan)
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
            let (found, committed) = try backend.withTable("raw", family) { table throws(NodeGuardError) in
                try TableReconciler.removeAll(table, tableName: "raw")
            }
            if committed { commitCount += 1 }
            changes += found
        }
        rawMayHoldRules = false
        return changes
    }

    /// Removes every NodeGuard rule and chain, without creating a table that is not there.
    @discardableResult
    public func removeAll() throws(NodeGuardError) -> [TableChange] {
        var changes: [TableChange] = []
        for family in families where backend.mangleTableExists(family) {
            let (found, committed) = try backend.withMangleTable(family) { table throws(NodeGuardError) in
                try TableReconciler.removeAll(table)
            }
            if committed { commitCount += 1 }
            changes += found
        }
        rawMayHoldRules = true
        return changes + (try liftHold())
    }

    public func inspect() throws(NodeGuardError) -> [TableInspection] {
        var result: [TableInspection] = []
        for family in families where backend.mangleTableExists(family) {
            let (inspection, _) = try backend.withMangleTable(family) { table throws(NodeGuardError) in
                try TableReconciler.inspect(table)
            }
            result.append(inspection)
        }
        return result
    }
}
