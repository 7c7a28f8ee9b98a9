import ArgumentParser
import XCTest
import NodeGuardControl
@testable import nodeguardctl

/// nodeguardctl's arguments as ArgumentParser parses them (no daemon needed).
final class NodeGuardCtlTests: XCTestCase {
    private func parsed(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) -> (any DaemonCommand)? {
        do {
            guard let command = try NodeGuardCtl.parseAsRoot(arguments) as? any DaemonCommand else {
                XCTFail("\(arguments) is not a command that talks to the daemon", file: file, line: line)
                return nil
            }
            return command
        } catch {
            XCTFail("\(arguments): \(NodeGuardCtl.fullMessage(for: error))", file: file, line: line)
            return nil
        }
    }

    /// The socket a parsed command would use, with `environment` as the process's.
    private func socket(_ arguments: [String], environment: [String: String] = [:],
                        file: StaticString = #filePath, line: UInt = #line) -> String? {
        guard let command = parsed(arguments, file: file, line: line) else { return nil }
        return Connection.socketPath(global: command.root.connection.socket, local: command.connection.socket,
                                     environment: environment)
    }

    func testTheSocketOptionIsGlobalAndStillAcceptedAfterTheSubcommand() {
        XCTAssertEqual(socket(["--socket", "/tmp/a.sock", "status"]), "/tmp/a.sock")
        XCTAssertEqual(socket(["status", "--socket", "/tmp/a.sock"]), "/tmp/a.sock")
        XCTAssertEqual(socket(["--socket=/tmp/a.sock", "status", "--json"]), "/tmp/a.sock")
        XCTAssertEqual(socket(["--socket", "/tmp/a.sock", "block", "31002/udp", "--family", "ipv4"]), "/tmp/a.sock")
        XCTAssertEqual(socket(["--socket", "/tmp/a.sock", "explain", "31002"]), "/tmp/a.sock")
        // Given twice, the last one wins, as any repeated option does.
        XCTAssertEqual(socket(["--socket", "/tmp/a.sock", "list", "--socket", "/tmp/b.sock"]), "/tmp/b.sock")
    }

    func testFlagThenEnvironmentThenDefault() {
        let environment = [Connection.environmentVariable: "/tmp/env.sock"]
        XCTAssertEqual(Connection.environmentVariable, "NODEGUARD_SOCKET")
        XCTAssertEqual(socket(["status"], environment: environment), "/tmp/env.sock")
        XCTAssertEqual(socket(["--socket", "/tmp/flag.sock", "status"], environment: environment), "/tmp/flag.sock")
        XCTAssertEqual(socket(["metrics", "--socket", "/tmp/flag.sock"], environment: environment), "/tmp/flag.sock")
        XCTAssertEqual(socket(["status"]), "/run/nodeguard/nodeguard.sock")
        // An empty variable is as good as none.
        XCTAssertEqual(socket(["status"], environment: [Connection.environmentVariable: ""]), "/run/nodeguard/nodeguard.sock")
    }

    func testAPathNoSocketCanHaveIsAUsageError() {
        for arguments in [["--socket", "", "status"], ["status", "--socket", String(repeating: "x", count: 108)]] {
            XCTAssertThrowsError(try NodeGuardCtl.parseAsRoot(arguments), "\(arguments)") { error in
                XCTAssertEqual(NodeGuardCtl.exitCode(for: error), .validationFailure)
                XCTAssertTrue(NodeGuardCtl.fullMessage(for: error).contains("a Unix socket path holds"))
            }
        }
        XCTAssertNotNil(parsed(["status", "--socket", "/" + String(repeating: "x", count: 106)]))
    }

    func testTypedArguments() throws {
        let block = try XCTUnwrap(parsed(["block", "31900/udp", "--family", "ipv4", "--reason", "SEC-1",
                                          "--allow-from", "198.18.0.0/24"]) as? NodeGuardCtl.Block)
        XCTAssertEqual(block.entry, BlockEntry(port: 31900, transport: .udp, family: .ipv4, reason: "SEC-1",
                                               allowFrom: [try CIDR(parsing: "198.18.0.0/24")]))
        XCTAssertEqual((parsed(["unblock", "31002"]) as? NodeGuardCtl.Unblock)?.port, PortKey(port: 31002, transport: .tcp))
        for bad in [["block", "70000"], ["block", "31002/icmp"], ["block", "31002", "--family", "ipv5"],
                    ["block", "31002", "--allow-from", "10.0.0.1/8"], ["block", "31002", "--reason", "a\nb"],
                    ["explain", "http"], ["frobnicate"]] {
            XCTAssertThrowsError(try NodeGuardCtl.parseAsRoot(bad), "\(bad)") { error in
                XCTAssertNotEqual(NodeGuardCtl.exitCode(for: error), .success, "\(bad)")
            }
        }
        XCTAssertTrue(NodeGuardCtl.message(for: ValidationError("x")).contains("x"))
        do {
            _ = try NodeGuardCtl.parseAsRoot(["block", "31002", "--allow-from", "10.0.0.1/8"])
        } catch {
            XCTAssertTrue(NodeGuardCtl.fullMessage(for: error).contains("has host bits set; did you mean 10.0.0.0/8?"),
                          NodeGuardCtl.fullMessage(for: error))
        }
    }

    func testValidateNeedsNoDaemon() throws {
        let command = try NodeGuardCtl.parseAsRoot(["--socket", "/tmp/a.sock", "validate", "--strict", "f.json"])
        XCTAssertFalse(command is any DaemonCommand)
    }
}
