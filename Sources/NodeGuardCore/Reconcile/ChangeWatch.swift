/// Tells the reconcile loop when NodeGuard's rules may have changed, so that
/// it re-reads them with libiptc (and repairs) only then. Legacy xtables send
/// no change events, so it polls, in two tiers:
///
/// - quick (every watch interval): each table's sizes and hook offsets
///   (`TableInfo`). Costs one small syscall per table whatever its size, and
///   catches every insert, delete, flush and chain removal.
/// - deep (every verify interval, and at once when the xtables lock is
///   released): a digest of NodeGuard's part of each table, counters zeroed
///   (`NetfilterBackend.ownedFingerprint`). Catches what keeps the sizes: two
///   rules swapped in one commit, a rule replaced by one of the same length.
///
/// A size change is confirmed with the digest before anything is re-read, so
/// other programs' changes elsewhere in the table cost a digest, not a repair
/// pass; and the digest covers NodeGuard's rules only, so its cost does not
/// grow with anyone else's.
///
/// What it compares against is what the reconciler verified or committed
/// (`Reconciler.verifiedFingerprints`, read back under the xtables lock), never
/// a read taken later: whatever another writer did after NodeGuard released the
/// lock must differ from it. The loop also re-reads unconditionally every
/// `fullReadInterval`, for a writer that ignores the lock and keeps every byte
/// of NodeGuard's part as it was but for what the digest cannot see.
public struct ChangeWatch {
    public struct Table: Hashable, Sendable, CustomStringConvertible {
        public var name: String
        public var family: AddressFamily
        public var description: String { "\(family.rawValue) \(name)" }
    }

    public enum Reason: Sendable, Equatable, CustomStringConvertible {
        case unknown
        case due
        case rules(Table)
        case unreadable(Table, String)

        public var description: String {
            switch self {
            case .unknown: "no fingerprint yet"
            case .due: "periodic full read"
            case .rules(let table): "NodeGuard's rules in the \(table) table changed"
            case .unreadable(let table, let why): "the \(table) table could not be read: \(why)"
            }
        }
    }

    public static let fullReadInterval: Duration = .seconds(60)

    public private(set) var known: [Table: TableFingerprint] = [:]
    /// How many quick and deep checks ran, for metrics and the benchmarks.
    public private(set) var quickChecks = 0
    public private(set) var deepChecks = 0

    public init() {}

    /// Sizes first, the digest only for a table whose sizes moved; nil when
    /// NodeGuard's part of every watched table is as it was left.
    public mutating func quickCheck(_ tables: [Table], backend: any NetfilterBackend) -> Reason? {
        quickChecks += 1
        for table in tables {
            guard let previous = known[table] else { return .unknown }
            do {
                if try backend.tableInfo(table.name, table.family) == previous.info { continue }
                if let reason = try compareDigest(table, previous, backend: backend) { return reason }
            } catch {
                return .unreadable(table, error.message)
            }
        }
        return nil
    }

    /// Every watched table's digest; nil when nothing of NodeGuard's changed.
    public mutating func deepCheck(_ tables: [Table], backend: any NetfilterBackend) -> Reason? {
        deepChecks += 1
        for table in tables {
            guard let previous = known[table] else { return .unknown }
            do {
                if let reason = try compareDigest(table, previous, backend: backend) { return reason }
            } catch {
                return .unreadable(table, error.message)
            }
        }
        return nil
    }

    /// A table whose digest is unchanged was changed by someone else, outside
    /// NodeGuard's part: its new sizes become the ones to compare with.
    private mutating func compareDigest(_ table: Table, _ previous: TableFingerprint,
                                        backend: any NetfilterBackend) throws(NodeGuardError) -> Reason? {
        let now = try backend.ownedFingerprint(table.name, table.family)
        guard now.digest == previous.digest else { return .rules(table) }
        known[table] = now
        return nil
    }

    /// Takes the fingerprints the reconciler verified as the state to compare
    /// with. A watched table it has none for is `.unknown` at the next check.
    public mutating func remember(_ tables: [Table], verified: [Table: TableFingerprint]) {
        known = [:]
        for table in tables {
            if let fingerprint = verified[table] { known[table] = fingerprint }
        }
    }

    /// Forgets everything: the next check asks for a full read.
    public mutating func forget() { known = [:] }
}
