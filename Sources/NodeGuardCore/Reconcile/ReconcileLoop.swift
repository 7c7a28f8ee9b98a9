import FoundationEssentials
import Logging
import ServiceLifecycle

/// The one serial loop that owns NodeGuard's state.
///
/// It runs on a thread of its own, not on Swift's cooperative pool, because
/// every step blocks: waiting for /run/xtables.lock, libiptc calls, fsync.
/// Requests from the control socket and SIGHUP are queued here and handled
/// one at a time between verify passes, so no two reconciles ever interleave.
public final class ReconcileLoop: Service, @unchecked Sendable {
    // `engine` is touched only on the loop thread (and by the caller before
    // `run()` starts it). Everything else below is guarded by `condition`.
    private let engine: NodeGuardEngine
    private let notifier: SystemdNotifier
    private let verifyInterval: Duration
    private let watchInterval: Duration
    private let condition = ConditionLock()
    private var queue: [@Sendable (NodeGuardEngine) -> Void] = []
    private var stopping = false
    private var checkRequested = false

    public init(engine: NodeGuardEngine, notifier: SystemdNotifier = SystemdNotifier()) {
        self.engine = engine
        self.notifier = notifier
        // With a watchdog, come round at least twice per timeout.
        self.verifyInterval = notifier.loopInterval(verifyInterval: engine.configuration.verifyInterval)
        self.watchInterval = min(engine.configuration.watchInterval, verifyInterval)
    }

    /// Queues a request for the loop and waits for its answer.
    public func submit(_ request: ControlRequest, from origin: RequestOrigin) async -> ControlResponse {
        await withCheckedContinuation { (continuation: CheckedContinuation<ControlResponse, Never>) in
            let notifier = self.notifier
            let accepted = enqueue { engine in
                if request == .reload { notifier.reloading() }
                let response = engine.handle(request, from: origin)
                if request == .reload { notifier.ready(status: engine.statusLine) }
                continuation.resume(returning: response)
            }
            if !accepted {
                continuation.resume(returning: .failure(NodeGuardError(.shuttingDown, "nodeguardd is shutting down; retry when it is back")))
            }
        }
    }

    /// Asks for a quick change check now rather than at the next watch tick
    /// (the xtables lock was just released by someone).
    public func tablesMayHaveChanged() {
        condition.lock()
        checkRequested = true
        condition.signal()
        condition.unlock()
    }

    private func enqueue(_ job: @escaping @Sendable (NodeGuardEngine) -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return false }
        queue.append(job)
        condition.signal()
        return true
    }

    public func run() async throws {
        // Event-driven for writers that take the xtables lock; polling covers the rest.
        let lockWatcher = try? XtablesLockWatcher { [weak self] in self?.tablesMayHaveChanged() }
        lockWatcher?.start()
        defer { lockWatcher?.stop() }
        let finished = AsyncStream<Void>.makeStream()
        // Without its loop the daemon cannot guard anything: stop it (systemd
        // restarts it; the kernel keeps the rules meanwhile).
        try startThread(name: "ng-reconcile") { [self] in
            loop()
            finished.continuation.finish()
        }
        // Runs until SIGTERM/SIGINT (graceful shutdown) or cancellation.
        try? await gracefulShutdown()
        notifier.stopping()
        stop()
        for await _ in finished.stream {}
    }

    private func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        let clock = ContinuousClock()
        var nextPing = clock.now + verifyInterval
        var nextDeep = clock.now + verifyInterval
        var nextWatch = clock.now + watchInterval
        // Start-up (reading the deny-list, planning, the first commit) leaves
        // the most free heap behind; it is all released by now.
        releaseFreeHeap()
        while true {
            condition.lock()
            while queue.isEmpty && !stopping && !checkRequested && clock.now < nextWatch {
                condition.wait(for: max(.microseconds(500), nextWatch - clock.now))
            }
            if stopping {
                let abandoned = queue
                queue.removeAll()
                condition.unlock()
                // Answer whatever is still queued so no client hangs.
                for job in abandoned { job(engine) }
                return
            }
            let jobs = queue
            queue.removeAll()
            let checkNow = checkRequested
            checkRequested = false
            condition.unlock()

            for job in jobs { job(engine) }
            let now = clock.now
            guard checkNow || now >= nextWatch else { continue }
            // A released lock may hide a same-size edit: digest at once.
            let deep = checkNow || now >= nextDeep
            engine.watchTick(deep: deep)
            nextWatch = clock.now + watchInterval
            if deep { nextDeep = clock.now + engine.deepCheckInterval }
            if now >= nextPing {
                // Only this loop pings the watchdog: if it stalls, systemd restarts the daemon.
                notifier.loopAlive(status: engine.statusLine)
                nextPing = clock.now + verifyInterval
            }
        }
    }
}
