/// An open, editable snapshot of one family's table (mangle, raw, nat). Edits stay in
/// memory until the backend commits them all at once.
public protocol TableSnapshot: AnyObject {
    var family: AddressFamily { get }
    /// Every chain name, built-in and user-defined.
    func chainNames() -> [String]
    func rules(in chain: String) throws(NodeGuardError) -> [ObservedRule]
    /// At most the first `limit` rules of `chain`: for a hook chain where only
    /// the rules down to NodeGuard's jump matter, beside thousands of others.
    func rules(in chain: String, limit: Int) throws(NodeGuardError) -> [ObservedRule]
    func createChain(_ name: String) throws(NodeGuardError)
    func flushChain(_ name: String) throws(NodeGuardError)
    func deleteChain(_ name: String) throws(NodeGuardError)
    func insertRule(_ rule: RuleSpec, in chain: String, at index: Int) throws(NodeGuardError)
    func deleteRule(in chain: String, at index: Int) throws(NodeGuardError)
    /// The fingerprint of NodeGuard's part of the table as this snapshot
    /// holds it (`KernelTableSnapshot`), or nil where the snapshot cannot say
    /// (a libiptc handle).
    var ownedFingerprint: TableFingerprint? { get }
}

extension TableSnapshot {
    public func rules(in chain: String, limit: Int) throws(NodeGuardError) -> [ObservedRule] {
        Array(try rules(in: chain).prefix(limit))
    }
}

/// A snapshot that cannot be edited: every edit throws what `refuse` says.
protocol ReadOnlyTableSnapshot: TableSnapshot {
    func refuse(_ edit: String) -> NodeGuardError
}

extension ReadOnlyTableSnapshot {
    func createChain(_ name: String) throws(NodeGuardError) { throw refuse("create chain \(name)") }
    func flushChain(_ name: String) throws(NodeGuardError) { throw refuse("flush chain \(name)") }
    func deleteChain(_ name: String) throws(NodeGuardError) { throw refuse("delete chain \(name)") }
    func insertRule(_ rule: RuleSpec, in chain: String, at index: Int) throws(NodeGuardError) {
        throw refuse("insert a rule into \(chain)")
    }
    func deleteRule(in chain: String, at index: Int) throws(NodeGuardError) {
        throw refuse("delete rule \(index + 1) of \(chain)")
    }
}

/// Where NodeGuard's rules live. The production backend is libiptc
/// (`LibIPTCBackend`); the protocol keeps the reconciler independent of it.
public protocol NetfilterBackend: Sendable {
    /// Runs `body` on a fresh snapshot of `family`'s table `name` while holding
    /// the xtables lock, then commits once if `body` changed anything.
    /// Returns `body`'s result, whether a commit happened, and the
    /// `ownedFingerprint` of the table read back before the lock is released
    /// (nil if that read failed): what NodeGuard left there, which no writer
    /// that takes the lock can have changed yet. If the commit loses a race
    /// (EAGAIN), `body` runs again on a new snapshot.
    func withTable<T>(
        _ name: String, _ family: AddressFamily,
        _ body: (any TableSnapshot) throws(NodeGuardError) -> T
    ) throws(NodeGuardError) -> (result: T, committed: Bool, fingerprint: TableFingerprint?)

    /// Runs `body` holding the xtables lock, waiting at most `wait` for it
    /// (zero: try once); `withTable` inside it takes the held lock again
    /// without waiting. A lock another program holds throws `.lockTimeout`
    /// naming it.
    func holdingLock<T>(wait: Duration, _ body: () throws(NodeGuardError) -> T) throws(NodeGuardError) -> T

    /// Who holds that lock now, if anyone (for `status`).
    var lockHolder: (pid: Int32, command: String)? { get }

    /// Runs `body` on a read-only snapshot, without the xtables lock (as
    /// iptables-save reads): for other agents' tables, which NodeGuard never
    /// writes. Opening a missing table creates it: check `tableExists` first.
    func readTable<T>(
        _ name: String, _ family: AddressFamily,
        _ body: (any TableSnapshot) throws(NodeGuardError) -> T
    ) throws(NodeGuardError) -> T

    /// Whether the kernel already has this legacy table; asking must not
    /// create it (opening a table through libiptc does).
    func tableExists(_ name: String, _ family: AddressFamily) -> Bool

    /// The table's sizes, read without copying a rule: for noticing changes
    /// cheaply. Like opening it, this creates a missing legacy table.
    func tableInfo(_ name: String, _ family: AddressFamily) throws(NodeGuardError) -> TableInfo

    /// The table's sizes and a digest of all its rules with counters zeroed:
    /// for other agents' tables (nat), where any change matters.
    func tableFingerprint(_ name: String, _ family: AddressFamily) throws(NodeGuardError) -> TableFingerprint

    /// The table's sizes and a digest of NodeGuard's part of it only (its
    /// chains, and each hook chain down to its jump): for the tables NodeGuard
    /// keeps rules in. Its cost does not grow with other programs' rules.
    func ownedFingerprint(_ name: String, _ family: AddressFamily) throws(NodeGuardError) -> TableFingerprint
}

extension NetfilterBackend {
    public func withMangleTable<T>(
        _ family: AddressFamily,
        _ body: (any TableSnapshot) throws(NodeGuardError) -> T
    ) throws(NodeGuardError) -> (result: T, committed: Bool, fingerprint: TableFingerprint?) {
        try withTable("mangle", family, body)
    }

    public func mangleTableExists(_ family: AddressFamily) -> Bool { tableExists("mangle", family) }
}
