import Foundation
import XCTest
@testable import NodeGuardCore

/// One daemon per state directory. flock locks belong to an open file
/// description, so a second acquire in this same process conflicts just as a
/// second daemon would.
final class InstanceLockTests: XCTestCase {
    func testASecondLockOnTheSameDirectoryIsRefusedNamingTheHolder() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nodeguard-lock-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        XCTAssertNil(try InstanceLock.acquireIfPresent(stateDirectory: directory + "/state"), "no directory, no daemon")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory), "and nothing was created")

        var first: InstanceLock? = try InstanceLock.acquire(stateDirectory: directory + "/state")
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/state"), "the directory is created")
        let errors = [
            capturedError { () throws(NodeGuardError) -> InstanceLock in try InstanceLock.acquire(stateDirectory: directory + "/state") },
            capturedError { () throws(NodeGuardError) -> InstanceLock? in try InstanceLock.acquireIfPresent(stateDirectory: directory + "/state") },
        ]
        for error in errors {
            XCTAssertEqual(error?.code, .conflict)
            XCTAssertTrue(error?.message.hasPrefix("another ") ?? false, error?.message ?? "no error")
            XCTAssertTrue(error?.message.contains("(PID \(getpid())) is running with state directory \(directory)/state") ?? false,
                          error?.message ?? "no error")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory + "/state"), [], "the lock writes nothing")
        // The xtables lock names its holder from /proc/locks through the same FlockHolder.
        XCTAssertEqual(XtablesLock.holder(of: directory + "/state")?.pid, getpid())
        withExtendedLifetime(first) {}
        first = nil
        XCTAssertNotNil(try InstanceLock.acquireIfPresent(stateDirectory: directory + "/state"), "released with its holder")
    }
}
