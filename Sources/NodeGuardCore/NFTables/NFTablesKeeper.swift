import SystemPackage

/// How the keeper reaches the kernel: one netlink socket in production
/// (`NFTSocket`), an in-memory table in unit tests.
public protocol NFTablesTransport: AnyObject {
    /// The table as the kernel holds it now, or nil if there is none.
    func read(_ table: String) throws(NodeGuardError) -> NFTTableView?
    /// Sends `edits` as one batch: all of them take effect, or none.
    func commit(_ table: String, _ edits: [NFTEdit]) throws(NodeGuardError)
}

/// Keeps NodeGuard's nftables table as a deny-list needs it: read, plan the
/// repair (`NFTablesRepair`), commit it as one batch. The table is created
/// with the `owner` and `persist` flags, so that while the daemon runs no
/// other process can change or delete it (nor `nft flush ruleset` flush it),
/// and when it exits or crashes the kernel keeps it, drops included, for the
/// next start to adopt. A kernel that refuses those flags (before 6.9 for
/// persist) gets a table without them, which the daemon then watches and
/// repairs as it does legacy tables: `heldByKernel` says which.
/// Not thread-safe: the reconcile loop owns it.
public final class NFTablesKeeper {
    public let transport: any NFTablesTransport
    /// The flags NodeGuard's table is kept with.
    public private(set) var flags = NFTablesPlanner.heldFlags
    /// Why the table is kept without `owner` and `persist`, if it is.
    public private(set) var flagsRefused: String?
    public private(set) var commitCount = 0
    private var planned: (entries: [BlockEntry], plan: NFTablesPlan)?
    /// A batch that loses a race with another writer (an element gone, one
    /// added) is planned again on a fresh read this many times in all.
    static let commitAttempts = 3

    public init(transport: any NFTablesTransport) {
        self.transport = transport
    }

    public var heldByKernel: Bool { flags == NFTablesPlanner.heldFlags }

    /// Makes the table match `entries`; returns what it had to change.
    @discardableResult
    public func apply(_ entries: [BlockEntry]) throws(NodeGuardError) -> [TableChange] {
        if planned?.entries != entries { planned = (entries, NFTablesPlanner.plan(entries)) }
        guard let plan = planned?.plan else { return [] }
        return try commit { view in NFTablesRepair.repair(view, to: plan, flags: flags) }
    }

    /// Deletes NodeGuard's table, if there is one.
    @discardableResult
    public func removeAll() throws(NodeGuardError) -> [TableChange] {
        try commit { view in NFTablesRepair.removal(view) }
    }

    /// Deletes NodeGuard's nftables table through a socket of its own (for
    /// `nodeguardd --remove-rules`): nothing to do where there is no table,
    /// or no nftables in the kernel at all.
    public static func removeTable() throws(NodeGuardError) -> [TableChange] {
        let socket: NFTSocket
        do throws(NodeGuardError) { socket = try NFTSocket() } catch {
            if nftablesMissing(error) { return [] }
            throw error
        }
        do throws(NodeGuardError) {
            return try NFTablesKeeper(transport: socket).removeAll()
        } catch {
            if nftablesMissing(error) { return [] }
            throw error
        }
    }

    /// A kernel built without nf_tables answers its netlink subsystem so.
    static func nftablesMissing(_ error: NodeGuardError) -> Bool {
        [.protocolNotSupported, .addressFamilyNotSupported, .notSupported].contains(error.errno)
    }

    /// Drop counters and whether each hook jumps to NodeGuard's chain, per
    /// family, in the legacy backend's terms (`status`, `metrics`).
    public func inspect() throws(NodeGuardError) -> [TableInspection] {
        let view = try transport.read(NFTablesPlanner.table)
        return AddressFamily.allCases.map { family in
            var hooked: [String: Bool] = [:]
            for hook in NFTHook.allCases {
                let chain = view?.chains.first { $0.hook == hook && $0.name == hook.rawValue }
                let wanted = NFTablesPlanner.chains.first { $0.hook == hook }
                hooked[hook.legacyChain] = chain.map { chain in
                    chain.priority == NFTablesPlanner.priority && chain.rules.map(\.rule) == (wanted?.rules.map(Optional.some) ?? [])
                } ?? false
            }
            var counters: [PortKey: DropCounters] = [:]
            let drops = view?.sets.first { $0.name == NFTablesPlanner.dropSet(family).name }?.elements ?? []
            for observed in drops where observed.element.ports.count == 1 {
                let key = PortKey(port: observed.element.ports.lowerBound, transport: observed.element.transport)
                counters[key] = DropCounters(packets: observed.packets, bytes: observed.bytes)
            }
            return TableInspection(family: family, hookFirst: hooked, dropCounters: counters)
        }
    }

    /// Reads, plans with `plan`, commits; on a lost race plans again on a new
    /// read; on a kernel that refuses the table's flags, drops them once.
    private func commit(_ plan: (NFTTableView?) -> NFTablesRepair.Repair) throws(NodeGuardError) -> [TableChange] {
        var attempt = 1
        while true {
            let repair = plan(try transport.read(NFTablesPlanner.table))
            if repair.isEmpty { return [] }
            do throws(NodeGuardError) {
                try transport.commit(NFTablesPlanner.table, repair.edits)
                commitCount += 1
                return repair.changes
            } catch {
                // Only a batch that sets the flags can be refused for them.
                let setsFlags = repair.edits.contains { if case .addTable = $0 { true } else { false } }
                if heldByKernel, setsFlags, Self.refusesFlags(error) {
                    flagsRefused = "the kernel refused the table flags owner and persist (\(error.message)): "
                        + "NodeGuard's table is not held by the kernel; it is watched and repaired instead"
                    flags = []
                    continue
                }
                guard Self.lostRace(error), attempt < Self.commitAttempts else { throw error }
                attempt += 1
            }
        }
    }

    /// A kernel without `persist` (before 6.9) or `owner` (before 5.12)
    /// rejects the unknown flag with EOPNOTSUPP.
    static func refusesFlags(_ error: NodeGuardError) -> Bool {
        error.errno == .notSupported || error.errno == .notSupportedOnSocket
    }

    /// Another writer changed the table between the read and the batch: an
    /// element or object the batch deletes is gone, or one it adds exists.
    static func lostRace(_ error: NodeGuardError) -> Bool {
        error.errno == .noSuchFileOrDirectory || error.errno == .fileExists || error.errno == .resourceBusy
    }
}

extension NFTSocket: NFTablesTransport {}

extension NFTHook {
    /// The legacy hook chain the same packets pass ("PREROUTING", "OUTPUT"):
    /// reports name hooks the same way on both backends.
    var legacyChain: String { rawValue.uppercased() }
}
