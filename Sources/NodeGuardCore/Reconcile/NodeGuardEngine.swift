import FoundationEssentials
import Logging

#if canImport(Glibc)
import Glibc
#endif

public struct DaemonConfiguration: Sendable {
    public var configPath: String
    public var stateDirectory: String
    public var socketPath: String
    public var verifyInterval: Duration
    /// How often the cheap size check runs (see `ChangeWatch`).
    public var watchInterval: Duration
    /// Kept up to date for node_exporter's textfile collector, if set.
    public var metricsTextfile: String?

    public init(configPath: String = "/etc/nodeguard/denylist.json",
                stateDirectory: String = "/var/lib/nodeguard",
                socketPath: String = ControlProtocol.defaultSocketPath,
                verifyInterval: Duration = .seconds(1),
                watchInterval: Duration = .milliseconds(100),
                metricsTextfile: String? = nil) {
        self.configPath = configPath
        self.stateDirectory = stateDirectory
        self.socketPath = socketPath
        self.verifyInterval = verifyInterval
        self.watchInterval = watchInterval
        self.metricsTextfile = metricsTextfile
    }
}

/// The state NodeGuard owns and every operation on it: the deny-list file's
/// entries, the runtime entries, and the kernel rules that must match them.
/// Not thread-safe by design: only the reconcile loop calls it, one request
/// or verify at a time, so no two reconciles ever interleave.
public final class NodeGuardEngine {
    public let configuration: DaemonConfiguration
    let reconciler: Reconciler
    let store: RuntimeStateStore
    let audit: AuditLog
    let logger: Logger
    let startedAt = Date()

    private(set) var configEntries: [BlockEntry] = []
    private(set) var runtimeEntries: [BlockEntry] = []
    private(set) var lastApply: Date?
    let drift: DriftGuard
    let trail: AuditTrail
    private let dataplaneCache = DataplaneCache()
    private var loggedDataplane: String?
    private var textfileWritten: ContinuousClock.Instant?
    /// The textfile is rewritten at most this often (and after every change).
    static let textfileInterval: Duration = .seconds(15)
    /// node_exporter runs as a user of its own and must read the textfile; it holds only counters.
    static let textfileMode: mode_t = 0o644

    // What the drift guard knows, for the reports.
    var lastVerify: Date? { drift.lastVerify }
    var lastVerifyDuration: Duration? { drift.lastVerifyDuration }
    var repairCount: Int { drift.repairCount }
    var fullReadCount: Int { drift.fullReadCount }
    var lastError: String? { drift.lastError }
    var fights: FightTracker { drift.fights }
    var watch: ChangeWatch { drift.watch }
    var lockWaitSince: ContinuousClock.Instant? { drift.lockWaitSince }
    var repairPending: Bool { drift.repairPending }
    var lockReleases: Int { drift.lockReleases }
    var now: () -> ContinuousClock.Instant { drift.now }
    static var fightAdvice: String { DriftGuard.fightAdvice }
    func fightDetails(_ fight: FightTracker.Fight) -> [String: JSONValue] { DriftGuard.fightDetails(fight) }

    public init(configuration: DaemonConfiguration, backend: any NetfilterBackend, logger: Logger,
                families: [AddressFamily] = Reconciler.availableFamilies(),
                now: @escaping () -> ContinuousClock.Instant = { .now }) {
        self.configuration = configuration
        self.reconciler = Reconciler(backend: backend, families: families)
        self.store = RuntimeStateStore(directory: configuration.stateDirectory)
        self.audit = AuditLog(directory: configuration.stateDirectory)
        self.logger = logger
        self.trail = AuditTrail(log: audit, logger: logger)
        self.drift = DriftGuard(reconciler: reconciler, audit: trail, verifyInterval: configuration.verifyInterval, now: now)
    }

    /// Loads the file and the runtime state and applies them. Any error stops
    /// start-up and leaves the kernel's rules exactly as they were.
    /// While another program holds the xtables lock, start-up waits (the
    /// kernel keeps its rules meanwhile) and says why through `waiting`,
    /// about every `DriftGuard.lockRetryInterval`.
    public func start(waiting: (String) -> Void = { _ in }) throws(NodeGuardError) {
        configEntries = try Self.loadConfig(configuration.configPath)
        runtimeEntries = try store.load()
        try checkLimits()
        let changes = try drift.start(effectiveEntries.map(\.entry), waiting: waiting)
        lastApply = Date()
        for change in changes { logger.info("applied: \(change)") }
        // The full dataplane read waits for the first request that needs it
        // (a 5,000-service nat table costs a few hundred ms and MB to read);
        // an eBPF dataplane that defeats NodeGuard is said at once.
        if DataplaneReader.interfaceExists("cilium_host") {
            logger.warning("dataplane: a cilium_host interface exists; if Cilium replaces kube-proxy, NodePorts are balanced by eBPF before netfilter and NodeGuard's blocks cannot close them (`nodeguardctl status` tells)")
        }
        updateTextfile(force: true)
        record("start", from: .daemon, details: [
            "entries": .integer(effectiveEntries.count), "changes": .array(changes.map { .string($0.description) }),
        ])
        logger.info("NodeGuard is guarding \(effectiveEntries.count) port(s): \(configEntries.count) from \(configuration.configPath), \(runtimeEntries.count) runtime")
    }

    public static func loadConfig(_ path: String) throws(NodeGuardError) -> [BlockEntry] {
        try DenyListCodec.load(path).entries
    }

    /// The file's entries first; a runtime entry for a port the file also
    /// lists is shadowed by the file's.
    public var effectiveEntries: [(entry: BlockEntry, source: EntrySource)] {
        let fileKeys = Set(configEntries.map(\.key))
        return configEntries.map { ($0, .config) }
            + runtimeEntries.filter { !fileKeys.contains($0.key) }.map { ($0, .runtime) }
    }

    // MARK: the verify loop

    /// One turn of the watch (`DriftGuard.watchTick`); the metrics textfile
    /// follows what a full read found.
    public func watchTick(deep: Bool) {
        guard let changes = drift.watchTick(deep: deep, entries: effectiveEntries.map(\.entry)) else { return }
        updateTextfile(force: !changes.isEmpty)
    }

    /// Re-reads NodeGuard's chains and repairs any drift at once.
    public func verify(checkFirst: Bool = false) {
        guard let changes = drift.verify(effectiveEntries.map(\.entry), checkFirst: checkFirst) else { return }
        updateTextfile(force: !changes.isEmpty)
    }

    public var deepCheckInterval: Duration { drift.deepCheckInterval }

    /// The loop saw the xtables lock released: someone may have changed a table.
    public func noteLockReleased() { drift.noteLockReleased() }

    private func locked<T>(_ body: () throws(NodeGuardError) -> T) throws(NodeGuardError) -> T {
        try drift.locked(body)
    }

    @discardableResult
    private func applyEffective() throws(NodeGuardError) -> [TableChange] {
        try drift.apply(effectiveEntries.map(\.entry))
    }

    // MARK: requests

    /// A request that changes the tables takes the xtables lock first, without
    /// waiting. While another program holds it and `waited` is nil, the answer
    /// is `.lockTimeout` and nothing is changed, logged or recorded: the loop
    /// keeps the request and asks again when the lock is released. `waited`
    /// says how long it waited: then a held lock fails the request for real.
    public func handle(_ request: ControlRequest, from origin: RequestOrigin, waited: Duration? = nil) -> ControlResponse {
        let response: ControlResponse
        // What a change did to the tables, for the audit record.
        var changes: [String]?
        do {
            switch request {
            case .block(let entry):
                let result = try locked { () throws(NodeGuardError) in try block(entry) }
                (response, changes) = (ControlResponse(result), result.changes)
            case .unblock(let key):
                let result = try locked { () throws(NodeGuardError) in try unblock(key) }
                (response, changes) = (ControlResponse(result), result.changes)
            case .reload:
                let result = try locked { () throws(NodeGuardError) in try reload() }
                (response, changes) = (ControlResponse(result), result.changes)
            case .list: response = ControlResponse(EntryList(entries: entryReports(counters: [:], nodePorts: dataplane())))
            case .explain(let key): response = ControlResponse(explain(key))
            case .nodeports: response = ControlResponse(nodePortReport())
            case .status: response = ControlResponse(status())
            case .metrics: response = ControlResponse(MetricsResult(text: metrics().render()))
            }
        } catch where error.code == .lockTimeout && waited == nil {
            drift.requestWaitsForLock()
            return .failure(error)
        } catch {
            var failure = error
            if let waited, error.code == .lockTimeout {
                failure.message = "waited \(waited) for the xtables lock: \(error.message)"
                // Given up: nothing waits for the lock any more, unless a repair does.
                drift.requestDoneWaiting()
            }
            if request.isMutating { logger.error("\(request.command) failed: \(failure.message)", metadata: Self.metadata(origin)) }
            response = .failure(failure)
        }
        if request.isMutating, case .success = response { drift.requestDoneWaiting() }
        if request.isMutating {
            var details: [String: JSONValue] = [:]
            switch request {
            case .block(let entry): details["entry"] = DenyListCodec.encodeEntry(entry)
            case .unblock(let key): details["port"] = .string(key.description)
            case .reload: details["config"] = .string(configuration.configPath)
            case .list, .status, .metrics, .nodeports, .explain: break
            }
            if let changes { details["changes"] = .array(changes.map { .string($0) }) }
            var error: String?
            if case .failure(let failure) = response { error = failure.message }
            record(request.command, from: origin, details: details, error: error)
            updateTextfile(force: true)
            // The tables changed on purpose: fingerprint them as they are now.
            // After a failure, let the next tick re-read them instead.
            if case .success = response { drift.remember() } else { drift.forget() }
        }
        return response
    }

    /// Appends to the audit log (`AuditTrail`).
    func record(_ action: String, from origin: RequestOrigin, details: [String: JSONValue], error: String? = nil) {
        trail.record(action, from: origin, details: details, error: error)
    }

    static func metadata(_ origin: RequestOrigin) -> Logger.Metadata { AuditTrail.metadata(origin) }

    func block(_ entry: BlockEntry) throws(NodeGuardError) -> BlockResult {
        if let existing = configEntries.first(where: { $0.key == entry.key }) {
            guard Self.sameRules(existing, entry) else {
                throw NodeGuardError(.conflict,
                    "\(entry.key) is already blocked by \(configuration.configPath) with other settings; change it there and run `nodeguardctl reload`")
            }
            return BlockResult(port: entry.key, source: .config, changed: false)
        }
        var updated = runtimeEntries
        if let index = updated.firstIndex(where: { $0.key == entry.key }) {
            if updated[index] == entry {
                return BlockResult(port: entry.key, source: .runtime, changed: false)
            }
            updated[index] = entry
        } else {
            updated.append(entry)
        }
        try checkLimits(blocking: entry)
        let changes = try commitRuntime(updated)
        logger.info("blocked \(entry.key)", metadata: [
            "port": "\(entry.port)", "protocol": "\(entry.transport.rawValue)",
            "family": "\(entry.family.rawValue)", "reason": "\(entry.reason ?? "")", "action": "block",
        ])
        return BlockResult(port: entry.key, source: .runtime, changed: true, changes: changes.map(\.description))
    }

    func unblock(_ key: PortKey) throws(NodeGuardError) -> UnblockResult {
        if configEntries.contains(where: { $0.key == key }) {
            throw NodeGuardError(.configEntry,
                "\(key) is blocked by the deny-list file \(configuration.configPath); remove it there and run `nodeguardctl reload`")
        }
        guard runtimeEntries.contains(where: { $0.key == key }) else {
            throw NodeGuardError(.notFound, "\(key) is not blocked")
        }
        let changes = try commitRuntime(runtimeEntries.filter { $0.key != key })
        logger.info("unblocked \(key)", metadata: ["port": "\(key.port)", "protocol": "\(key.transport.rawValue)", "action": "unblock"])
        return UnblockResult(port: key, changes: changes.map(\.description))
    }

    /// State file first, then the kernel: a crash in between leaves the port
    /// blocked after restart rather than open. If the kernel refuses, the old
    /// state file and rules are put back, so what is reported is what holds.
    private func commitRuntime(_ updated: [BlockEntry]) throws(NodeGuardError) -> [TableChange] {
        let previous = runtimeEntries
        try store.save(updated)
        runtimeEntries = updated
        do {
            let changes = try applyEffective()
            lastApply = Date()
            return changes
        } catch {
            runtimeEntries = previous
            do {
                try store.save(previous)
                try applyEffective()
            } catch let rollback {
                logger.critical("could not roll back after a failed change: \(rollback.message)")
            }
            throw error
        }
    }

    /// Re-reads the deny-list file. A bad file keeps the last good list.
    public func reload() throws(NodeGuardError) -> ReloadResult {
        let entries: [BlockEntry]
        do {
            entries = try Self.loadConfig(configuration.configPath)
        } catch {
            logger.error("reload refused, keeping the last good deny-list: \(error.message)")
            throw error
        }
        let previous = configEntries
        configEntries = entries
        do {
            try checkLimits()
            let changes = try applyEffective()
            lastApply = Date()
            for change in changes { logger.info("applied: \(change)") }
            logger.info("reloaded \(configuration.configPath): \(entries.count) entries")
            return ReloadResult(entries: entries.count, changes: changes.map(\.description))
        } catch {
            configEntries = previous
            throw error
        }
    }

    static func sameRules(_ a: BlockEntry, _ b: BlockEntry) -> Bool {
        a.key == b.key && a.family == b.family && Set(a.allowFrom) == Set(b.allowFrom)
    }

    // MARK: reports

    /// Reads the tables once for counters and hook positions.
    /// One read of both tables, and the health it implies: status and metrics
    /// must agree on what "healthy" means.
    func tableHealth() -> (inspections: [TableInspection], hooksFirst: Bool, hooksEffective: Bool,
                           readError: String?, healthy: Bool) {
        let (inspections, readError) = inspectTables()
        let complete = inspections.count == reconciler.families.count
        let hooksFirst = complete && inspections.allSatisfy { $0.hookFirst.values.allSatisfy { $0 } }
        // Rules that cannot let a blocked packet through may stand above the jump.
        let hooksEffective = complete && inspections.allSatisfy { $0.hookEffective.values.allSatisfy { $0 } }
        // A fight needs a person even while the raw hold keeps the ports closed.
        // A repair that waits for the lock: the tables are not as planned.
        let healthy = lastError == nil && readError == nil && hooksEffective && fights.fights.isEmpty && !repairPending
        return (inspections, hooksFirst, hooksEffective, readError, healthy)
    }

    /// What the last read of the tables found, and when, to serve a flood
    /// of reads from: the same lock releases, commits and table sizes, and
    /// younger than `inspectionReuse`.
    private var lastInspection: (inspections: [TableInspection], readError: String?, at: ContinuousClock.Instant,
                                 lockReleases: Int, commits: Int, entries: [BlockEntry], sizes: [TableInfo])?
    /// How stale the counters in `status` and `metrics` may be while requests keep coming.
    static let inspectionReuse: Duration = .milliseconds(250)

    /// Reads both families' tables for counters and hook positions, unless
    /// nothing can have changed since a read moments ago: a hundred clients
    /// polling `status` must not keep the loop from repairs.
    private func inspectTables() -> (inspections: [TableInspection], readError: String?) {
        let entries = effectiveEntries.map(\.entry)
        // Only tables that exist: asking a missing legacy table's size creates it.
        let sizes = reconciler.families.filter { reconciler.backend.tableExists("mangle", $0) }
            .compactMap { try? reconciler.backend.tableInfo("mangle", $0) }
        let now = ContinuousClock.now
        if let last = lastInspection, now - last.at < Self.inspectionReuse, last.lockReleases == lockReleases,
           last.commits == reconciler.commitCount, last.entries == entries, last.sizes == sizes {
            return (last.inspections, last.readError)
        }
        var inspections: [TableInspection] = []
        var readError: String?
        do { inspections = try reconciler.inspect(entries) } catch { readError = error.message }
        lastInspection = (inspections, readError, now, lockReleases, reconciler.commitCount, entries, sizes)
        return (inspections, readError)
    }

    func metrics() -> MetricsSnapshot {
        let health = tableHealth()
        let sources = Dictionary(grouping: effectiveEntries, by: \.source).mapValues(\.count)
        return MetricsSnapshot(inspections: health.inspections, blockedBySource: sources, repairs: repairCount,
                               commits: reconciler.commitCount, healthy: health.healthy,
                               lastVerifyDuration: lastVerifyDuration, lastVerify: lastVerify, lastApply: lastApply,
                               changeChecks: ["quick": watch.quickChecks, "deep": watch.deepChecks], fullReads: fullReadCount)
    }

    /// Rewrites the metrics textfile (atomically) after a change or when it is
    /// older than `textfileInterval`, so the verify loop rarely pays for it.
    func updateTextfile(force: Bool) {
        guard let path = configuration.metricsTextfile else { return }
        let now = ContinuousClock.now
        if !force, let written = textfileWritten, now - written < Self.textfileInterval { return }
        do {
            try writeDurably(Array(metrics().render().utf8), to: path, mode: Self.textfileMode)
            textfileWritten = now
        } catch {
            logger.error("metrics textfile: \(error.message)")
        }
    }

    /// One line for `systemctl status` (STATUS=), from the state alone.
    public var statusLine: String {
        let count = effectiveEntries.count
        let runtime = effectiveEntries.filter { $0.source == .runtime }.count
        var line = "Guarding \(count) port\(count == 1 ? "" : "s") (\(runtime) runtime)"
        if let lastVerify {
            let seconds = Int(lastVerify.timeIntervalSince1970) % 86_400
            let clock = "\(twoDigits(seconds / 3600)):\(twoDigits(seconds / 60 % 60)):\(twoDigits(seconds % 60))"
            line += "; last verify \(clock) UTC"
        }
        line += "; \(repairCount) repair\(repairCount == 1 ? "" : "s")"
        for fight in fights.ordered.reversed() {
            let hold = fight.displacement.site.table == "mangle" ? ", holding from raw" : ""
            line = "FIGHT with '\(fight.displacement.culprit)' in \(fight.displacement.site)\(hold); " + line
        }
        if let lastError { line = "FAILING: \(lastError); " + line }
        return line
    }

    /// What rewrites NodePorts on this node, re-read only when a nat table,
    /// nftables or the marker interfaces changed. A change in what defeats
    /// NodeGuard is logged.
    func dataplane() -> DataplaneReport {
        let report = dataplaneCache.report(backend: reconciler.backend, families: reconciler.families, lockReleases: lockReleases)
        if report.summary != loggedDataplane {
            loggedDataplane = report.summary
            logger.info("dataplane: \(report.summary)")
            for warning in report.warnings { logger.warning("dataplane: \(warning)") }
        }
        return report
    }

    /// Every NodePort on the node, its service, and whether NodeGuard blocks it.
    func nodePortReport() -> NodePortsReport {
        let found = dataplane()
        let blocked = Dictionary(effectiveEntries.map { ($0.entry.key, $0.entry) }) { first, _ in first }
        let ports = found.nodePorts.map { nodePort in
            NodePortReport(key: nodePort.key, family: nodePort.family, service: nodePort.service, source: nodePort.source,
                           endpoints: nodePort.endpoints, blocked: blocked[nodePort.key]?.family.includes(nodePort.family) ?? false)
        }
        return NodePortsReport(nodeports: ports, problems: found.problems, dataplane: dataplaneSummary(found))
    }

    func dataplaneSummary(_ report: DataplaneReport) -> DataplaneSummary {
        DataplaneSummary(kubeProxy: report.kubeProxy, others: report.others, ebpf: report.ebpf, warnings: report.warnings,
                         summary: report.summary, reads: dataplaneCache.reads)
    }

    /// The path a packet to `key` takes on this node: who rewrites it and to
    /// where, whether and where NodeGuard drops it, and what defeats that.
    func explain(_ key: PortKey) -> ExplainReport {
        let report = dataplane()
        let health = tableHealth()
        let entry = effectiveEntries.first { $0.entry.key == key }
        var rewrites = report.nodePorts.filter { $0.key == key }.map { nodePort in
            ExplainReport.Rewrite(by: "kube-proxy service \(nodePort.service)", kind: "kube-proxy",
                                  family: nodePort.family, source: nodePort.source, to: nodePort.endpoints)
        }
        rewrites += report.rewrites.filter { $0.key == key }.map { rewrite in
            ExplainReport.Rewrite(by: "\(rewrite.kind.rawValue) (nat chain \(rewrite.chain))",
                                  kind: rewrite.kind == .docker ? "docker" : rewrite.kind == .cniHostPort ? "cni-hostport" : "dnat",
                                  family: rewrite.family, source: rewrite.source, to: [rewrite.to])
        }
        var defeats = report.defeats
        var nodeguard = ExplainReport.Drop.notBlocked
        if let (blockEntry, source) = entry {
            var drops: [String: DropCount] = [:]
            for inspection in health.inspections where blockEntry.family.includes(inspection.family) {
                let counter = inspection.dropCounters[key] ?? DropCounters()
                drops[inspection.family.rawValue] = DropCount(packets: counter.packets, bytes: counter.bytes)
                for (hook, effective) in inspection.hookEffective.sorted(by: { $0.key < $1.key }) where !effective {
                    defeats.append("NodeGuard's jump in \(inspection.family.rawValue) mangle \(hook) is missing or below a rule that may accept the packet first")
                }
            }
            for fight in fights.ordered {
                let hold = fight.displacement.site.table == "mangle" ? ": new connections are held closed from the raw table" : ""
                defeats.append("a fight with '\(fight.displacement.culprit)' in \(fight.displacement.site)\(hold)")
            }
            // allowFrom 0.0.0.0/0 or ::/0 (or networks covering every address): nothing blocked there.
            defeats += DenyListCodec.entryWarnings(blockEntry, path: "allowFrom").map { "allowFrom \($0.message)" }
            let families = AddressFamily.allCases.filter { blockEntry.family.includes($0) && reconciler.families.contains($0) }
            let unblockedFamilies = Set(report.nodePorts.filter { $0.key == key }.map(\.family)).subtracting(families)
            for family in unblockedFamilies.sorted(by: { $0.rawValue < $1.rawValue }) {
                defeats.append("the block covers \(families.map(\.rawValue).joined(separator: ", ")) only; the service also listens on \(family.rawValue)")
            }
            if !blockEntry.allowFrom.isEmpty {
                defeats.append("allowFrom lets \(blockEntry.allowFrom.map(\.description).joined(separator: ", ")) through (by design)")
            }
            nodeguard = ExplainReport.Drop(
                blocked: true, source: source, families: families,
                where: "mangle PREROUTING (remote clients) and mangle OUTPUT (this node), before the nat table's DNAT: PREROUTING/OUTPUT -> \(RulePlanner.entryChain) -> \(RulePlanner.transportChain(key.transport))",
                dropped: drops)
        }
        // Not a defeat: NodeGuard drops untracked packets too. Named so the
        // operator knows why kube-proxy's DNAT does not apply to them.
        let untracked = UntrackingRules.find(for: [key], backend: reconciler.backend, families: reconciler.families)[key] ?? []
        let blocked = entry != nil
        let closed = blocked && report.ebpf != "cilium-kube-proxy-replacement" && health.healthy
        // allowFrom 0.0.0.0/0 and ::/0: blocked in name only.
        let allowedEverywhere = entry.map { blockEntry, _ in
            AddressFamily.allCases.filter { blockEntry.family.includes($0) && reconciler.families.contains($0) }
                .allSatisfy(blockEntry.familiesLetThroughEntirely.contains)
        } ?? false
        let partlyAllowed = entry.map { !$0.entry.familiesLetThroughEntirely.isEmpty } ?? false
        let verdict = !blocked ? "open: NodeGuard does not block \(key)"
            : allowedEverywhere ? "open: allowFrom lets every client through, so the entry for \(key) blocks nothing"
            : partlyAllowed ? "at risk: see defeats"
            : closed ? "closed: NodeGuard drops \(key) before any DNAT"
            : "at risk: see defeats"
        return ExplainReport(key: key, rewrites: rewrites, dataplane: dataplaneSummary(report), nodeguard: nodeguard,
                             defeats: defeats, untracked: untracked, verdict: verdict)
    }

    func entryReports(counters: [PortKey: DropCounters], nodePorts: DataplaneReport) -> [EntryReport] {
        let services = Dictionary(grouping: nodePorts.nodePorts, by: \.key).mapValues { Array(Set($0.map(\.service))).sorted() }
        let untracked = UntrackingRules.find(for: effectiveEntries.map(\.entry.key), backend: reconciler.backend,
                                             families: reconciler.families)
        return effectiveEntries.map { entry, source in
            let names = services[entry.key]
            return EntryReport(entry: entry, source: source, untracked: untracked[entry.key], services: names,
                               warning: names == nil && nodePorts.problems.isEmpty
                                   ? "no NodePort on this node uses \(entry.key); a typo in the deny-list?" : nil,
                               dropped: counters[entry.key].map { DropCount(packets: $0.packets, bytes: $0.bytes) })
        }
    }

    static func milliseconds(_ duration: Duration) -> Int { duration.milliseconds }

    func status() -> StatusReport {
        let health = tableHealth()
        let report = dataplane()
        var counters: [PortKey: DropCounters] = [:]
        var hooks: [String: [String: Bool]] = [:]
        for inspection in health.inspections {
            for (key, value) in inspection.dropCounters { counters[key, default: DropCounters()] = counters[key, default: DropCounters()] + value }
            hooks[inspection.family.rawValue] = inspection.hookFirst
        }
        // What NodeGuard waits for, and who it waits on.
        let lockWait = lockWaitSince.map { since in
            StatusReport.LockWait(waitingMs: Self.milliseconds(ContinuousClock.now - since), repairPending: repairPending,
                                  heldBy: reconciler.backend.lockHolder.map { .init(pid: Int($0.pid), command: $0.command) })
        }
        // "fight" is the first (mangle first); "fights" all, one per disputed site.
        let fightReports = fights.ordered.map { fight in
            StatusReport.FightReport(
                culprit: fight.displacement.culprit, family: fight.displacement.site.family,
                table: fight.displacement.site.table, chain: fight.displacement.site.chain,
                displacements: fight.displacements, since: iso8601(fight.since),
                backoffSeconds: Int(fight.backoff.components.seconds),
                retakeInSeconds: max(0, Int((fight.retakeAt - ContinuousClock.now).components.seconds)),
                holding: fight.displacement.site.table == "mangle" ? "raw" : nil, advice: Self.fightAdvice)
        }
        return StatusReport(
            healthy: health.healthy, pid: Int(ProcessInfo.processInfo.processIdentifier), startedAt: iso8601(startedAt),
            configPath: configuration.configPath, stateDirectory: configuration.stateDirectory,
            families: reconciler.families, entries: entryReports(counters: counters, nodePorts: report),
            dataplane: dataplaneSummary(report), hooks: hooks, hooksFirst: health.hooksFirst, hooksEffective: health.hooksEffective,
            repairs: repairCount, commits: reconciler.commitCount, fullReads: fullReadCount,
            verifyIntervalMs: Self.milliseconds(configuration.verifyInterval),
            deepCheckIntervalMs: Self.milliseconds(deepCheckInterval),
            watchIntervalMs: Self.milliseconds(configuration.watchInterval),
            lastVerify: lastVerify.map(iso8601),
            lastVerifyMicroseconds: lastVerifyDuration.map { Int($0.components.seconds * 1_000_000 + $0.components.attoseconds / 1_000_000_000_000) },
            lastApply: lastApply.map(iso8601), lastError: lastError ?? health.readError,
            xtablesLock: lockWait, fights: fightReports)
    }
}
