/// Tells the reconcile loop when the tables holding NodeGuard's rules may
/// have changed, so that it re-reads them with libiptc (and repairs) only
/// then. Legacy xtables send no change events, so it polls, in two tiers:
///
/// - quick (every watch interval): each table's sizes and hook offsets
///   (`TableInfo`). Costs one small syscall per table whatever its size, and
///   catches every insert, delete, flush and chain removal.
/// - deep (every verify interval): a digest of every rule, counters zeroed
///   (`TableFingerprint`). Catches what keeps the sizes: two rules swapped in
///   one commit, a rule replaced by one of the same length.
///
/// The loop also re-reads unconditionally every `fullReadInterval`, in case a
/// writer that ignores the xtables lock changed a table between NodeGuard's
/// commit and the fingerprint taken after it.
public struct ChangeWatch {
    public struct Table: Hashable, Sendable, CustomStringConvertible {
        public var name: String
        public var family: AddressFamily
        public var description: String { "\(family.rawValue) \(name)" }
    }

    public enum Reason: Sendable, Equatable, CustomStringConvertible {
        case unknown
        case due
        case sizes(Table)
        case rules(Table)
        case unreadable(Table, String)

        public var description: String {
            switch self {
            case .unknown: "no fingerprint yet"
            case .due: "periodic full read"
            case .sizes(let table): "the \(table) table changed size"
            case .rules(let table): "the \(table) table's rules changed"
            case .unreadable(let table, let why): "the \(table) table could not be read: \(why)"
            }
        }
    }

    public static let fullReadInterval: Duration = .seconds(60)

    public private(set) var known: [Table: TableFingerprint] = [:]
    /// How many quick and deep checks ran, for metrics and the benchmarks.
    public private(set) var quickChecks = 0
    public private(set) var deepChecks = 0
    /// How long the last deep check took: it grows with NodeGuard's own
    /// rules (the kernel copies every one), not with other tables.
    public private(set) var lastDeepCheckDuration: Duration = .zero

    public init() {}

    /// Sizes only; nil when every watched table looks as NodeGuard left it.
    public mutating func quickCheck(_ tables: [Table], backend: any NetfilterBackend) -> Reason? {
        quickChecks += 1
        for table in tables {
            guard let previous = known[table] else { return .unknown }
            do {
                if try backend.tableInfo(table.name, table.family) != previous.info { return .sizes(table) }
            } catch {
                return .unreadable(table, error.message)
            }
        }
        return nil
    }

    /// Every rule's bytes; nil when nothing changed.
    public mutating func deepCheck(_ tables: [Table], backend: any NetfilterBackend) -> Reason? {
        deepChecks += 1
        let start = ContinuousClock.now
        defer { lastDeepCheckDuration = ContinuousClock.now - start }
        for table in tables {
            guard let previous = known[table] else { return .unknown }
            do {
                let now = try backend.tableFingerprint(table.name, table.family)
                if now.info != previous.info { return .sizes(table) }
                if now.digest != previous.digest { return .rules(table) }
            } catch {
                return .unreadable(table, error.message)
            }
        }
        return nil
    }

    /// How often to run deep checks: every `verifyInterval`, stretched so
    /// that they never take more than 0.1% of a core (a digest of 2,768
    /// blocked ports costs a few milliseconds), and at most every 30 s.
    public func deepCheckInterval(verifyInterval: Duration) -> Duration {
        min(max(verifyInterval, lastDeepCheckDuration * 1000), max(verifyInterval, .seconds(30)))
    }

    /// Records the tables as they are now: call right after a verify left
    /// them as planned.
    public mutating func remember(_ tables: [Table], backend: any NetfilterBackend) {
        known = [:]
        for table in tables {
            if let fingerprint = try? backend.tableFingerprint(table.name, table.family) {
                known[table] = fingerprint
            }
        }
    }

    /// Forgets everything: the next check asks for a full read.
    public mutating func forget() { known = [:] }
}
