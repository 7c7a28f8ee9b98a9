import Foundation
import XCTest

/// A state directory that cannot take a write (full, read-only) makes
/// `block` fail with a clear error, and leaves the kernel and the state file
/// as they were, which is what was reported. The directory is a small tmpfs
/// mounted in the daemon's own mount namespace, so nothing outside changes.
final class StateDirectoryFaultTests: NodeTestCase {
    /// Starts the daemon over a 64 KiB tmpfs state directory prepared by `prepare` (shell).
    func startOnTmpfs(_ prepare: String) throws {
        let state = node.stateDirectory
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        try node.startDaemon(launcher: ["unshare", "-m", "--propagation", "private", "sh", "-c",
            "mount -t tmpfs -o size=64k tmpfs \(state) && \(prepare) && exec \"$0\" \"$@\""])
    }

    func runtimeState(_ key: String) throws -> Bool {
        let list = try node.ctl("list", "--json").stdout
        return list.contains("\"port\": \(key)")
    }

    func testAFullStateDirectoryRefusesABlockAndChangesNothing() throws {
        try setUpNode()
        let state = node.stateDirectory
        // Fill the tmpfs after start-up's audit record, leaving no room for the state file.
        try startOnTmpfs("true")
        XCTAssertEqual(try node.ctl("block", "31003").status, 0)
        let rulesBefore = try node.mangleRules()
        let fill = try runCommand(["nsenter", "-t", String(try XCTUnwrap(node.daemon?.pid)), "-m", "sh", "-c",
                                   "dd if=/dev/zero of=\(state)/fill bs=4k count=64 2>/dev/null; true"])
        XCTAssertEqual(fill.status, 0, fill.stderr)

        let result = try node.ctl("block", "31002")
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("No space left on device"), result.stderr)
        XCTAssertEqual(try node.mangleRules(), rulesBefore, "the kernel is unchanged")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002), "31002 was reported as not blocked, and is not")
        XCTAssertFalse(try runtimeState("31002"))
        XCTAssertTrue(try runtimeState("31003"))
        let saved = try runCommand(["nsenter", "-t", String(try XCTUnwrap(node.daemon?.pid)), "-m", "cat", "\(state)/runtime.json"])
        XCTAssertTrue(saved.stdout.contains("31003") && !saved.stdout.contains("31002"), "the state file still says what was reported: \(saved.stdout)")
        // Room again: the same block now works.
        _ = try runCommand(["nsenter", "-t", String(try XCTUnwrap(node.daemon?.pid)), "-m", "rm", "\(state)/fill"])
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
    }

    func testAReadOnlyStateDirectoryRefusesABlockAndTheDaemonKeepsServing() throws {
        try setUpNode()
        try startOnTmpfs("mount -o remount,ro \(node.stateDirectory)")
        let result = try node.ctl("block", "31002")
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("Read-only file system"), result.stderr)
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertFalse(try node.mangleRules().contains { $0.contains("--dport 31002") })
        XCTAssertEqual(try node.ctl("status").status, 0, "the daemon keeps serving")
        XCTAssertTrue(node.daemonLog.contains("audit:"), "the audit failure is logged, not fatal:\n\(node.daemonLog)")
    }
}
