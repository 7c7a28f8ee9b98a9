import ArgumentParser
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import NodeGuardControl

/// Exit codes: 0 success, 1 the request failed, 2 usage error, 3 daemon not
/// reachable (nothing to connect to), 4 the daemon did not serve the request
/// (busy, or no answer): retry.
enum CtlExit {
    static let failed: Int32 = 1
    static let usage: Int32 = 2
    static let unreachable: Int32 = 3
    static let notServed: Int32 = 4

    static func code(for error: NodeGuardError) -> Int32 {
        switch error.code {
        case .daemonUnreachable: unreachable
        case .busy, .noAnswer: notServed
        default: failed
        }
    }
}

@main
struct NodeGuardCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodeguardctl",
        abstract: "Control nodeguardd: block and unblock NodePorts before kube-proxy's DNAT.",
        discussion: """
        Exit codes: 0 success, 1 the request failed (message on stderr), 2 usage error, \
        3 nodeguardd not reachable, 4 nodeguardd did not serve the request (busy, or no answer): retry.
        """,
        subcommands: [Block.self, Unblock.self, List.self, Status.self, NodePorts.self, Explain.self, Reload.self, Metrics.self, Validate.self]
    )

    /// Global, before the subcommand, as `kubectl --context`, `docker -H` and `git -C` are.
    @OptionGroup var connection: Connection

    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as NodeGuardError {
            printError("nodeguardctl: \(error.message)")
            Glibc.exit(CtlExit.code(for: error))
        } catch let code as ExitCode {
            Glibc.exit(code.rawValue)
        } catch {
            // Argument errors: ArgumentParser prints them; NodeGuard's contract says exit 2.
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                print(message)
                Glibc.exit(0)
            }
            printError(message)
            Glibc.exit(CtlExit.usage)
        }
    }
}

/// Where nodeguardd listens: `--socket` before the subcommand or after it
/// (as before), else `$NODEGUARD_SOCKET`, else the default. Both places share
/// one value (ArgumentParser parses the option once for the command stack),
/// so given twice, the last one wins, as with any repeated option.
struct Connection: ParsableArguments {
    static let environmentVariable = "NODEGUARD_SOCKET"

    @Option(name: .long, help: ArgumentHelp(
        "nodeguardd's control socket (default: $\(Connection.environmentVariable), else \(ControlProtocol.defaultSocketPath)).",
        valueName: "path"))
    var socket: String?

    /// The socket to use: a flag, else the environment's, else the default.
    static func socketPath(global: String?, local: String?, environment: [String: String]) -> String {
        if let flag = local ?? global { return flag }
        if let fromEnvironment = environment[environmentVariable], !fromEnvironment.isEmpty { return fromEnvironment }
        return ControlProtocol.defaultSocketPath
    }

    /// The most a Unix socket's path holds (`sun_path` less its NUL).
    static let maximumPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// A path no socket can have is a usage error (exit 2), not "unreachable".
    func validate() throws {
        guard let socket else { return }
        if socket.isEmpty || socket.utf8.count > Self.maximumPathBytes {
            throw ValidationError("--socket '\(socket)' is empty or longer than the \(Self.maximumPathBytes) bytes a Unix socket path holds")
        }
    }
}

/// A subcommand that talks to nodeguardd.
protocol DaemonCommand: ParsableCommand {
    var root: NodeGuardCtl { get }
    var connection: Connection { get }
}

extension DaemonCommand {
    var socketPath: String {
        Connection.socketPath(global: root.connection.socket, local: connection.socket,
                              environment: ProcessInfo.processInfo.environment)
    }

    /// Sends the request and returns the answer's `result`; a failure answer
    /// becomes a thrown error (exit 1). With `json`, prints the result as the
    /// daemon sent it (keys it has that this CLI does not know included) and returns nil.
    func send<R: ControlResult>(_ request: ControlRequest, as type: R.Type, json: Bool = false) throws -> R? {
        let result: JSONValue
        switch try ControlClient(socketPath: socketPath).send(request) {
        case .success(let value): result = value
        case .failure(let error): throw error
        }
        if json {
            print(JSON.serialize(result, pretty: true))
            return nil
        }
        return try R(result: result)
    }
}

// Typed arguments: ArgumentParser names the argument and adds the usage;
// the message says what is wrong with the value.

func parsePortKey(_ text: String) throws -> PortKey {
    do { return try PortKey(parsing: text) } catch { throw ValidationError(error.message) }
}

func parseFamily(_ text: String) throws -> FamilySelection {
    guard let family = FamilySelection(rawValue: text) else { throw ValidationError("'\(text)' is not ipv4, ipv6 or both") }
    return family
}

func parseCIDR(_ text: String) throws -> CIDR {
    do { return try CIDR(parsing: text) } catch { throw ValidationError(error.message) }
}

extension NodeGuardCtl {
    struct Block: DaemonCommand {
        static let configuration = CommandConfiguration(
            abstract: "Block a NodePort now and keep it blocked across restarts.",
            discussion: "Examples:\n  nodeguardctl block 31002\n  nodeguardctl block 31900/udp --family ipv4 --reason 'SEC-1234'\n  nodeguardctl block 32000 --allow-from 198.18.0.0/24 --allow-from 2001:db8:1::/64")

        @ParentCommand var root: NodeGuardCtl
        @OptionGroup var connection: Connection

        @Argument(help: "PORT or PORT/PROTOCOL (tcp, udp, sctp; default tcp).", transform: parsePortKey)
        var port: PortKey

        @Option(help: "ipv4, ipv6 or both.", transform: parseFamily)
        var family = FamilySelection.both

        @Option(help: "Why the port is blocked (at most 256 bytes); shown in the rule's comment.")
        var reason: String?

        @Option(name: .customLong("allow-from"), help: "A source CIDR that stays allowed (repeatable).", transform: parseCIDR)
        var allowFrom: [CIDR] = []

        @Flag(help: "Print the daemon's answer as JSON.")
        var json = false

        var entry: BlockEntry {
            BlockEntry(port: port.port, transport: port.transport, family: family, reason: reason, allowFrom: allowFrom)
        }

        func validate() throws {
            if let reason, let problem = BlockEntry.reasonProblem(reason) {
                throw ValidationError("--reason \(problem)")
            }
        }

        func run() throws {
            for warning in DenyListCodec.entryWarnings(entry, path: "--allow-from") {
                printError("nodeguardctl: warning: \(warning.message)")
            }
            guard let result = try send(.block(entry), as: BlockResult.self, json: json) else { return }
            if !result.changed {
                print("\(entry.key) was already blocked (\(result.source.rawValue))")
            } else {
                print("blocked \(entry.key)")
            }
        }
    }

    struct Unblock: DaemonCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a runtime block (ports from the deny-list file are changed in the file).")

        @ParentCommand var root: NodeGuardCtl
        @OptionGroup var connection: Connection

        @Argument(help: "PORT or PORT/PROTOCOL (default tcp).", transform: parsePortKey)
        var port: PortKey

        @Flag(help: "Print the daemon's answer as JSON.")
        var json = false

        func run() throws {
            let key = port
            guard try send(.unblock(key), as: UnblockResult.self, json: json) != nil else { return }
            print("unblocked \(key)")
        }
    }

    struct List: DaemonCommand {
        static let configuration = CommandConfiguration(abstract: "List the blocked ports and where each comes from.")

        @ParentCommand var root: NodeGuardCtl
        @OptionGroup var connection: Connection

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func run() throws {
            guard let result = try send(.list, as: EntryList.self, json: json) else { return }
            printEntries(result.entries, withCounters: false)
        }
    }

    struct Status: DaemonCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the daemon's health, its hooks, verify and repair figures, and drop counters.")

        @ParentCommand var root: NodeGuardCtl
        @OptionGroup var connection: Connection

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func run() throws {
            guard let status = try send(.status, as: StatusReport.self, json: json) else { return }
            print("nodeguardd:  \(status.healthy ? "healthy" : "UNHEALTHY") (pid \(status.pid), started \(status.startedAt))")
            print("config:      \(status.configPath)")
            let families = status.families.map(\.rawValue).joined(separator: ", ")
            print("hooks:       \(status.hooksFirst ? "first" : "NOT first") in mangle PREROUTING and OUTPUT (\(families))")
            print("last check:  \(status.lastVerify ?? "-"); sizes every \(status.watchIntervalMs) ms and at each xtables lock release, rule digests every \(status.deepCheckIntervalMs) ms")
            print("repairs:     \(status.repairs), commits: \(status.commits), full reads: \(status.fullReads) (last \(status.lastVerifyMicroseconds.map(String.init) ?? "-") µs)")
            print("dataplane:   \(status.dataplane.summary)")
            for warning in status.dataplane.warnings { print("WARNING:     \(warning)") }
            if let fight = status.fight {
                print("FIGHT:       '\(fight.culprit)' keeps taking rule 1 of \(fight.family.rawValue) mangle \(fight.chain) (\(fight.displacements) times); ports held closed from the raw table; next try in \(fight.retakeInSeconds) s")
                print("advice:      \(fight.advice)")
            }
            if let error = status.lastError { print("last error:  \(error)") }
            print("")
            printEntries(status.entries, withCounters: true)
            if !status.healthy { throw ExitCode(CtlExit.failed) }
        }
    }

    struct Reload: DaemonCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-read the deny-list file; a bad file keeps the last good list and prints why.")

        @ParentCommand var root: NodeGuardCtl
        @OptionGroup var connection: Connection

        func run() throws {
            guard let result = try send(.reload, as: ReloadResult.self) else { return }
            print("reloaded: \(result.entries) entries from the deny-list file")
        }
    }

    struct NodePorts: DaemonCommand {
        static let configuration = CommandConfiguration(
            commandName: "nodeports",
            abstract: "List every NodePort kube-proxy exposes on this node, its service, and whether it is blocked.")

        @ParentCommand var root: NodeGuardCtl
        @OptionGroup var connection: Connection

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func run() throws {
            guard let result = try send(.nodeports, as: NodePortsReport.self, json: json) else { return }
            let ports = result.nodeports
            if ports.isEmpty { print("no NodePorts found (kube-proxy in iptables mode writes them to KUBE-NODEPORTS)") }
            var rows = [["PORT", "FAMILY", "BLOCKED", "SERVICE", "ENDPOINTS", "FROM"]]
            for port in ports {
                let endpoints = port.endpoints.joined(separator: ",")
                rows.append(["\(port.key)", port.family.rawValue, port.blocked ? "yes" : "no", port.service,
                             endpoints.isEmpty ? "-" : endpoints, port.source])
            }
            if !ports.isEmpty { printTable(rows) }
            for problem in result.problems {
                printError("nodeguardctl: could not read \(problem)")
            }
        }
    }

    struct Explain: DaemonCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the path a packet to a port takes on this node: who rewrites it, where NodeGuard drops it, and what defeats that.")

        @ParentCommand var root: NodeGuardCtl
        @OptionGroup var connection: Connection

        @Argument(help: "PORT or PORT/PROTOCOL (default tcp).", transform: parsePortKey)
        var port: PortKey

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func run() throws {
            let key = port
            guard let result = try send(.explain(key), as: ExplainReport.self, json: json) else { return }
            print("\(key) on this node (\(result.dataplane.summary))")
            if result.rewrites.isEmpty { print("  rewritten by: nobody (no DNAT of this port was found)") }
            for rewrite in result.rewrites {
                let to = rewrite.to.joined(separator: ", ")
                print("  rewritten by: \(rewrite.by) [\(rewrite.family.rawValue), \(rewrite.source)] -> \(to.isEmpty ? "no endpoints" : to)")
            }
            let drop = result.nodeguard
            if drop.blocked {
                let families = (drop.families ?? []).map(\.rawValue).joined(separator: ", ")
                print("  NodeGuard:    drops it (\(drop.source?.rawValue ?? "-"), \(families)) in \(drop.where ?? "-")")
                for (family, counter) in (drop.dropped ?? [:]).sorted(by: { $0.key < $1.key }) {
                    print("  dropped:      \(family) \(counter.packets) packets, \(counter.bytes) bytes")
                }
            } else {
                print("  NodeGuard:    does not block it (nodeguardctl block \(key))")
            }
            print("  defeated by:  " + (result.defeats.isEmpty ? "nothing found" : result.defeats.joined(separator: "\n                ")))
            print("  verdict:      \(result.verdict)")
        }
    }

    struct Metrics: DaemonCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print drop counters and the daemon's figures in the Prometheus text format.")

        @ParentCommand var root: NodeGuardCtl
        @OptionGroup var connection: Connection

        func run() throws {
            guard let result = try send(.metrics, as: MetricsResult.self) else { return }
            print(result.text, terminator: "")
        }
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a deny-list file offline (no daemon needed): exit 0 if valid, 1 with every problem if not.",
            discussion: """
            Warnings (an entry whose allowFrom lets every source of a family through, so it blocks \
            nothing there) go to stderr and keep exit 0, as the daemon accepts such a file; \
            with --strict they fail validation (exit 1).
            """)

        @Argument(help: "The deny-list file.")
        var file: String

        @Flag(help: "Fail (exit 1) on warnings too.")
        var strict = false

        func run() throws {
            let entries = try DenyListCodec.load(file).entries
            let warnings = DenyListCodec.warnings(DenyList(entries: entries))
            for warning in warnings { printError("nodeguardctl: \(file): warning: \(warning)") }
            let counted = "\(entries.count) entr\(entries.count == 1 ? "y" : "ies")"
                + (warnings.isEmpty ? "" : ", \(warnings.count) warning\(warnings.count == 1 ? "" : "s")")
            if strict && !warnings.isEmpty {
                printError("nodeguardctl: \(file): not accepted with --strict: \(counted)")
                throw ExitCode(CtlExit.failed)
            }
            print("\(file): valid, \(counted)")
        }
    }
}

func printEntries(_ entries: [EntryReport], withCounters: Bool) {
    if entries.isEmpty { return print("no ports are blocked") }
    var rows = [["PORT", "FAMILY", "SOURCE", withCounters ? "DROPPED" : "ALLOW FROM", "REASON"]]
    for report in entries {
        let entry = report.entry
        let fourth: String
        if withCounters {
            fourth = report.dropped.map { "\($0.packets) pkts, \($0.bytes) bytes" } ?? "- pkts, - bytes"
        } else {
            fourth = entry.allowFrom.isEmpty ? "-" : entry.allowFrom.map(\.description).joined(separator: ",")
        }
        var reason = entry.reason ?? "-"
        if let services = report.services, !services.isEmpty {
            reason += " [\(services.joined(separator: ", "))]"
        }
        if let warning = report.warning { reason += " WARNING: \(warning)" }
        rows.append(["\(entry.key)", entry.family.rawValue, report.source.rawValue, fourth, reason])
    }
    printTable(rows)
}

/// Writes a line to standard error, unbuffered.
func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// Prints rows in aligned columns; the last column is not padded.
func printTable(_ rows: [[String]]) {
    guard let columns = rows.first?.count, columns > 0 else { return }
    let widths = (0..<columns - 1).map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        let padded = (0..<columns - 1).map { row[$0] + String(repeating: " ", count: widths[$0] - row[$0].count) }
        print((padded + [row[columns - 1]]).joined(separator: "  "))
    }
}
