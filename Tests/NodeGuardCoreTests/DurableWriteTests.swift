import Foundation
import XCTest
@testable import NodeGuardCore

/// `writeDurably` replaces a file through a temporary file in the same
/// directory. That directory may belong to someone else (node_exporter's
/// textfile directory): the temporary file must be a new file only this call
/// created, never one a planted symlink points at.
final class DurableWriteTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("nodeguard-durable-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func mode(_ path: String) -> mode_t {
        var info = stat()
        XCTAssertEqual(lstat(path, &info), 0, path)
        return info.st_mode
    }

    /// The old code wrote to `PATH.tmp.<pid>`, opened with O_CREAT|O_TRUNC: a
    /// symlink planted there made it truncate and write the file it points
    /// to, then rename the symlink into place.
    func testASymlinkPlantedAtTheTemporaryNameIsNotFollowed() throws {
        let victim = directory + "/victim"
        let secret = Array("root's 0600 file\n".utf8)
        try Data(secret).write(to: URL(fileURLWithPath: victim))
        XCTAssertEqual(chmod(victim, 0o600), 0)
        let target = directory + "/nodeguard.prom"
        let planted = ["\(target).tmp.\(getpid())", "\(target).tmp", "\(target).tmp.0"]
        for name in planted { XCTAssertEqual(symlink(victim, name), 0, name) }

        let text = Array("nodeguard_healthy 1\n".utf8)
        try writeDurably(text, to: target)

        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: victim))), secret, "the symlink's target is untouched")
        XCTAssertEqual(mode(victim) & 0o777, 0o600)
        XCTAssertEqual(mode(target) & S_IFMT, S_IFREG, "the new file is a regular file, not a renamed symlink")
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: target))), text)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).sorted(),
                       (planted + [target, victim]).map { String($0.dropFirst(directory.count + 1)) }.sorted(),
                       "the planted links are left alone and no temporary file is left behind")
    }

    /// The destination itself may be a symlink someone planted: it is replaced, not written through.
    func testASymlinkAtTheDestinationIsReplacedNotFollowed() throws {
        let victim = directory + "/victim"
        try Data("keep".utf8).write(to: URL(fileURLWithPath: victim))
        let target = directory + "/nodeguard.prom"
        XCTAssertEqual(symlink(victim, target), 0)
        try writeDurably(Array("new".utf8), to: target)
        XCTAssertEqual(String(decoding: try Data(contentsOf: URL(fileURLWithPath: victim)), as: UTF8.self), "keep")
        XCTAssertEqual(mode(target) & S_IFMT, S_IFREG)
    }

    /// The mode is the one asked for, whatever the umask.
    func testTheFileGetsTheModeAskedForWhateverTheUmask() throws {
        let old = umask(0o077)
        defer { umask(old) }
        try writeDurably(Array("a".utf8), to: directory + "/default")
        XCTAssertEqual(mode(directory + "/default") & 0o7777, 0o640)
        try writeDurably(Array("b".utf8), to: directory + "/readable", mode: 0o644)
        XCTAssertEqual(mode(directory + "/readable") & 0o7777, 0o644)
    }

    /// Many writes in a row leave one file and no temporaries, each time under a new name.
    func testRepeatedWritesLeaveNoTemporaryFiles() throws {
        let target = directory + "/runtime.json"
        for i in 0..<20 {
            try writeDurably(Array("\(i)".utf8), to: target)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["runtime.json"])
        XCTAssertEqual(String(decoding: try Data(contentsOf: URL(fileURLWithPath: target)), as: UTF8.self), "19")
    }

    /// A directory that cannot be written to gives an error naming it.
    func testAnUnwritableDirectoryIsAnErrorNamingThePath() throws {
        let error = capturedError { () throws(NodeGuardError) in
            try writeDurably(Array("x".utf8), to: directory + "/missing/dir/file")
        }
        XCTAssertEqual(error?.code, .ioFailure)
        XCTAssertTrue(error?.message.contains(directory + "/missing/dir/file") ?? false, error?.message ?? "no error")
    }
}
