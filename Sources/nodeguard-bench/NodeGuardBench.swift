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
        subcommands: [Repair.self, NatRead.self])
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
            let saved: [RuleSpec]
            (saved, _, _) = try backend.withMangleTable(.ipv4) { table throws(NodeGuardError) -> [RuleSpec] in
                if kind == "insert" {
                    try table.insertRule(foreign, in: "PREROUTING", at: 0)
                    return []
                }
                let rules = try table.rules(in: RulePlanner.entryChain).compactMap(\.spec)
                try table.flushChain(RulePlanner.entryChain)
                return rules
            }
            // The change is committed and the lock released: NodeGuard may start now.
            let start = clock.now
            // How to see the repair land without slowing it: a flush's repair
            // changes the table's sizes, which one small getsockopt shows. Moving
            // the jump back keeps every size, so for inserts only the digest
            // tells; it copies the whole table, and polled back to back it would
            // compete with the daemon for the kernel's table mutex and a CPU:
            // poll it every millisecond (the resolution of those figures).
            let sizesTell = kind == "flush"
            let changedInfo = try backend.tableInfo("mangle", .ipv4)
            let changed = sizesTell ? nil : try backend.ownedFingerprint("mangle", .ipv4)
            // NodeGuard may have repaired before `changed` was taken: look once first.
            var repaired = isRepaired(backend, kind: kind, expected: saved)
            var lastLook = clock.now
            while !repaired && clock.now - start < .milliseconds(timeoutMs) {
                let moved = sizesTell ? try backend.tableInfo("mangle", .ipv4) != changedInfo
                                      : try backend.ownedFingerprint("mangle", .ipv4) != changed
                // Also look every 50 ms whatever moved says, so that a repair that
                // landed between the change and `changed` cannot be missed.
                let due = clock.now - lastLook > .milliseconds(50)
                if moved || due { lastLook = clock.now }
                if (moved || due) && isRepaired(backend, kind: kind, expected: saved) {
                    repaired = true
                    break
                }
                usleep(sizesTell ? 100 : 1000)
            }
            let elapsed = clock.now - start
            if repaired {
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
                _ = try backend.withMangleTable(.ipv4) { table throws(NodeGuardError) in
                    let rules = try table.rules(in: "PREROUTING")
                    for index in rules.indices.reversed() where rules[index].spec == foreign {
                        try table.deleteRule(in: "PREROUTING", at: index)
                    }
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
