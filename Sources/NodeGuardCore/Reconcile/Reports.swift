import FoundationEssentials

/// What the drift guard knows, as the reports read it.
struct DriftState {
    var lastVerify: Date?
    var lastVerifyDuration: Duration?
    var repairCount: Int
    var fullReadCount: Int
    var lastError: String?
    /// Mangle first, then by site (`FightTracker.ordered`), as `status` shows them.
    var fights: [StatusReport.FightReport]
    var repairPending: Bool
    /// Since when NodeGuard waits for another program's xtables lock, and who holds it.
    var lockWait: (since: ContinuousClock.Instant, holder: (pid: Int32, command: String)?)?
    var deepCheckInterval: Duration
    var quickChecks: Int
    var deepChecks: Int

    /// Nothing the guard knows is wrong: no failed read, no fight (which
    /// needs a person even while the raw hold keeps the ports closed), no
    /// repair waiting for the lock (the tables are not as planned).
    var healthy: Bool { lastError == nil && fights.isEmpty && !repairPending }
}

/// Everything the reports read that costs nothing to gather.
struct ReportState {
    var configuration: DaemonConfiguration
    var entries: [(entry: BlockEntry, source: EntrySource)]
    var families: [AddressFamily]
    var commits: Int
    var lastApply: Date?
    var startedAt: Date
    var pid: Int
    var now: ContinuousClock.Instant
    var drift: DriftState
}

/// One read of the tables and the health it implies: status and metrics must
/// agree on what "healthy" means.
struct TableHealth {
    var inspections: [TableInspection]
    var readError: String?
    /// Is NodeGuard's jump rule 1 of every hook chain in every family?
    var hooksFirst: Bool
    /// Is it above every rule that could let a blocked packet through? What health means.
    var hooksEffective: Bool
    var healthy: Bool

    init(inspections: [TableInspection], readError: String?, families: [AddressFamily], drift: DriftState) {
        self.inspections = inspections
        self.readError = readError
        let complete = inspections.count == families.count
        hooksFirst = complete && inspections.allSatisfy { $0.hookFirst.values.allSatisfy { $0 } }
        // Rules that cannot let a blocked packet through may stand above the jump.
        hooksEffective = complete && inspections.allSatisfy { $0.hookEffective.values.allSatisfy { $0 } }
        healthy = drift.healthy && readError == nil && hooksEffective
    }

    /// Drop counters of both families added up, per port.
    var counters: [PortKey: DropCounters] {
        var sum: [PortKey: DropCounters] = [:]
        for inspection in inspections {
            for (key, value) in inspection.dropCounters { sum[key, default: DropCounters()] = sum[key, default: DropCounters()] + value }
        }
        return sum
    }
}

/// The answers to `status`, `list`, `explain`, `nodeports` and `metrics`,
/// and the line for `systemctl status`: pure functions of what was gathered.
enum Reports {
    /// One line for `systemctl status` (STATUS=), from the state alone.
    static func statusLine(_ state: ReportState) -> String {
        let count = state.entries.count
        let runtime = state.entries.filter { $0.source == .runtime }.count
        let drift = state.drift
        var line = "Guarding \(count) port\(count == 1 ? "" : "s") (\(runtime) runtime)"
        if let lastVerify = drift.lastVerify {
            let seconds = Int(lastVerify.timeIntervalSince1970) % 86_400
            let clock = "\(twoDigits(seconds / 3600)):\(twoDigits(seconds / 60 % 60)):\(twoDigits(seconds % 60))"
            line += "; last verify \(clock) UTC"
        }
        line += "; \(drift.repairCount) repair\(drift.repairCount == 1 ? "" : "s")"
        for fight in drift.fights.reversed() {
            let hold = fight.holding == nil ? "" : ", holding from raw"
            line = "FIGHT with '\(fight.culprit)' in \(fight.family.rawValue) \(fight.table) \(fight.chain)\(hold); " + line
        }
        if let lastError = drift.lastError { line = "FAILING: \(lastError); " + line }
        return line
    }

    static func metrics(_ state: ReportState, _ health: TableHealth) -> MetricsSnapshot {
        MetricsSnapshot(inspections: health.inspections,
                        blockedBySource: Dictionary(grouping: state.entries, by: \.source).mapValues(\.count),
                        repairs: state.drift.repairCount, commits: state.commits, healthy: health.healthy,
                        lastVerifyDuration: state.drift.lastVerifyDuration, lastVerify: state.drift.lastVerify,
                        lastApply: state.lastApply,
                        changeChecks: ["quick": state.drift.quickChecks, "deep": state.drift.deepChecks],
                        fullReads: state.drift.fullReadCount)
    }

    static func dataplaneSummary(_ report: DataplaneReport, reads: Int) -> DataplaneSummary {
        DataplaneSummary(kubeProxy: report.kubeProxy, others: report.others, ebpf: report.ebpf, warnings: report.warnings,
                         summary: report.summary, reads: reads)
    }

    /// Each effective entry with where it comes from, the services using its
    /// port, the raw rules that untrack it, and its drops.
    static func entries(_ state: ReportState, counters: [PortKey: DropCounters], dataplane: DataplaneReport,
                        untracked: [PortKey: [String]]) -> [EntryReport] {
        let services = Dictionary(grouping: dataplane.nodePorts, by: \.key).mapValues { Array(Set($0.map(\.service))).sorted() }
        return state.entries.map { entry, source in
            let names = services[entry.key]
            return EntryReport(entry: entry, source: source, untracked: untracked[entry.key], services: names,
                               warning: names == nil && dataplane.problems.isEmpty
                                   ? "no NodePort on this node uses \(entry.key); a typo in the deny-list?" : nil,
                               dropped: counters[entry.key].map { DropCount(packets: $0.packets, bytes: $0.bytes) })
        }
    }

    /// Every NodePort on the node, its service, and whether NodeGuard blocks it.
    static func nodePorts(_ state: ReportState, dataplane: DataplaneReport, reads: Int) -> NodePortsReport {
        let blocked = Dictionary(state.entries.map { ($0.entry.key, $0.entry) }) { first, _ in first }
        let ports = dataplane.nodePorts.map { nodePort in
            NodePortReport(key: nodePort.key, family: nodePort.family, service: nodePort.service, source: nodePort.source,
                           endpoints: nodePort.endpoints, blocked: blocked[nodePort.key]?.family.includes(nodePort.family) ?? false)
        }
        return NodePortsReport(nodeports: ports, problems: dataplane.problems, dataplane: dataplaneSummary(dataplane, reads: reads))
    }

    /// The path a packet to `key` takes on this node: who rewrites it and to
    /// where, whether and where NodeGuard drops it, and what defeats that.
    static func explain(_ key: PortKey, _ state: ReportState, _ health: TableHealth, dataplane report: DataplaneReport,
                        reads: Int, untracked: [String]) -> ExplainReport {
        let entry = state.entries.first { $0.entry.key == key }
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
            for fight in state.drift.fights {
                let hold = fight.holding == nil ? "" : ": new connections are held closed from the raw table"
                defeats.append("a fight with '\(fight.culprit)' in \(fight.family.rawValue) \(fight.table) \(fight.chain)\(hold)")
            }
            // allowFrom 0.0.0.0/0 or ::/0 (or networks covering every address): nothing blocked there.
            defeats += DenyListCodec.entryWarnings(blockEntry, path: "allowFrom").map { "allowFrom \($0.message)" }
            let families = AddressFamily.allCases.filter { blockEntry.family.includes($0) && state.families.contains($0) }
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
        let blocked = entry != nil
        let closed = blocked && report.ebpf != "cilium-kube-proxy-replacement" && health.healthy
        // allowFrom 0.0.0.0/0 and ::/0: blocked in name only.
        let allowedEverywhere = entry.map { blockEntry, _ in
            AddressFamily.allCases.filter { blockEntry.family.includes($0) && state.families.contains($0) }
                .allSatisfy(blockEntry.familiesLetThroughEntirely.contains)
        } ?? false
        let partlyAllowed = entry.map { !$0.entry.familiesLetThroughEntirely.isEmpty } ?? false
        let verdict = !blocked ? "open: NodeGuard does not block \(key)"
            : allowedEverywhere ? "open: allowFrom lets every client through, so the entry for \(key) blocks nothing"
            : partlyAllowed ? "at risk: see defeats"
            : closed ? "closed: NodeGuard drops \(key) before any DNAT"
            : "at risk: see defeats"
        // `untracked` is not a defeat: NodeGuard drops untracked packets too.
        // Named so the operator knows why kube-proxy's DNAT does not apply to them.
        return ExplainReport(key: key, rewrites: rewrites, dataplane: dataplaneSummary(report, reads: reads), nodeguard: nodeguard,
                             defeats: defeats, untracked: untracked, verdict: verdict)
    }

    static func status(_ state: ReportState, _ health: TableHealth, dataplane: DataplaneReport, reads: Int,
                       untracked: [PortKey: [String]]) -> StatusReport {
        let drift = state.drift
        var hooks: [String: [String: Bool]] = [:]
        for inspection in health.inspections { hooks[inspection.family.rawValue] = inspection.hookFirst }
        // What NodeGuard waits for, and who it waits on.
        let lockWait = drift.lockWait.map { wait in
            StatusReport.LockWait(waitingMs: (state.now - wait.since).milliseconds, repairPending: drift.repairPending,
                                  heldBy: wait.holder.map { .init(pid: Int($0.pid), command: $0.command) })
        }
        // "fight" is the first (mangle first); "fights" all, one per disputed site.
        let fightReports = drift.fights
        let configuration = state.configuration
        return StatusReport(
            healthy: health.healthy, pid: state.pid, startedAt: iso8601(state.startedAt),
            configPath: configuration.configPath, stateDirectory: configuration.stateDirectory,
            families: state.families,
            entries: entries(state, counters: health.counters, dataplane: dataplane, untracked: untracked),
            dataplane: dataplaneSummary(dataplane, reads: reads), hooks: hooks, hooksFirst: health.hooksFirst,
            hooksEffective: health.hooksEffective,
            repairs: drift.repairCount, commits: state.commits, fullReads: drift.fullReadCount,
            verifyIntervalMs: configuration.verifyInterval.milliseconds,
            deepCheckIntervalMs: drift.deepCheckInterval.milliseconds,
            watchIntervalMs: configuration.watchInterval.milliseconds,
            lastVerify: drift.lastVerify.map(iso8601),
            lastVerifyMicroseconds: drift.lastVerifyDuration.map { Int($0.components.seconds * 1_000_000 + $0.components.attoseconds / 1_000_000_000_000) },
            lastApply: state.lastApply.map(iso8601), lastError: drift.lastError ?? health.readError,
            xtablesLock: lockWait, fights: fightReports)
    }
}
