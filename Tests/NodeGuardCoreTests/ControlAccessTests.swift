import XCTest

@testable import NodeGuardCore

final class ControlAccessTests: XCTestCase {
    let access = ControlAccess(groupName: "nodeguard", groupID: 990)
    let block = ControlRequest.block(BlockEntry(port: 31002))

    func peer(uid: UInt32, gid: UInt32 = 100, groups: [UInt32] = []) -> ControlAccess.Peer {
        ControlAccess.Peer(pid: 42, uid: uid, gid: gid, groups: groups)
    }

    func testRootAndGroupMembersAreServed() {
        XCTAssertNil(access.check(block, from: peer(uid: 0)))
        XCTAssertNil(access.check(block, from: peer(uid: 1000, gid: 990)), "primary group")
        XCTAssertNil(access.check(.status, from: peer(uid: 1000, groups: [27, 990])), "supplementary group")
    }

    func testAnyoneElseIsRefusedWithWhatToDo() throws {
        let change = try XCTUnwrap(access.check(block, from: peer(uid: 1000, groups: [27])))
        XCTAssertEqual(change.code, .permissionDenied)
        XCTAssertTrue(change.message.contains("uid 1000 may not change NodeGuard's blocks (block)"), change.message)
        XCTAssertTrue(change.message.contains("members of the group 'nodeguard'"), change.message)
        let read = try XCTUnwrap(access.check(.list, from: peer(uid: 1000)))
        XCTAssertTrue(read.message.contains("may not read NodeGuard's state (list)"), read.message)
    }

    func testWithoutTheGroupOnlyRootIsServed() throws {
        let rootOnly = ControlAccess(groupName: "nodeguard", groupID: nil)
        XCTAssertNil(rootOnly.check(block, from: peer(uid: 0)))
        let refusal = try XCTUnwrap(rootOnly.check(.status, from: peer(uid: 1000, gid: 990, groups: [990])))
        XCTAssertTrue(refusal.message.contains("the group 'nodeguard' does not exist"), refusal.message)
    }
}
