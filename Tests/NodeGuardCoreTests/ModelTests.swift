import XCTest
@testable import NodeGuardControl
@testable import NodeGuardCore

final class CIDRTests: XCTestCase {
    private func parseError(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> NodeGuardError? {
        let error = capturedError { () throws(NodeGuardError) -> CIDR in try CIDR(parsing: text) }
        if error == nil { XCTFail("'\(text)' should be rejected", file: file, line: line) }
        XCTAssertEqual(error?.code, .invalidDenyList, file: file, line: line)
        return error
    }

    func testIPv4Networks() throws {
        let net = try CIDR(parsing: "198.18.0.0/24")
        XCTAssertEqual(net.family, .ipv4)
        XCTAssertEqual(net.address, [198, 18, 0, 0])
        XCTAssertEqual(net.prefixLength, 24)
        XCTAssertEqual(net.description, "198.18.0.0/24")
        XCTAssertEqual(net, Fixtures.v4Net)

        XCTAssertEqual(try CIDR(parsing: "0.0.0.0/0").description, "0.0.0.0/0")
        XCTAssertEqual(try CIDR(parsing: "10.0.0.0/8").address, [10, 0, 0, 0])
        XCTAssertEqual(try CIDR(parsing: "172.16.0.0/12").prefixLength, 12)
        XCTAssertEqual(try CIDR(parsing: "192.168.1.128/25").description, "192.168.1.128/25")
        XCTAssertEqual(try CIDR(parsing: "255.255.255.255/32").address, [255, 255, 255, 255])
    }

    func testIPv6Networks() throws {
        let net = try CIDR(parsing: "2001:db8:1::/64")
        XCTAssertEqual(net.family, .ipv6)
        XCTAssertEqual(net.address.count, 16)
        XCTAssertEqual(net.prefixLength, 64)
        XCTAssertEqual(net.description, "2001:db8:1::/64")
        XCTAssertEqual(net, Fixtures.v6Net)

        XCTAssertEqual(try CIDR(parsing: "::/0").description, "::/0")
        XCTAssertEqual(try CIDR(parsing: "2001:0DB8:0000:0000:0000:0000:0000:0000/32").description, "2001:db8::/32")
        XCTAssertEqual(try CIDR(parsing: "fd00::/8").description, "fd00::/8")
        XCTAssertEqual(try CIDR(parsing: "2001:db8::8000/113").description, "2001:db8::8000/113")
        XCTAssertEqual(try CIDR(parsing: "::ffff:10.0.0.0/104").family, .ipv6)
    }

    func testBareAddressIsAHost() throws {
        let v4 = try CIDR(parsing: "10.1.2.3")
        XCTAssertEqual(v4.prefixLength, 32)
        XCTAssertEqual(v4.description, "10.1.2.3/32")
        XCTAssertEqual(v4, try CIDR(parsing: "10.1.2.3/32"))
        let v6 = try CIDR(parsing: "2001:db8::1")
        XCTAssertEqual(v6.prefixLength, 128)
        XCTAssertEqual(v6.description, "2001:db8::1/128")
        XCTAssertEqual(v6, try CIDR(parsing: "2001:db8::1/128"))
    }

    func testPrefixOutOfRange() {
        XCTAssertEqual(parseError("10.0.0.0/33")?.message, "prefix length '33' is not from 0 to 32")
        XCTAssertEqual(parseError("10.0.0.0/-1")?.message, "prefix length '-1' is not from 0 to 32")
        XCTAssertEqual(parseError("2001:db8::/129")?.message, "prefix length '129' is not from 0 to 128")
        XCTAssertEqual(parseError("10.0.0.0/")?.message, "prefix length '' is not from 0 to 32")
        XCTAssertEqual(parseError("10.0.0.0/x")?.message, "prefix length 'x' is not from 0 to 32")
        XCTAssertEqual(parseError("10.0.0.0/+8")?.message, "prefix length '+8' is not from 0 to 32")
        // /33 is fine for IPv6 but not IPv4
        XCTAssertEqual(try? CIDR(parsing: "2001:db8::/33").prefixLength, 33)
    }

    func testNotAnAddress() {
        for text in ["", "/24", "10.0.0", "10.0.0.256", "10.0.0.0.0", "a.b.c.d", "2001:db8:::1", "gggg::", "10.0.0.0 /8", " 10.0.0.0"] {
            XCTAssertNotNil(parseError(text), text)
        }
        XCTAssertEqual(parseError("10.0.0.0/8/8")?.message, "'10.0.0.0/8/8' is not an address or ADDRESS/PREFIX")
        XCTAssertEqual(parseError("example.com")?.message, "'example.com' is not an IPv4 or IPv6 address")
    }

    func testHostBitsSetIsAnErrorThatSuggestsTheNetwork() {
        XCTAssertEqual(parseError("198.18.0.5/24")?.message, "'198.18.0.5/24' has host bits set; did you mean 198.18.0.0/24?")
        XCTAssertEqual(parseError("10.0.0.1/0")?.message, "'10.0.0.1/0' has host bits set; did you mean 0.0.0.0/0?")
        XCTAssertEqual(parseError("192.168.1.129/25")?.message, "'192.168.1.129/25' has host bits set; did you mean 192.168.1.128/25?")
        XCTAssertEqual(parseError("2001:db8:1::1/64")?.message, "'2001:db8:1::1/64' has host bits set; did you mean 2001:db8:1::/64?")
        XCTAssertEqual(parseError("2001:db8::c000/113")?.message, "'2001:db8::c000/113' has host bits set; did you mean 2001:db8::8000/113?")
    }

    func testMaskingEveryPrefixLength() {
        let ones = [UInt8](repeating: 0xFF, count: 16)
        for prefix in 0...128 {
            let masked = CIDR.masked(ones, prefixLength: prefix)
            let setBits = masked.reduce(0) { $0 + $1.nonzeroBitCount }
            XCTAssertEqual(setBits, prefix, "prefix \(prefix)")
            // the set bits are the leading ones
            var remaining = prefix
            for byte in masked {
                let expected = remaining >= 8 ? UInt8(0xFF) : UInt8(truncatingIfNeeded: 0xFF << (8 - remaining))
                XCTAssertEqual(byte, remaining == 0 ? 0 : expected, "prefix \(prefix)")
                remaining = max(0, remaining - 8)
            }
        }
    }

    func testDescriptionParsesBackForRandomNetworks() throws {
        var rng = SplitMix64(seed: 0xC1D2)
        for _ in 0..<300 {
            let family: AddressFamily = Bool.random(using: &rng) ? .ipv4 : .ipv6
            let bytes = (0..<family.addressByteCount).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let prefix = Int.random(in: 0...family.maximumPrefixLength, using: &rng)
            let net = CIDR(family: family, address: CIDR.masked(bytes, prefixLength: prefix), prefixLength: prefix)
            XCTAssertEqual(try CIDR(parsing: net.description), net, net.description)
        }
    }
}

final class PortKeyTests: XCTestCase {
    private func parseError(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> NodeGuardError? {
        let error = capturedError { () throws(NodeGuardError) -> PortKey in try PortKey(parsing: text) }
        if error == nil { XCTFail("'\(text)' should be rejected", file: file, line: line) }
        XCTAssertEqual(error?.code, .invalidRequest, file: file, line: line)
        return error
    }

    func testParsesPortAndOptionalProtocol() throws {
        XCTAssertEqual(try PortKey(parsing: "31002"), PortKey(port: 31002, transport: .tcp))
        XCTAssertEqual(try PortKey(parsing: "31002/udp"), PortKey(port: 31002, transport: .udp))
        XCTAssertEqual(try PortKey(parsing: "31002/tcp"), PortKey(port: 31002, transport: .tcp))
        XCTAssertEqual(try PortKey(parsing: "1/sctp"), PortKey(port: 1, transport: .sctp))
        XCTAssertEqual(try PortKey(parsing: "65535"), PortKey(port: 65535, transport: .tcp))
        XCTAssertEqual(try PortKey(parsing: "31002/UDP"), PortKey(port: 31002, transport: .udp), "protocol is case-insensitive")
    }

    func testRejectsBadInput() {
        XCTAssertEqual(parseError("0")?.message, "port '0' is not a number from 1 to 65535")
        XCTAssertEqual(parseError("70000")?.message, "port '70000' is not a number from 1 to 65535")
        XCTAssertEqual(parseError("65536")?.message, "port '65536' is not a number from 1 to 65535")
        XCTAssertEqual(parseError("-1")?.message, "port '-1' is not a number from 1 to 65535")
        XCTAssertEqual(parseError("31002/icmp")?.message, "protocol 'icmp' is not tcp, udp or sctp")
        XCTAssertEqual(parseError("a/b/c")?.message, "'a/b/c' is not PORT or PORT/PROTOCOL")
        XCTAssertEqual(parseError("31002/tcp/x")?.message, "'31002/tcp/x' is not PORT or PORT/PROTOCOL")
        XCTAssertEqual(parseError("")?.message, "port '' is not a number from 1 to 65535")
        XCTAssertEqual(parseError("31002/")?.message, "protocol '' is not tcp, udp or sctp")
        XCTAssertEqual(parseError("/tcp")?.message, "port '' is not a number from 1 to 65535")
        XCTAssertEqual(parseError("http")?.message, "port 'http' is not a number from 1 to 65535")
        XCTAssertEqual(parseError("+80")?.message, "port '+80' is not a number from 1 to 65535")
        XCTAssertNotNil(parseError("80.5"))
        XCTAssertNotNil(parseError(" 80"))
    }

    func testDescriptionAndOrdering() {
        XCTAssertEqual(PortKey(port: 31002, transport: .tcp).description, "31002/tcp")
        XCTAssertEqual(PortKey(port: 53, transport: .udp).description, "53/udp")
        let keys = [
            PortKey(port: 9, transport: .sctp), PortKey(port: 80, transport: .udp), PortKey(port: 443, transport: .tcp),
            PortKey(port: 22, transport: .tcp), PortKey(port: 53, transport: .udp),
        ]
        XCTAssertEqual(keys.sorted().map(\.description), ["22/tcp", "443/tcp", "53/udp", "80/udp", "9/sctp"])
        for key in keys { XCTAssertEqual(try PortKey(parsing: key.description), key) }
    }

    func testProtocolAndFamilyHelpers() {
        XCTAssertEqual(TransportProtocol.tcp.ipProtocolNumber, 6)
        XCTAssertEqual(TransportProtocol.udp.ipProtocolNumber, 17)
        XCTAssertEqual(TransportProtocol.sctp.ipProtocolNumber, 132)
        XCTAssertTrue(TransportProtocol.tcp < .udp)
        XCTAssertTrue(TransportProtocol.udp < .sctp)
        XCTAssertFalse(TransportProtocol.sctp < .tcp)
        XCTAssertEqual(AddressFamily.ipv4.addressByteCount, 4)
        XCTAssertEqual(AddressFamily.ipv6.addressByteCount, 16)
        XCTAssertEqual(AddressFamily.ipv4.maximumPrefixLength, 32)
        XCTAssertEqual(AddressFamily.ipv6.maximumPrefixLength, 128)
        XCTAssertTrue(FamilySelection.both.includes(.ipv4))
        XCTAssertTrue(FamilySelection.both.includes(.ipv6))
        XCTAssertTrue(FamilySelection.ipv4.includes(.ipv4))
        XCTAssertFalse(FamilySelection.ipv4.includes(.ipv6))
        XCTAssertFalse(FamilySelection.ipv6.includes(.ipv4))
        XCTAssertTrue(FamilySelection.ipv6.includes(.ipv6))
        XCTAssertEqual(BlockEntry(port: 5, transport: .udp).key, PortKey(port: 5, transport: .udp))
    }
}

final class DurationParsingTests: XCTestCase {
    private func parseError(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> NodeGuardError? {
        let error = capturedError { () throws(NodeGuardError) -> Duration in try Duration(parsing: text) }
        if error == nil { XCTFail("'\(text)' should be rejected", file: file, line: line) }
        XCTAssertEqual(error?.code, .invalidRequest, file: file, line: line)
        return error
    }

    func testParsesUnits() throws {
        XCTAssertEqual(try Duration(parsing: "250ms"), .milliseconds(250))
        XCTAssertEqual(try Duration(parsing: "1s"), .seconds(1))
        XCTAssertEqual(try Duration(parsing: "1.5s"), .milliseconds(1500))
        XCTAssertEqual(try Duration(parsing: "2m"), .seconds(120))
        XCTAssertEqual(try Duration(parsing: "3"), .seconds(3), "a bare number is seconds")
        XCTAssertEqual(try Duration(parsing: "1h"), .seconds(3600))
        XCTAssertEqual(try Duration(parsing: "0.5m"), .seconds(30))
        XCTAssertEqual(try Duration(parsing: "1ms"), .milliseconds(1))
        XCTAssertEqual(try Duration(parsing: "0.25"), .milliseconds(250))
    }

    func testRejectsBadDurations() {
        for text in ["", "0", "-1s", "abc", "0s", "0ms", "-5", "s", "ms", "1x", "1 s", "inf", "nan", "1sm", "0x10s", "+1s", "1e3s"] {
            let error = parseError(text)
            XCTAssertEqual(error?.message, "'\(text)' is not a positive duration such as 500ms, 1s or 2m", text)
        }
    }

    func testRejectsHugeDurationsInsteadOfTrapping() {
        for text in ["1e16", "9300000000000000", "86401s", "25h"] {
            XCTAssertNotNil(parseError(text), text)
        }
        XCTAssertEqual(parseError("25h")?.message, "'25h' is longer than a day")
    }

    func testRejectsDurationsShorterThanAMillisecond() {
        XCTAssertEqual(parseError("0.4ms")?.message, "'0.4ms' is shorter than 1ms")
        XCTAssertEqual(parseError("0.0001s")?.message, "'0.0001s' is shorter than 1ms")
    }
}
