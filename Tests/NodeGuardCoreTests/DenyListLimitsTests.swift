import XCTest
@testable import NodeGuardCore

/// Issue 14: the limits that bound NodeGuard's work, sources of a family an
/// entry does not cover, and entries that block nothing.
final class DenyListLimitsTests: XCTestCase {
    /// `count` distinct IPv4 hosts, from `first` on.
    static func hosts(_ count: Int, from first: Int = 0) -> [String] {
        (first..<first + count).map { "10.\($0 >> 16).\(($0 >> 8) & 255).\($0 & 255)/32" }
    }

    static func entry(_ port: Int, protocol transport: String = "tcp", family: String = "both", sources: [String] = []) -> String {
        let list = sources.map { "\"\($0)\"" }.joined(separator: ",")
        return #"{"port":\#(port),"protocol":"\#(transport)","family":"\#(family)","allowFrom":[\#(list)]}"#
    }

    static func document(_ entries: [String]) -> String {
        #"{"version":1,"blocked":["# + entries.joined(separator: ",") + "]}"
    }

    private func decode(_ text: String) throws -> DenyList {
        try DenyListCodec.decode(Array(text.utf8), source: "test.json")
    }

    // MARK: the limits, at and one past each

    func testSourcesPerEntry() throws {
        let limit = DenyListLimits.sourcesPerEntry
        XCTAssertEqual(limit, 64)
        XCTAssertEqual(try decode(Self.document([Self.entry(31002, sources: Self.hosts(limit))])).entries.first?.allowFrom.count, limit)
        assertInvalidDenyList(Self.document([Self.entry(31001), Self.entry(31002, sources: Self.hosts(limit + 6))]), contains: [
            "test.json: blocked[1].allowFrom: 70 sources; at most 64 per entry (use wider CIDRs that cover several sources)",
        ])
    }

    func testEntriesInAList() throws {
        let limit = DenyListLimits.entries
        XCTAssertEqual(limit, 4096)
        XCTAssertEqual(try decode(Self.document((0..<limit).map { Self.entry(20000 + $0) })).entries.count, limit)
        assertInvalidDenyList(Self.document((0...limit).map { Self.entry(20000 + $0) }), contains: [
            "test.json: blocked: 4097 entries; at most 4096 in a list (remove entries that are no longer needed)",
        ])
    }

    func testSourcesAcrossAList() throws {
        let perEntry = DenyListLimits.sourcesPerEntry, entries = DenyListLimits.sources / perEntry
        XCTAssertEqual(DenyListLimits.sources, 2048)
        let full = (0..<entries).map { Self.entry(30000 + $0, sources: Self.hosts(perEntry, from: $0 * perEntry)) }
        XCTAssertEqual(try decode(Self.document(full)).entries.count, entries)
        assertInvalidDenyList(Self.document(full + [Self.entry(31000, sources: Self.hosts(1, from: 99_999))]), contains: [
            "test.json: blocked: 2049 allowFrom sources in all; at most 2048 in a list (use wider CIDRs that cover several sources)",
        ])
    }

    /// Issue 14's request: one entry with 4,073 sources, and the file of 105
    /// such entries, are refused by the codec that reads both.
    func testTheIssuesShapesAreRefused() {
        assertInvalidDenyList(Self.document([Self.entry(32000, sources: Self.hosts(4073))]),
                              contains: ["blocked[0].allowFrom: 4073 sources; at most 64 per entry"])
        let v6 = (0..<200).map { "2001:db8:\(String($0, radix: 16))::/48" }
        let text = Self.document((0..<105).map { Self.entry(30000 + $0, family: "ipv4", sources: v6) })
        assertInvalidDenyList(text, contains: [
            "blocked[0].allowFrom: 200 sources; at most 64 per entry",
            "blocked[0].allowFrom[0]: 2001:db8::/48 is an IPv6 source, but the entry covers ipv4 only",
        ])
    }

    /// A hostile file: 100,000 sources in one entry. Refused quickly (duplicates
    /// were found by a linear search per source: 5 billion comparisons here).
    func testAHundredThousandSourcesInOneEntryAreRefusedQuickly() {
        let sources = (0..<100_000).map { "\"10.\($0 >> 16).\(($0 >> 8) & 255).\($0 & 255)\"" }.joined(separator: ",")
        let text = #"{"version":1,"blocked":[{"port":1,"allowFrom":["# + sources + "]}]}"
        let clock = ContinuousClock()
        let start = clock.now
        assertInvalidDenyList(text, contains: ["test.json: blocked[0].allowFrom: 100000 sources; at most 64 per entry"])
        XCTAssertLessThan(clock.now - start, .seconds(10))
    }

    // MARK: sources of a family the entry does not cover

    func testASourceOfAFamilyTheEntryDoesNotCoverIsRefused() throws {
        assertInvalidDenyList(Self.document([Self.entry(31002, family: "ipv4", sources: ["10.0.0.0/8", "2001:db8::/64"])]), contains: [
            #"test.json: blocked[0].allowFrom[1]: 2001:db8::/64 is an IPv6 source, but the entry covers ipv4 only ("family": "ipv4"), so it would never be used; remove it, or set "family" to "both""#,
        ])
        assertInvalidDenyList(Self.document([Self.entry(31002, family: "ipv6", sources: ["198.18.0.0/24"])]), contains: [
            "blocked[0].allowFrom[0]: 198.18.0.0/24 is an IPv4 source, but the entry covers ipv6 only",
        ])
        // Each family's sources where the entry covers that family.
        let list = try decode(Self.document([
            Self.entry(1, family: "ipv4", sources: ["10.0.0.0/8"]), Self.entry(2, family: "ipv6", sources: ["fd00::/8"]),
            Self.entry(3, family: "both", sources: ["10.0.0.0/8", "fd00::/8"]),
        ]))
        XCTAssertEqual(list.entries.map(\.allowFrom.count), [1, 1, 2])
        // Requests decode through the same code.
        XCTAssertThrowsError(try ControlRequest.decode(Array(#"{"version":1,"command":"block","entry":{"port":1,"family":"ipv4","allowFrom":["::/0"]}}"#.utf8))) {
            XCTAssertTrue(($0 as? NodeGuardError)?.message.hasPrefix("entry.allowFrom[0]: ::/0 is an IPv6 source, but the entry covers ipv4 only") == true, "\($0)")
        }
    }

    // MARK: the effective list

    func testTheEffectiveListIsCheckedAsAWholeAndTheMessageSaysWhereEntriesComeFrom() throws {
        let file = (0..<4000).map { BlockEntry(port: UInt16(20000 + $0)) }
        let runtime = (0..<96).map { BlockEntry(port: UInt16(10000 + $0)) }
        XCTAssertNoThrow(try DenyListLimits.checkEffective(file: file, runtime: runtime, filePath: "/etc/d.json", runtimePath: "/var/r.json"))
        let error = capturedError { () throws(NodeGuardError) in
            try DenyListLimits.checkEffective(file: file, runtime: runtime + [BlockEntry(port: 9)], filePath: "/etc/d.json", runtimePath: "/var/r.json")
        }
        XCTAssertEqual(error?.code, .limitExceeded)
        XCTAssertEqual(error?.message, """
            the effective list would hold 4097 entries (4000 from /etc/d.json, 97 runtime); at most 4096: remove entries from /etc/d.json, \
            or runtime ones (`nodeguardctl unblock`, or from /var/r.json while the daemon is stopped)
            """)

        let sourced = (0..<31).map { i in BlockEntry(port: UInt16(30000 + i), allowFrom: Self.hosts(64, from: i * 64).map { cidr($0) }) }
        let more = [BlockEntry(port: 32000, allowFrom: Self.hosts(65, from: 50_000).map { cidr($0) })]
        let sources = capturedError { () throws(NodeGuardError) in
            try DenyListLimits.checkEffective(file: sourced, runtime: more, filePath: "/etc/d.json", runtimePath: "/var/r.json")
        }
        XCTAssertEqual(sources?.code, .limitExceeded)
        XCTAssertTrue(sources?.message.hasPrefix("the effective list would hold 2049 allowFrom sources (1984 from /etc/d.json, 65 runtime); at most 2048: use wider CIDRs") == true,
                      sources?.message ?? "no error")
    }

    // MARK: entries that block nothing (issue 14, item 5)

    private func open(_ family: FamilySelection, _ sources: [String]) -> [AddressFamily] {
        BlockEntry(port: 32000, family: family, allowFrom: sources.map { cidr($0) }).familiesLetThroughEntirely
    }

    func testFamiliesLetThroughEntirely() {
        XCTAssertEqual(open(.both, []), [])
        XCTAssertEqual(open(.both, ["10.0.0.0/8", "2001:db8::/32"]), [])
        XCTAssertEqual(open(.both, ["0.0.0.0/0"]), [.ipv4])
        XCTAssertEqual(open(.both, ["::/0"]), [.ipv6])
        XCTAssertEqual(open(.both, ["0.0.0.0/0", "::/0"]), [.ipv4, .ipv6])
        XCTAssertEqual(open(.ipv4, ["0.0.0.0/0"]), [.ipv4])
        XCTAssertEqual(open(.ipv6, ["::/0"]), [.ipv6])
        XCTAssertEqual(open(.ipv6, ["0.0.0.0/0"]), [], "a family the entry does not cover does not count")
        // Networks that together cover every address, in any order, overlapping or not.
        XCTAssertEqual(open(.both, ["128.0.0.0/1", "0.0.0.0/1"]), [.ipv4])
        XCTAssertEqual(open(.both, ["0.0.0.0/2", "0.0.0.0/1", "192.0.0.0/2", "128.0.0.0/2"]), [.ipv4])
        XCTAssertEqual(open(.both, ["::/1", "8000::/1"]), [.ipv6])
        // One address short is not everything.
        XCTAssertEqual(open(.both, ["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3", "224.0.0.0/4"]), [])
        XCTAssertEqual(open(.both, ["0.0.0.0/1", "128.0.0.0/1"].dropLast() + ["255.255.255.255/32"]), [])
        XCTAssertEqual(open(.both, ["::/1", "8000::/2", "c000::/2", "::/0"].dropLast()), [.ipv6])
        XCTAssertEqual(open(.both, ["::/1", "8000::/2", "c000::/3"]), [])
    }

    /// Against an independent oracle (a walk down the prefix tree) on random
    /// sets of short IPv4 prefixes, where covering everything is likely.
    func testFamiliesLetThroughEntirelyAgreesWithAPrefixTreeWalkProperty() {
        var rng = SplitMix64(seed: 0xA11)
        func covers(_ networks: [(UInt32, Int)], prefix: UInt32, length: Int) -> Bool {
            func contains(_ n: (UInt32, Int), _ p: UInt32, _ l: Int) -> Bool {
                n.1 <= l && (n.1 == 0 || (n.0 >> (32 - n.1)) == (p >> (32 - n.1)))
            }
            if networks.contains(where: { contains($0, prefix, length) }) { return true }
            guard length < 32, networks.contains(where: { $0.1 > length && contains((prefix, length), $0.0, $0.1) }) else { return false }
            return covers(networks, prefix: prefix, length: length + 1)
                && covers(networks, prefix: prefix | (UInt32(1) << (31 - length)), length: length + 1)
        }
        var covered = 0
        for round in 0..<3000 {
            let networks: [(UInt32, Int)] = (0..<Int.random(in: 0...8, using: &rng)).map { _ in
                let length = Int.random(in: 0...4, using: &rng)
                let address = length == 0 ? 0 : (UInt32.random(in: 0...UInt32.max, using: &rng) >> (32 - length)) << (32 - length)
                return (address, length)
            }
            let text = Set(networks.map { "\($0.0 >> 24).\(($0.0 >> 16) & 255).\(($0.0 >> 8) & 255).\($0.0 & 255)/\($0.1)" })
            let expected = covers(networks, prefix: 0, length: 0)
            XCTAssertEqual(open(.ipv4, Array(text)) == [.ipv4], expected, "round \(round): \(text)")
            if expected { covered += 1 }
        }
        XCTAssertGreaterThan(covered, 300, "both answers are well represented")
    }

    func testWarningsNameTheEntryTheFamilyAndWhatToDo() throws {
        let list = try DenyListCodec.decode(Array(Self.document([
            Self.entry(31001, sources: ["10.0.0.0/8"]),
            Self.entry(31002, sources: ["0.0.0.0/0", "2001:db8::/32"]),
            Self.entry(31003, protocol: "udp", sources: ["0.0.0.0/0", "::/0"]),
            Self.entry(31004, family: "ipv6", sources: ["::/1", "8000::/1"]),
        ]).utf8), source: "test.json")
        XCTAssertEqual(DenyListCodec.warnings(list).map(\.description), [
            #"blocked[1].allowFrom: lets every IPv4 source through (0.0.0.0/0), so 31002/tcp is not blocked over IPv4 at all; narrow allowFrom, or set "family" to "ipv6" if only that family is to be blocked"#,
            "blocked[2].allowFrom: lets every IPv4 and IPv6 source through (0.0.0.0/0, ::/0), so the entry blocks nothing: 31003/udp stays open to everyone; remove the entry, or narrow allowFrom",
            "blocked[3].allowFrom: lets every IPv6 source through (2 networks that together cover every address), so the entry blocks nothing: 31004/tcp stays open to everyone; remove the entry, or narrow allowFrom",
        ])
        XCTAssertEqual(DenyListCodec.warnings(DenyList(entries: Fixtures.exampleEntries)), [])
    }
}
