import ArgumentParser
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NodeGuardCore
import ServiceLifecycle
import UnixSignals

@main
enum NodeGuardDaemonMain {
    static func main() async {
        // Before any thread allocates: see tuneHeapForDaemon.
        tuneHeapForDaemon()
        await NodeGuardDaemon.main()
    }
}

struct NodeGuardDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodeguardd",
        abstract: "Keeps blocked Kubernetes NodePorts closed before kube-proxy's DNAT.",
        discussion: """
        Reads a JSON deny-list, keeps NodeGuard's chains hooked first in mangle PREROUTING and \
        OUTPUT (IPv4 and IPv6, legacy xtables), repairs drift as soon as the watch sees it, and \
        serves nodeguardctl on a Unix socket. SIGHUP reloads the deny-list; SIGTERM/SIGINT exit and \
        leave the rules in place, so a stopped daemon never re-opens a port.
        """
    )

    @Option(help: "The deny-list file.")
    var config = "/etc/nodeguard/denylist.json"

    @Option(help: "Where runtime blocks are persisted.")
    var stateDir = "/var/lib/nodeguard"

    @Option(help: "The control socket's path.")
    var socket = ControlProtocol.defaultSocketPath

    @Option(help: "How often to compare every rule of the tables NodeGuard uses with what it left there (e.g. 500ms, 1s).")
    var verifyInterval = "1s"

    @Option(help: "How often to check the tables' sizes, which catches inserts, deletes and flushes by writers that skip the xtables lock; lock holders are seen at once.")
    var watchInterval = "100ms"

    @Option(help: "Besides root, members of this group may use the control socket.")
    var group = "nodeguard"

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    @Option(help: "Keep a Prometheus textfile for node_exporter's textfile collector at this path (atomic replace).")
    var metricsTextfile: String?

    @Flag(help: "Remove every NodeGuard chain and jump (IPv4 and IPv6) and exit; for uninstalling.")
    var removeRules = false

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        do { _ = try Duration(parsing: verifyInterval) } catch {
            throw ValidationError("--verify-interval: \(error.message)")
        }
        do { _ = try Duration(parsing: watchInterval) } catch {
            throw ValidationError("--watch-interval: \(error.message)")
        }
    }

    func run() async throws {
        // A reload (SIGHUP) that arrives before the handler is installed must
        // not terminate the daemon, which is SIGHUP's default action.
        signal(SIGHUP, SIG_IGN)
        let level = Logger.Level(rawValue: logLevel) ?? .info
        // Structured entries when journald reads our stderr, plain lines otherwise.
        let toJournal = JournalLogHandler.stderrIsJournal()
        LoggingSystem.bootstrap { label in
            if toJournal { return JournalLogHandler(identifier: "nodeguardd", logLevel: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "nodeguardd")
        // Before anything touches the kernel or the socket: a second daemon
        // with this state directory (or --remove-rules while one runs) stops here.
        let instance: InstanceLock?
        do {
            instance = removeRules ? try InstanceLock.acquireIfPresent(stateDirectory: stateDir)
                                   : try InstanceLock.acquire(stateDirectory: stateDir)
        } catch {
            logger.critical("cannot \(removeRules ? "remove the rules" : "start"): \(error.message)")
            throw ExitCode.failure
        }
        // Held until the process exits.
        defer { withExtendedLifetime(instance) {} }
        let backend = LibIPTCBackend()

        if removeRules {
            // Both backends' rules, whichever an earlier run used; a failure
            // of one does not keep the other's from going.
            var failed = false
            var removed: [TableChange] = []
            do {
                removed += try Reconciler(backend: backend).removeAll()
            } catch {
                logger.error("\(error.message)")
                failed = true
            }
            do {
                removed += try NFTablesKeeper.removeTable()
            } catch {
                logger.error("\(error.message)")
                failed = true
            }
            for change in removed { logger.info("removed: \(change)") }
            if failed { throw ExitCode.failure }
            logger.info(removed.isEmpty ? "no NodeGuard rules were present" : "every NodeGuard rule, chain and table is removed")
            return
        }

        let settings = DaemonConfiguration(
            configPath: config, stateDirectory: stateDir, socketPath: socket,
            verifyInterval: try Duration(parsing: verifyInterval), watchInterval: try Duration(parsing: watchInterval),
            metricsTextfile: metricsTextfile)
        let engine = NodeGuardEngine(configuration: settings, backend: backend, logger: logger)
        let notifier = SystemdNotifier()
        let loop = ReconcileLoop(engine: engine, notifier: notifier)
        let server: ControlServer
        do {
            // Apply before serving: a bad file stops here and the kernel keeps
            // its rules. A held xtables lock makes it wait, saying so to systemd.
            try engine.start { why in notifier.stillStarting(extendBy: .seconds(5), status: why) }
            let access = ControlAccess(groupName: group)
            if access.groupID == nil {
                logger.notice("the group '\(group)' does not exist: only root may use the control socket")
            }
            // Each connection's thread hands its request to the loop and waits.
            let handler: ControlServer.Handler = { request, origin in loop.answer(request, from: origin) }
            server = try ControlServer(path: socket, logger: logger, access: access, handler: handler)
        } catch {
            logger.critical("cannot start: \(error.message)")
            throw ExitCode.failure
        }

        let reloadOnHangup = ReloadOnHangup(loop: loop, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: loop),
                .init(service: server),
                .init(service: reloadOnHangup),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        logger.info("serving nodeguardctl on \(socket)")
        // Ready only now: the first apply succeeded and the socket is served.
        notifier.ready(status: engine.statusLine)
        try await group.run()
        logger.info("stopped; NodeGuard's rules stay in the kernel")
    }
}

/// SIGHUP re-reads the deny-list through the reconcile loop, like `nodeguardctl reload`.
struct ReloadOnHangup: Service {
    let loop: ReconcileLoop
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            logger.info("SIGHUP: reloading the deny-list")
            if case .failure(let error) = await loop.submit(.reload, from: .signal) {
                logger.error("SIGHUP reload failed, keeping the last good list: \(error.message)")
            }
        }
    }
}
