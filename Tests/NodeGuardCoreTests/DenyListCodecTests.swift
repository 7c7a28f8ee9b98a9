import Foundation
import XCTest
@testable import NodeGuardControl
@testable import NodeGuardCore

final class DenyListCodecTests: XCTestCase {
    private func decoded(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> DenyList? {
        do {
            return try DenyListCodec.decode(Array(text.utf8), source: "test.json")
        } catch {
            XCTFail("should decode: \(error.message)", file: file, line: line)
            return nil
        }
    }

    /// A document with these entries (as JSON text).
    private func document(_ entries: String...) -> String {
        #"{"version":1,"blocked":["# + entries.joined(separator: ",") + "]}"
    }

    // MARK: valid lists

    func testIssueExampleDecodesToTheExpectedEntries() {
        guard let list = decoded(Fixtures.exampleJSON) else { return }
        XCTAssertEqual(list.entries, Fixtures.exampleEntries)
        XCTAssertEqual(list.entries.map(\.key.description), ["31002/tcp", "31900/udp", "32000/tcp"])
        XCTAssertEqual(list.entries[2].allowFrom.map(\.description), ["198.18.0.0/24", "2001:db8:1::/64"])
    }

    func testShippedConfigFileDecodesLikeTheExample() throws {
        let url = Fixtures.packageRoot.appendingPathComponent("config/denylist.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("config/denylist.json is not present")
        }
        let bytes = Array(try Data(contentsOf: url))
        let list = try DenyListCodec.decode(bytes, source: url.path)
        XCTAssertEqual(list.entries, Fixtures.exampleEntries)
    }

    func testDefaultsAreTCPAndBothFamilies() {
        guard let list = decoded(document(#"{"port":8080}"#)) else { return }
        XCTAssertEqual(list.entries, [BlockEntry(port: 8080)])
        XCTAssertEqual(list.entries.first?.transport, .tcp)
        XCTAssertEqual(list.entries.first?.family, .both)
        XCTAssertNil(list.entries.first?.reason)
        XCTAssertEqual(list.entries.first?.allowFrom, [])
    }

    func testEmptyListAndEdgePorts() {
        XCTAssertEqual(decoded(#"{"version":1,"blocked":[]}"#)?.entries, [])
        XCTAssertEqual(decoded(#"{"blocked":[],"version":1}"#)?.entries, [])
        XCTAssertEqual(decoded(document(#"{"port":1}"#, #"{"port":65535}"#))?.entries.map(\.port), [1, 65535])
    }

    func testEveryProtocolAndFamilyValue() {
        let list = decoded(document(
            #"{"port":1,"protocol":"tcp","family":"ipv4"}"#,
            #"{"port":2,"protocol":"udp","family":"ipv6"}"#,
            #"{"port":3,"protocol":"sctp","family":"both"}"#))
        XCTAssertEqual(list?.entries, [
            BlockEntry(port: 1, transport: .tcp, family: .ipv4),
            BlockEntry(port: 2, transport: .udp, family: .ipv6),
            BlockEntry(port: 3, transport: .sctp, family: .both),
        ])
    }

    func testSamePortWithDifferentProtocolsIsAllowed() {
        let list = decoded(document(#"{"port":31002}"#, #"{"port":31002,"protocol":"udp"}"#, #"{"port":31002,"protocol":"sctp"}"#))
        XCTAssertEqual(list?.entries.map(\.key), [
            PortKey(port: 31002, transport: .tcp), PortKey(port: 31002, transport: .udp), PortKey(port: 31002, transport: .sctp),
        ])
    }

    func testReasonLimitsAndNull() {
        let exact = String(repeating: "é", count: 128)   // 256 bytes
        XCTAssertEqual(decoded(document(#"{"port":1,"reason":"\#(exact)"}"#))?.entries.first?.reason, exact)
        XCTAssertEqual(decoded(document(#"{"port":1,"reason":null}"#))?.entries.first?.reason, nil)
        XCTAssertEqual(decoded(document(#"{"port":1,"reason":""}"#))?.entries.first?.reason, "")
        XCTAssertEqual(decoded(document(#"{"port":1,"reason":"ünïcödé 😀 \"quoted\""}"#))?.entries.first?.reason,
                       "ünïcödé 😀 \"quoted\"")
    }

    func testCIDRsAreAcceptedInAnyValidSpelling() {
        let list = decoded(document(#"{"port":1,"allowFrom":["10.0.0.1","2001:DB8:0:0::/64","::/0","0.0.0.0/0","fe80::1"]}"#))
        XCTAssertEqual(list?.entries.first?.allowFrom.map(\.description),
                       ["10.0.0.1/32", "2001:db8::/64", "::/0", "0.0.0.0/0", "fe80::1/128"])
    }

    // MARK: invalid lists: each names path and problem

    func testNotJSON() {
        assertInvalidDenyList("{\"version\":1,", contains: ["not valid JSON", "line 1"])
        assertInvalidDenyList("", contains: ["not valid JSON"])
        assertInvalidDenyList(#"{"version":1,"version":1,"blocked":[]}"#, contains: ["not valid JSON", #"duplicate key "version""#])
    }

    func testTopLevelNotAnObject() {
        assertInvalidDenyList("[]", contains: ["expected an object", "found an array"])
        assertInvalidDenyList("1", contains: ["expected an object", "found a number"])
        assertInvalidDenyList("null", contains: ["found null"])
    }

    func testMissingVersion() {
        assertInvalidDenyList(#"{"blocked":[]}"#, contains: ["test.json: version: missing"])
    }

    func testUnknownVersion() {
        assertInvalidDenyList(#"{"version":2,"blocked":[]}"#, contains: ["version: unknown version 2", "reads version 1"])
        assertInvalidDenyList(#"{"version":0,"blocked":[]}"#, contains: ["version: unknown version 0"])
        assertInvalidDenyList(#"{"version":1.0,"blocked":[]}"#, contains: ["version: unknown version 1.0"])
        assertInvalidDenyList(#"{"version":"1","blocked":[]}"#, contains: ["version: expected a number, found a string"])
    }

    func testMissingOrWrongBlocked() {
        assertInvalidDenyList(#"{"version":1}"#, contains: ["blocked: missing"])
        assertInvalidDenyList(#"{"version":1,"blocked":{}}"#, contains: ["blocked: expected an array, found an object"])
        assertInvalidDenyList(#"{"version":1,"blocked":null}"#, contains: ["blocked: expected an array, found null"])
    }

    func testUnknownTopLevelField() {
        assertInvalidDenyList(#"{"version":1,"blocked":[],"blocklist":[]}"#, contains: ["test.json: blocklist: unknown field"])
    }

    func testEntryNotAnObject() {
        assertInvalidDenyList(document("31002"), contains: ["blocked[0]: expected an object, found a number"])
    }

    func testUnknownEntryField() {
        assertInvalidDenyList(document(#"{"port":1}"#, #"{"port":2,"colour":"red"}"#),
                              contains: ["blocked[1].colour: unknown field", "allowFrom, family, port, protocol, reason"])
    }

    func testBadPorts() {
        assertInvalidDenyList(document(#"{"port":0}"#), contains: ["blocked[0].port: 0 is not a whole number from 1 to 65535"])
        assertInvalidDenyList(document(#"{"port":65536}"#), contains: ["blocked[0].port: 65536 is not a whole number"])
        assertInvalidDenyList(document(#"{"port":-1}"#), contains: ["blocked[0].port: -1 is not a whole number"])
        assertInvalidDenyList(document(#"{"port":1.5}"#), contains: ["blocked[0].port: 1.5 is not a whole number"])
        assertInvalidDenyList(document(#"{"port":80.0}"#), contains: ["blocked[0].port: 80.0 must be written as a plain integer (80)"])
        assertInvalidDenyList(document(#"{"port":8e1}"#), contains: ["blocked[0].port: 8e1 must be written as a plain integer (80)"])
        assertInvalidDenyList(document(#"{"port":99999999999999999999999}"#), contains: ["blocked[0].port: 99999999999999999999999 is not"])
        assertInvalidDenyList(document(#"{"port":"80"}"#), contains: ["blocked[0].port: expected a number from 1 to 65535, found a string"])
        assertInvalidDenyList(document(#"{"port":null}"#), contains: ["blocked[0].port: expected a number", "found null"])
        assertInvalidDenyList(document(#"{"protocol":"tcp"}"#), contains: ["blocked[0].port: missing"])
    }

    func testBadProtocol() {
        assertInvalidDenyList(document(#"{"port":1,"protocol":"icmp"}"#),
                              contains: [#"blocked[0].protocol: expected "tcp", "udp" or "sctp", found "icmp""#])
        assertInvalidDenyList(document(#"{"port":1,"protocol":"TCP"}"#), contains: [#"blocked[0].protocol:"#, #"found "TCP""#])
        assertInvalidDenyList(document(#"{"port":1,"protocol":6}"#), contains: ["blocked[0].protocol:", "found a number"])
    }

    func testBadFamily() {
        assertInvalidDenyList(document(#"{"port":1,"family":"inet"}"#),
                              contains: [#"blocked[0].family: expected "ipv4", "ipv6" or "both", found "inet""#])
        assertInvalidDenyList(document(#"{"port":1,"family":["ipv4"]}"#), contains: ["blocked[0].family:", "found an array"])
    }

    func testReasonTooLong() {
        let long = String(repeating: "é", count: 128) + "x"   // 257 bytes, 129 characters
        assertInvalidDenyList(document(#"{"port":1,"reason":"\#(long)"}"#),
                              contains: ["blocked[0].reason: 257 bytes long; at most 256"])
        assertInvalidDenyList(document(#"{"port":1,"reason":"\#(String(repeating: "a", count: 1000))"}"#),
                              contains: ["blocked[0].reason: 1000 bytes long"])
    }

    func testReasonWithUnicodeLineBreaksAndC1Controls() {
        for escape in [#"\u2028"#, #"\u2029"#, #"\u0085"#, #"\u009b"#, #"\u200e"#] {
            assertInvalidDenyList(document(#"{"port":1,"reason":"line\#(escape)two"}"#),
                                  contains: ["blocked[0].reason: contains a control"])
        }
        XCTAssertEqual(decoded(document(#"{"port":1,"reason":"team \ud83d\udc69\u200d\ud83d\udcbb on call"}"#))?.entries.first?.reason,
                       "team 👩‍💻 on call", "an emoji joined with ZWJ is printable text")
    }

    func testReasonWithControlCharacters() {
        for escape in [#"\n"#, #"\t"#, #"\r"#, #"\u0000"#, #"\u007f"#, #"\u001b"#] {
            assertInvalidDenyList(document(#"{"port":1,"reason":"line\#(escape)two"}"#),
                                  contains: ["blocked[0].reason: contains a control"])
        }
        assertInvalidDenyList(document(#"{"port":1,"reason":42}"#), contains: ["blocked[0].reason: expected a string, found a number"])
    }

    func testAllowFromNotAnArray() {
        assertInvalidDenyList(document(#"{"port":1,"allowFrom":"10.0.0.0/8"}"#),
                              contains: ["blocked[0].allowFrom: expected an array of CIDR strings, found a string"])
        assertInvalidDenyList(document(#"{"port":1,"allowFrom":[10]}"#),
                              contains: ["blocked[0].allowFrom[0]: expected a CIDR string, found a number"])
    }

    func testBadCIDR() {
        assertInvalidDenyList(document(#"{"port":1,"allowFrom":["10.0.0.0/8","not-an-ip"]}"#),
                              contains: ["blocked[0].allowFrom[1]: 'not-an-ip' is not an IPv4 or IPv6 address"])
        assertInvalidDenyList(document(#"{"port":1,"allowFrom":["10.0.0.0/33"]}"#),
                              contains: ["blocked[0].allowFrom[0]: prefix length '33' is not from 0 to 32"])
        assertInvalidDenyList(document(#"{"port":1,"allowFrom":["2001:db8::/129"]}"#),
                              contains: ["blocked[0].allowFrom[0]: prefix length '129' is not from 0 to 128"])
    }

    func testCIDRWithHostBitsSuggestsTheNetwork() {
        assertInvalidDenyList(document(#"{"port":1,"allowFrom":["198.18.0.5/24"]}"#),
                              contains: ["blocked[0].allowFrom[0]: '198.18.0.5/24' has host bits set; did you mean 198.18.0.0/24?"])
        assertInvalidDenyList(document(#"{"port":1,"allowFrom":["2001:db8:1::1/64"]}"#),
                              contains: ["did you mean 2001:db8:1::/64?"])
    }

    func testDuplicateCIDR() {
        assertInvalidDenyList(document(#"{"port":1,"allowFrom":["198.18.0.0/24","10.0.0.0/8","198.18.0.0/24"]}"#),
                              contains: ["blocked[0].allowFrom[2]: 198.18.0.0/24 is listed twice"])
        // Different spellings of the same network are the same network.
        assertInvalidDenyList(document(#"{"port":1,"allowFrom":["2001:db8:1::/64","2001:0DB8:0001:0000::/64"]}"#),
                              contains: ["blocked[0].allowFrom[1]: 2001:db8:1::/64 is listed twice"])
    }

    func testSamePortAndProtocolTwiceNamesTheEarlierIndex() {
        assertInvalidDenyList(document(#"{"port":80}"#, #"{"port":31002}"#, #"{"port":81}"#, #"{"port":31002,"protocol":"tcp","family":"ipv6"}"#),
                              contains: ["blocked[3]: 31002/tcp is already listed at blocked[1]"])
        assertInvalidDenyList(document(#"{"port":53,"protocol":"udp"}"#, #"{"port":53,"protocol":"udp"}"#),
                              contains: ["blocked[1]: 53/udp is already listed at blocked[0]"])
    }

    func testSeveralProblemsAreReportedTogether() {
        let text = #"{"version":2,"extra":true,"blocked":[{"port":0},{"port":80,"protocol":"icmp","colour":"red"},{"port":81},{"port":81}]}"#
        guard let error = denyListError(text) else { return }
        XCTAssertEqual(error.code, .invalidDenyList)
        let lines = error.message.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "test.json: 6 problems:")
        XCTAssertEqual(Array(lines.dropFirst()), [
            "  extra: unknown field (expected \"version\" and \"blocked\")",
            "  version: unknown version 2 (this NodeGuard reads version 1)",
            "  blocked[0].port: 0 is not a whole number from 1 to 65535",
            "  blocked[1].colour: unknown field (expected one of allowFrom, family, port, protocol, reason)",
            "  blocked[1].protocol: expected \"tcp\", \"udp\" or \"sctp\", found \"icmp\"",
            "  blocked[3]: 81/tcp is already listed at blocked[2]",
        ])
    }

    func testSingleProblemMessageFormat() {
        guard let error = denyListError(document(#"{"port":0}"#), source: "/etc/nodeguard/denylist.json") else { return }
        XCTAssertEqual(error.message, "/etc/nodeguard/denylist.json: blocked[0].port: 0 is not a whole number from 1 to 65535")
    }

    func testProblemsWithinOneEntryAreAllReported() {
        let text = document(#"{"port":"x","protocol":"icmp","family":"v4","reason":"a\nb","allowFrom":["1.2.3.4/40","::1/200"]}"#)
        assertInvalidDenyList(text, contains: [
            "6 problems", "blocked[0].port:", "blocked[0].protocol:", "blocked[0].family:", "blocked[0].reason:",
            "blocked[0].allowFrom[0]:", "blocked[0].allowFrom[1]:",
        ])
    }

    // MARK: writing

    func testEncodeDecodeRoundTrip() throws {
        let lists: [DenyList] = [
            DenyList(),
            DenyList(entries: Fixtures.exampleEntries),
            DenyList(entries: [
                BlockEntry(port: 1, transport: .sctp, family: .ipv6, reason: "", allowFrom: [cidr("::/0")]),
                BlockEntry(port: 65535, transport: .udp, family: .both,
                           reason: "quote \" backslash \\ unicode é😀 \(String(repeating: "x", count: 200))",
                           allowFrom: [cidr("10.0.0.0/8"), cidr("10.1.0.0/16"), cidr("fe80::1")]),
                BlockEntry(port: 65535, transport: .tcp),
            ]),
        ]
        for list in lists {
            for compact in [false, true] {
                let text = DenyListCodec.encode(list, compact: compact)
                XCTAssertTrue(text.hasSuffix("}\n"))
                let back = try DenyListCodec.decode(Array(text.utf8), source: "roundtrip")
                XCTAssertEqual(back, list)
                XCTAssertEqual(DenyListCodec.encode(back, compact: compact), text, "encoding is stable")
            }
            // Compact is what the serializer writes, one entry to a line.
            XCTAssertEqual(DenyListCodec.encode(list, compact: true).replacingOccurrences(of: "\n", with: ""),
                           JSON.serialize(.object(["version": .number("1"), "blocked": .array(list.entries.map(DenyListCodec.encodeEntry))])))
        }
    }

    func testEncodedFormIsReadable() {
        let text = DenyListCodec.encode(DenyList(entries: [BlockEntry(port: 31002, reason: "why")]))
        XCTAssertEqual(text, """
        {
          "blocked": [
            {
              "family": "both",
              "port": 31002,
              "protocol": "tcp",
              "reason": "why"
            }
          ],
          "version": 1
        }

        """)
    }

    func testEncodeEntryOmitsEmptyOptionals() {
        XCTAssertEqual(DenyListCodec.encodeEntry(BlockEntry(port: 9)), .object([
            "port": .number("9"), "protocol": .string("tcp"), "family": .string("both"),
        ]))
        XCTAssertEqual(DenyListCodec.encodeEntry(BlockEntry(port: 9, allowFrom: [Fixtures.v4Net]))["allowFrom"],
                       .array([.string("198.18.0.0/24")]))
    }

    func testDecodeEntryAlone() {
        var problems: [DenyListProblem] = []
        let entry = DenyListCodec.decodeEntry(.object(["port": .number("53"), "protocol": .string("udp")]),
                                              path: "entry", problems: &problems)
        XCTAssertEqual(entry, BlockEntry(port: 53, transport: .udp))
        XCTAssertEqual(problems, [])

        let bad = DenyListCodec.decodeEntry(.object(["port": .number("0")]), path: "entry", problems: &problems)
        XCTAssertNil(bad)
        XCTAssertEqual(problems.map(\.description), ["entry.port: 0 is not a whole number from 1 to 65535"])
        // earlier problems in the array do not make a later good entry fail
        let good = DenyListCodec.decodeEntry(.object(["port": .number("54")]), path: "e2", problems: &problems)
        XCTAssertEqual(good?.port, 54)
        XCTAssertEqual(problems.count, 1)
    }

    func testProblemDescription() {
        XCTAssertEqual(DenyListProblem(path: "", message: "m").description, "m")
        XCTAssertEqual(DenyListProblem(path: "a.b", message: "m").description, "a.b: m")
    }
}
