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

final class TextFormatTests: XCTestCase {
    func testTimestampsAndNumbersWithoutFoundationFormatters() {
        XCTAssertEqual(iso8601(Date(timeIntervalSince1970: 1_800_000_000.9)), "2027-01-15T08:00:00Z")
        XCTAssertEqual(iso8601(Date(timeIntervalSince1970: 0)), "1970-01-01T00:00:00Z")
        XCTAssertEqual(fixedPoint(0.0015, decimals: 6), "0.001500")
        XCTAssertEqual(fixedPoint(1_800_000_000, decimals: 3), "1800000000.000")
        XCTAssertEqual(twoDigits(7), "07")
        XCTAssertEqual(twoDigits(42), "42")
    }
}
