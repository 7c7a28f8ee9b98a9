import Foundation
import SystemPackage
import XCTest
@testable import NodeGuardCore

/// The POSIX layer (swift-system and `systemCall`): a failed call's errno
/// stays typed inside the error, its message says what failed and why, and
/// every descriptor NodeGuard creates is closed on exec from its creation.
final class SystemCallsTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = try temporaryDirectory(for: self, "syscalls")
    }

    func testAFailedCallKeepsItsErrnoTypedAndSaysWhyInItsMessage() {
        let missing = directory + "/missing/denylist.json"
        do {
            _ = try readFile(missing)
            XCTFail("a missing file was read")
        } catch {
            XCTAssertEqual(error.code, .ioFailure)
            XCTAssertEqual(error.errno?.rawValue, ENOENT)
            XCTAssertEqual(error.message, "cannot read \(missing): No such file or directory")
        }
        // A write into a directory that is not there: ENOENT from creating the temporary file.
        do {
            try writeDurably(Array("x".utf8), to: missing)
            XCTFail("wrote into a missing directory")
        } catch {
            XCTAssertEqual(error.errno?.rawValue, ENOENT, error.message)
        }
    }

    /// A commit that lost a race is told by its errno, not by its text.
    func testAnErrnoIsMatchedByValueNotByText() {
        let error = NodeGuardError(io: "committing the IPv4 mangle table", .init(rawValue: EAGAIN), code: .netfilterFailure)
        XCTAssertEqual(error.errno, .resourceTemporarilyUnavailable)
        XCTAssertEqual(error.code, .netfilterFailure)
        XCTAssertTrue(error.message.hasPrefix("committing the IPv4 mangle table: "), error.message)
        XCTAssertNil(NodeGuardError(.conflict, "no system call here").errno)
        XCTAssertNotEqual(error, NodeGuardError(error.code, error.message), "the errno is part of the error")
    }

    /// A runtime state file that is not there is an empty list; one that
    /// cannot be read for another reason is an error, not an empty list.
    func testOnlyAMissingRuntimeStateIsAnEmptyList() throws {
        XCTAssertEqual(try RuntimeStateStore(directory: directory + "/none").load(), [])
        let store = RuntimeStateStore(directory: directory)
        XCTAssertEqual(mkdir(store.path, 0o700), 0, "a directory where the file should be")
        XCTAssertThrowsError(try store.load()) { error in
            XCTAssertEqual((error as? NodeGuardError)?.errno?.rawValue, EISDIR, "\(error)")
        }
    }

    func testDescriptorsAreClosedOnExecFromTheirCreation() throws {
        let pipe = try makePipe()
        defer { close(pipe.read); close(pipe.write) }
        let file = try FileDescriptor.openClosingOnExec(directory + "/file", .writeOnly, options: .create, permissions: .ownerReadWrite)
        defer { file.closeQuietly() }
        let listener = try ControlServer.bind(directory + "/s.sock", group: nil)
        defer { close(listener) }
        let client = try UnixSocket.connect(directory + "/s.sock")
        defer { close(client) }
        for fd in [pipe.read, pipe.write, file.rawValue, listener, client] {
            XCTAssertEqual(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC, "descriptor \(fd)")
        }
        // The server polls its listener, and accept() must not block on a client that gave up meanwhile.
        XCTAssertEqual(fcntl(listener, F_GETFL) & O_NONBLOCK, O_NONBLOCK, "the listener is non-blocking from its creation")
        // And a child started meanwhile has none of them.
        let listing = try runProgram(["sh", "-c", "ls /proc/$$/fd"], timeout: .seconds(10))
        XCTAssertEqual(listing.status, 0)
        let inherited = Set(String(decoding: listing.stdout, as: UTF8.self).split(separator: "\n").compactMap { Int32($0) })
        XCTAssertTrue(inherited.isDisjoint(with: [pipe.read, pipe.write, file.rawValue, listener, client]), "inherited: \(inherited.sorted())")
    }

    /// Every error libiptc's errno becomes keeps it, whatever message it gets.
    func testNetfilterErrorsKeepTheirErrno() {
        for code in [EPERM, EACCES, ENOPROTOOPT, EAGAIN, EINVAL] {
            XCTAssertEqual(netfilterError(code, family: .ipv4, doing: "committing").errno, Errno(rawValue: code), "errno \(code)")
        }
        XCTAssertEqual(netfilterError(EPERM, family: .ipv6, doing: "committing").code, .permissionDenied)
        XCTAssertEqual(netfilterError(ENOPROTOOPT, family: .ipv6, doing: "committing").code, .netfilterUnavailable)
        XCTAssertEqual(netfilterError(EAGAIN, family: .ipv4, doing: "committing").code, .netfilterFailure)
    }

    /// What nodeguardctl tells from connect's errno, and the deny-list's
    /// missing-file message, no longer depend on the global errno.
    func testConnectAndLoadFailuresCarryTheirErrno() throws {
        let nothing = capturedError { () throws(NodeGuardError) in try UnixSocket.connect(directory + "/none.sock") }
        XCTAssertEqual(nothing?.errno, .noSuchFileOrDirectory)
        XCTAssertEqual(nothing?.message, "cannot connect to \(directory)/none.sock: No such file or directory")
        let stale = directory + "/stale.sock"
        close(try ControlServer.bind(stale, group: nil))   // a daemon that died leaves its socket behind
        XCTAssertEqual(capturedError { () throws(NodeGuardError) in try UnixSocket.connect(stale) }?.errno, .connectionRefused)
        let listener = try ControlServer.bind(stale, group: nil)   // and the next one replaces it
        defer { close(listener) }
        XCTAssertEqual(capturedError { () throws(NodeGuardError) in try ControlServer.bind(stale, group: nil) }?.code, .conflict,
                       "a socket someone answers on is not taken over")

        let missing = directory + "/denylist.json"
        let error = capturedError { () throws(NodeGuardError) in try DenyListCodec.load(missing) }
        XCTAssertEqual(error?.code, .ioFailure)
        XCTAssertEqual(error?.errno, .noSuchFileOrDirectory)
        XCTAssertEqual(error?.message, "deny-list \(missing) does not exist; create it (an empty list is {\"version\": 1, \"blocked\": []}) or pass --config")
    }
}
