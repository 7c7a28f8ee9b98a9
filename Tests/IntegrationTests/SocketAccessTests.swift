import Foundation
import NodeGuardCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The control socket is not a way in: the daemon checks the peer's
/// credentials from the kernel (SO_PEERCRED, SO_PEERGROUPS) on every request,
/// even if the socket file's mode is loosened; slow and vanishing clients do
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

    func ctl(as user: String, _ arguments: String...) throws -> CommandResult {
        let uid = try runCommand(["id", "-u", user]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let gid = try runCommand(["id", "-g", user]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return try runCommand(["setpriv", "--reuid=\(uid)", "--regid=\(gid)", "--init-groups", TestPaths.nodeguardctl,
                               arguments[0], "--socket", node.socketPath] + arguments.dropFirst())
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

        let read = try ctl(as: accounts.outsider, "status")
        XCTAssertEqual(read.status, 1)
        XCTAssertTrue(read.stderr.contains("may not read NodeGuard's state (status)") && read.stderr.contains("group '\(accounts.group)'"), read.stderr)
        let change = try ctl(as: accounts.outsider, "unblock", "31002")
        XCTAssertEqual(change.status, 1)
        XCTAssertTrue(change.stderr.contains("may not change NodeGuard's blocks (unblock)"), change.stderr)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002), "the refused unblock changed nothing")
        XCTAssertTrue(node.daemonLog.contains("refused unblock from socket peer uid"), node.daemonLog)
        XCTAssertEqual(try node.ctl("status").status, 0, "root is always served")
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
