import ArgumentParser
import Foundation
import NodeGuardCore

/// Measurements for bench/run.sh. Runs inside the benchmark node's network
/// namespace (`ip netns exec`), next to a running nodeguardd; prints JSON.
@main
struct NodeGuardBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodeguard-bench",
        abstract: "NodeGuard's benchmarks (see bench/run.sh and BENCHMARKS.md).",
        subcommands: [Repair.self, NatRead.self, LockHold.self, Limits.self])
}

/// Latency from a foreign change to NodeGuard's repair, p50/p99.
struct Repair: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a foreign change to NodeGuard's rules, as iptables does (under the xtables lock), and time the repair.")

    @Option(help: "insert (a rule above NodeGuard's jump) or flush (NodeGuard's entry chain).")
    var kind = "insert"

    @Option(help: "How many trials.")
    var trials = 200

    @Option(help: "Give up on a trial after this many milliseconds.")
    var timeoutMs = 2000

    func validate() throws {
        guard ["insert", "flush"].contains(kind) else { throw ValidationError("--kind must be insert or flush") }
        guard trials > 0 else { throw ValidationError("--trials must be positive") }
    }

    func run() throws {
        let backend = LibIPTCBackend()
        let clock = ContinuousClock()
        var latencies: [Double] = []
        var timeouts = 0
        for trial in 0..<trials {
            // A different rule each time: the same rule pushing NodeGuard down
            // again and again is a fight, which NodeGuard stops answering.
            let foreign = RuleSpec(transport: .tcp, comment: "bench: foreign rule \(trial) above NodeGuard", target: "ACCEPT")
            // What the change left, read back under the bench's own lock: NodeGuard
            // takes that lock to repair, so it cannot have acted before this, and
            // any later move of the sizes or digest is its repair. (Looking at the
            // table right after the release instead, with a full libiptc read,
            // competed with the repair for the kernel's table mutex and a CPU and
            // added its own 10-20 ms to the figures.)
            var saved: [RuleSpec] = []
            let outcome = try backend.transact("mangle", .ipv4) { table throws(NodeGuardError) in
                if kind == "insert" { return TableRepair(edits: [.insertRule(foreign, chain: "PREROUTING", index: 0)]) }
                saved = try table.rules(in: RulePlanner.entryChain).compactMap(\.spec)
                return TableRepair(edits: [.flushChain(RulePlanner.entryChain)])
            }
            // The change is committed and the lock released: NodeGuard may start now.
            let start = clock.now
            guard var baseline = outcome.fingerprint else { throw ValidationError("trial \(trial): the table could not be read back") }
            // How to see the repair land without slowing it: a flush's repair
            // changes the table's sizes, which one small getsockopt shows. Moving
            // the jump back keeps every size, so for inserts only the digest
            // tells; it copies the whole table, and polled back to back it would
            // compete with the daemon for the kernel's table mutex and a CPU:
            // poll it every millisecond (the resolution of those figures).
            let sizesTell = kind == "flush"
            var repairedAt: ContinuousClock.Instant?
            while clock.now - start < .milliseconds(timeoutMs) {
                let moved = sizesTell ? try backend.tableInfo("mangle", .ipv4) != baseline.info
                                      : try backend.ownedFingerprint("mangle", .ipv4).digest != baseline.digest
                if moved {
                    // The time the move was seen, not after the (full) read that confirms it.
                    let seen = clock.now
                    if isRepaired(backend, kind: kind, expected: saved) {
                        repairedAt = seen
                        break
                    }
                    // Someone else's change (or half a repair): wait for the next move.
                    baseline = try backend.ownedFingerprint("mangle", .ipv4)
                }
                usleep(sizesTell ? 100 : 1000)
            }
            if let repairedAt {
                let elapsed = repairedAt - start
                latencies.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
            } else {
                timeouts += 1
                let seen = (try? backend.readTable("mangle", .ipv4) { table throws(NodeGuardError) -> String in
                    try table.rules(in: kind == "insert" ? "PREROUTING" : RulePlanner.entryChain).map(\.description).joined(separator: "\n")
                }) ?? "unreadable"
                FileHandle.standardError.write(Data("trial \(trial) timed out; the chain holds:\n\(seen)\n".utf8))
            }
            if kind == "insert" {
                // Take the foreign rule away again and let NodeGuard settle.
                _ = try backend.transact("mangle", .ipv4) { table throws(NodeGuardError) in
                    let rules = try table.rules(in: "PREROUTING")
                    return TableRepair(edits: rules.indices.reversed().filter { rules[$0].spec == foreign }
                        .map { .deleteRule(chain: "PREROUTING", index: $0) })
                }
            }
            // Let NodeGuard settle (it re-reads after the clean-up too): each
            // trial measures one change met by an idle daemon.
            usleep(200_000)
        }
        latencies.sort()
        func percentile(_ p: Double) -> Double {
            latencies.isEmpty ? .nan : latencies[min(latencies.count - 1, Int((Double(latencies.count) * p).rounded(.up)) - 1)]
        }
        print(String(format: #"{"kind":"%@","trials":%d,"timeouts":%d,"p50_ms":%.2f,"p90_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f}"#,
                     kind, trials, timeouts, percentile(0.5), percentile(0.9), percentile(0.99), latencies.last ?? .nan))
    }

    private func isRepaired(_ backend: LibIPTCBackend, kind: String, expected: [RuleSpec]) -> Bool {
        (try? backend.readTable("mangle", .ipv4) { table throws(NodeGuardError) -> Bool in
            if kind == "insert" { return try table.rules(in: "PREROUTING").first?.spec == RulePlanner.hookRule }
            return try table.rules(in: RulePlanner.entryChain).compactMap(\.spec) == expected
        }) ?? false
    }
}

/// What NodeGuard does with a changed nat table, timed: the fingerprint that
/// tells a change, and the full read that follows it.
struct NatRead: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time NodeGuard's fingerprint and full read of the nat tables.")

    @Option(help: "Repetitions.")
    var repeats = 10

    func run() throws {
        let backend = LibIPTCBackend()
        let clock = ContinuousClock()
        var fingerprint: [Double] = [], read: [Double] = []
        var ports = 0
        for _ in 0..<repeats {
            var start = clock.now
            _ = try backend.tableFingerprint("nat", .ipv4)
            fingerprint.append(Self.ms(clock.now - start))
            start = clock.now
            ports = DataplaneReader.read(backend: backend, families: [.ipv4]).nodePorts.count
            read.append(Self.ms(clock.now - start))
        }
        fingerprint.sort()
        read.sort()
        print(String(format: #"{"nodeports":%d,"fingerprint_median_ms":%.2f,"full_read_median_ms":%.2f}"#,
                     ports, fingerprint[fingerprint.count / 2], read[read.count / 2]))
    }

    static func ms(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }
}

/// How long nodeguardd holds the xtables lock while it answers one change:
/// as long as that, kube-proxy's next `iptables-restore` (or any iptables
/// command) waits. A watcher in this process tries the lock every 100 us
/// without blocking (flock, never closing its descriptor, so it makes no
/// inotify event for the daemon); when it finds the lock taken it blocks on
/// it and times how long that took. Run with the daemon's XTABLES_LOCKFILE,
/// a private lock file, so no other program's holds are counted.
struct LockHold: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the xtables lock holds, the total time and the peak RSS of nodeguardd's answer to one change.")

    @Option(help: "block (send --entry, then unblock it), foreign-rule (insert a rule into --chain), or flush (--chain, or all).")
    var action = "foreign-rule"

    @Option(help: "A NodeGuard chain, 'port:N' for the chain holding N/tcp's rules, 'largest', or 'all' (flush only).")
    var chain = "largest"

    @Option(help: "For block: the entry, as JSON (the deny-list format).")
    var entry: String?

    @Option(help: "For block: nodeguardd's control socket.")
    var socket = ControlProtocol.defaultSocketPath

    @Option(help: "nodeguardd's pid, for its peak RSS (VmHWM, reset before each trial).")
    var pid: Int32?

    @Option(help: "How many trials.")
    var trials = 10

    @Option(help: "Give up on a trial after this many milliseconds.")
    var timeoutMs = 20_000

    func validate() throws {
        guard ["block", "foreign-rule", "flush"].contains(action) else {
            throw ValidationError("--action must be block, foreign-rule or flush")
        }
        if action == "block" && entry == nil { throw ValidationError("--action block needs --entry") }
        if chain == "all" && action != "flush" { throw ValidationError("--chain all is for --action flush") }
        guard trials > 0 else { throw ValidationError("--trials must be positive") }
    }

    struct Trial {
        var holds: [Double] = []
        var totalMs = 0.0
        var peakRSSKiB = 0
    }

    func run() throws {
        let backend = LibIPTCBackend()
        let monitor = try LockMonitor(path: XtablesLock.path)
        var results: [Trial] = []
        var unblockHolds: [Double] = []
        var chainRules = 0
        var lastRelease = ContinuousClock.now
        for trial in 0..<trials {
            resetPeakRSS()
            var result = Trial()
            let start = ContinuousClock.now
            switch action {
            case "block":
                let blockEntry = try Self.entry(entry ?? "")
                result.holds = try monitor.holds(during: { () throws -> Void in
                    try Self.expectSuccess(ControlClient(socketPath: socket).send(.block(blockEntry)))
                })
                result.totalMs = Self.ms(ContinuousClock.now - start)
                result.peakRSSKiB = peakRSS()
                if trial < trials - 1 {
                    // Back to the list before the block, for the next trial; the last block stays.
                    unblockHolds += try monitor.holds(during: { () throws -> Void in
                        try Self.expectSuccess(ControlClient(socketPath: socket).send(.unblock(blockEntry.key)))
                    })
                }
            default:
                let (names, before) = try Self.read(backend, chain: chain)
                chainRules = names.reduce(0) { $0 + (before[$1]?.count ?? 0) }
                // A different rule each time; in the middle of the chain.
                let foreign = RuleSpec(transport: .tcp, comment: "bench: foreign rule \(trial)", target: "ACCEPT")
                _ = try backend.transact("mangle", .ipv4) { _ throws(NodeGuardError) in
                    TableRepair(edits: names.map { name in
                        action == "flush" ? .flushChain(name)
                            : .insertRule(foreign, chain: name, index: (before[name]?.count ?? 0) / 2)
                    })
                }
                // The change is committed and the lock released: NodeGuard may start now.
                // Its repair ends with its last hold (the commit); the chains are read
                // only once the lock has been quiet for 100 ms, so that reading them
                // (a copy of the whole table) never competes with the repair.
                let changed = ContinuousClock.now
                var repairedAt: ContinuousClock.Instant?
                while repairedAt == nil && ContinuousClock.now - changed < .milliseconds(timeoutMs) {
                    let hold = monitor.nextHold(within: .milliseconds(100))
                    if !hold.isEmpty {
                        result.holds += hold
                        lastRelease = ContinuousClock.now
                        continue
                    }
                    let now = try Self.read(backend, chain: names)
                    if result.holds.count > 0 && names.allSatisfy({ now[$0] == before[$0] }) { repairedAt = lastRelease }
                }
                guard let repairedAt else { throw ValidationError("trial \(trial): not repaired within \(timeoutMs) ms") }
                result.totalMs = Self.ms(repairedAt - changed)
                result.peakRSSKiB = peakRSS()
            }
            results.append(result)
            // Let the daemon settle (it re-reads after its own commit): each trial meets an idle daemon.
            usleep(300_000)
        }
        let maxHolds = results.map { $0.holds.max() ?? 0 }.sorted()
        let sumHolds = results.map { $0.holds.reduce(0, +) }.sorted()
        let totals = results.map(\.totalMs).sorted()
        func median(_ values: [Double]) -> Double { values.isEmpty ? .nan : values[values.count / 2] }
        print(String(format: #"{"action":"%@","chain":"%@","chain_rules":%d,"trials":%d,"holds_per_trial":%d,"max_hold_median_ms":%.2f,"max_hold_max_ms":%.2f,"sum_hold_median_ms":%.2f,"total_median_ms":%.2f,"total_max_ms":%.2f,"peak_rss_mb":%.1f,"unblock_max_hold_ms":%.2f}"#,
                     action, chain, chainRules, trials, results.last?.holds.count ?? 0,
                     median(maxHolds), maxHolds.last ?? .nan, median(sumHolds), median(totals), totals.last ?? .nan,
                     Double(results.map(\.peakRSSKiB).max() ?? 0) / 1024, unblockHolds.max() ?? 0))
    }

    /// The entry, read without the codec's limits: the point may be to time
    /// an older daemon that has none (issue 14's 4,073 sources).
    static func entry(_ json: String) throws -> BlockEntry {
        guard let value = try? JSON.parse(json), let port = value["port"].flatMap({ Int(digits(of: $0)) }),
              let key = try? PortKey(parsing: "\(port)/\(value["protocol"]?.stringValue ?? "tcp")") else {
            throw ValidationError("--entry: not an entry with a port")
        }
        let family = FamilySelection(rawValue: value["family"]?.stringValue ?? "both") ?? .both
        let sources = try (value["allowFrom"]?.arrayValue ?? []).map { item throws -> CIDR in
            do { return try CIDR(parsing: item.stringValue ?? "") } catch { throw ValidationError("--entry: \(error)") }
        }
        return BlockEntry(port: key.port, transport: key.transport, family: family, allowFrom: sources)
    }

    private static func digits(of value: JSONValue) -> String {
        if case .number(let digits) = value { return digits }
        return ""
    }

    static func expectSuccess(_ response: ControlResponse) throws {
        if case .failure(let error) = response { throw ValidationError("nodeguardd refused: \(error.message)") }
    }

    /// The chains `spec` names and their rules (nil for foreign rules), read without the lock.
    static func read(_ backend: LibIPTCBackend, chain spec: String) throws -> ([String], [String: [RuleSpec?]]) {
        let all = try read(backend, chain: nil)
        let mine = all.keys.filter(RulePlanner.isNodeGuardChain).sorted()
        switch spec {
        case "all": return (mine, all)
        case "largest":
            guard let largest = mine.max(by: { all[$0]!.count < all[$1]!.count }) else { throw ValidationError("no NodeGuard chain") }
            return ([largest], all)
        case let text where text.hasPrefix("port:"):
            let port = UInt16(text.dropFirst(5)) ?? 0
            guard let name = mine.first(where: { all[$0]!.contains { $0?.target == "DROP" && $0?.destinationPorts == port...port } }) else {
                throw ValidationError("no NodeGuard chain drops \(port)/tcp")
            }
            return ([name], all)
        default:
            guard all[spec] != nil else { throw ValidationError("no chain \(spec)") }
            return ([spec], all)
        }
    }

    static func read(_ backend: LibIPTCBackend, chain names: [String]?) throws -> [String: [RuleSpec?]] {
        try backend.readTable("mangle", .ipv4) { table throws(NodeGuardError) -> [String: [RuleSpec?]] in
            var chains: [String: [RuleSpec?]] = [:]
            for name in names ?? table.chainNames() { chains[name] = try table.rules(in: name).map(\.spec) }
            return chains
        }
    }

    func resetPeakRSS() {
        guard let pid else { return }
        try? "5".write(toFile: "/proc/\(pid)/clear_refs", atomically: false, encoding: .utf8)
    }

    func peakRSS() -> Int {
        guard let pid, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    static func ms(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }
}

/// Watches the xtables lock from outside, as a waiting iptables would.
final class LockMonitor: @unchecked Sendable {
    let fd: Int32

    init(path: String) throws {
        fd = open(path, O_CREAT | O_RDONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ValidationError("cannot open \(path)") }
    }

    deinit { close(fd) }

    /// Waits up to `window` for someone to take the lock; returns how long
    /// they held it (ms), or nothing if nobody took it.
    func nextHold(within window: Duration) -> [Double] {
        let deadline = ContinuousClock.now + window
        while ContinuousClock.now < deadline {
            let seen = ContinuousClock.now
            if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                flock(fd, LOCK_UN)
                usleep(100)
                continue
            }
            // Held: wait for it as a blocked writer would. It was taken at most
            // one poll (about 100 us) before `seen`.
            while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
            let held = ContinuousClock.now - seen
            flock(fd, LOCK_UN)
            return [LockHold.ms(held)]
        }
        return []
    }

    /// Every hold while `body` runs on another thread (a request and its answer).
    func holds(during body: @escaping @Sendable () throws -> Void) throws -> [Double] {
        let done = DispatchSemaphore(value: 0)
        let failure = LockedError()
        let thread = Thread {
            do { try body() } catch { failure.set(error) }
            done.signal()
        }
        thread.start()
        var holds: [Double] = []
        while done.wait(timeout: .now()) == .timedOut {
            holds += nextHold(within: .milliseconds(5))
        }
        if let error = failure.get() { throw error }
        return holds
    }
}

final class LockedError: @unchecked Sendable {
    private let lock = NSLock()
    private var error: Error?
    func set(_ error: Error) { lock.lock(); self.error = error; lock.unlock() }
    func get() -> Error? { lock.lock(); defer { lock.unlock() }; return error }
}

/// The limits these binaries enforce, for bench/limits.sh.
struct Limits: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print DenyListLimits as JSON.")

    func run() {
        print(#"{"entries":\#(DenyListLimits.entries),"sourcesPerEntry":\#(DenyListLimits.sourcesPerEntry),"sources":\#(DenyListLimits.sources)}"#)
    }
}
