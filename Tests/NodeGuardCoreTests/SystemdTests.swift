import Logging
import XCTest

@testable import NodeGuardCore

final class JournalLogHandlerTests: XCTestCase {
    func testFieldsCarryMessagePriorityIdentifierAndMetadata() {
        let fields = JournalLogHandler.fields(
            level: .info, message: "blocked 31002/tcp",
            metadata: ["port": "31002", "protocol": "tcp", "action": "block"], identifier: "nodeguardd")
        XCTAssertEqual(fields, [
            "MESSAGE=blocked 31002/tcp", "PRIORITY=6", "SYSLOG_IDENTIFIER=nodeguardd",
            "ACTION=block", "PORT=31002", "PROTOCOL=tcp",
        ])
    }

    func testPrioritiesFollowSyslog() {
        XCTAssertEqual(JournalLogHandler.priority(.critical), 2)
        XCTAssertEqual(JournalLogHandler.priority(.error), 3)
        XCTAssertEqual(JournalLogHandler.priority(.warning), 4)
        XCTAssertEqual(JournalLogHandler.priority(.notice), 5)
        XCTAssertEqual(JournalLogHandler.priority(.info), 6)
        XCTAssertEqual(JournalLogHandler.priority(.debug), 7)
        XCTAssertEqual(JournalLogHandler.priority(.trace), 7)
    }

    func testFieldNamesAreMadeValidOrDropped() {
        XCTAssertEqual(JournalLogHandler.fieldName("port"), "PORT")
        XCTAssertEqual(JournalLogHandler.fieldName("peer-uid"), "PEER_UID")
        XCTAssertEqual(JournalLogHandler.fieldName("_hidden"), "HIDDEN", "a leading underscore is for trusted fields")
        XCTAssertEqual(JournalLogHandler.fieldName("1st"), "ST")
        XCTAssertNil(JournalLogHandler.fieldName("message"), "metadata must not override MESSAGE")
        XCTAssertNil(JournalLogHandler.fieldName("___"))
        XCTAssertNil(JournalLogHandler.fieldName(String(repeating: "A", count: 65)))
    }

    func testJournalStreamMatchesOnlyTheSameDeviceAndInode() {
        XCTAssertTrue(JournalLogHandler.journalStream("8:12345", matchesDevice: 8, inode: 12345))
        XCTAssertFalse(JournalLogHandler.journalStream("8:12345", matchesDevice: 8, inode: 12346))
        XCTAssertFalse(JournalLogHandler.journalStream("9:12345", matchesDevice: 8, inode: 12345))
        XCTAssertFalse(JournalLogHandler.journalStream("garbage", matchesDevice: 8, inode: 12345))
        XCTAssertFalse(JournalLogHandler.journalStream("", matchesDevice: 0, inode: 0))
    }
}

final class SystemdNotifierTests: XCTestCase {
    func testTheLoopComesRoundTwicePerWatchdogTimeout() {
        // Built without NOTIFY_SOCKET/WATCHDOG_USEC in a test process: no watchdog.
        let plain = SystemdNotifier(isEnabled: false, watchdogTimeout: nil)
        XCTAssertEqual(plain.loopInterval(verifyInterval: .seconds(1)), .seconds(1))
        let watched = SystemdNotifier(isEnabled: true, watchdogTimeout: .seconds(10))
        XCTAssertEqual(watched.loopInterval(verifyInterval: .seconds(1)), .seconds(1), "verify already comes round often enough")
        XCTAssertEqual(watched.loopInterval(verifyInterval: .seconds(30)), .seconds(5), "half the watchdog timeout")
    }
}
