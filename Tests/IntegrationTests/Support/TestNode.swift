import Foundation
import NodeGuardCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The result of running a command.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var succeeded: Bool { status == 0 }
}

/// Runs a command to completion, capturing its output.
@discardableResult
func runCommand(_ arguments: [String], input: String? = nil, environment: [String: String]? = nil) throws -> CommandResult {
    let out = try makePipe(), err = try makePipe()
    let inputPipe = input == nil ? nil : try makePipe()
    let child = try ChildProcess(arguments, stdin: inputPipe?.read, stdout: out.write, stderr: err.write,
                                 environment: environment ?? [:])
    close(out.write)
    close(err.write)
    if let inputPipe, let input {
        close(inputPipe.read)
        // Inputs here are small (a nat table), well under a pipe's buffer.
        let bytes = Array(input.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(inputPipe.write, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            written += n
        }
        close(inputPipe.write)
    }
    let (stdout, stderr) = readAll(out.read, err.read)
    close(out.read)
    close(err.read)
    let status = child.wait()
    return CommandResult(status: status, stdout: String(decoding: stdout, as: UTF8.self),
                         stderr: String(decoding: stderr, as: UTF8.self))
}

/// Where the built binaries and the fixture scripts are.
enum TestPaths {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The folder of the test bundle holds the package's executables too.
    static var binaries: URL {
        if let override = ProcessInfo.processInfo.environment["NODEGUARD_BIN_DIR"] {
            return URL(fileURLWithPath: override)
        }
        var url = Bundle.main.bundleURL
        while url.path != "/" {
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("nodeguardd").path) { return url }
            url = url.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    static var nodeguardd: String { binaries.appendingPathComponent("nodeguardd").path }
    static var nodeguardctl: String { binaries.appendingPathComponent("nodeguardctl").path }
}

/// How the node's kube-proxy-shaped NodePorts are written: iptables mode
/// with the legacy or the nft backend, nftables mode, or no kube-proxy.
enum NatBackend {
    case legacy, nft, nftables, none
    var restore: String { self == .legacy ? "iptables-legacy-restore" : "iptables-nft-restore" }
    var restore6: String { self == .legacy ? "ip6tables-legacy-restore" : "ip6tables-nft-restore" }
}

/// What `inNodeNamespace`'s thread hands back; the semaphore orders its write
/// before the caller's read.
final class NamespaceOutcome<T>: @unchecked Sendable {
    var value: Result<T, Error>?
}

/// A Kubernetes node in network namespaces (NETFILTER.md):
///
///     client (198.18.0.2, 2001:db8:18::2) -- node (198.18.0.1 | 198.19.0.1) -- pod (198.19.0.2, 2001:db8:19::2)
///
/// The node's nat table is shaped like kube-proxy's: NodePort 31002/tcp ->
/// pod:8200 (vault/vault-ui), 31003/tcp -> pod:8300 (web/frontend),
/// 31900/udp -> pod:5300 (dns/resolver). The pod also listens on 31002/tcp
/// itself, for the "routed pod traffic still flows" check.
final class TestNode {
    static let nodeIPv4 = "198.18.0.1", nodeIPv6 = "2001:db8:18::1"
    static let podIPv4 = "198.19.0.2", podIPv6 = "2001:db8:19::2"

    let id: String
    var node: String { "\(id)-node" }
    var pod: String { "\(id)-pod" }
    var client: String { "\(id)-cli" }
    let directory: URL
    var configPath: String { directory.appendingPathComponent("denylist.json").path }
    var stateDirectory: String { directory.appendingPathComponent("state").path }
    var socketPath: String { directory.appendingPathComponent("nodeguard.sock").path }
    var logPath: String { directory.appendingPathComponent("nodeguardd.log").path }
    var serversLogPath: String { directory.appendingPathComponent("servers.log").path }

    private var namespaces: [String] = []
    private var processes: [ChildProcess] = []
    private(set) var daemon: ChildProcess?

    init() throws {
        // Unique per run and per test, short enough for interface names (15 bytes).
        id = "ngt" + String(UInt32.random(in: 0..<UInt32.max), radix: 36)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("nodeguard-\(id)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// Builds the namespaces, links, routes, nat table and pod servers.
    func setUp(nat: NatBackend = .legacy) throws {
        for name in [node, pod, client] {
            try sh("ip netns add \(name)")
            namespaces.append(name)
            try sh("ip -n \(name) link set lo up")
        }
        let cveth = "\(id)c", pveth = "\(id)p"
        try sh("ip link add \(cveth)0 netns \(node) type veth peer name \(cveth)1 netns \(client)")
        try sh("ip link add \(pveth)0 netns \(node) type veth peer name \(pveth)1 netns \(pod)")
        try sh("""
            ip -n \(node) addr add 198.18.0.1/24 dev \(cveth)0 && ip -n \(node) addr add 2001:db8:18::1/64 dev \(cveth)0 nodad && \
            ip -n \(node) addr add 198.19.0.1/24 dev \(pveth)0 && ip -n \(node) addr add 2001:db8:19::1/64 dev \(pveth)0 nodad && \
            ip -n \(node) link set \(cveth)0 up && ip -n \(node) link set \(pveth)0 up && \
            ip -n \(client) addr add 198.18.0.2/24 dev \(cveth)1 && ip -n \(client) addr add 2001:db8:18::2/64 dev \(cveth)1 nodad && \
            ip -n \(client) link set \(cveth)1 up && \
            ip -n \(client) route add default via 198.18.0.1 && ip -n \(client) -6 route add default via 2001:db8:18::1 && \
            ip -n \(pod) addr add 198.19.0.2/24 dev \(pveth)1 && ip -n \(pod) addr add 2001:db8:19::2/64 dev \(pveth)1 nodad && \
            ip -n \(pod) link set \(pveth)1 up && \
            ip -n \(pod) route add default via 198.19.0.1 && ip -n \(pod) -6 route add default via 2001:db8:19::1 && \
            ip netns exec \(node) sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
            """)
        try loadKubeProxyNat(nat)
        try startPodServers()
    }

    func loadKubeProxyNat(_ backend: NatBackend) throws {
        switch backend {
        case .none: return
        case .nftables:
            let rules = try String(contentsOf: TestPaths.fixtures.appendingPathComponent("kube-proxy-nftables.nft"), encoding: .utf8)
                .replacingOccurrences(of: "@POD4@", with: Self.podIPv4).replacingOccurrences(of: "@POD6@", with: Self.podIPv6)
            try check(runCommand(["ip", "netns", "exec", node, "nft", "-f", "-"], input: rules), "loading kube-proxy's nftables tables")
            return
        case .legacy, .nft: break
        }
        let template = try String(contentsOf: TestPaths.fixtures.appendingPathComponent("kube-proxy-nat.rules"), encoding: .utf8)
        let v4 = template.replacingOccurrences(of: "@POD@", with: Self.podIPv4)
        let v6 = template.replacingOccurrences(of: "@POD@", with: "[\(Self.podIPv6)]")
        try check(runCommand(["ip", "netns", "exec", node, backend.restore], input: v4), "loading the IPv4 nat table")
        try check(runCommand(["ip", "netns", "exec", node, backend.restore6], input: v6), "loading the IPv6 nat table")
    }

    /// Loads a fixture with iptables-legacy-restore (or `tool`), @POD@ replaced by the pod's IPv4 address.
    func loadFixture(_ name: String, tool: [String] = ["iptables-legacy-restore"]) throws {
        let rules = try String(contentsOf: TestPaths.fixtures.appendingPathComponent(name), encoding: .utf8)
            .replacingOccurrences(of: "@POD@", with: Self.podIPv4)
        try check(runCommand(["ip", "netns", "exec", node] + tool, input: rules), "loading \(name)")
    }

    /// `count` rules of another program appended to mangle PREROUTING (below
    /// NodeGuard's jump), each different: a hostile node's table.
    func loadForeignMangleRules(_ count: Int = 20_000) throws {
        var rules = "*mangle\n"
        for index in 0..<count { rules += "-A PREROUTING -p tcp --dport \(10_000 + index % 20_000) -j MARK --set-mark \(index + 1)\n" }
        rules += "COMMIT\n"
        try check(runCommand(["ip", "netns", "exec", node, "iptables-legacy-restore", "--noflush"], input: rules), "loading foreign mangle rules")
    }

    /// Whether the pod still listens on its test ports.
    func podServersListening() -> Bool {
        let listeners = (try? runCommand(["ip", "netns", "exec", pod, "ss", "-ltn"]).stdout) ?? ""
        return [":8200", ":8300", ":31002"].allSatisfy { listeners.contains($0) }
    }

    private func startPodServers() throws {
        try startServers(in: pod, name: "pod", ports: ["tcp:8200", "tcp:8300", "tcp:31002", "udp:5300"])
    }

    /// Starts servers.py in `namespace` on `ports` ("tcp:P", "udp:P"), each
    /// answering with "NAME:PORT"; they stop with the node.
    func startServers(in namespace: String, name: String, ports: [String]) throws {
        let out = try makePipe()
        defer { close(out.read) }
        // Their errors go to a file the notes below can show.
        let errors = open(serversLogPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        defer { if errors >= 0 { close(errors) } }
        let process = try ChildProcess(["ip", "netns", "exec", namespace, "python3",
                                        TestPaths.fixtures.appendingPathComponent("servers.py").path,
                                        name] + ports, stdout: out.write,
                                       stderr: errors >= 0 ? errors : nil)
        close(out.write)
        processes.append(process)
        var ready = pollfd(fd: out.read, events: Int16(POLLIN), revents: 0)
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = poll(&ready, 1, 10_000) > 0 ? read(out.read, &buffer, buffer.count) : 0
        guard n > 0, String(decoding: buffer[0..<n], as: UTF8.self).contains("ready") else {
            throw TestNodeError("the \(name) servers did not start")
        }
    }

    // MARK: probes

    enum Origin { case client, node }

    /// Whether a request from `origin` to HOST:PORT gets an answer.
    func answers(_ proto: String = "tcp", _ host: String, _ port: Int, from origin: Origin = .client,
                 sourcePort: Int? = nil, timeout: Double = 1.0) throws -> Bool {
        try probe(proto, host, port, from: origin, sourcePort: sourcePort, timeout: timeout).succeeded
    }

    func probe(_ proto: String, _ host: String, _ port: Int, from origin: Origin,
               sourcePort: Int?, timeout: Double) throws -> CommandResult {
        var args = ["ip", "netns", "exec", origin == .client ? client : node, "python3",
                    TestPaths.fixtures.appendingPathComponent("probe.py").path, proto, host, String(port),
                    "--timeout", String(timeout)]
        if let sourcePort { args += ["--source-port", String(sourcePort)] }
        return try runCommand(args)
    }

    /// For checks that a port is open: one retry, so a first packet lost on a
    /// busy machine does not fail a test (a closed port fails both tries).
    func isOpen(_ proto: String = "tcp", _ host: String, _ port: Int, from origin: Origin = .client,
                sourcePort: Int? = nil) throws -> Bool {
        var failures: [String] = []
        for timeout in [1.0, 2.0, 3.0] {
            let result = try probe(proto, host, port, from: origin, sourcePort: sourcePort, timeout: timeout)
            if result.succeeded {
                if !failures.isEmpty { print("note: \(proto) \(host):\(port) answered after \(failures)") }
                return true
            }
            failures.append("exit \(result.status): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
            // NodeGuard only ever drops (a timeout), it never refuses. A refusal
            // means the pod's test servers are gone (they used to die of a
            // broken pipe after printing "ready"; servers.py no longer can), so
            // restart them loudly, with their errors, rather than fail the check.
            if result.stderr.contains("Connection refused"), !podServersListening() {
                let servers = processes.first { $0.arguments.contains { $0.hasSuffix("servers.py") } }
                let state = servers.map { $0.isRunning ? "running" : "exited with status \($0.wait())" } ?? "unknown"
                let errors = (try? String(contentsOfFile: serversLogPath, encoding: .utf8)) ?? ""
                print("note: the pod's test servers were not listening (\(state)); restarting them; their errors:\n\(errors.suffix(1500))")
                try startPodServers()
            }
        }
        // Left in the test log for whoever looks into it.
        print("probe \(proto) \(host):\(port) from \(origin) failed: \(failures)\n" +
              ((try? inNode("ip -s link; iptables-legacy -t mangle -L -v -n | head -20").stdout) ?? "") +
              "pod listeners:\n" + ((try? runCommand(["ip", "netns", "exec", pod, "ss", "-ltnup"]).stdout) ?? "") +
              "pod pids: " + ((try? runCommand(["ip", "netns", "pids", pod]).stdout) ?? "") +
              "servers alive: \(processes.first?.isRunning ?? false)")
        return false
    }

    // MARK: NodeGuard

    func writeDenyList(_ json: String) throws {
        try json.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Starts nodeguardd in the node namespace and waits until it answers.
    func startDaemon(extraArguments: [String] = ["--verify-interval", "100ms"], environment: [String: String] = [:],
                     launcher: [String] = []) throws {
        if !FileManager.default.fileExists(atPath: configPath) {
            try writeDenyList(#"{"version": 1, "blocked": []}"#)
        }
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw TestNodeError("cannot open \(logPath)") }
        defer { close(log) }
        let process = try ChildProcess(["ip", "netns", "exec", node] + launcher + [
            TestPaths.nodeguardd, "--config", configPath, "--state-dir", stateDirectory,
            "--socket", socketPath, "--log-level", "debug"] + extraArguments,
            stdout: log, stderr: log, environment: environment)
        processes.append(process)
        daemon = process
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if !process.isRunning { throw TestNodeError("nodeguardd exited with \(process.wait()):\n\(daemonLog)") }
            if try ctl("status", "--json").succeeded { return }
            usleep(50_000)
        }
        throw TestNodeError("nodeguardd did not answer within 15 s:\n\(daemonLog)")
    }

    func signalDaemon(_ signal: Int32) {
        // `ip netns exec` execs the daemon, so the pid is the daemon's own.
        daemon?.signal(signal)
    }

    func stopDaemon(_ signal: Int32 = SIGTERM) {
        guard let daemon else { return }
        signalDaemon(signal)
        daemon.wait()
        self.daemon = nil
    }

    var daemonLog: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    @discardableResult
    func ctl(_ arguments: String...) throws -> CommandResult {
        try ctl(arguments)
    }

    @discardableResult
    func ctl(_ arguments: [String]) throws -> CommandResult {
        guard let sub = arguments.first else { return try runCommand([TestPaths.nodeguardctl]) }
        let withSocket = sub == "validate" ? arguments : [sub, "--socket", socketPath] + arguments.dropFirst()
        return try runCommand([TestPaths.nodeguardctl] + withSocket)
    }

    func status() throws -> [String: Any] {
        let result = try ctl("status", "--json")
        guard let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw TestNodeError("status --json printed no object: \(result.stdout) \(result.stderr)")
        }
        return object
    }

    /// `iptables-legacy-save -t mangle` (or ip6tables) in the node: the kernel's own read-back.
    /// Runs `body` in this process, on a thread of its own that has joined the
    /// node's network namespace (setns changes only the calling thread), so a
    /// test can drive NodeGuardCore's backends directly against the node.
    func inNodeNamespace<T>(_ body: @escaping () throws -> T) throws -> T {
        let fd = open("/var/run/netns/\(node)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestNodeError("cannot open /var/run/netns/\(node): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        // glibc declares setns only under _GNU_SOURCE, which Swift's Glibc module lacks.
        typealias SetNS = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(nil, "setns") else { throw TestNodeError("setns is not in this libc") }
        let setns = unsafeBitCast(symbol, to: SetNS.self)
        let outcome = NamespaceOutcome<T>()
        let done = DispatchSemaphore(value: 0)
        let work = { () -> Void in
            if setns(fd, 0x4000_0000 /* CLONE_NEWNET */) != 0 {
                outcome.value = .failure(TestNodeError("setns into \(self.node): \(String(cString: strerror(errno)))"))
            } else {
                outcome.value = Result { try body() }
            }
        }
        nonisolated(unsafe) let unsafeWork = work
        let thread = Thread {
            unsafeWork()
            done.signal()   // the thread, and its namespace membership, ends here
        }
        thread.start()
        done.wait()
        return try outcome.value!.get()
    }

    func mangleRules(ipv6: Bool = false) throws -> [String] {
        let tool = ipv6 ? "ip6tables-legacy-save" : "iptables-legacy-save"
        let result = try runCommand(["ip", "netns", "exec", node, tool, "-t", "mangle"])
        try check(result, tool)
        return result.stdout.split(separator: "\n").map(String.init).filter { $0.hasPrefix("-A ") }
    }

    /// Runs a shell command in the node namespace.
    @discardableResult
    func inNode(_ command: String) throws -> CommandResult {
        try runCommand(["ip", "netns", "exec", node, "sh", "-c", command])
    }

    /// Waits until `condition` holds, up to `timeout` seconds.
    func eventually(_ timeout: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
        try IntegrationTests.eventually(timeout, every: 0.02, condition)
    }

    /// Removes everything this node made, whatever state the test left it in.
    func tearDown() {
        for process in processes where process.isRunning {
            process.signal(SIGKILL)
            process.wait()
        }
        for name in namespaces {
            // Whatever still runs in the namespace (a daemon a test started indirectly) goes too.
            if let pids = try? runCommand(["ip", "netns", "pids", name]).stdout {
                for pid in pids.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
            }
            _ = try? runCommand(["ip", "netns", "del", name])
        }
        namespaces.removeAll()
        try? FileManager.default.removeItem(at: directory)
    }

    private func sh(_ command: String) throws {
        try check(runCommand(["sh", "-c", command]), command)
    }

    private func check(_ result: CommandResult, _ what: String) throws {
        guard result.succeeded else { throw TestNodeError("\(what) failed (\(result.status)): \(result.stderr)") }
    }
}

struct TestNodeError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Base class: skips without root, builds a fresh node per test and always removes it.
class NodeTestCase: XCTestCase {
    var node: TestNode!

    override func setUpWithError() throws {
        try XCTSkipUnless(getuid() == 0, "integration tests need root (network namespaces, netfilter); run them with sudo or in CI")
        node = try TestNode()
        addTeardownBlock { [node] in node?.tearDown() }
    }

    func setUpNode(nat: NatBackend = .legacy) throws {
        try node.setUp(nat: nat)
    }
}
