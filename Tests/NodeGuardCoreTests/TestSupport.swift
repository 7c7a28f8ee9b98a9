import Foundation
import XCTest
@testable import NodeGuardCore

/// A small, fast, seeded generator so property-style tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Runs `body` and returns the NodeGuardError it threw, or nil if it did not throw.
func capturedError<T>(_ body: () throws(NodeGuardError) -> T) -> NodeGuardError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}

/// Runs `body` and returns the JSONSyntaxError it threw, or nil if it did not throw.
func capturedSyntaxError<T>(_ body: () throws(JSONSyntaxError) -> T) -> JSONSyntaxError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}

/// Parses a CIDR the test knows is valid; fails the test (and returns a placeholder) otherwise.
func cidr(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> CIDR {
    do {
        return try CIDR(parsing: text)
    } catch {
        XCTFail("'\(text)' should parse as a CIDR: \(error.message)", file: file, line: line)
        return CIDR(family: .ipv4, address: [0, 0, 0, 0], prefixLength: 0)
    }
}

enum Fixtures {
    /// The example from the issue.
    static let exampleJSON = #"{"version":1,"blocked":[{"port":31002,"protocol":"tcp","reason":"vault UI CVE, ticket SEC-1234"},{"port":31900,"protocol":"udp","family":"ipv4"},{"port":32000,"allowFrom":["198.18.0.0/24","2001:db8:1::/64"]}]}"#

    static let v4Net = CIDR(family: .ipv4, address: [198, 18, 0, 0], prefixLength: 24)
    static let v6Net = CIDR(family: .ipv6,
                            address: [0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                            prefixLength: 64)

    /// What the example must decode to.
    static let exampleEntries: [BlockEntry] = [
        BlockEntry(port: 31002, transport: .tcp, family: .both, reason: "vault UI CVE, ticket SEC-1234"),
        BlockEntry(port: 31900, transport: .udp, family: .ipv4),
        BlockEntry(port: 32000, transport: .tcp, family: .both, allowFrom: [v4Net, v6Net]),
    ]

    /// The package root, found from this file's location.
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()   // NodeGuardCoreTests
            .deletingLastPathComponent()   // Tests
            .deletingLastPathComponent()   // package root
    }
}

/// Decodes `text` as a deny-list and returns its error, failing the test if it decoded.
func denyListError(_ text: String, source: String = "test.json",
                   file: StaticString = #filePath, line: UInt = #line) -> NodeGuardError? {
    let error = capturedError { () throws(NodeGuardError) -> DenyList in
        try DenyListCodec.decode(Array(text.utf8), source: source)
    }
    if error == nil { XCTFail("expected \(text) to be rejected", file: file, line: line) }
    return error
}

/// Asserts that `text` is rejected as .invalidDenyList, the message starts with the
/// source and contains every fragment.
func assertInvalidDenyList(_ text: String, contains fragments: [String],
                           file: StaticString = #filePath, line: UInt = #line) {
    guard let error = denyListError(text, file: file, line: line) else { return }
    XCTAssertEqual(error.code, .invalidDenyList, file: file, line: line)
    XCTAssertTrue(error.message.hasPrefix("test.json: "),
                  "message should name the source: \(error.message)", file: file, line: line)
    for fragment in fragments {
        XCTAssertTrue(error.message.contains(fragment),
                      "message \(error.message.debugDescription) should contain \(fragment.debugDescription)",
                      file: file, line: line)
    }
}

/// A new empty directory for one test, removed when the test ends.
func temporaryDirectory(for test: XCTestCase, _ name: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("nodeguard-\(name)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}
