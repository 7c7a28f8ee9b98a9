import XCTest

@testable import NodeGuardCore

final class ControlAccessTests: XCTestCase {
    let access = ControlAccess(groupName: "nodeguard", groupID: 990)

    func peer(uid: UInt32, gid: UInt32 = 100, groups: [UInt32] = []) -> ControlAccess.Peer {
        ControlAccess.Peer(pid: 42, uid: uid, gid: gid, groups: groups)
    }

    func testRootAndGroupMembersAreServed() {
        XCTAssertNil(access.check(peer(uid: 0)))
        XCTAssertNil(access.check(peer(uid: 1000, gid: 990)), "primary group")
        XCTAssertNil(access.check(peer(uid: 1000, groups: [27, 990])), "supplementary group")
    }

    func testAnyoneElseIsRefusedWithWhatToDo() throws {
        let refusal = try XCTUnwrap(access.check(peer(uid: 1000, groups: [27])))
        XCTAssertEqual(refusal.code, .permissionDenied)
        XCTAssertTrue(refusal.message.contains("uid 1000 may not use nodeguardd's control socket"), refusal.message)
        XCTAssertTrue(refusal.message.contains("members of the group 'nodeguard'"), refusal.message)
        XCTAssertTrue(refusal.message.contains("or use sudo"), refusal.message)
        // A peer whose credentials could not be read (uid -1) is nobody's.
        XCTAssertNotNil(access.check(peer(uid: .max, gid: .max)))
    }

    func testWithoutTheGroupOnlyRootIsServed() throws {
        let rootOnly = ControlAccess(groupName: "nodeguard", groupID: nil)
        XCTAssertNil(rootOnly.check(peer(uid: 0)))
        let refusal = try XCTUnwrap(rootOnly.check(peer(uid: 1000, gid: 990, groups: [990])))
        XCTAssertTrue(refusal.message.contains("the group 'nodeguard' does not exist"), refusal.message)
    }

    /// A flood of refused connections logs a line a second, saying how many it skipped.
    func testRefusalsAreLoggedAtMostOnceASecond() throws {
        var log = RefusalLog()
        let start = ContinuousClock.now
        let outsider = peer(uid: 1000)
        let first = try XCTUnwrap(log.note(outsider, at: start))
        XCTAssertTrue(first.contains("refused control connection from uid 1000 gid 100 pid 42"), first)
        for i in 1...299 { XCTAssertNil(log.note(outsider, at: start + .milliseconds(i)), "refusal \(i)") }
        let next = try XCTUnwrap(log.note(outsider, at: start + .milliseconds(1001)))
        XCTAssertTrue(next.hasSuffix("(and 299 more since the last such line)"), next)
        XCTAssertFalse(try XCTUnwrap(log.note(outsider, at: start + .seconds(3))).contains("more"))
    }
}
