#if canImport(Glibc)
import Glibc
#endif

public enum TransportProtocol: String, Sendable, Hashable, CaseIterable, Comparable {
    case tcp, udp, sctp

    public var ipProtocolNumber: UInt8 {
        switch self {
        case .tcp: 6
        case .udp: 17
        case .sctp: 132
        }
    }

    public static func < (a: Self, b: Self) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

public enum AddressFamily: String, Sendable, Hashable, CaseIterable {
    case ipv4, ipv6

    public var addressByteCount: Int { self == .ipv4 ? 4 : 16 }
    /// "IPv4" or "IPv6", for messages.
    public var displayName: String { self == .ipv4 ? "IPv4" : "IPv6" }
    public var maximumPrefixLength: Int { addressByteCount * 8 }
}

public enum FamilySelection: String, Sendable, Hashable, CaseIterable {
    case ipv4, ipv6, both

    public func includes(_ family: AddressFamily) -> Bool {
        switch self {
        case .both: true
        case .ipv4: family == .ipv4
        case .ipv6: family == .ipv6
        }
    }
}

/// A port and protocol: what identifies a deny-list entry.
public struct PortKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var port: UInt16
    public var transport: TransportProtocol

    public init(port: UInt16, transport: TransportProtocol) {
        self.port = port
        self.transport = transport
    }

    /// "31002/tcp".
    public var description: String { "\(port)/\(transport.rawValue)" }

    public static func < (a: Self, b: Self) -> Bool {
        (a.transport, a.port) < (b.transport, b.port)
    }

    /// Parses "31002" (tcp) or "31002/udp", as the CLI and operators write it.
    public init(parsing text: String) throws(NodeGuardError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let first = parts.first else {
            throw NodeGuardError(.invalidRequest, "'\(displayText(text))' is not PORT or PORT/PROTOCOL")
        }
        guard first.allSatisfy(\.isASCII), first.allSatisfy(\.isNumber), let number = Int(first), (1...65535).contains(number) else {
            throw NodeGuardError(.invalidRequest, "port '\(first)' is not a number from 1 to 65535")
        }
        var transport = TransportProtocol.tcp
        if parts.count == 2 {
            guard let parsed = TransportProtocol(rawValue: parts[1].lowercased()) else {
                throw NodeGuardError(.invalidRequest, "protocol '\(parts[1])' is not tcp, udp or sctp")
            }
            transport = parsed
        }
        self.init(port: UInt16(number), transport: transport)
    }
}

/// An IPv4 or IPv6 network in CIDR notation, host bits clear.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public var family: AddressFamily
    /// Network byte order, 4 or 16 bytes.
    public var address: [UInt8]
    public var prefixLength: Int

    public init(family: AddressFamily, address: [UInt8], prefixLength: Int) {
        self.family = family
        self.address = address
        self.prefixLength = prefixLength
    }

    /// Parses "198.18.0.0/24", "2001:db8::/64" or a bare address (a host).
    /// Host bits set is an error, not silently masked: "198.18.0.5/24" most
    /// likely means the writer meant something else.
    public init(parsing text: String) throws(NodeGuardError) {
        // inet_pton stops at a NUL: "10.0.0.0\0garbage" must not read as 10.0.0.0.
        guard text.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f }) else {
            throw NodeGuardError(.invalidDenyList, "'\(displayText(text))' is not an IPv4 or IPv6 address (it holds a control, space or non-ASCII character)")
        }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let addressText = parts.first else {
            throw NodeGuardError(.invalidDenyList, "'\(displayText(text))' is not an address or ADDRESS/PREFIX")
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        let family: AddressFamily
        if inet_pton(AF_INET, String(addressText), &bytes) == 1 {
            family = .ipv4
            bytes = Array(bytes[0..<4])
        } else if inet_pton(AF_INET6, String(addressText), &bytes) == 1 {
            family = .ipv6
        } else {
            throw NodeGuardError(.invalidDenyList, "'\(displayText(addressText))' is not an IPv4 or IPv6 address")
        }
        var prefix = family.maximumPrefixLength
        if parts.count == 2 {
            let digits = !parts[1].isEmpty && parts[1].allSatisfy { $0.isASCII && $0.isNumber }
            guard digits, let p = Int(parts[1]), (0...family.maximumPrefixLength).contains(p) else {
                throw NodeGuardError(.invalidDenyList, "prefix length '\(parts[1])' is not from 0 to \(family.maximumPrefixLength)")
            }
            prefix = p
        }
        let network = CIDR.masked(bytes, prefixLength: prefix)
        let cidr = CIDR(family: family, address: network, prefixLength: prefix)
        guard network == bytes else {
            throw NodeGuardError(.invalidDenyList, "'\(text)' has host bits set; did you mean \(cidr)?")
        }
        self = cidr
    }

    /// The first and the last address of the network, as numbers (an IPv4
    /// address is below 2^32).
    public var addressRange: ClosedRange<UInt128> {
        let first = address.reduce(UInt128(0)) { $0 << 8 | UInt128($1) }
        let hostBits = family.maximumPrefixLength - prefixLength
        let hostMask: UInt128 = hostBits >= 128 ? .max : (UInt128(1) << hostBits) - 1
        return first...(first | hostMask)
    }

    static func masked(_ bytes: [UInt8], prefixLength: Int) -> [UInt8] {
        var out = bytes
        for i in out.indices {
            let bitsHere = max(0, min(8, prefixLength - i * 8))
            out[i] &= bitsHere == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bitsHere))
        }
        return out
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let af = family == .ipv4 ? AF_INET : AF_INET6
        _ = inet_ntop(af, address, &buffer, socklen_t(buffer.count))
        let text = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "\(text)/\(prefixLength)"
    }
}

/// One blocked NodePort.
public struct BlockEntry: Sendable, Hashable {
    public static let maximumReasonBytes = 256

    public var port: UInt16
    public var transport: TransportProtocol
    public var family: FamilySelection
    public var reason: String?
    /// Sources that stay allowed; each applies only to its own family.
    public var allowFrom: [CIDR]

    public init(port: UInt16, transport: TransportProtocol = .tcp, family: FamilySelection = .both,
                reason: String? = nil, allowFrom: [CIDR] = []) {
        self.port = port
        self.transport = transport
        self.family = family
        self.reason = reason
        self.allowFrom = allowFrom
    }

    public var key: PortKey { PortKey(port: port, transport: transport) }

    /// The families this entry covers in which `allowFrom` lets every source
    /// through, so that it blocks nothing there: `0.0.0.0/0` or `::/0`, or
    /// networks that together cover every address (`0.0.0.0/1` and
    /// `128.0.0.0/1`). Empty for an entry that blocks something in each of
    /// its families. `nodeguardctl validate` warns with it
    /// (`DenyListCodec.warnings`), and `explain` must not call such a port closed.
    public var familiesLetThroughEntirely: [AddressFamily] {
        AddressFamily.allCases.filter { family in
            guard self.family.includes(family) else { return false }
            let last: UInt128 = family == .ipv4 ? UInt128(UInt32.max) : .max
            // Walk the networks by their first address; a gap before `next` means some source is blocked.
            var next: UInt128 = 0
            for range in allowFrom.filter({ $0.family == family }).map(\.addressRange).sorted(by: { $0.lowerBound < $1.lowerBound }) {
                guard range.lowerBound <= next else { return false }
                if range.upperBound >= last { return true }
                next = max(next, range.upperBound + 1)
            }
            return false
        }
    }

    /// What is wrong with `reason`, or nil. It ends up in a rule comment that
    /// operators read in `iptables -S`: one line of printable text.
    public static func reasonProblem(_ reason: String) -> String? {
        if reason.utf8.count > maximumReasonBytes {
            return "\(reason.utf8.count) bytes long; at most \(maximumReasonBytes)"
        }
        let unprintable = reason.unicodeScalars.contains {
            switch $0.properties.generalCategory {
            case .control, .lineSeparator, .paragraphSeparator, .format: $0 != "\u{200D}"   // ZWJ keeps emoji whole
            default: false
            }
        }
        return unprintable ? "contains a control or line-break character (newline, tab, NUL, ...)" : nil
    }
}

/// A deny-list as read from a file (version 1).
public struct DenyList: Sendable, Hashable {
    public static let currentVersion = 1
    public var entries: [BlockEntry]

    public init(entries: [BlockEntry] = []) { self.entries = entries }
}
