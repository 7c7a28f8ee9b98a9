import ArgumentParser
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import NodeGuardCore

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

struct SocketOption: ParsableArguments {
    @Option(name: .long, help: "nodeguardd's control socket.")
    var socket = ControlProtocol.defaultSocketPath

    /// Sends the request; a failure answer becomes a thrown error (exit 1).
    func send(_ request: ControlRequest) throws -> JSONValue {
        switch try ControlClient(socketPath: socket).send(request) {
        case .success(let result): return result
        case .failure(let error): throw error
        }
    }
}

func parsePortKey(_ text: String) throws -> PortKey {
    do { return try PortKey(parsing: text) } catch { throw ValidationError(error.message) }
}

extension NodeGuardCtl {
    struct Block: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Block a NodePort now and keep it blocked across restarts.",
            discussion: "Examples:\n  nodeguardctl block 31002\n  nodeguardctl block 31900/udp --family ipv4 --reason 'SEC-1234'\n  nodeguardctl block 32000 --allow-from 198.18.0.0/24 --allow-from 2001:db8:1::/64")

        @OptionGroup var socket: SocketOption

        @Argument(help: "PORT or PORT/PROTOCOL (tcp, udp, sctp; default tcp).")
        var port: String

        @Option(help: "ipv4, ipv6 or both.")
        var family = "both"

        @Option(help: "Why the port is blocked (at most 256 bytes); shown in the rule's comment.")
        var reason: String?

        @Option(name: .customLong("allow-from"), help: "A source CIDR that stays allowed (repeatable).")
        var allowFrom: [String] = []

        @Flag(help: "Print the daemon's answer as JSON.")
        var json = false

        func entry() throws -> BlockEntry {
            let key = try parsePortKey(port)
            guard let selection = FamilySelection(rawValue: family) else {
                throw ValidationError("--family '\(family)' is not ipv4, ipv6 or both")
            }
            if let reason, let problem = BlockEntry.reasonProblem(reason) {
                throw ValidationError("--reason \(problem)")
            }
            var cidrs: [CIDR] = []
            for text in allowFrom {
                do { cidrs.append(try CIDR(parsing: text)) } catch {
                    throw ValidationError("--allow-from: \(error.message)")
                }
            }
            return BlockEntry(port: key.port, transport: key.transport, family: selection, reason: reason, allowFrom: cidrs)
        }

        func validate() throws { _ = try entry() }

        func run() throws {
            let entry = try entry()
            for warning in DenyListCodec.entryWarnings(entry, path: "--allow-from") {
                printError("nodeguardctl: warning: \(warning.message)")
            }
            let result = try socket.send(.block(entry))
            if json { return print(JSON.serialize(result, pretty: true)) }
            if result["changed"]?.boolValue == false {
                print("\(entry.key) was already blocked (\(result["source"]?.stringValue ?? "runtime"))")
            } else {
                print("blocked \(entry.key)")
            }
        }
    }

    struct Unblock: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a runtime block (ports from the deny-list file are changed in the file).")

        @OptionGroup var socket: SocketOption

        @Argument(help: "PORT or PORT/PROTOCOL (default tcp).")
        var port: String

        @Flag(help: "Print the daemon's answer as JSON.")
        var json = false

        func validate() throws { _ = try parsePortKey(port) }

        func run() throws {
            let key = try parsePortKey(port)
            let result = try socket.send(.unblock(key))
            if json { return print(JSON.serialize(result, pretty: true)) }
            print("unblocked \(key)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the blocked ports and where each comes from.")

        @OptionGroup var socket: SocketOption

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func run() throws {
            let result = try socket.send(.list)
            if json { return print(JSON.serialize(result, pretty: true)) }
            printEntries(result["entries"]?.arrayValue ?? [], withCounters: false)
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the daemon's health, its hooks, verify and repair figures, and drop counters.")

        @OptionGroup var socket: SocketOption

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func run() throws {
            let status = try socket.send(.status)
            if json { return print(JSON.serialize(status, pretty: true)) }
            let healthy = status["healthy"]?.boolValue == true
            print("nodeguardd:  \(healthy ? "healthy" : "UNHEALTHY") (pid \(text(status["pid"])), started \(text(status["startedAt"])))")
            print("config:      \(text(status["configPath"]))")
            let families = (status["families"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")
            let first = status["hooksFirst"]?.boolValue == true
            print("hooks:       \(first ? "first" : "NOT first") in mangle PREROUTING and OUTPUT (\(families))")
            print("last check:  \(text(status["lastVerify"])); sizes every \(text(status["watchIntervalMs"])) ms and at each xtables lock release, rule digests every \(text(status["deepCheckIntervalMs"])) ms")
            print("repairs:     \(text(status["repairs"])), commits: \(text(status["commits"])), full reads: \(text(status["fullReads"])) (last \(text(status["lastVerifyMicroseconds"])) µs)")
            if let dataplane = status["dataplane"] { print("dataplane:   \(text(dataplane["summary"]))") }
            for warning in (status["dataplane"]?["warnings"]?.arrayValue ?? []).compactMap(\.stringValue) { print("WARNING:     \(warning)") }
            if let fight = status["fight"] {
                print("FIGHT:       '\(text(fight["culprit"]))' keeps taking rule 1 of \(text(fight["family"])) mangle \(text(fight["chain"])) (\(text(fight["displacements"])) times); ports held closed from the raw table; next try in \(text(fight["retakeInSeconds"])) s")
                print("advice:      \(text(fight["advice"]))")
            }
            if let error = status["lastError"]?.stringValue { print("last error:  \(error)") }
            print("")
            printEntries(status["entries"]?.arrayValue ?? [], withCounters: true)
            if !healthy { throw ExitCode(CtlExit.failed) }
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-read the deny-list file; a bad file keeps the last good list and prints why.")

        @OptionGroup var socket: SocketOption

        func run() throws {
            let result = try socket.send(.reload)
            print("reloaded: \(text(result["entries"])) entries from the deny-list file")
        }
    }

    struct NodePorts: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "nodeports",
            abstract: "List every NodePort kube-proxy exposes on this node, its service, and whether it is blocked.")

        @OptionGroup var socket: SocketOption

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func run() throws {
            let result = try socket.send(.nodeports)
            if json { return print(JSON.serialize(result, pretty: true)) }
            let ports = result["nodeports"]?.arrayValue ?? []
            if ports.isEmpty { print("no NodePorts found (kube-proxy in iptables mode writes them to KUBE-NODEPORTS)") }
            var rows = [["PORT", "FAMILY", "BLOCKED", "SERVICE", "ENDPOINTS", "FROM"]]
            for port in ports {
                let endpoints = (port["endpoints"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ",")
                rows.append(["\(text(port["port"]))/\(text(port["protocol"]))", text(port["family"]),
                             port["blocked"]?.boolValue == true ? "yes" : "no", text(port["service"]),
                             endpoints.isEmpty ? "-" : endpoints, text(port["source"])])
            }
            if !ports.isEmpty { printTable(rows) }
            for problem in (result["problems"]?.arrayValue ?? []).compactMap(\.stringValue) {
                printError("nodeguardctl: could not read \(problem)")
            }
        }
    }

    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the path a packet to a port takes on this node: who rewrites it, where NodeGuard drops it, and what defeats that.")

        @OptionGroup var socket: SocketOption

        @Argument(help: "PORT or PORT/PROTOCOL (default tcp).")
        var port: String

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func validate() throws { _ = try parsePortKey(port) }

        func run() throws {
            let key = try parsePortKey(port)
            let result = try socket.send(.explain(key))
            if json { return print(JSON.serialize(result, pretty: true)) }
            print("\(key) on this node (\(text(result["dataplane"]?["summary"])))")
            let rewrites = result["rewrites"]?.arrayValue ?? []
            if rewrites.isEmpty { print("  rewritten by: nobody (no DNAT of this port was found)") }
            for rewrite in rewrites {
                let to = (rewrite["to"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")
                print("  rewritten by: \(text(rewrite["by"])) [\(text(rewrite["family"])), \(text(rewrite["source"]))] -> \(to.isEmpty ? "no endpoints" : to)")
            }
            let guardInfo = result["nodeguard"]
            if guardInfo?["blocked"]?.boolValue == true {
                let families = (guardInfo?["families"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")
                print("  NodeGuard:    drops it (\(text(guardInfo?["source"])), \(families)) in \(text(guardInfo?["where"]))")
                if case .object(let drops)? = guardInfo?["dropped"] {
                    for (family, counter) in drops.sorted(by: { $0.key < $1.key }) {
                        print("  dropped:      \(family) \(text(counter["packets"])) packets, \(text(counter["bytes"])) bytes")
                    }
                }
            } else {
                print("  NodeGuard:    does not block it (nodeguardctl block \(key))")
            }
            let defeats = (result["defeats"]?.arrayValue ?? []).compactMap(\.stringValue)
            print("  defeated by:  " + (defeats.isEmpty ? "nothing found" : defeats.joined(separator: "\n                ")))
            print("  verdict:      \(text(result["verdict"]))")
        }
    }

    struct Metrics: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print drop counters and the daemon's figures in the Prometheus text format.")

        @OptionGroup var socket: SocketOption

        func run() throws {
            let result = try socket.send(.metrics)
            print(result["text"]?.stringValue ?? "", terminator: "")
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
            let entries = try NodeGuardEngine.loadConfig(file)
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

func text(_ value: JSONValue?) -> String {
    switch value {
    case .string(let s)?: s
    case .number(let n)?: n
    case .bool(let b)?: b ? "yes" : "no"
    default: "-"
    }
}

func printEntries(_ entries: [JSONValue], withCounters: Bool) {
    if entries.isEmpty { return print("no ports are blocked") }
    var rows = [["PORT", "FAMILY", "SOURCE", withCounters ? "DROPPED" : "ALLOW FROM", "REASON"]]
    for entry in entries {
        let key = "\(text(entry["port"]))/\(text(entry["protocol"]))"
        let fourth: String
        if withCounters {
            fourth = "\(text(entry["dropped"]?["packets"])) pkts, \(text(entry["dropped"]?["bytes"])) bytes"
        } else {
            let allowed = (entry["allowFrom"]?.arrayValue ?? []).compactMap(\.stringValue)
            fourth = allowed.isEmpty ? "-" : allowed.joined(separator: ",")
        }
        var reason = entry["reason"]?.stringValue ?? "-"
        if let services = entry["services"]?.arrayValue?.compactMap(\.stringValue), !services.isEmpty {
            reason += " [\(services.joined(separator: ", "))]"
        }
        if let warning = entry["warning"]?.stringValue { reason += " WARNING: \(warning)" }
        rows.append([key, text(entry["family"]), text(entry["source"]), fourth, reason])
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
