import Foundation
import Logging
@testable import NodeGuardCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The control socket is not a way in: the daemon checks the peer's
/// credentials from the kernel (SO_PEERCRED, SO_PEERGROUPS) at accept, even
/// if the socket file's mode is loosened, and an outsider's connections never
/// take a slot; root keeps slots of its own; slow and vanishing clients do
/// not hold up others; 200 clients at once are all served.
final class SocketAccessTests: NodeTestCase {
    /// A group and two users made for this test and removed after it, even on failure.
    struct Accounts {
        var group: String, member: String, outsider: String
    }

    func makeAccounts() throws -> Accounts {
        let base = node.id
        let accounts = Accounts(group: "\(base)g", member: "\(base)m", outsider: "\(base)o")
        addTeardownBlock {
            _ = try? runCommand(["userdel", accounts.member])
            _ = try? runCommand(["userdel", accounts.outsider])
            _ = try? runCommand(["groupdel", accounts.group])
        }
        for command in [["groupadd", accounts.group],
                        // The group is a supplementary one: SO_PEERGROUPS must carry it.
                        ["useradd", "-M", "-N", "-g", "nogroup", "-G", accounts.group, "-s", "/usr/sbin/nologin", accounts.member],
                        ["useradd", "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin", accounts.outsider]] {
            let result = try runCommand(command)
            XCTAssertEqual(result.status, 0, "\(command): \(result.stderr)")
        }
        return accounts
    }

    /// `command` run as `user`, with the user's groups.
    func asUser(_ user: String, _ command: [String]) throws -> [String] {
        let uid = try runCommand(["id", "-u", user]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let gid = try runCommand(["id", "-g", user]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return ["setpriv", "--reuid=\(uid)", "--regid=\(gid)", "--init-groups"] + command
    }

    func ctl(as user: String, _ arguments: String...) throws -> CommandResult {
        try runCommand(asUser(user, [TestPaths.nodeguardctl, arguments[0], "--socket", node.socketPath] + arguments.dropFirst()))
    }

    /// What each connection of Fixtures/socket_clients.py saw.
    struct ClientOutcome: Decodable {
        var closedAfter: Double?
        var line: String?
    }

    /// Starts Fixtures/socket_clients.py (as `user`, if given) in the background; `finish` waits for its report.
    func startClients(as user: String? = nil, socket: String, count: Int, arguments: [String])
        throws -> (finish: () throws -> [ClientOutcome], process: ChildProcess) {
        let command = ["/usr/bin/python3", TestPaths.fixtures.appendingPathComponent("socket_clients.py").path, socket, String(count)] + arguments
        let out = try makePipe(), err = try makePipe()
        let process = try ChildProcess(user.map { try asUser($0, command) } ?? command, stdout: out.write, stderr: err.write)
        close(out.write)
        close(err.write)
        let finish = { () throws -> [ClientOutcome] in
            let (stdout, stderr) = readAll(out.read, err.read, deadline: .now + .seconds(60))
            close(out.read)
            close(err.read)
            let status = process.wait()
            guard status == 0 else { throw TestNodeError("socket_clients.py exited \(status): \(String(decoding: stderr, as: UTF8.self))") }
            return try JSONDecoder().decode([ClientOutcome].self, from: stdout)
        }
        return (finish, process)
    }

    func testOnlyRootAndTheGroupMayUseTheSocketWhateverItsMode() throws {
        try setUpNode()
        let accounts = try makeAccounts()
        try node.startDaemon(extraArguments: ["--group", accounts.group])
        // Loosen the file's mode, as a careless admin might: the daemon's own check still holds.
        XCTAssertEqual(chmod(node.socketPath, 0o666), 0)
        XCTAssertEqual(chmod(node.directory.path, 0o755), 0)

        let status = try ctl(as: accounts.member, "status", "--json")
        XCTAssertEqual(status.status, 0, status.stderr)
        XCTAssertEqual(try ctl(as: accounts.member, "block", "31002").status, 0)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))

        let outsiderUID = try runCommand(["id", "-u", accounts.outsider]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let read = try ctl(as: accounts.outsider, "status")
        XCTAssertEqual(read.status, 1)
        XCTAssertTrue(read.stderr.contains("uid \(outsiderUID) may not use nodeguardd's control socket") && read.stderr.contains("group '\(accounts.group)'"), read.stderr)
        let change = try ctl(as: accounts.outsider, "unblock", "31002")
        XCTAssertEqual(change.status, 1)
        XCTAssertTrue(change.stderr.contains("may not use nodeguardd's control socket"), change.stderr)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002), "the refused unblock changed nothing")
        XCTAssertTrue(node.daemonLog.contains("refused control connection from uid \(outsiderUID)"), node.daemonLog)
        XCTAssertEqual(try node.ctl("status").status, 0, "root is always served")
    }

    /// With the socket loosened to 0666, an outsider opened 300 connections and
    /// kept each alive with a space every few seconds: every slot was taken and
    /// root's `block` failed. The credentials are now checked at accept: an
    /// outsider's connection gets one line saying why and is closed at once.
    func testAnOutsidersConnectionsAreClosedAtOnceAndRootIsStillServed() throws {
        try setUpNode()
        let accounts = try makeAccounts()
        try node.startDaemon(extraArguments: ["--group", accounts.group])
        XCTAssertEqual(chmod(node.socketPath, 0o666), 0)
        XCTAssertEqual(chmod(node.directory.path, 0o755), 0)

        let flood = try startClients(as: accounts.outsider, socket: node.socketPath, count: 300,
                                     arguments: ["--send", " ", "--drip", "1", "--duration", "4"])
        usleep(500_000)
        for attempt in 0..<3 {
            let status = try node.ctl("status")
            XCTAssertEqual(status.status, 0, "attempt \(attempt): root is served during the flood: \(status.stderr)")
            usleep(300_000)
        }
        let block = try node.ctl("block", "31002")
        XCTAssertEqual(block.status, 0, "root's block works during the flood: \(block.stderr)")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))

        let outcomes = try flood.finish()
        XCTAssertEqual(outcomes.count, 300)
        let lingering = outcomes.filter { ($0.closedAfter ?? .infinity) > 1 }
        XCTAssertEqual(lingering.count, 0, "every outsider connection is closed at once, first: \(lingering.prefix(3))")
        let unexplained = outcomes.filter { !($0.line ?? "").contains(#""code":"permission_denied""#) }
        XCTAssertEqual(unexplained.count, 0, "each is told why, first: \(unexplained.prefix(3))")
        XCTAssertTrue(outcomes.first?.line?.contains("may not use nodeguardd's control socket") ?? false, "\(outcomes.first as Any)")
        // The refusals are logged without flooding the log.
        let refusals = node.daemonLog.components(separatedBy: "refused control connection").count - 1
        XCTAssertGreaterThan(refusals, 0, node.daemonLog)
        XCTAssertLessThan(refusals, 20, "at most about one line a second")
    }

    /// Holds requests until released, counting those it holds.
    final class Gate: @unchecked Sendable {
        private let lock = NSLock()
        private var open = false
        private var waiters: [CheckedContinuation<Void, Never>] = []
        var waiting: Int { lock.withLock { waiters.count } }

        func pass() async {
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let now = lock.withLock { () -> Bool in
                    if !open { waiters.append(waiter) }
                    return open
                }
                if now { waiter.resume() }
            }
        }

        func release() {
            let released = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
                open = true
                defer { waiters = [] }
                return waiters
            }
            for waiter in released { waiter.resume() }
        }
    }

    /// With every slot but root's held by the group's members, root is still
    /// served; once root's slots are full too, the CLI says "busy" (exit 4),
    /// not "unreachable" (exit 3). A real ControlServer with 6 slots, 2 of
    /// them kept for root, and real users; the members' requests are held
    /// by the handler, standing in for a slow reconcile loop.
    func testRootIsServedWhenTheGroupHoldsEveryOtherSlot() throws {
        let accounts = try makeAccounts()
        XCTAssertEqual(chmod(node.directory.path, 0o755), 0)
        let socket = node.directory.appendingPathComponent("limits.sock").path
        let gate = Gate()
        let limits = ControlServer.Limits(timeout: .seconds(3), maximumConnections: 6, rootReserve: 2)
        let server = try ControlServer(path: socket, logger: Logger(label: "test"), access: ControlAccess(groupName: accounts.group),
                                       limits: limits) { request, origin in
            if case .socket(_, let uid, _) = origin, uid != 0 { await gate.pass() }
            return .success(.object(["served": .string(request.command)]))
        }
        let running = Task { try? await server.run() }
        defer {
            gate.release()
            running.cancel()
        }

        // Five connections from a member: four take the ordinary slots and wait; the fifth is told the server is busy.
        let members = try startClients(as: accounts.member, socket: socket, count: 5,
                                       arguments: ["--send", ControlRequest.list.encoded() + "\n", "--duration", "15"])
        XCTAssertTrue(eventually(10, every: 0.05) { gate.waiting == 4 }, "four member requests are held: \(gate.waiting)")

        let rootStatus = try runCommand([TestPaths.nodeguardctl, "status", "--json", "--socket", socket])
        XCTAssertEqual(rootStatus.status, 0, "root is served from its reserve: \(rootStatus.stderr)")
        XCTAssertTrue(rootStatus.stdout.contains("\"served\": \"status\""), rootStatus.stdout)

        // Root takes its two reserved slots itself: now even root is told to retry, with exit 4.
        let held = try (0..<2).map { _ in try UnixSocket.connect(socket) }
        defer { for fd in held { close(fd) } }
        let busy = try runCommand([TestPaths.nodeguardctl, "status", "--socket", socket])
        XCTAssertEqual(busy.status, 4, "busy is not unreachable: \(busy.stderr)")
        XCTAssertTrue(busy.stderr.contains("nodeguardd is busy: all 6 connections it serves are in use; retry"), busy.stderr)

        gate.release()
        let outcomes = try members.finish()
        XCTAssertEqual(outcomes.filter { $0.line?.contains(#""served":"list""#) ?? false }.count, 4, "\(outcomes)")
        XCTAssertEqual(outcomes.last?.line?.contains(#""code":"busy""#), true, "\(outcomes)")
        XCTAssertTrue(outcomes.last?.line?.contains("all 4 connections it serves to users other than root (the other 2 are kept for root)") ?? false,
                      "\(outcomes)")
    }

    func testSlowAndVanishingClientsDoNotHoldUpOthersAnd200ClientsAreServed() throws {
        try setUpNode()
        try node.startDaemon()
        // One client says nothing, one sends half a request and stays, one sends half and leaves.
        var idle: [Int32] = []
        for partial in ["", #"{"version":1,"comm"#] {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                let bytes = Array(node.socketPath.utf8)
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            XCTAssertEqual(connected, 0)
            _ = partial.withCString { write(fd, $0, strlen($0)) }
            idle.append(fd)
        }
        close(idle.removeLast())   // the one that leaves mid-request
        defer { for fd in idle { close(fd) } }

        let start = Date()
        XCTAssertEqual(try node.ctl("status").status, 0)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "a silent client must not hold up others")

        // 200 clients at once, each on its own thread.
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var failures: [String] = []
        }
        let results = Results()
        let socketPath = node.socketPath
        let group = DispatchGroup()
        for i in 0..<200 {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let request: ControlRequest = i % 2 == 0 ? .list : .metrics
                    if case .failure(let error) = try ControlClient(socketPath: socketPath).send(request) {
                        results.lock.lock(); results.failures.append(error.message); results.lock.unlock()
                    }
                } catch {
                    results.lock.lock(); results.failures.append("\(error)"); results.lock.unlock()
                }
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success, "200 clients must be served within a minute")
        XCTAssertEqual(results.failures, [], "every client is served")
        XCTAssertEqual(try node.ctl("block", "31002").status, 0, "and the daemon keeps serving")
    }
}
