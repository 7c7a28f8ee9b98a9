import Foundation
import Logging
import XCTest
@testable import NodeGuardCore

/// The engine's behaviour through the in-memory backend and an injected
/// clock: rollback, reload, repairs, fights and the verify schedule, without
/// root. The real-kernel tests (`NodePortBlockTests`, `FaultTests`,
/// `FightTests`, `ChangeWatchTests`) prove the same with packets.
final class EngineTests: XCTestCase {
    /// The time the engine sees; tests move it.
    final class TestClock: @unchecked Sendable {
        var now = ContinuousClock.now
        func advance(_ duration: Duration) { now += duration }
    }

    /// Keeps what the engine logs, to check what an operator would read.
    final class LogLines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func append(_ line: String) { lock.withLock { lines.append(line) } }
        var all: [String] { lock.withLock { lines } }
    }

    struct CapturingHandler: LogHandler {
        let lines: LogLines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            lines.append("\(event.level): \(event.message)")
        }
    }

    var directory: URL!
    var backend: FakeNetfilterBackend!
    var clock: TestClock!
    var logs: LogLines!
    var engine: NodeGuardEngine!

    var configPath: String { directory.appendingPathComponent("denylist.json").path }
    var stateDirectory: String { directory.appendingPathComponent("state").path }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ng-engine-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        try writeConfig(#"{"version": 1, "blocked": [{"port": 31002}]}"#)
        backend = FakeNetfilterBackend()
        clock = TestClock()
        logs = LogLines()
        let lines = logs!
        let clock = clock!
        engine = NodeGuardEngine(
            configuration: DaemonConfiguration(configPath: configPath, stateDirectory: stateDirectory, socketPath: "/nonexistent"),
            backend: backend, logger: Logger(label: "test") { _ in CapturingHandler(lines: lines) },
            families: [.ipv4, .ipv6], now: { clock.now })
        try engine.start()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func writeConfig(_ text: String) throws {
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Whether `family`'s mangle table drops `port`/tcp (a rule NodeGuard wrote for it).
    func drops(_ port: UInt16, _ family: AddressFamily) -> Bool {
        guard let table = backend.table("mangle", family) else { return false }
        return table.rules.values.joined().contains { $0.spec?.target == "DROP" && $0.spec?.destinationPorts == port...port }
    }

    func auditActions() throws -> [String] {
        let text = try String(contentsOfFile: stateDirectory + "/audit.log", encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return (object?["action"] as? String ?? "?") + ((object?["error"] as? String).map { " failed: \($0)" } ?? "")
        }
    }

    func failure(_ response: ControlResponse) -> NodeGuardError? {
        if case .failure(let error) = response { return error }
        return nil
    }

    /// Puts a foreign ACCEPT (the same rule each time: `identity`) above
    /// everything in `family`'s mangle PREROUTING. Moving it up keeps the
    /// table's sizes: the deep check (every second in the loop) sees it.
    func displace(_ family: AddressFamily = .ipv4, identity: UInt64 = 7) {
        backend.mutate("mangle", family) { table in
            table.rules["PREROUTING"]?.removeAll { $0.identity == identity }
            var rule = ObservedRule(spec: nil, target: "ACCEPT", comment: "other agent")
            rule.identity = identity
            table.rules["PREROUTING"]?.insert(rule, at: 0)
        }
    }

    func jumpIsFirst(_ family: AddressFamily = .ipv4) -> Bool {
        backend.rules("mangle", family, "PREROUTING").first?.spec == RulePlanner.hookRule
    }

    // MARK: changes and their rollback

    func testStartAppliesTheFileInBothFamilies() {
        XCTAssertTrue(drops(31002, .ipv4))
        XCTAssertTrue(drops(31002, .ipv6))
        XCTAssertTrue(jumpIsFirst(.ipv4) && jumpIsFirst(.ipv6))
    }

    func testABlockWhoseCommitFailsLeavesTheStateFileTheKernelAndTheListAsTheyWere() throws {
        // IPv4 commits, IPv6 refuses: the IPv4 half must be taken back too.
        backend.refusesCommit = { $0.family == .ipv6 }
        let response = engine.handle(.block(BlockEntry(port: 31005)), from: .daemon)
        XCTAssertEqual(failure(response)?.code, .netfilterFailure)
        XCTAssertFalse(drops(31005, .ipv4), "the IPv4 half was rolled back")
        XCTAssertFalse(drops(31005, .ipv6))
        XCTAssertEqual(try RuntimeStateStore(directory: stateDirectory).load(), [], "the state file was put back")
        XCTAssertEqual(engine.entries.runtime, [])
        XCTAssertTrue(drops(31002, .ipv4), "what was blocked before stays blocked")
        XCTAssertEqual(try auditActions().last?.hasPrefix("block failed"), true)

        backend.refusesCommit = { _ in false }
        XCTAssertNil(failure(engine.handle(.block(BlockEntry(port: 31005)), from: .daemon)))
        XCTAssertTrue(drops(31005, .ipv4) && drops(31005, .ipv6))
        XCTAssertEqual(try RuntimeStateStore(directory: stateDirectory).load().map(\.port), [31005])
    }

    func testAnUnblockWhoseCommitFailsKeepsThePortBlockedEverywhere() throws {
        XCTAssertNil(failure(engine.handle(.block(BlockEntry(port: 31005)), from: .daemon)))
        backend.refusesCommit = { $0.family == .ipv6 }
        let response = engine.handle(.unblock(PortKey(port: 31005, transport: .tcp)), from: .daemon)
        XCTAssertEqual(failure(response)?.code, .netfilterFailure)
        XCTAssertTrue(drops(31005, .ipv4), "the IPv4 half of the unblock was rolled back")
        XCTAssertTrue(drops(31005, .ipv6))
        XCTAssertEqual(try RuntimeStateStore(directory: stateDirectory).load().map(\.port), [31005])
    }

    func testABlockWhileAnotherProgramHoldsTheLockChangesNothingAndIsNotRecorded() throws {
        backend.lockHeldBy = (pid: 99, command: "iptables-restore")
        let response = engine.handle(.block(BlockEntry(port: 31005)), from: .daemon)
        XCTAssertEqual(failure(response)?.code, .lockTimeout, "the loop parks the request and asks again")
        XCTAssertFalse(drops(31005, .ipv4))
        XCTAssertEqual(try RuntimeStateStore(directory: stateDirectory).load(), [])
        XCTAssertFalse(try auditActions().contains { $0.hasPrefix("block") })
    }

    func testAReloadOfABadFileKeepsTheLastGoodListAndAGoodOneAppliesIt() throws {
        try writeConfig(#"{"version": 1, "blocked": [{"port": 70000}]}"#)
        let commits = backend.commits
        let bad = engine.handle(.reload, from: .signal)
        XCTAssertEqual(failure(bad)?.code, .invalidDenyList)
        XCTAssertTrue(failure(bad)?.message.contains("blocked[0].port") ?? false, failure(bad)?.message ?? "")
        XCTAssertEqual(backend.commits, commits, "nothing was committed")
        XCTAssertTrue(drops(31002, .ipv4))
        XCTAssertEqual(engine.entries.config.map(\.port), [31002])
        XCTAssertTrue(logs.all.contains { $0.contains("keeping the last good deny-list") })

        try writeConfig(#"{"version": 1, "blocked": [{"port": 31003}]}"#)
        XCTAssertNil(failure(engine.handle(.reload, from: .signal)))
        XCTAssertTrue(drops(31003, .ipv4) && drops(31003, .ipv6))
        XCTAssertFalse(drops(31002, .ipv4) || drops(31002, .ipv6))
    }

    func testAnEntryThatBlocksNothingIsSaidInTheJournalAsValidateSaysIt() throws {
        try writeConfig(#"{"version": 1, "blocked": [{"port": 31004, "allowFrom": ["0.0.0.0/0", "::/0"]}]}"#)
        XCTAssertNil(failure(engine.handle(.reload, from: .signal)))
        XCTAssertTrue(logs.all.contains { $0.hasPrefix("warning") && $0.contains("blocked[0].allowFrom") && $0.contains("the entry blocks nothing") },
                      "\(logs.all)")
    }

    func testAReloadTheKernelRefusesKeepsTheOldListInForce() throws {
        try writeConfig(#"{"version": 1, "blocked": [{"port": 31003}]}"#)
        backend.refusesCommit = { $0.family == .ipv6 }
        XCTAssertEqual(failure(engine.handle(.reload, from: .signal))?.code, .netfilterFailure)
        XCTAssertEqual(engine.entries.config.map(\.port), [31002])
        backend.refusesCommit = { _ in false }
        // The next verify puts the kernel back in line with the list in force.
        engine.verify()
        XCTAssertTrue(drops(31002, .ipv4) && drops(31002, .ipv6))
        XCTAssertFalse(drops(31003, .ipv4))
    }

    // MARK: the drift guard

    func testAFlushIsSeenByTheSizeCheckAndRepairedLoggedAndRecorded() throws {
        backend.mutate("mangle", .ipv6) { $0.rules["NODEGUARD-TCP"] = [] }
        engine.watchTick(deep: false)
        XCTAssertTrue(drops(31002, .ipv6))
        XCTAssertEqual(engine.drift.repairCount, 1)
        XCTAssertTrue(logs.all.contains { $0.contains("repaired drift: ipv6 mangle NODEGUARD-TCP") }, "\(logs.all)")
        XCTAssertEqual(try auditActions().last, "repair")
    }

    func testASameSizeEditIsSeenOnlyByTheDeepCheck() throws {
        backend.mutate("mangle", .ipv4) { table in
            var spec = table.rules["NODEGUARD-TCP"]![0].spec!
            spec.target = "ACCEPT"
            table.rules["NODEGUARD-TCP"]![0] = FakeNetfilterBackend.observed(spec)
        }
        engine.watchTick(deep: false)
        XCTAssertEqual(engine.drift.repairCount, 0, "the sizes did not move")
        engine.watchTick(deep: true)
        XCTAssertEqual(engine.drift.repairCount, 1)
        XCTAssertTrue(drops(31002, .ipv4))
    }

    func testOtherProgramsChangesElsewhereCostADigestNotATransaction() {
        let transactions = backend.transactions
        backend.mutate("mangle", .ipv4) { $0.rules["POSTROUTING"]?.append(ObservedRule(spec: nil, target: "MARK", comment: "elsewhere")) }
        engine.watchTick(deep: false)
        engine.watchTick(deep: true)
        XCTAssertEqual(backend.transactions, transactions)
        XCTAssertEqual(engine.drift.fullReadCount, 0)
    }

    func testTheFullReadIsDueOnceAMinuteAndTakesNoLockWhenNothingDrifted() {
        let transactions = backend.transactions
        for _ in 0..<10 {
            clock.advance(.seconds(5))
            engine.watchTick(deep: true)
        }
        XCTAssertEqual(engine.drift.fullReadCount, 0, "50 s: nothing changed, nothing due")
        XCTAssertEqual(backend.lockFreeReads, 0)

        clock.advance(ChangeWatch.fullReadInterval)
        backend.lockHeldBy = (pid: 99, command: "iptables-restore")
        engine.watchTick(deep: false)
        XCTAssertEqual(engine.drift.fullReadCount, 1, "due")
        XCTAssertGreaterThanOrEqual(backend.lockFreeReads, 2, "both families read without the lock")
        XCTAssertEqual(backend.transactions, transactions, "nothing to repair: no transaction, though the lock is held")
        XCTAssertNil(engine.drift.lastError)
        XCTAssertFalse(engine.drift.repairPending)
    }

    func testARepairThatFindsTheLockHeldWaitsAndRunsWhenItIsFree() {
        backend.lockHeldBy = (pid: 99, command: "iptables-restore")
        backend.mutate("mangle", .ipv4) { $0.rules["NODEGUARD-TCP"] = [] }
        engine.watchTick(deep: false)
        XCTAssertTrue(engine.drift.repairPending)
        XCTAssertNotNil(engine.drift.lockWaitSince)
        XCTAssertFalse(drops(31002, .ipv4))

        backend.lockHeldBy = nil
        engine.noteLockReleased()
        engine.watchTick(deep: true)
        XCTAssertFalse(engine.drift.repairPending)
        XCTAssertNil(engine.drift.lockWaitSince)
        XCTAssertTrue(drops(31002, .ipv4))
    }

    func testAFightIsDetectedHeldFromRawBackedOffRetakenOnTimeAndEnded() throws {
        // Twice the other agent pushes NodeGuard down and is put back: one-offs.
        for _ in 0..<2 {
            displace()
            clock.advance(.seconds(1))
            engine.watchTick(deep: true)
            XCTAssertTrue(jumpIsFirst())
        }
        XCTAssertNil(backend.table("raw", .ipv4)?.rules["NODEGUARD"])

        // The third time within the window is a fight: repaired once more, and
        // the ports held closed from raw, which runs before mangle.
        displace()
        clock.advance(.seconds(1))
        engine.watchTick(deep: true)
        XCTAssertTrue(logs.all.contains { $0.contains("fight") }, "\(logs.all)")
        let status = try assertAnswerReadsAsItself(.status, as: StatusReport.self)
        XCTAssertFalse(status.healthy, "a fight needs a person")
        XCTAssertEqual(status.fights?.map(\.chain), ["PREROUTING"])
        XCTAssertEqual(status.fights?.first?.holding, "raw")
        XCTAssertTrue(status.fights?.first?.culprit.contains("other agent") ?? false, "\(String(describing: status.fights))")
        XCTAssertTrue(engine.statusLine.hasPrefix("FIGHT with "), engine.statusLine)
        XCTAssertTrue(try auditActions().contains("fight-start"))
        for family in [AddressFamily.ipv4, .ipv6] {
            XCTAssertEqual(backend.rules("raw", family, "PREROUTING").first?.spec, RulePlanner.rawHookRule, "\(family)")
        }

        // Pushed down again during the backoff: NodeGuard leaves its jump below.
        displace()
        clock.advance(.seconds(1))
        engine.watchTick(deep: true)
        XCTAssertFalse(jumpIsFirst(), "backing off")
        XCTAssertTrue(jumpIsFirst(.ipv6), "the other family's site is not disputed")

        // Nothing changes in the tables; the retake is due after the backoff,
        // and happens at the next tick after it, not at the next change.
        clock.advance(FightTracker.firstBackoff - .seconds(3))
        engine.watchTick(deep: true)
        XCTAssertFalse(jumpIsFirst(), "still backing off")
        clock.advance(.seconds(3))
        engine.watchTick(deep: true)
        XCTAssertTrue(jumpIsFirst(), "retaken when the backoff ran out")

        // Held for a whole backoff period: the fight ends and the raw hold goes.
        clock.advance(FightTracker.firstBackoff)
        engine.watchTick(deep: true)
        XCTAssertNil(backend.table("raw", .ipv4)?.rules["NODEGUARD"], "the hold is lifted")
        XCTAssertNil(backend.table("raw", .ipv6)?.rules["NODEGUARD"])
        XCTAssertTrue(jumpIsFirst())
    }
}
