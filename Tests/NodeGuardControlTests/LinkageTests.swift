import Foundation
import NodeGuardCore
import XCTest

/// nodeguardctl talks to a socket: it must not link libiptc (libip4tc,
/// libip6tc), libnftnl, libmnl or libsystemd, which the daemon needs, so
/// that the CLI runs where those are absent and carries nothing it does not
/// use.
///
/// The test reads the binary that `swift build --build-tests` put next to the
/// test bundle (it builds nothing itself). That is the debug build; the
/// release binary in the .deb comes from the same target with the same
/// dependencies, so it needs the same libraries (DT_NEEDED follows the
/// targets' link settings, not the optimisation level).
final class LinkageTests: XCTestCase {
    static let forbidden = ["libip4tc", "libip6tc", "libnftnl", "libmnl", "libsystemd"]

    /// The folder of the test bundle holds the package's executables too.
    static var nodeguardctl: String? {
        var url = Bundle.main.bundleURL
        while url.path != "/" {
            let candidate = url.appendingPathComponent("nodeguardctl").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            url = url.deletingLastPathComponent()
        }
        return nil
    }

    func testNodeguardctlLinksNeitherLibiptcNorLibsystemd() throws {
        guard let path = Self.nodeguardctl else {
            return XCTFail("no nodeguardctl next to the test bundle (\(Bundle.main.bundleURL.path)); build it first with `swift build --build-tests`")
        }
        try assertLinksNoneOfTheDaemonsLibraries(path)
    }

    /// The release binary the .deb ships (static Swift runtime, stripped),
    /// where scripts/test.sh built the package: the one operators run.
    func testThePackagedNodeguardctlLinksNeitherLibiptcNorLibsystemd() throws {
        guard let deb = ProcessInfo.processInfo.environment["NODEGUARD_DEB"] else {
            throw XCTSkip("set NODEGUARD_DEB to the package (scripts/test.sh builds it)")
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ng-linkage-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let unpacked = try runProgram(["/usr/bin/dpkg-deb", "-x", deb, folder.path], timeout: .seconds(60))
        XCTAssertEqual(unpacked.status, 0, String(decoding: unpacked.stderr, as: UTF8.self))
        try assertLinksNoneOfTheDaemonsLibraries(folder.appendingPathComponent("usr/bin/nodeguardctl").path)
    }

    /// `path` links libc (the reader is not blind) and none of `forbidden`.
    func assertLinksNoneOfTheDaemonsLibraries(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let needed = try ELF.neededLibraries(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        XCTAssertTrue(needed.contains { $0.hasPrefix("libc.so") }, "the reader found \(path)'s libraries: \(needed)", file: file, line: line)
        for library in Self.forbidden {
            XCTAssertFalse(needed.contains { $0.hasPrefix(library) }, "\(path) links \(library): \(needed)", file: file, line: line)
        }
    }

    /// The package's Depends are read off the release binaries' libraries:
    /// the daemon's libiptc, libnftnl, libmnl and libsystemd are among them.
    func testThePackageDependsOnTheDaemonsLibraries() throws {
        guard let deb = ProcessInfo.processInfo.environment["NODEGUARD_DEB"] else {
            throw XCTSkip("set NODEGUARD_DEB to the package (scripts/test.sh builds it)")
        }
        let field = try runProgram(["/usr/bin/dpkg-deb", "-f", deb, "Depends"], timeout: .seconds(60))
        XCTAssertEqual(field.status, 0, String(decoding: field.stderr, as: UTF8.self))
        let depends = Set(String(decoding: field.stdout, as: UTF8.self).split(separator: ",").map {
            String($0.split(separator: " ").first ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        })
        for package in ["libip4tc2", "libip6tc2", "libnftnl11", "libmnl0", "libsystemd0", "iptables"] {
            XCTAssertTrue(depends.contains(package), "Depends lacks \(package): \(depends.sorted())")
        }
    }

    /// The daemon does link them: the reader is not blind.
    func testTheReaderSeesTheDaemonsLibraries() throws {
        guard let ctl = Self.nodeguardctl else { return XCTFail("no nodeguardctl next to the test bundle") }
        let daemon = URL(fileURLWithPath: ctl).deletingLastPathComponent().appendingPathComponent("nodeguardd")
        let needed = try ELF.neededLibraries(Array(try Data(contentsOf: daemon)))
        for library in Self.forbidden {
            XCTAssertTrue(needed.contains { $0.hasPrefix(library) }, "nodeguardd: \(needed)")
        }
    }
}

/// DT_NEEDED of a 64-bit little-endian ELF file, as `readelf -d` lists them.
enum ELF {
    struct Malformed: Error, CustomStringConvertible { var description: String }

    static func neededLibraries(_ bytes: [UInt8]) throws -> [String] {
        func integer(_ offset: Int, _ size: Int) throws -> UInt64 {
            guard offset >= 0, offset + size <= bytes.count else { throw Malformed(description: "truncated at \(offset)") }
            return (0..<size).reversed().reduce(0) { $0 << 8 | UInt64(bytes[offset + $1]) }
        }
        guard bytes.starts(with: [0x7F, 0x45, 0x4C, 0x46]), bytes.count > 0x40, bytes[4] == 2, bytes[5] == 1 else {
            throw Malformed(description: "not a 64-bit little-endian ELF file")
        }
        let headers = Int(try integer(0x20, 8)), size = Int(try integer(0x36, 2)), count = Int(try integer(0x38, 2))
        var loads: [(address: UInt64, offset: UInt64, size: UInt64)] = []
        var dynamic: (offset: Int, size: Int)?
        for index in 0..<count {
            let header = headers + index * size
            let type = try integer(header, 4)
            if type == 1 { loads.append((try integer(header + 16, 8), try integer(header + 8, 8), try integer(header + 32, 8))) }
            if type == 2 { dynamic = (Int(try integer(header + 8, 8)), Int(try integer(header + 32, 8))) }
        }
        guard let dynamic else { return [] }   // statically linked
        var needed: [UInt64] = []
        var strings: UInt64?
        for entry in stride(from: dynamic.offset, to: dynamic.offset + dynamic.size, by: 16) {
            let tag = try integer(entry, 8), value = try integer(entry + 8, 8)
            if tag == 0 { break }
            if tag == 1 { needed.append(value) }
            if tag == 5 { strings = value }
        }
        guard let strings, let load = loads.first(where: { strings >= $0.address && strings < $0.address + $0.size }) else {
            throw Malformed(description: "no string table for DT_NEEDED")
        }
        let table = Int(strings - load.address + load.offset)
        return try needed.map { name in
            let start = table + Int(name)
            guard let end = bytes[start...].firstIndex(of: 0) else { throw Malformed(description: "unterminated name") }
            return String(decoding: bytes[start..<end], as: UTF8.self)
        }
    }
}
