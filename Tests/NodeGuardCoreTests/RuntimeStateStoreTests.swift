import Foundation
import XCTest
@testable import NodeGuardCore

final class RuntimeStateStoreTests: XCTestCase {
    /// A fresh, empty directory for one test; removed by the returned cleanup.
    private func temporaryDirectory() throws -> String {
        let base = FileManager.default.temporaryDirectory
            .appendingPathComponent("nodeguard-unit-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        return base.path
    }

    private func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    private func contents(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    private func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    func testPathIsRuntimeJSONInTheDirectory() {
        XCTAssertEqual(RuntimeStateStore(directory: "/var/lib/nodeguard").path, "/var/lib/nodeguard/runtime.json")
    }

    func testMissingFileLoadsAsEmpty() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        XCTAssertEqual(try RuntimeStateStore(directory: directory).load(), [])
        // and a directory that does not exist at all
        XCTAssertEqual(try RuntimeStateStore(directory: directory + "/not/there").load(), [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/not"), "load must not create anything")
    }

    func testSaveThenLoadRoundTrips() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let store = RuntimeStateStore(directory: directory)
        let entries = Fixtures.exampleEntries + [
            BlockEntry(port: 1, transport: .sctp, family: .ipv6, reason: "é \"x\"", allowFrom: [cidr("::/0")]),
        ]
        try store.save(entries)
        XCTAssertEqual(try store.load(), entries)
        // The file is the deny-list format, compact: one entry per line.
        let text = String(decoding: try contents(store.path), as: UTF8.self)
        XCTAssertEqual(text, DenyListCodec.encode(DenyList(entries: entries), compact: true))
        XCTAssertEqual(text.split(separator: "\n").count, entries.count + 2)
        XCTAssertEqual(try DenyListCodec.decode(try contents(store.path), source: store.path).entries, entries)

        // Saving again replaces the file.
        try store.save([BlockEntry(port: 9)])
        XCTAssertEqual(try store.load(), [BlockEntry(port: 9)])
        try store.save([])
        XCTAssertEqual(try store.load(), [])
        XCTAssertTrue(FileManager.default.fileExists(atPath: store.path), "an empty list is still written")
    }

    func testSaveCreatesMissingDirectories() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let nested = directory + "/a/b/state"
        let store = RuntimeStateStore(directory: nested)
        try store.save([BlockEntry(port: 31002)])
        XCTAssertEqual(try store.load(), [BlockEntry(port: 31002)])
        let attributes = try FileManager.default.attributesOfItem(atPath: nested)
        let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0o777
        XCTAssertEqual(mode & 0o007, 0, "the state directory is not open to others")
    }

    func testSavedFileIsNotWorldAccessible() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let store = RuntimeStateStore(directory: directory)
        try store.save([BlockEntry(port: 31002)])
        let attributes = try FileManager.default.attributesOfItem(atPath: store.path)
        let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0o777
        XCTAssertEqual(mode & 0o007, 0)
    }

    func testSaveLeavesNoTemporaryFiles() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let store = RuntimeStateStore(directory: directory)
        for i in 0..<5 {
            try store.save((0..<i).map { BlockEntry(port: UInt16(30000 + $0)) })
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["runtime.json"], "after save \(i)")
        }
    }

    func testSaveReplacesTheFileInsteadOfRewritingItInPlace() throws {
        // A reader holding the old file (here: a second hard link to it) must keep
        // seeing a complete old version: save writes a new file and renames it over.
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let store = RuntimeStateStore(directory: directory)
        try store.save([BlockEntry(port: 1)])
        let old = try contents(store.path)
        let snapshot = directory + "/snapshot.json"
        try FileManager.default.linkItem(atPath: store.path, toPath: snapshot)
        try store.save([BlockEntry(port: 2), BlockEntry(port: 3)])
        XCTAssertEqual(try contents(snapshot), old, "the old inode was not written to")
        XCTAssertEqual(try store.load(), [BlockEntry(port: 2), BlockEntry(port: 3)])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).sorted(), ["runtime.json", "snapshot.json"])
    }

    func testSaveKeepsOtherFilesInTheDirectory() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        try write(Array("keep".utf8), to: directory + "/other.txt")
        let store = RuntimeStateStore(directory: directory)
        try store.save([BlockEntry(port: 5)])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).sorted(), ["other.txt", "runtime.json"])
        XCTAssertEqual(try contents(directory + "/other.txt"), Array("keep".utf8))
    }

    func testCorruptFileIsAnErrorNamingItAndIsLeftUntouched() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let store = RuntimeStateStore(directory: directory)
        let corruptions: [[UInt8]] = [
            Array(#"{"version":1,"blocked":[{"port":31002}"#.utf8),                // truncated
            Array(#"{"version":2,"blocked":[]}"#.utf8),                             // wrong version
            Array(#"{"version":1,"blocked":[{"port":70000}]}"#.utf8),              // invalid entry
            [],                                                                     // empty file
            [0xFF, 0xFE, 0x00, 0x7B, 0x0A],                                         // binary junk
        ]
        for corrupt in corruptions {
            try write(corrupt, to: store.path)
            let error = capturedError { () throws(NodeGuardError) -> [BlockEntry] in try store.load() }
            XCTAssertEqual(error?.code, .invalidDenyList, "\(corrupt)")
            XCTAssertTrue(error?.message.contains(store.path) ?? false, error?.message ?? "no error")
            XCTAssertTrue(error?.message.contains("runtime state is corrupt") ?? false, error?.message ?? "no error")
            XCTAssertEqual(try contents(store.path), corrupt, "the corrupt file is left byte for byte")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["runtime.json"],
                           "nothing moved aside or added")
        }
    }

    func testCorruptFileMessageNamesTheProblem() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let store = RuntimeStateStore(directory: directory)
        try write(Array(#"{"version":1,"blocked":[{"port":0}]}"#.utf8), to: store.path)
        let error = capturedError { () throws(NodeGuardError) -> [BlockEntry] in try store.load() }
        XCTAssertTrue(error?.message.hasSuffix("\(store.path): blocked[0].port: 0 is not a whole number from 1 to 65535") ?? false,
                      error?.message ?? "no error")
    }

    func testOversizedFileIsRefused() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let store = RuntimeStateStore(directory: directory)
        try write([UInt8](repeating: 0x20, count: DenyListLimits.maximumFileBytes + 65536 + 1), to: store.path)
        let error = capturedError { () throws(NodeGuardError) -> [BlockEntry] in try store.load() }
        XCTAssertEqual(error?.code, .invalidDenyList)
        XCTAssertTrue(error?.message.contains(store.path) ?? false, error?.message ?? "no error")
        XCTAssertTrue(error?.message.contains("16 MiB") ?? false, error?.message ?? "no error")
    }

    // MARK: issue 14: a state file it can always read back

    /// An IPv6 source of `index`, as long as such text gets.
    private func longIPv6(_ index: Int) -> CIDR {
        cidr("ffff:ffff:ffff:ffff:ffff:ffff:\(String(index >> 16, radix: 16)):\(String(index & 0xffff, radix: 16))/128")
    }

    func testStateIsWrittenCompactlyOneEntryPerLine() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let store = RuntimeStateStore(directory: directory)
        let entries = (0..<32).map { i in
            // Issue 14's shape: IPv6 networks as operators write them.
            BlockEntry(port: UInt16(30000 + i), reason: "SEC-\(i)",
                       allowFrom: (0..<64).map { cidr("2001:db8:\(String(i * 64 + $0, radix: 16))::/48") })
        }
        try store.save(entries)
        let bytes = try contents(store.path)
        let pretty = DenyListCodec.encode(DenyList(entries: entries)).utf8.count
        XCTAssertLessThan(Double(bytes.count), 0.7 * Double(pretty), "compact: \(bytes.count) bytes, pretty printed \(pretty)")
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.count, entries.count + 2, "one line per entry, and the list's first and last lines")
        XCTAssertFalse(lines.contains { $0.hasPrefix(" ") || $0.contains("\": ") }, "no indentation, no spaces after colons")
        XCTAssertEqual(try store.load(), entries)
        // The empty list too.
        try store.save([])
        XCTAssertEqual(String(decoding: try contents(store.path), as: UTF8.self), #"{"blocked":[],"version":1}"# + "\n")
        XCTAssertEqual(try store.load(), [])
    }

    /// Never write what load refuses: a list over the limits is refused with a
    /// clear error, and the state file (and directory) stay as they were.
    func testSaveRefusesWhatLoadWouldRefuseAndWritesNothing() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let store = RuntimeStateStore(directory: directory)
        try store.save([BlockEntry(port: 1)])
        let before = try contents(store.path)
        let tooMany = (0..<DenyListLimits.entries + 1).map { BlockEntry(port: UInt16(10000 + $0)) }
        let tooManySources = (0...DenyListLimits.sources / DenyListLimits.sourcesPerEntry).map { i in
            BlockEntry(port: UInt16(30000 + i), allowFrom: (0..<DenyListLimits.sourcesPerEntry).map { longIPv6(i * 64 + $0) })
        }
        for (list, expected) in [(tooMany, "blocked: 4097 entries; at most 4096 in a list"),
                                 (tooManySources, "blocked: 2112 allowFrom sources in all; at most 2048 in a list")] {
            let error = capturedError { () throws(NodeGuardError) in try store.save(list) }
            XCTAssertEqual(error?.code, .limitExceeded)
            XCTAssertEqual(error?.message, "the runtime state \(store.path) would hold more than NodeGuard reads back: \(expected) "
                + "(\(expected.contains("sources") ? "use wider CIDRs that cover several sources" : "remove entries that are no longer needed")); "
                + "unblock runtime entries first")
            XCTAssertEqual(try contents(store.path), before, "the state file is untouched")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["runtime.json"])
        }
    }

    /// The largest state the limits allow (every entry with the longest
    /// reason, written as two bytes a character, and the longest source
    /// text) is far below what the reader takes, and reads back.
    func testTheLargestStateTheLimitsAllowReadsBack() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let store = RuntimeStateStore(directory: directory)
        let reason = String(repeating: "\"", count: BlockEntry.maximumReasonBytes)
        let perEntry = DenyListLimits.sourcesPerEntry
        let entries = (0..<DenyListLimits.entries).map { i in
            BlockEntry(port: UInt16(1 + i), transport: .sctp, family: .both, reason: reason,
                       allowFrom: i < DenyListLimits.sources / perEntry ? (0..<perEntry).map { longIPv6(i * perEntry + $0) } : [])
        }
        try store.save(entries)
        let size = try contents(store.path).count
        print("the largest runtime state the limits allow: \(size) bytes (reader's limit \(DenyListLimits.maximumFileBytes))")
        XCTAssertLessThan(size, DenyListLimits.maximumFileBytes / 4)
        XCTAssertEqual(try store.load(), entries)
    }

    func testUnreadableStateIsAnIOFailure() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let store = RuntimeStateStore(directory: directory)
        // runtime.json is a directory: it exists but cannot be read as a file.
        try FileManager.default.createDirectory(atPath: store.path, withIntermediateDirectories: false)
        let error = capturedError { () throws(NodeGuardError) -> [BlockEntry] in try store.load() }
        XCTAssertEqual(error?.code, .ioFailure)
        XCTAssertTrue(error?.message.contains(store.path) ?? false, error?.message ?? "no error")
    }
}
