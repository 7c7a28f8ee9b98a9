import XCTest
@testable import NodeGuardCore

final class ControlRequestTests: XCTestCase {
    private func decoded(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> ControlRequest? {
        do {
            return try ControlRequest.decode(Array(text.utf8))
        } catch {
            XCTFail("\(text) should decode: \(error.code): \(error.message)", file: file, line: line)
            return nil
        }
    }

    private func requestError(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> NodeGuardError? {
        let error = capturedError { () throws(NodeGuardError) -> ControlRequest in try ControlRequest.decode(bytes) }
        if error == nil { XCTFail("request should be rejected", file: file, line: line) }
        return error
    }

    private func assertRejected(_ text: String, code: NodeGuardError.Code = .invalidRequest, message expected: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        guard let error = requestError(Array(text.utf8), file: file, line: line) else { return }
        XCTAssertEqual(error.code, code, file: file, line: line)
        XCTAssertTrue(error.message.contains(expected),
                      "message \(error.message.debugDescription) should contain \(expected.debugDescription)", file: file, line: line)
    }

    // MARK: round trips

    func testEveryCommandRoundTrips() {
        let requests: [ControlRequest] = [
            .block(BlockEntry(port: 31002)),
            .block(BlockEntry(port: 32000, transport: .udp, family: .ipv6, reason: "incident \"42\" é",
                              allowFrom: [Fixtures.v6Net, cidr("2001:db8:2::1")])),
            .block(Fixtures.exampleEntries[2]),
            .block(BlockEntry(port: 65535, transport: .sctp, family: .ipv4, reason: "")),
            .unblock(PortKey(port: 31002, transport: .tcp)),
            .unblock(PortKey(port: 1, transport: .udp)),
            .unblock(PortKey(port: 65535, transport: .sctp)),
            .list, .status, .reload,
        ]
        for request in requests {
            let line = request.encoded()
            XCTAssertFalse(line.contains("\n"), "one request per line")
            XCTAssertEqual(decoded(line), request, line)
        }
    }

    func testEncodedForm() {
        XCTAssertEqual(ControlRequest.list.encoded(), #"{"command":"list","version":1}"#)
        XCTAssertEqual(ControlRequest.status.encoded(), #"{"command":"status","version":1}"#)
        XCTAssertEqual(ControlRequest.reload.encoded(), #"{"command":"reload","version":1}"#)
        XCTAssertEqual(ControlRequest.unblock(PortKey(port: 31002, transport: .udp)).encoded(),
                       #"{"command":"unblock","port":31002,"protocol":"udp","version":1}"#)
        XCTAssertEqual(ControlRequest.block(BlockEntry(port: 31002)).encoded(),
                       #"{"command":"block","entry":{"family":"both","port":31002,"protocol":"tcp"},"version":1}"#)
    }

    func testCommandNamesAndMutation() {
        XCTAssertEqual(ControlRequest.block(BlockEntry(port: 1)).command, "block")
        XCTAssertEqual(ControlRequest.unblock(PortKey(port: 1, transport: .tcp)).command, "unblock")
        XCTAssertEqual(ControlRequest.list.command, "list")
        XCTAssertEqual(ControlRequest.status.command, "status")
        XCTAssertEqual(ControlRequest.reload.command, "reload")
        XCTAssertTrue(ControlRequest.block(BlockEntry(port: 1)).isMutating)
        XCTAssertTrue(ControlRequest.unblock(PortKey(port: 1, transport: .tcp)).isMutating)
        XCTAssertTrue(ControlRequest.reload.isMutating)
        XCTAssertFalse(ControlRequest.list.isMutating)
        XCTAssertFalse(ControlRequest.status.isMutating)
    }

    func testDefaultsWhenDecoding() {
        XCTAssertEqual(decoded(#"{"version":1,"command":"unblock","port":31002}"#), .unblock(PortKey(port: 31002, transport: .tcp)))
        XCTAssertEqual(decoded(#"{"version":1,"command":"block","entry":{"port":31002}}"#), .block(BlockEntry(port: 31002)))
        XCTAssertEqual(decoded(#" {"command":"list","version":1} "#), .list)
    }

    // MARK: errors

    func testNotJSON() {
        assertRejected("{", message: "request is not valid JSON")
        assertRejected("", message: "request is not valid JSON")
        assertRejected(#"{"version":1,"command":"list","command":"list"}"#, message: #"duplicate key "command""#)
    }

    func testNotAnObject() {
        assertRejected("[]", message: "request must be a JSON object, found an array")
        assertRejected(#""list""#, message: "request must be a JSON object, found a string")
    }

    func testMissingVersion() {
        assertRejected(#"{"command":"list"}"#, message: "version: missing")
    }

    func testUnsupportedVersion() {
        assertRejected(#"{"version":2,"command":"list"}"#, code: .unsupportedVersion,
                       message: "version: 2 is not supported (this daemon speaks version 1)")
        assertRejected(#"{"version":0,"command":"list"}"#, code: .unsupportedVersion, message: "version: 0 is not supported")
        guard let error = requestError(Array(#"{"version":"1","command":"list"}"#.utf8)) else { return }
        XCTAssertEqual(error.code, .invalidRequest, "a version of the wrong type is a malformed request")
        XCTAssertEqual(error.message, "version: expected a number, found a string")
    }

    func testMissingOrUnknownCommand() {
        assertRejected(#"{"version":1}"#, message: "command: missing or not a string")
        assertRejected(#"{"version":1,"command":7}"#, message: "command: missing or not a string")
        assertRejected(#"{"version":1,"command":"flush"}"#, message: #"command: unknown command "flush""#)
        assertRejected(#"{"version":1,"command":"LIST"}"#, message: #"unknown command "LIST""#)
    }

    func testUnknownFields() {
        assertRejected(#"{"version":1,"command":"list","force":true}"#, message: "force: unknown field for command list")
        assertRejected(#"{"version":1,"command":"status","entry":{}}"#, message: "entry: unknown field for command status")
        assertRejected(#"{"version":1,"command":"unblock","port":1,"entry":{"port":1}}"#, message: "entry: unknown field for command unblock")
        assertRejected(#"{"version":1,"command":"block","entry":{"port":1},"port":1}"#, message: "port: unknown field for command block")
        assertRejected(#"{"version":1,"command":"reload","path":"/etc"}"#, message: "path: unknown field for command reload")
    }

    func testBlockWithoutEntry() {
        assertRejected(#"{"version":1,"command":"block"}"#, message: "entry: missing")
    }

    func testBlockWithBadEntry() {
        assertRejected(#"{"version":1,"command":"block","entry":{"port":0}}"#,
                       message: "entry.port: 0 is not a whole number from 1 to 65535")
        assertRejected(#"{"version":1,"command":"block","entry":{"port":"31002"}}"#, message: "entry.port: expected a number")
        assertRejected(#"{"version":1,"command":"block","entry":31002}"#, message: "entry: expected an object, found a number")
        assertRejected(#"{"version":1,"command":"block","entry":{"port":1,"colour":"red"}}"#, message: "entry.colour: unknown field")
        // several problems are all named
        guard let error = requestError(Array(#"{"version":1,"command":"block","entry":{"port":0,"protocol":"icmp","allowFrom":["10.0.0.1/8"]}}"#.utf8)) else { return }
        XCTAssertEqual(error.code, .invalidRequest)
        XCTAssertTrue(error.message.contains("entry.port:"), error.message)
        XCTAssertTrue(error.message.contains("entry.protocol:"), error.message)
        XCTAssertTrue(error.message.contains("entry.allowFrom[0]: '10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?"), error.message)
    }

    func testUnblockWithBadPortOrProtocol() {
        // The same port rules and messages as a deny-list entry's, saying what was found.
        assertRejected(#"{"version":1,"command":"unblock","port":0}"#, message: "port: 0 is not a whole number from 1 to 65535")
        assertRejected(#"{"version":1,"command":"unblock","port":65536}"#, message: "port: 65536 is not a whole number")
        assertRejected(#"{"version":1,"command":"unblock","port":-5}"#, message: "port: -5 is not a whole number")
        assertRejected(#"{"version":1,"command":"unblock","port":1.5}"#, message: "port: 1.5 is not a whole number")
        assertRejected(#"{"version":1,"command":"explain","port":80.0}"#, message: "port: 80.0 must be written as a plain integer (80)")
        assertRejected(#"{"version":1,"command":"unblock","port":"80"}"#, message: "port: expected a number from 1 to 65535, found a string (\"80\"); write it without quotes")
        assertRejected(#"{"version":1,"command":"unblock"}"#, message: "port: missing (a number from 1 to 65535)")
        assertRejected(#"{"version":1,"command":"unblock","port":80,"protocol":"icmp"}"#, message: "protocol: expected \"tcp\", \"udp\" or \"sctp\", found \"icmp\"")
        assertRejected(#"{"version":1,"command":"unblock","port":80,"protocol":null}"#, message: "protocol: expected")
    }

    func testMessageSizeLimit() {
        let limit = ControlProtocol.maximumMessageBytes
        XCTAssertEqual(limit, 65536)
        let request = Array(ControlRequest.list.encoded().utf8)
        // Exactly at the limit is still read (trailing whitespace is allowed).
        let atLimit = request + [UInt8](repeating: 0x20, count: limit - request.count)
        XCTAssertEqual(atLimit.count, limit)
        XCTAssertEqual(try? ControlRequest.decode(atLimit), .list)
        // One byte more is refused before parsing.
        let over = atLimit + [0x20]
        guard let error = requestError(over) else { return }
        XCTAssertEqual(error.code, .messageTooLarge)
        XCTAssertEqual(error.message, "request is 65537 bytes; at most 65536")
        // Even garbage gets the size error, not a parse error.
        XCTAssertEqual(requestError([UInt8](repeating: 0x7B, count: limit * 2))?.code, .messageTooLarge)
        // A large entry that is really too long.
        let hugeReason = String(repeating: "x", count: limit)
        let big = #"{"version":1,"command":"block","entry":{"port":1,"reason":"\#(hugeReason)"}}"#
        XCTAssertEqual(requestError(Array(big.utf8))?.code, .messageTooLarge)
    }
}

final class ControlResponseTests: XCTestCase {
    private func roundTrip(_ response: ControlResponse, file: StaticString = #filePath, line: UInt = #line) -> ControlResponse? {
        do {
            return try ControlResponse.decode(Array(response.encoded().utf8))
        } catch {
            XCTFail("\(response.encoded()) should decode: \(error.message)", file: file, line: line)
            return nil
        }
    }

    private func responseError(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> NodeGuardError? {
        let error = capturedError { () throws(NodeGuardError) -> ControlResponse in try ControlResponse.decode(Array(text.utf8)) }
        if error == nil { XCTFail("\(text) should be rejected", file: file, line: line) }
        return error
    }

    func testResponseThatIsNotAnObject() {
        XCTAssertEqual(responseError("[]")?.message, "the daemon's response is not a JSON object")
        XCTAssertEqual(responseError("42")?.code, .invalidRequest)
    }

    func testSuccessRoundTrips() {
        let results: [JSONValue] = [
            .null,
            .object([:]),
            .object(["blocked": .array([DenyListCodec.encodeEntry(Fixtures.exampleEntries[2])]), "count": .number("1")]),
            .array([.number("123456789012345678901234567890"), .string("é😀\n"), .bool(false)]),
            .string("ok"),
        ]
        for result in results {
            XCTAssertEqual(roundTrip(.success(result)), .success(result))
        }
    }

    func testFailureRoundTripsWithItsCode() {
        let codes: [NodeGuardError.Code] = [
            .invalidDenyList, .invalidRequest, .unsupportedVersion, .messageTooLarge, .notFound, .conflict, .configEntry,
            .netfilterUnavailable, .permissionDenied, .netfilterFailure, .lockTimeout, .ioFailure, .daemonUnreachable,
            .shuttingDown, .busy, .noAnswer, NodeGuardError.Code(rawValue: "some_future_code"),
        ]
        for code in codes {
            let error = NodeGuardError(code, "31002/tcp: \"quoted\" and\nmultiline é")
            guard case .failure(let back)? = roundTrip(.failure(error)) else {
                XCTFail("\(code) did not come back as a failure")
                continue
            }
            XCTAssertEqual(back.code, code)
            XCTAssertEqual(back.message, error.message)
            XCTAssertEqual(back, error)
        }
    }

    func testEncodedForm() {
        XCTAssertEqual(ControlResponse.success(.null).encoded(), #"{"ok":true,"result":null,"version":1}"#)
        XCTAssertEqual(ControlResponse.failure(NodeGuardError(.notFound, "31002/tcp is not blocked")).encoded(),
                       #"{"error":{"code":"not_found","message":"31002/tcp is not blocked"},"ok":false,"version":1}"#)
        XCTAssertFalse(ControlResponse.failure(NodeGuardError(.conflict, "a\nb")).encoded().contains("\n"))
    }

    func testLenientDecodingOfMissingParts() {
        XCTAssertEqual(try? ControlResponse.decode(Array(#"{"version":1,"ok":true}"#.utf8)), .success(.null))
        guard case .failure(let error)? = try? ControlResponse.decode(Array(#"{"version":1,"ok":false}"#.utf8)) else {
            return XCTFail("expected a failure")
        }
        XCTAssertEqual(error.code.rawValue, "unknown")
        XCTAssertEqual(error.message, "the daemon gave no message")
    }

    func testDecodingErrors() {
        let notJSON = responseError("{")
        XCTAssertEqual(notJSON?.code, .invalidRequest)
        XCTAssertTrue(notJSON?.message.contains("not valid JSON") ?? false)
        XCTAssertEqual(responseError(#"{"version":2,"ok":true}"#)?.code, .unsupportedVersion)
        XCTAssertEqual(responseError(#"{"ok":true}"#)?.code, .unsupportedVersion)
        XCTAssertEqual(responseError(#"{"version":1}"#)?.code, .invalidRequest)
        XCTAssertEqual(responseError(#"{"version":1,"ok":"yes"}"#)?.message, #"the daemon's response has no "ok" field"#)
    }

    func testProtocolConstants() {
        XCTAssertEqual(ControlProtocol.version, 1)
        XCTAssertEqual(ControlProtocol.defaultSocketPath, "/run/nodeguard/nodeguard.sock")
    }
}
