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
        // The file is the readable deny-list format.
        let text = String(decoding: try contents(store.path), as: UTF8.self)
        XCTAssertEqual(text, DenyListCodec.encode(DenyList(entries: entries)))
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
        try write([UInt8](repeating: 0x20, count: (16 << 20) + 65536 + 1), to: store.path)
        let error = capturedError { () throws(NodeGuardError) -> [BlockEntry] in try store.load() }
        XCTAssertEqual(error?.code, .invalidDenyList)
        XCTAssertTrue(error?.message.contains(store.path) ?? false, error?.message ?? "no error")
        XCTAssertTrue(error?.message.contains("16 MiB") ?? false, error?.message ?? "no error")
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
