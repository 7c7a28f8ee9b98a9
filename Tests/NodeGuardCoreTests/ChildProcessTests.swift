import Logging
import XCTest

@testable import NodeGuardCore

final class ChildProcessTests: XCTestCase {
    func testRunProgramCapturesOutputAndStatus() throws {
        let result = try runProgram(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout: .seconds(10))
        XCTAssertEqual(result.status, 3)
        XCTAssertEqual(String(decoding: result.stdout, as: UTF8.self), "out\n")
        XCTAssertEqual(String(decoding: result.stderr, as: UTF8.self), "err\n")
    }

    func testRunProgramKillsAProgramPastItsLimit() throws {
        let clock = ContinuousClock()
        let start = clock.now
        let result = try runProgram(["sleep", "30"], timeout: .milliseconds(300))
        XCTAssertEqual(result.status, 128 + 9, "killed with SIGKILL")
        XCTAssertLessThan(clock.now - start, .seconds(10))
    }

    func testAMissingProgramIsAnError() {
        XCTAssertThrowsError(try runProgram(["/nonexistent/nodeguard-test"], timeout: .seconds(1)))
    }
}
