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

/// Answers the control protocol's requests: changes go to the deny-list
/// entries (`DenyListEntries`) and through the drift guard's lock to the
/// kernel, reports are built (`Reports`) from what is gathered here, and
/// every change is recorded (`AuditTrail`). Also keeps the metrics textfile.
/// Not thread-safe by design: only the reconcile loop calls it, one request
/// or watch tick at a time, so no two reconciles ever interleave.
public final class NodeGuardEngine {
    public let configuration: DaemonConfiguration
    let reconciler: Reconciler
    let entries: DenyListEntries
    let drift: DriftGuard
    let trail: AuditTrail
    let logger: Logger
    let startedAt = Date()
    private let inspections = InspectionCache()
    private let dataplaneCache = DataplaneCache()
    private var loggedDataplane: String?
    private var textfileWritten: ContinuousClock.Instant?
    /// The textfile is rewritten at most this often (and after every change).
    static let textfileInterval: Duration = .seconds(15)
    /// node_exporter runs as a user of its own and must read the textfile; it holds only counters.
    static let textfileMode: mode_t = 0o644

    public init(configuration: DaemonConfiguration, backend: any NetfilterBackend, logger: Logger,
                families: [AddressFamily] = Reconciler.availableFamilies(),
                now: @escaping () -> ContinuousClock.Instant = { .now }) {
        self.configuration = configuration
        self.reconciler = Reconciler(backend: backend, families: families)
        self.entries = DenyListEntries(configPath: configuration.configPath,
                                       store: RuntimeStateStore(directory: configuration.stateDirectory), logger: logger)
        self.logger = logger
        self.trail = AuditTrail(log: AuditLog(directory: configuration.stateDirectory), logger: logger)
        self.drift = DriftGuard(reconciler: reconciler, audit: trail, verifyInterval: configuration.verifyInterval, now: now)
    }

    /// Loads the file and the runtime state and applies them. Any error stops
    /// start-up and leaves the kernel's rules exactly as they were.
    /// While another program holds the xtables lock, start-up waits (the
    /// kernel keeps its rules meanwhile) and says why through `waiting`,
    /// about every `DriftGuard.lockRetryInterval`.
    public func start(waiting: (String) -> Void = { _ in }) throws(NodeGuardError) {
        try entries.load()
        let changes = try drift.start(entries.effectiveEntries, waiting: waiting)
        entries.applied()
        for change in changes { logger.info("applied: \(change)") }
        // The full dataplane read waits for the first request that needs it
        // (a 5,000-service nat table costs a few hundred ms and MB to read);
        // an eBPF dataplane that defeats NodeGuard is said at once.
        if DataplaneReader.interfaceExists("cilium_host") {
            logger.warning("dataplane: a cilium_host interface exists; if Cilium replaces kube-proxy, NodePorts are balanced by eBPF before netfilter and NodeGuard's blocks cannot close them (`nodeguardctl status` tells)")
        }
        updateTextfile(force: true)
        let effective = entries.effective
        trail.record("start", from: .daemon, details: [
            "entries": .integer(effective.count), "changes": .array(changes.map { .string($0.description) }),
        ])
        logger.info("NodeGuard is guarding \(effective.count) port(s): \(entries.config.count) from \(configuration.configPath), \(entries.runtime.count) runtime")
    }

    // MARK: the watch

    /// One turn of the watch (`DriftGuard.watchTick`); the metrics textfile
    /// follows what a full read found.
    public func watchTick(deep: Bool) {
        guard let changes = drift.watchTick(deep: deep, entries: entries.effectiveEntries) else { return }
        updateTextfile(force: !changes.isEmpty)
    }

    /// Re-reads NodeGuard's chains and repairs any drift at once.
    public func verify(checkFirst: Bool = false) {
        guard let changes = drift.verify(entries.effectiveEntries, checkFirst: checkFirst) else { return }
        updateTextfile(force: !changes.isEmpty)
    }

    public var deepCheckInterval: Duration { drift.deepCheckInterval }

    /// The loop saw the xtables lock released: someone may have changed a table.
    public func noteLockReleased() { drift.noteLockReleased() }

    private func locked<T>(_ body: () throws(NodeGuardError) -> T) throws(NodeGuardError) -> T {
        try drift.locked(body)
    }

    /// How a change to the entries reaches the kernel: in the current fight mode.
    private var applyToKernel: DenyListEntries.Apply {
        { [drift] list throws(NodeGuardError) in try drift.apply(list) }
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
                let result = try locked { () throws(NodeGuardError) in try entries.block(entry, apply: applyToKernel) }
                (response, changes) = (ControlResponse(result), result.changes)
            case .unblock(let key):
                let result = try locked { () throws(NodeGuardError) in try entries.unblock(key, apply: applyToKernel) }
                (response, changes) = (ControlResponse(result), result.changes)
            case .reload:
                let result = try locked { () throws(NodeGuardError) in try entries.reload(apply: applyToKernel) }
                (response, changes) = (ControlResponse(result), result.changes)
            case .list:
                let found = dataplane()
                response = ControlResponse(EntryList(entries: Reports.entries(state, counters: [:], dataplane: found, untracked: untracked())))
            case .explain(let key):
                let (found, current) = (dataplane(), state)
                response = ControlResponse(Reports.explain(key, current, health(current), dataplane: found, reads: dataplaneCache.reads,
                                                           untracked: untracked(for: [key])[key] ?? []))
            case .nodeports:
                response = ControlResponse(Reports.nodePorts(state, dataplane: dataplane(), reads: dataplaneCache.reads))
            case .status:
                let (found, current) = (dataplane(), state)
                response = ControlResponse(Reports.status(current, health(current), dataplane: found, reads: dataplaneCache.reads,
                                                          untracked: untracked()))
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
            if request.isMutating { logger.error("\(request.command) failed: \(failure.message)", metadata: AuditTrail.metadata(origin)) }
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
            trail.record(request.command, from: origin, details: details, error: error)
            updateTextfile(force: true)
            // The tables changed on purpose: fingerprint them as they are now.
            // After a failure, let the next tick re-read them instead.
            if case .success = response { drift.remember() } else { drift.forget() }
        }
        return response
    }

    // MARK: gathering what the reports read

    /// What costs nothing to gather.
    var state: ReportState {
        ReportState(configuration: configuration, entries: entries.effective, families: reconciler.families,
                    commits: reconciler.commitCount, lastApply: entries.lastApply, startedAt: startedAt,
                    pid: Int(ProcessInfo.processInfo.processIdentifier), now: drift.now(), drift: drift.state)
    }

    /// The tables' counters and hook positions for `state`'s entries, read at
    /// most every `InspectionCache.reuse` while nothing changed.
    func health(_ state: ReportState) -> TableHealth {
        let found = inspections.inspect(state.entries.map(\.entry), reconciler: reconciler,
                                        lockReleases: drift.lockReleases, now: state.now)
        return TableHealth(inspections: found.inspections, readError: found.readError,
                           families: state.families, drift: state.drift)
    }

    /// What rewrites NodePorts on this node, re-read only when a nat table,
    /// nftables or the marker interfaces changed. A change in what defeats
    /// NodeGuard is logged.
    func dataplane() -> DataplaneReport {
        let report = dataplaneCache.report(backend: reconciler.backend, families: reconciler.families, lockReleases: drift.lockReleases)
        if report.summary != loggedDataplane {
            loggedDataplane = report.summary
            logger.info("dataplane: \(report.summary)")
            for warning in report.warnings { logger.warning("dataplane: \(warning)") }
        }
        return report
    }

    /// Raw-table rules that take the entries' packets (or `keys'`) out of connection tracking.
    func untracked(for keys: [PortKey]? = nil) -> [PortKey: [String]] {
        UntrackingRules.find(for: keys ?? entries.effective.map(\.entry.key), backend: reconciler.backend,
                             families: reconciler.families)
    }

    func metrics() -> MetricsSnapshot {
        let current = state
        return Reports.metrics(current, health(current))
    }

    /// One line for `systemctl status` (STATUS=), from the state alone.
    public var statusLine: String { Reports.statusLine(state) }

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
}
