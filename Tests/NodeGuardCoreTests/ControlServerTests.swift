import Foundation
import Logging
import XCTest

@testable import NodeGuardCore

/// The real ControlServer and ControlClient over a real Unix socket, with a
/// handler in place of the reconcile loop and small limits so that deadlines
/// pass in a second or two.
final class ControlServerTests: XCTestCase {
    /// A ControlServer serving a socket in a fresh directory until `stop()`.
    final class RunningServer {
        let directory: String
        let path: String
        private let task: Task<Void, Never>

        init(limits: ControlServer.Limits, handler: @escaping ControlServer.Handler) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("ngserver-\(UUID().uuidString.prefix(8))").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            path = directory + "/s.sock"
            // The test's own primary group is the control group: served as root or not.
            let server = try ControlServer(path: path, logger: Logger(label: "test"),
                                           access: ControlAccess(groupName: "test", groupID: getgid()),
                                           limits: limits, handler: handler)
            task = Task { try? await server.run() }
        }

        /// Cancelling run() shuts the server down; it removes its socket last.
        func stop() {
            task.cancel()
            let deadline = Date().addingTimeInterval(5)
            while FileManager.default.fileExists(atPath: path) && Date() < deadline { usleep(10_000) }
            try? FileManager.default.removeItem(atPath: directory)
        }

        /// A raw connection, for clients that misbehave.
        func connect() throws -> Int32 {
            try UnixSocket.connect(path)
        }
    }

    /// Reads until the server closes the connection; returns what it sent and when it closed, or nil after `limit`.
    func readUntilClosed(_ fd: Int32, limit: TimeInterval, drip: (() -> Void)? = nil) -> (text: String, after: TimeInterval)? {
        let start = Date()
        var received: [UInt8] = []
        var nextDrip = Date()
        while Date().timeIntervalSince(start) < limit {
            if let drip, Date() >= nextDrip {
                drip()
                nextDrip = Date().addingTimeInterval(0.2)
            }
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 50) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return (String(decoding: received, as: UTF8.self), Date().timeIntervalSince(start)) }
            received += chunk[0..<n]
        }
        return nil
    }

    /// Every byte used to renew the read timeout, so a client sending one a
    /// second held its slot for ever. The deadline is for the whole line.
    func testADrippingClientIsCutAtTheDeadlineWhateverItSends() throws {
        let server = try RunningServer(limits: .init(timeout: .milliseconds(1500))) { _, _ in .success(.null) }
        defer { server.stop() }
        for (name, byte) in [("a space", UInt8(ascii: " ")), ("a blank line", UInt8(ascii: "\n"))] {
            let fd = try server.connect()
            defer { close(fd) }
            var byte = byte
            let outcome = readUntilClosed(fd, limit: 5) { _ = send(fd, &byte, 1, Int32(MSG_NOSIGNAL)) }
            let (text, after) = try XCTUnwrap(outcome, "\(name) every 0.2 s kept the connection open for 5 s")
            XCTAssertGreaterThan(after, 1.3, name)
            XCTAssertLessThan(after, 2.5, "\(name): closed at the deadline, not renewed by each byte")
            XCTAssertTrue(text.contains("no complete request line within 1.5 seconds"), "\(name): \(text)")
        }
    }

    /// The deadline is per request: a connection that keeps asking is served for as long as it asks.
    func testEachAnswerStartsANewDeadline() throws {
        let server = try RunningServer(limits: .init(timeout: .milliseconds(1000))) { request, _ in
            .success(.string(request.command))
        }
        defer { server.stop() }
        let fd = try server.connect()
        defer { close(fd) }
        var reader = UnixSocket.LineReader(fd: fd, limit: 1 << 20)
        for _ in 0..<4 {
            usleep(600_000)   // 2.4 s in all: more than one deadline, less than one per request
            XCTAssertNoThrow(try UnixSocket.writeAll(fd, ControlRequest.list.encoded()))
            guard case .line(let line) = reader.next(until: .now + .seconds(5)) else { return XCTFail("no answer") }
            XCTAssertEqual(try ControlResponse.decode(line), .success(.string("list")))
        }
    }

    /// `metrics` with 65,535 blocked ports in both families is over 16 MiB,
    /// which the CLI used to refuse (exit 3, "unreachable"). It now reads
    /// what the daemon may send.
    func testAnswersAsLargeAsMetricsForEveryPortRoundTrip() throws {
        var counters: [PortKey: DropCounters] = [:]
        for port in 1...65535 { counters[PortKey(port: UInt16(port), transport: .tcp)] = DropCounters(packets: UInt64(port), bytes: UInt64(port) * 60) }
        let snapshot = MetricsSnapshot(
            inspections: [TableInspection(family: .ipv4, hookFirst: ["OUTPUT": true, "PREROUTING": true], dropCounters: counters),
                          TableInspection(family: .ipv6, hookFirst: ["OUTPUT": true, "PREROUTING": true], dropCounters: counters)],
            blockedBySource: [.config: 65535], repairs: 0, commits: 2, healthy: true,
            lastVerifyDuration: nil, lastVerify: nil, lastApply: nil)
        let text = snapshot.render()
        let answer = ControlResponse.success(.object(["text": .string(text)]))
        let size = answer.encoded().utf8.count
        XCTAssertGreaterThan(size, 16 << 20, "larger than the CLI used to read")
        XCTAssertLessThan(size, ControlProtocol.maximumResponseBytes)

        let server = try RunningServer(limits: .init()) { _, _ in answer }
        defer { server.stop() }
        let received = try ControlClient(socketPath: server.path).send(.metrics)
        guard case .success(let result) = received else { return XCTFail("\(received)") }
        XCTAssertEqual(result["text"]?.stringValue, text)
    }

    /// An answer longer than a client reads is replaced by an error that says so.
    func testAnAnswerLongerThanAClientReadsIsAnErrorThatSaysSo() throws {
        let answer = { @Sendable (request: ControlRequest) in ControlResponse.success(.string(String(repeating: "x", count: request == .status ? 2000 : 900))) }
        let size = answer(.status).encoded().utf8.count
        let server = try RunningServer(limits: .init(maximumResponseBytes: 1000)) { request, _ in answer(request) }
        defer { server.stop() }
        let client = ControlClient(socketPath: server.path)
        guard case .failure(let error) = try client.send(.status) else { return XCTFail("a 2,000-byte answer was sent") }
        XCTAssertEqual(error.code, .messageTooLarge)
        XCTAssertTrue(error.message.contains("the answer to status is \(size) bytes, more than the 1000 bytes a client reads"), error.message)
        guard case .success = try client.send(.list) else { return XCTFail("a 900-byte answer is sent") }
    }

    /// Exit 3 means nothing could be reached; a connection that is taken but
    /// not answered is another error.
    func testTheClientTellsUnreachableFromNotAnswered() throws {
        let missing = capturedError { () throws(NodeGuardError) -> ControlResponse in
            try ControlClient(socketPath: "/nonexistent/nodeguard.sock").send(.status)
        }
        XCTAssertEqual(missing?.code, .daemonUnreachable)

        // A socket that accepts and closes without a word.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ngsilent-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let listener = try ControlServer.bind(directory + "/s.sock", group: nil)
        defer { close(listener) }
        let silent = Thread {
            // The listener is non-blocking (the server polls it): wait for the client.
            var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            _ = poll(&ready, 1, 5000)
            let fd = accept(listener, nil, nil)
            usleep(100_000)
            close(fd)
        }
        silent.start()
        let closed = capturedError { () throws(NodeGuardError) -> ControlResponse in
            try ControlClient(socketPath: directory + "/s.sock").send(.status)
        }
        XCTAssertEqual(closed?.code, .noAnswer)
        XCTAssertTrue(closed?.message.contains("closed the connection without an answer") ?? false, closed?.message ?? "no error")
    }
}
