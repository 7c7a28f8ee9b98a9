import Foundation
@testable import NodeGuardCore
import XCTest

/// The small replacements for Foundation APIs that would pull
/// swift-corelibs-foundation and ICU into the daemon.
final class SupportTests: XCTestCase {
    func testParentDirectoryIsWhatDirnamePrints() {
        XCTAssertEqual(parentDirectory(of: "/var/lib/nodeguard/state.json"), "/var/lib/nodeguard")
        XCTAssertEqual(parentDirectory(of: "/var/lib/nodeguard/"), "/var/lib")
        XCTAssertEqual(parentDirectory(of: "/state.json"), "/")
        XCTAssertEqual(parentDirectory(of: "/"), "/")
        XCTAssertEqual(parentDirectory(of: "state.json"), "")
        XCTAssertEqual(parentDirectory(of: "run/nodeguard.sock"), "run")
    }

    func testMakeDirectoriesCreatesEveryLevelAndNamesWhatIsInTheWay() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("ngsupport-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        try makeDirectories("\(base)/a/b/c", mode: 0o750)
        var info = stat()
        XCTAssertEqual(stat("\(base)/a/b/c", &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o750 & ~currentUmask())
        try makeDirectories("\(base)/a/b/c", mode: 0o750)   // already there: fine
        XCTAssertTrue(FileManager.default.createFile(atPath: "\(base)/file", contents: Data()))
        XCTAssertThrowsError(try makeDirectories("\(base)/file/d", mode: 0o750)) { error in
            let error = error as! NodeGuardError
            XCTAssertEqual(error.code, .ioFailure)
            XCTAssertTrue(error.message.contains("\(base)/file"), error.message)
        }
    }

    private func currentUmask() -> mode_t {
        let mask = umask(0)
        umask(mask)
        return mask
    }

    func testTrimmingWhitespace() {
        XCTAssertEqual(" \t nft: No such file or directory\n\n".trimmingWhitespace, "nft: No such file or directory")
        XCTAssertEqual("\n \t\r".trimmingWhitespace, "")
        XCTAssertEqual("a b".trimmingWhitespace, "a b")
    }

    func testAConditionLockWakesAWaiterAndTimedWaitsReturn() throws {
        let lock = ConditionLock()
        final class Flag: @unchecked Sendable { var set = false }
        let flag = Flag()
        try startThread(name: "ng-test-signal") {
            usleep(20_000)
            lock.withLock {
                flag.set = true
                lock.signal()
            }
        }
        let clock = ContinuousClock()
        let start = clock.now
        lock.withLock {
            // A lost wake-up would sit here for the full minute.
            while !flag.set { lock.wait(for: .seconds(60)) }
        }
        XCTAssertLessThan(clock.now - start, .seconds(30))
        // A timed wait with nobody signalling returns on its own.
        lock.withLock { lock.wait(for: .milliseconds(5)) }
        lock.withLock { lock.wait(for: .zero) }
    }

    func testAThreadTheSystemCannotGiveIsAnErrorNotACrash() {
        // A 64 TiB stack cannot be mapped: pthread_create fails, as when out of threads.
        XCTAssertThrowsError(try startThread(name: "ng-test-huge", stackSize: 1 << 46) { XCTFail("must not run") }) { error in
            let error = error as! NodeGuardError
            XCTAssertEqual(error.code, .ioFailure)
            XCTAssertTrue(error.message.hasPrefix("cannot start the ng-test-huge thread: "), error.message)
        }
    }

    /// `import Foundation` anywhere in the shipped code links swift-corelibs-foundation
    /// and ICU into the static daemon again (36 MB becomes 85 MB, several MB more resident).
    func testShippedCodeImportsFoundationEssentialsOnly() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources")
        var checked = 0
        for target in ["NodeGuardControl", "NodeGuardCore", "nodeguardd", "nodeguardctl"] {
            let root = sources.appendingPathComponent(target)
            let files = try XCTUnwrap(FileManager.default.enumerator(atPath: root.path)).compactMap { $0 as? String }
            for file in files where file.hasSuffix(".swift") {
                let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
                for line in text.split(separator: "\n") where line.hasPrefix("import Foundation") || line.contains(" import Foundation") {
                    XCTAssertTrue(line.hasSuffix("import FoundationEssentials"), "\(target)/\(file): \(line)")
                }
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 30, "the shipped sources were found")
    }
}
