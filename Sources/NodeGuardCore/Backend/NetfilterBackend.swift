/// A read-only view of one family's table (mangle, raw, nat) as one read of
/// the kernel found it. Planning works on views; only a transaction edits.
public protocol TableView: AnyObject {
    var family: AddressFamily { get }
    /// Every chain name, built-in and user-defined.
    func chainNames() -> [String]
    func rules(in chain: String) throws(NodeGuardError) -> [ObservedRule]
    /// At most the first `limit` rules of `chain`: for a hook chain where only
    /// the rules down to NodeGuard's jump matter, beside thousands of others.
    func rules(in chain: String, limit: Int) throws(NodeGuardError) -> [ObservedRule]
    /// The fingerprint of NodeGuard's part of the table as this view holds it
    /// (`KernelTableSnapshot`), or nil where the view cannot say (a libiptc
    /// handle: `transact` reads the kernel for it).
    var ownedFingerprint: TableFingerprint? { get }
}

extension TableView {
    public func rules(in chain: String, limit: Int) throws(NodeGuardError) -> [ObservedRule] {
        Array(try rules(in: chain).prefix(limit))
    }
}

/// One change to one table. A transaction applies a list of them in order
/// (indices refer to the chain as the edits before have left it) and commits
/// them to the kernel at once.
public enum TableEdit: Sendable, Hashable, CustomStringConvertible {
    case createChain(String)
    case flushChain(String)
    case deleteChain(String)
    case insertRule(RuleSpec, chain: String, index: Int)
    case deleteRule(chain: String, index: Int)

    public var description: String {
        switch self {
        case .createChain(let name): "create chain \(name)"
        case .flushChain(let name): "flush chain \(name)"
        case .deleteChain(let name): "delete chain \(name)"
        case .insertRule(let rule, let chain, let index): "insert '\(rule.iptablesArguments)' into \(chain) as rule \(index + 1)"
        case .deleteRule(let chain, let index): "delete rule \(index + 1) of \(chain)"
        }
    }
}

/// What a table needs to match a plan: the edits, and the same in words for
/// the log and the audit trail. Empty: nothing to repair.
public struct TableRepair: Sendable, Hashable {
    public var edits: [TableEdit]
    public var changes: [TableChange]

    public init(edits: [TableEdit] = [], changes: [TableChange] = []) {
        self.edits = edits
        self.changes = changes
    }

    public var isEmpty: Bool { edits.isEmpty }
}

/// What `NetfilterBackend.transact` did.
public struct TransactionOutcome: Sendable {
    /// The repair planned on the read that was committed (after a lost race,
    /// the last read's).
    public var repair: TableRepair
    /// Whether anything was committed (false when the repair was empty).
    public var committed: Bool
    /// NodeGuard's part of the table read back before the lock was released
    /// (nil if that read failed): what NodeGuard left there, which no writer
    /// that takes the lock can have changed yet.
    public var fingerprint: TableFingerprint?
}

/// Where NodeGuard's rules live. The production backend is libiptc
/// (`LibIPTCBackend`); the protocol keeps the reconciler independent of it.
public protocol NetfilterBackend: Sendable {
    /// Plans and commits one transaction on `family`'s table `name` while
    /// holding the xtables lock: reads the table, asks `plan` for the edits
    /// (a pure function of what it read), applies them and commits them at
    /// once; an empty repair commits nothing. If the commit loses a race
    /// (EAGAIN: a writer that ignores the lock changed the table), it reads
    /// and plans again.
    func transact(
        _ name: String, _ family: AddressFamily,
        _ plan: (any TableView) throws(NodeGuardError) -> TableRepair
    ) throws(NodeGuardError) -> TransactionOutcome

    /// Runs `body` holding the xtables lock, waiting at most `wait` for it
    /// (zero: try once); `withTable` inside it takes the held lock again
    /// without waiting. A lock another program holds throws `.lockTimeout`
    /// naming it.
    func holdingLock<T>(wait: Duration, _ body: () throws(NodeGuardError) -> T) throws(NodeGuardError) -> T

    /// Who holds that lock now, if anyone (for `status`).
    var lockHolder: (pid: Int32, command: String)? { get }

    /// Runs `body` on a view of the table read without the xtables lock (as
    /// iptables-save reads): for other agents' tables, which NodeGuard never
    /// writes, and to tell whether its own need a transaction at all.
    /// Opening a missing table creates it: check `tableExists` first.
    func readTable<T>(
        _ name: String, _ family: AddressFamily,
        _ body: (any TableView) throws(NodeGuardError) -> T
    ) throws(NodeGuardError) -> T

    /// Whether the kernel already has this legacy table; asking must not
    /// create it (opening a table through libiptc does).
    func tableExists(_ name: String, _ family: AddressFamily) -> Bool

    /// Each chain's rules as the backend's own tool writes them (for libiptc,
    /// `iptables-legacy-save`'s `-A CHAIN ...` lines), or nil where that
    /// fails: to name other programs' rules to an operator, whose matches
    /// NodeGuard's decoder does not read. For reports, never on a repair's
    /// path. Saving a table that does not exist creates it: check `tableExists`.
    func savedRules(_ name: String, _ family: AddressFamily) -> [String: [String]]?

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
    public func mangleTableExists(_ family: AddressFamily) -> Bool { tableExists("mangle", family) }
}
