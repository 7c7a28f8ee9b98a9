import FoundationEssentials
import Logging
import ServiceLifecycle

/// The one serial loop that owns NodeGuard's state.
///
/// It runs on a thread of its own, not on Swift's cooperative pool, because
/// every step blocks briefly: libiptc calls, fsync. Requests from the control
/// socket and SIGHUP are queued here and handled one at a time, so no two
/// reconciles ever interleave. It never waits for anyone else:
///
/// - repairs and the verify schedule come first: between two requests the
///   loop runs any watch tick that is due or was asked for, so a queue of
///   `status` calls cannot delay a repair or the watchdog's ping;
/// - a request that changes the tables while another program holds the
///   xtables lock is parked, with everything that changes the tables after
///   it (their order is kept), and tried again at each release of the lock
///   and each tick, until `requestLockWait` has passed; reads are answered
///   meanwhile.
public final class ReconcileLoop: Service, @unchecked Sendable {
    /// A queued request: `run` answers it, or returns false to be parked.
    private struct Job {
        var changesTables: Bool
        var submitted: ContinuousClock.Instant
        var run: @Sendable (NodeGuardEngine, _ waited: Duration?) -> Bool
    }

    /// How long a request that changes the tables waits for the xtables lock.
    public static let requestLockWait: Duration = .seconds(10)

    // `engine` and `parked` are touched only on the loop thread (and by the
    // caller before `run()` starts it). Everything else below is guarded by `condition`.
    private let engine: NodeGuardEngine
    private let notifier: SystemdNotifier
    private let verifyInterval: Duration
    private let watchInterval: Duration
    private let condition = ConditionLock()
    private var queue: [Job] = []
    private var parked: [Job] = []
    private var stopping = false
    private var checkRequested = false

    public init(engine: NodeGuardEngine, notifier: SystemdNotifier = SystemdNotifier()) {
        self.engine = engine
        self.notifier = notifier
        // With a watchdog, come round at least twice per timeout.
        self.verifyInterval = notifier.loopInterval(verifyInterval: engine.configuration.verifyInterval)
        self.watchInterval = min(engine.configuration.watchInterval, verifyInterval)
    }

    /// Queues a request for the loop and blocks the calling thread until the
    /// loop has answered it: a control connection's thread hands its request
    /// over and waits, with no task or other thread in between.
    public func answer(_ request: ControlRequest, from origin: RequestOrigin) -> ControlResponse {
        // Guarded by `reply.lock`.
        final class Reply: @unchecked Sendable { let lock = ConditionLock(); var response: ControlResponse? }
        let reply = Reply()
        let queued = enqueue(job(request, from: origin) { response in
            reply.lock.withLock {
                reply.response = response
                reply.lock.signal()
            }
        })
        guard queued else { return .failure(Self.shuttingDown) }
        return reply.lock.withLock {
            while reply.response == nil { reply.lock.wait() }
            return reply.response!
        }
    }

    /// Queues a request for the loop and waits for its answer (SIGHUP's reload).
    public func submit(_ request: ControlRequest, from origin: RequestOrigin) async -> ControlResponse {
        await withCheckedContinuation { (continuation: CheckedContinuation<ControlResponse, Never>) in
            if !enqueue(job(request, from: origin) { continuation.resume(returning: $0) }) {
                continuation.resume(returning: .failure(Self.shuttingDown))
            }
        }
    }

    private static let shuttingDown = NodeGuardError(.shuttingDown, "nodeguardd is shutting down; retry when it is back")

    /// The job for a request: `reply` gets the answer once, when the loop has one.
    private func job(_ request: ControlRequest, from origin: RequestOrigin,
                     reply: @escaping @Sendable (ControlResponse) -> Void) -> Job {
        let notifier = self.notifier
        return Job(changesTables: request.isMutating, submitted: .now) { engine, waited in
            if request == .reload { notifier.reloading() }
            let response = engine.handle(request, from: origin, waited: waited)
            if request == .reload { notifier.ready(status: engine.statusLine) }
            if waited == nil, case .failure(let error) = response, error.code == .lockTimeout { return false }
            reply(response)
            return true
        }
    }

    /// Asks for a change check now rather than at the next watch tick
    /// (the xtables lock was just released by someone).
    public func tablesMayHaveChanged() {
        condition.lock()
        checkRequested = true
        condition.signal()
        condition.unlock()
    }

    private func enqueue(_ job: Job) -> Bool {
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

    /// Runs a job now, parks it, or (past its wait) fails it for good.
    private func dispatch(_ job: Job, now: ContinuousClock.Instant) {
        let waited = now - job.submitted
        if !job.run(engine, waited >= Self.requestLockWait ? waited : nil) { parked.append(job) }
    }

    /// Tries the parked requests again, in order, up to the first that must
    /// wait longer.
    private func retryParked(now: ContinuousClock.Instant) {
        while let job = parked.first {
            let waited = now - job.submitted
            guard job.run(engine, waited >= Self.requestLockWait ? waited : nil) else { return }
            parked.removeFirst()
        }
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
                let abandoned = parked + queue
                queue.removeAll()
                parked.removeAll()
                condition.unlock()
                // Answer whatever is still queued so no client hangs: a parked
                // request gets the lock's error now.
                for job in abandoned { _ = job.run(engine, clock.now - job.submitted) }
                return
            }
            // One request per turn: the watch gets its turn in between.
            let job = queue.isEmpty ? nil : queue.removeFirst()
            let checkNow = checkRequested
            checkRequested = false
            condition.unlock()

            if checkNow { engine.noteLockReleased() }
            let now = clock.now
            if checkNow || now >= nextWatch {
                // A released lock may hide a same-size edit: digest at once.
                let deep = checkNow || now >= nextDeep
                engine.watchTick(deep: deep)
                nextWatch = clock.now + watchInterval
                if deep { nextDeep = clock.now + engine.deepCheckInterval }
                // The lock may be free now: parked requests go before new ones.
                retryParked(now: clock.now)
            }
            if let job {
                // Behind a parked request, a change waits its turn; reads go on.
                if job.changesTables && !parked.isEmpty { parked.append(job) } else { dispatch(job, now: clock.now) }
            }
            if clock.now >= nextPing {
                // Only this loop pings the watchdog: if it stalls, systemd restarts the daemon.
                notifier.loopAlive(status: engine.statusLine)
                nextPing = clock.now + verifyInterval
            }
        }
    }
}
