import FoundationEssentials
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Keeps the kernel's rules as planned between requests: watches the tables
/// for changes (`ChangeWatch`), re-reads and repairs them, paces NodeGuard in
/// a fight with another agent (`FightTracker`), and waits for another
/// program's xtables lock without stopping the loop. Only the reconcile loop
/// calls it, through the engine, one call at a time.
final class DriftGuard {
    let reconciler: Reconciler
    private let audit: AuditTrail
    private var logger: Logger { audit.logger }
    /// The time for the schedule and fights (tests pass their own).
    let now: () -> ContinuousClock.Instant
    /// How often the digest of NodeGuard's part of each table is compared.
    let verifyInterval: Duration

    private(set) var lastVerify: Date?
    private(set) var lastVerifyDuration: Duration?
    private(set) var repairCount = 0
    /// Full libiptc reads by the verify loop (each may repair).
    private(set) var fullReadCount = 0
    private(set) var lastError: String?
    private(set) var watch = ChangeWatch()
    private var lastFullRead: ContinuousClock.Instant?
    private(set) var fights = FightTracker()
    private var culprits = CulpritNames()

    /// Since when NodeGuard has been waiting for a lock another program
    /// holds (a repair or a request could not take it), or nil.
    private(set) var lockWaitSince: ContinuousClock.Instant?
    /// A repair found needed could not take the lock: the next tick retries.
    private(set) var repairPending = false
    /// How many releases of the xtables lock the loop has seen (see DataplaneCache).
    private(set) var lockReleases = 0

    /// How often a start-up that waits for the xtables lock tries again
    /// (the loop, once running, tries at each release of the lock instead).
    static let lockRetryInterval: Duration = .milliseconds(100)

    init(reconciler: Reconciler, audit: AuditTrail, verifyInterval: Duration, now: @escaping () -> ContinuousClock.Instant) {
        self.reconciler = reconciler
        self.audit = audit
        self.verifyInterval = verifyInterval
        self.now = now
    }

    /// The first apply. While another program holds the xtables lock it
    /// waits (the kernel keeps its rules meanwhile) and says why through
    /// `waiting`, about every `lockRetryInterval`.
    func start(_ entries: [BlockEntry], waiting: (String) -> Void) throws(NodeGuardError) -> [TableChange] {
        var changes: [TableChange] = []
        while true {
            do throws(NodeGuardError) {
                changes = try locked { () throws(NodeGuardError) in try apply(entries) }
                break
            } catch where error.code == .lockTimeout {
                if lockWaitSince == nil {
                    lockWaitSince = now()
                    logger.warning("start-up waits for the xtables lock, keeping the kernel's rules as they are: \(error.message)")
                }
                waiting("waiting for the xtables lock: \(error.message)")
                usleep(UInt32(Self.lockRetryInterval.milliseconds * 1000))
            }
        }
        lockWaitSince = nil
        lastVerify = Date()
        remember()
        return changes
    }

    /// What the guard knows, for the reports.
    var state: DriftState {
        DriftState(lastVerify: lastVerify, lastVerifyDuration: lastVerifyDuration, repairCount: repairCount,
                   fullReadCount: fullReadCount, lastError: lastError, fights: fights.ordered.map(fightReport), repairPending: repairPending,
                   lockWait: lockWaitSince.map { ($0, reconciler.backend.lockHolder) },
                   deepCheckInterval: deepCheckInterval, quickChecks: watch.quickChecks, deepChecks: watch.deepChecks)
    }

    // MARK: the watch

    /// The tables NodeGuard keeps rules in, which the watch polls.
    var watchedTables: [ChangeWatch.Table] {
        let tables = fights.holding ? ["mangle", "raw"] : ["mangle"]
        return reconciler.families.flatMap { family in tables.map { ChangeWatch.Table(name: $0, family: family) } }
    }

    /// When the next deep check is due, after one ran: the digest covers
    /// NodeGuard's rules only, so it never needs stretching beside large tables.
    var deepCheckInterval: Duration { verifyInterval }

    /// The loop saw the xtables lock released: someone may have changed a table.
    func noteLockReleased() { lockReleases += 1 }

    /// One turn of the watch: a size check, or with `deep` a digest check,
    /// and a full read and repair only if either saw a change (or one is due).
    /// Returns what a full read changed, or nil if none ran.
    func watchTick(deep: Bool, entries: @autoclosure () -> [BlockEntry]) -> [TableChange]? {
        // A repair that waited for the lock goes first, at every tick.
        if repairPending { return verify(entries()) }
        // After a failed read, retry once per verify interval, not every tick.
        if lastError != nil && !deep { return nil }
        // A fight's retake or end is due on time, not at the next change.
        if fights.needsRead(at: now()) { return verify(entries()) }
        let reason: ChangeWatch.Reason?
        if lastError != nil {
            reason = .unknown
        } else if let last = lastFullRead, now() - last < ChangeWatch.fullReadInterval {
            reason = deep ? watch.deepCheck(watchedTables, backend: reconciler.backend)
                          : watch.quickCheck(watchedTables, backend: reconciler.backend)
        } else {
            reason = .due
        }
        guard let reason else {
            if deep { lastVerify = Date() }
            return nil
        }
        logger.debug("full read: \(reason)")
        // A read that is merely due nearly always finds nothing to repair.
        return verify(entries(), checkFirst: reason == .due)
    }

    /// Takes what the last apply verified, under the lock, as the state to watch.
    func remember() {
        watch.remember(watchedTables, verified: reconciler.verifiedFingerprints)
        lastFullRead = now()
    }

    /// Forgets what was verified: the next tick reads in full (after a failed change).
    func forget() { watch.forget() }

    // MARK: applying and repairing

    /// Runs `body` holding the xtables lock if it is free now; the reconcile
    /// loop never waits for it (it would stop answering and pinging the
    /// watchdog), it retries when the lock is released.
    func locked<T>(_ body: () throws(NodeGuardError) -> T) throws(NodeGuardError) -> T {
        try reconciler.backend.holdingLock(wait: .zero, body)
    }

    /// A request found the lock held and waits for its release.
    func requestWaitsForLock() {
        if lockWaitSince == nil { lockWaitSince = now() }
    }

    /// A request is done waiting for the lock (it ran or gave up); a repair may still wait.
    func requestDoneWaiting() {
        if !repairPending { lockWaitSince = nil }
    }

    /// Applies `entries` in the current fight mode: jump on top (or left where
    /// it is while backing off), raw hold on or off.
    @discardableResult
    func apply(_ entries: [BlockEntry], at time: ContinuousClock.Instant? = nil,
               checkFirst: Bool = false) throws(NodeGuardError) -> [TableChange] {
        try reconciler.apply(entries, yielding: fights.yielding(at: time ?? now()),
                             holdInRaw: fights.holding, checkFirst: checkFirst)
    }

    /// Re-reads NodeGuard's chains and repairs any drift at once. With
    /// `checkFirst`, reads without the lock first (Reconciler.apply).
    /// Returns what it changed (nil if the read failed or waits for the lock).
    @discardableResult
    func verify(_ entries: [BlockEntry], checkFirst: Bool = false) -> [TableChange]? {
        let start = now()
        for event in fights.tick(at: start) { report(event) }
        let yielded = fights.yielding(at: start)
        do {
            // A read that is merely due plans on lock-free reads and takes the
            // lock only for a table that needs a repair: another program's
            // long iptables-restore does not hold it up.
            var changes = checkFirst
                ? try countedFullRead { () throws(NodeGuardError) in try apply(entries, at: start, checkFirst: true) }
                : try locked { () throws(NodeGuardError) in
                    // Counted once the lock is ours: a repair waiting for it reads nothing.
                    try countedFullRead { () throws(NodeGuardError) in try apply(entries, at: start) }
                }
            let wasHolding = fights.holding
            for event in fights.observe(culprits.displacements(in: changes), at: start, yielded: yielded) {
                guard case .started(var fight) = event else { report(event); continue }
                // A fight needs the culprit named so an operator can find it.
                fight.displacement.culprit = culprits.name(fight.displacement, in: changes, backend: reconciler.backend)
                fights.rename(fight.displacement.site, culprit: fight.displacement.culprit)
                report(.started(fight))
            }
            // A fight over mangle began: hold the ports closed from raw now,
            // before the other agent moves again.
            if fights.holding && !wasHolding {
                changes += try locked { () throws(NodeGuardError) in try apply(entries) }
            }
            remember()
            if lockWaitSince != nil { logger.info("the xtables lock is free again; repaired what waited for it") }
            lockWaitSince = nil
            repairPending = false
            lastVerifyDuration = now() - start
            lastVerify = Date()
            if lastError != nil { logger.info("the tables are healthy again") }
            lastError = nil
            // The scheduled read found nothing to repair: hand the heap's free
            // pages back (malloc_trim, about a millisecond, never on a repair's path).
            if checkFirst && changes.isEmpty { releaseFreeHeap() }
            guard !changes.isEmpty else { return changes }
            repairCount += 1
            audit.record("repair", from: .daemon, details: ["changes": .array(changes.map { .string($0.description) })])
            for change in changes {
                logger.warning("repaired drift: \(change)", metadata: [
                    "action": "repair", "family": "\(change.familyName)", "chain": "\(change.chain)",
                ])
            }
            return changes
        } catch where error.code == .lockTimeout {
            // Someone else is changing the tables: repair when they are done.
            if lockWaitSince == nil {
                lockWaitSince = start
                logger.warning("a repair waits for the xtables lock: \(error.message)")
            }
            repairPending = true
        } catch {
            if lastError != error.message { logger.error("verify failed: \(error.message)") }
            lastError = error.message
        }
        return nil
    }

    private func countedFullRead<T>(_ body: () throws(NodeGuardError) -> T) throws(NodeGuardError) -> T {
        fullReadCount += 1
        return try body()
    }

    // MARK: fights

    /// Logs and records a fight's progress, with advice an operator can act on.
    private func report(_ event: FightTracker.Event) {
        switch event {
        case .started(let fight):
            let site = fight.displacement.site
            let hold = site.table == "mangle" ? " and holds the blocked ports closed from the raw table" : ""
            logger.warning("""
                fight: '\(fight.displacement.culprit)' was put above NodeGuard's jump in \(site) \
                \(fight.displacements) times; NodeGuard stops moving its jump back there \
                (next try in \(fight.backoff))\(hold). \(Self.fightAdvice)
                """, metadata: ["action": "fight", "culprit": "\(fight.displacement.culprit)"])
            audit.record("fight-start", from: .daemon, details: fightDetails(fight))
        case .continued(let fight):
            logger.warning("fight: '\(fight.displacement.culprit)' pushed NodeGuard's jump down again in \(fight.displacement.site); next try in \(fight.backoff)",
                           metadata: ["action": "fight", "culprit": "\(fight.displacement.culprit)"])
            audit.record("fight-continued", from: .daemon, details: fightDetails(fight))
        case .ended(let fight):
            let lift = fight.displacement.site.table == "mangle" && !fights.holding ? "; lifting the raw-table hold" : ""
            logger.info("fight over in \(fight.displacement.site): NodeGuard's jump stayed first for \(fight.backoff)\(lift)",
                        metadata: ["action": "fight", "culprit": "\(fight.displacement.culprit)"])
            audit.record("fight-end", from: .daemon, details: fightDetails(fight))
        }
    }

    static let fightAdvice = """
        Make the other agent append its rule rather than insert it first (Calico: FELIX_CHAININSERTMODE=Append), \
        or have it leave NodeGuard's ports to NodeGuard.
        """

    /// A fight as `status` and the audit log show it: one place for its fields.
    func fightReport(_ fight: FightTracker.Fight) -> StatusReport.FightReport {
        StatusReport.FightReport(
            culprit: fight.displacement.culprit, family: fight.displacement.site.family,
            table: fight.displacement.site.table, chain: fight.displacement.site.chain,
            displacements: fight.displacements, since: iso8601(fight.since),
            backoffSeconds: Int(fight.backoff.components.seconds),
            retakeInSeconds: max(0, Int((fight.retakeAt - now()).components.seconds)),
            holding: fight.displacement.site.table == "mangle" ? "raw" : nil, advice: Self.fightAdvice)
    }

    /// The audit record's details for a fight event.
    private func fightDetails(_ fight: FightTracker.Fight) -> [String: JSONValue] {
        guard case .object(let fields)? = try? JSONValueEncoder().encode(fightReport(fight)) else { return [:] }
        return fields
    }
}

extension Duration {
    /// Whole milliseconds, for JSON fields and sleeps.
    var milliseconds: Int {
        Int(components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }
}
