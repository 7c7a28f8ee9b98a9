import Logging
import XCTest

@testable import NodeGuardCore

final class AuditLogTests: XCTestCase {
    func testALineIsOneJSONObjectWithWhenWhatWhoAndResult() throws {
        let line = AuditLog.line(time: Date(timeIntervalSince1970: 0), action: "block",
                                 origin: .socket(pid: 42, uid: 1000, gid: 1001),
                                 details: ["port": .string("31002/tcp")], error: nil)
        XCTAssertEqual(line, #"{"action":"block","origin":{"gid":1001,"kind":"socket","pid":42,"uid":1000},"port":"31002/tcp","result":"ok","time":"1970-01-01T00:00:00Z"}"# + "\n")
        let failed = AuditLog.line(time: Date(timeIntervalSince1970: 0), action: "reload", origin: .signal, details: [:], error: "bad\nfile")
        XCTAssertEqual(failed.filter { $0 == "\n" }.count, 1, "one record, one line, whatever the error text")
        XCTAssertTrue(failed.contains(#""result":"error""#) && failed.contains(#""kind":"signal""#))
    }

    func testRecordsAreAppended() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let audit = AuditLog(directory: directory)
        try audit.record("block", origin: .daemon, details: ["port": .string("1/tcp")])
        try audit.record("unblock", origin: .daemon, details: ["port": .string("1/tcp")])
        let lines = try String(contentsOfFile: audit.path, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines[0].contains(#""action":"block""#) && lines[1].contains(#""action":"unblock""#))
    }
}
