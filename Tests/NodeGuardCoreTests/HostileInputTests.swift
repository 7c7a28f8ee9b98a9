import XCTest
@testable import NodeGuardCore

/// Hostile input (issue 5): malformed deny-lists and malformed control-socket
/// messages. Each must be rejected with its own error code and a message that
/// names the field (or the position) and the problem, and none may crash or
/// hang the decoder.
///
/// Inputs whose current handling is wrong (accepted, or rejected with a
/// misleading message) are deliberately not in these tables; they are listed
/// for the owner to fix in the source.
final class HostileInputTests: XCTestCase {
    /// One corpus entry: the bytes, the code they must get and fragments the
    /// message must contain.
    struct HostileInput: Sendable {
        var name: String
        var bytes: [UInt8]
        var code: NodeGuardError.Code
        var fragments: [String]
    }

    /// An error message must not echo a hostile input back at length.
    static let maximumMessageBytes = 1024

    static let tenMB = 10 << 20

    // MARK: builders

    private static func text(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// A deny-list with these entries (JSON text each).
    private static func denyList(_ entries: String...) -> [UInt8] {
        text(#"{"version":1,"blocked":["# + entries.joined(separator: ",") + "]}")
    }

    /// A request with version 1 and these members (JSON text, without braces).
    private static func request(_ members: String) -> [UInt8] {
        text(#"{"version":1,"# + members + "}")
    }

    /// `depth` nested arrays (or other openers), closed.
    private static func nested(_ depth: Int, open: String = "[", inner: String = "", close: String = "]") -> String {
        String(repeating: open, count: depth) + inner + String(repeating: close, count: depth)
    }

    /// A valid UTF-8 string of `count` bytes of `byte` (ASCII).
    private static func run(_ byte: Character, _ count: Int) -> String {
        String(repeating: byte, count: count)
    }

    // MARK: the deny-list corpus

    static func denyListCorpus() -> [HostileInput] {
        var corpus: [HostileInput] = []
        func add(_ name: String, _ bytes: [UInt8], _ fragments: String...) {
            corpus.append(HostileInput(name: name, bytes: bytes, code: .invalidDenyList, fragments: fragments))
        }
        let notJSON = "corpus: not valid JSON: "

        // Truncated JSON.
        add("empty file", [], notJSON + "line 1, column 1: unexpected end of input")
        add("only whitespace", text(" \n\t\r\n"), notJSON + "line 3, column 1: unexpected end of input")
        add("truncated after a key", text(#"{"version""#), "expected ':' after a key")
        add("truncated after a colon", text(#"{"version":"#), "unexpected end of input (truncated JSON?)")
        add("truncated after a comma", text(#"{"version":1,"#), "unexpected end of input inside an object")
        add("truncated inside blocked", text(#"{"version":1,"blocked":[{"port":31002}"#), "unexpected end of input inside an array")
        add("truncated inside an entry", text(#"{"version":1,"blocked":[{"port":31002"#), "unexpected end of input inside an object")
        add("truncated inside a string", text(#"{"version":1,"blocked":[{"port":31002,"reason":"vault UI"#), "unterminated string")
        add("truncated inside an escape", text(#"{"version":1,"blocked":[{"port":1,"reason":"a\"#), "unterminated escape")
        add("truncated \\u escape", text(#"{"version":1,"blocked":[{"port":1,"reason":"\u00"#), #"truncated \u escape"#)
        add("truncated literal", text(#"{"version":1,"blocked":[{"port":1,"reason":nul"#), "invalid literal (expected null)")
        add("truncated negative number", text(#"{"version":1,"blocked":[{"port":-"#), "a number needs digits")
        add("truncated fraction", text(#"{"version":1,"blocked":[{"port":1."#), "a fraction needs digits")
        add("truncated exponent", text(#"{"version":1,"blocked":[{"port":1e"#), "an exponent needs digits")

        // Trailing garbage and near-JSON.
        add("trailing garbage", denyList() + text(" x"), "line 1, column 28: unexpected text after the JSON value")
        add("two documents", denyList() + denyList(), "unexpected text after the JSON value")
        add("trailing comma in blocked", denyList(#"{"port":1}"#, ""), "unexpected character where a value was expected")
        add("trailing comma in the object", text(#"{"version":1,"blocked":[],}"#), "expected a quoted key")
        add("single-quoted keys", text("{'version':1,'blocked':[]}"), "line 1, column 2: expected a quoted key")
        add("unquoted keys", text("{version:1,blocked:[]}"), "expected a quoted key")
        add("missing comma", text(#"{"version":1 "blocked":[]}"#), "expected ',' or '}' in an object")
        add("missing colon", text(#"{"version" 1,"blocked":[]}"#), "expected ':' after a key")
        add("comment line", text("// deny-list\n" + #"{"version":1,"blocked":[]}"#), "line 1, column 1: unexpected character where a value was expected")
        add("raw newline in a reason", denyList("{\"port\":1,\"reason\":\"a\nb\"}"), "line 1, column 46: unescaped control character in a string")
        add("raw tab in a reason", denyList("{\"port\":1,\"reason\":\"a\tb\"}"), "unescaped control character in a string")
        add("invalid escape", denyList(#"{"port":1,"reason":"\x41"}"#), "invalid escape in a string")
        add("bad hex digit in \\u", denyList(#"{"port":1,"reason":"\u12G4"}"#), #"invalid hex digit in \u escape"#)
        add("unpaired high surrogate", denyList(#"{"port":1,"reason":"\ud800"}"#), #"unpaired surrogate in \u escape"#)
        add("lone low surrogate", denyList(#"{"port":1,"reason":"\udc00x"}"#), #"unpaired surrogate in \u escape"#)

        // NUL bytes.
        add("NUL where a value should be", text(#"{"version":"#) + [0], "NUL byte where a value was expected")
        add("NUL in a reason", text(#"{"version":1,"blocked":[{"port":1,"reason":"a"#) + [0] + text(#"b"}]}"#), "NUL byte in a string")
        add("NUL in a key", text(#"{"ver"#) + [0] + text(#"sion":1,"blocked":[]}"#), "NUL byte in a string")
        add("NUL after the document", denyList() + [0], "unexpected text after the JSON value")
        add("NUL-padded file", denyList() + [UInt8](repeating: 0, count: 4096), "unexpected text after the JSON value")
        add("escaped NUL in a reason", denyList(#"{"port":1,"reason":"SEC-1\u0000"}"#), "blocked[0].reason: contains a control or line-break character")

        // Invalid UTF-8, inside and outside strings.
        add("0xFF in a reason", text(#"{"version":1,"blocked":[{"port":1,"reason":"a"#) + [0xFF] + text(#""}]}"#), "invalid UTF-8 in a string")
        add("Latin-1 reason", text(#"{"version":1,"blocked":[{"port":1,"reason":"caf"#) + [0xE9] + text(#""}]}"#), "invalid UTF-8 in a string")
        add("overlong encoding", text(#"{"version":1,"blocked":[{"port":1,"reason":""#) + [0xC0, 0xAF] + text(#""}]}"#), "invalid UTF-8 in a string")
        add("UTF-8-encoded surrogate", text(#"{"version":1,"blocked":[{"port":1,"reason":""#) + [0xED, 0xA0, 0x80] + text(#""}]}"#), "invalid UTF-8 in a string")
        add("sequence cut by the quote", text(#"{"version":1,"blocked":[{"port":1,"reason":"x"#) + [0xE2, 0x82] + text(#""}]}"#), "invalid UTF-8 in a string")
        add("invalid UTF-8 in a key", text(#"{"version":1,"blocked":[],""#) + [0xFE] + text(#"":1}"#), "invalid UTF-8 in a string")
        add("invalid UTF-8 where a value should be", text(#"{"version":"#) + [0xFF] + text("}"), "line 1, column 12: unexpected character where a value was expected")

        // Deep nesting.
        add("1000-deep arrays in blocked", text(#"{"version":1,"blocked":"# + nested(1000) + "}"), "nesting deeper than 32 levels")
        add("1000-deep objects as a reason", text(#"{"version":1,"blocked":[{"port":1,"reason":"# + nested(1000, open: #"{"a":"#, inner: "1", close: "}") + "}]}"),
            "nesting deeper than 32 levels")
        add("100000 unclosed brackets", text(run("[", 100_000)), "line 1, column 33: nesting deeper than 32 levels")

        // Duplicate keys.
        add("duplicate version", text(#"{"version":1,"version":2,"blocked":[]}"#), #"line 1, column 14: duplicate key "version""#)
        add("duplicate port in an entry", denyList(#"{"port":1,"port":2}"#), #"duplicate key "port""#)
        add("duplicate key spelled with an escape", denyList(#"{"port":1,"p\u006frt":2}"#), #"duplicate key "port""#)

        // 10 MB lines.
        add("10 MB line of garbage", [UInt8](repeating: UInt8(ascii: "x"), count: tenMB), "line 1, column 1: unexpected character where a value was expected")
        add("10 MB unterminated string", text(#"{"version":1,"blocked":[{"port":1,"reason":""#) + [UInt8](repeating: UInt8(ascii: "a"), count: tenMB),
            "unterminated string")
        add("10 MB reason", denyList(#"{"port":1,"reason":""# + run("a", tenMB) + #""}"#), "blocked[0].reason: 10485760 bytes long; at most 256")

        // The top level.
        add("top-level array", text("[]"), #"corpus: expected an object with "version" and "blocked", found an array"#)
        add("top-level null", text("null"), "found null")
        add("top-level number", text("31002"), "found a number")
        add("top-level string", text(#""blocked""#), "found a string")
        add("empty object", text("{}"), "corpus: 2 problems:", "version: missing (this NodeGuard reads version 1)", "blocked: missing (use [] for an empty list)")
        add("missing version", text(#"{"blocked":[]}"#), "corpus: version: missing (this NodeGuard reads version 1)")
        add("version 2", text(#"{"version":2,"blocked":[]}"#), "version: unknown version 2 (this NodeGuard reads version 1)")
        add("version 0", text(#"{"version":0,"blocked":[]}"#), "version: unknown version 0")
        add("version -1", text(#"{"version":-1,"blocked":[]}"#), "version: unknown version -1")
        add("version 1e400", text(#"{"version":1e400,"blocked":[]}"#), "version: unknown version 1e400")
        add("version with 40 digits", text(#"{"version":"# + run("9", 40) + #","blocked":[]}"#), "version: unknown version 9999999999")
        add("missing blocked", text(#"{"version":1}"#), "corpus: blocked: missing (use [] for an empty list)")
        add("blocked null", text(#"{"version":1,"blocked":null}"#), "blocked: expected an array, found null")
        add("blocked object", text(#"{"version":1,"blocked":{"port":1}}"#), "blocked: expected an array, found an object")
        add("blocked string", text(#"{"version":1,"blocked":"31002"}"#), "blocked: expected an array, found a string")
        add("misspelt blocked", text(#"{"version":1,"blockd":[]}"#), #"blockd: unknown field (expected "version" and "blocked")"#, "blocked: missing")
        add("unknown top-level field", text(#"{"version":1,"blocked":[],"comment":"x"}"#), #"corpus: comment: unknown field (expected "version" and "blocked")"#)

        // Entries.
        add("entry is a number", denyList("31002"), "blocked[0]: expected an object, found a number")
        add("entry is null", denyList("null"), "blocked[0]: expected an object, found null")
        add("entry is an array", denyList("[31002]"), "blocked[0]: expected an object, found an array")
        add("unknown entry field", denyList(#"{"port":1,"proto":"udp"}"#),
            "blocked[0].proto: unknown field (expected one of allowFrom, family, port, protocol, reason)")
        add("field name in the wrong case", denyList(#"{"Port":31002}"#), "blocked[0].Port: unknown field", "blocked[0].port: missing")
        add("unknown field in the second entry", denyList(#"{"port":1}"#, #"{"port":2,"drop":true}"#), "corpus: blocked[1].drop: unknown field")
        add("missing port", denyList(#"{"protocol":"udp"}"#), "blocked[0].port: missing (a number from 1 to 65535)")

        // Numbers.
        let notAPort = "is not a whole number from 1 to 65535"
        add("port 0", denyList(#"{"port":0}"#), "blocked[0].port: 0 " + notAPort)
        add("port -1", denyList(#"{"port":-1}"#), "blocked[0].port: -1 " + notAPort)
        add("port -0", denyList(#"{"port":-0}"#), "blocked[0].port: -0 " + notAPort)
        add("port 65536", denyList(#"{"port":65536}"#), "blocked[0].port: 65536 " + notAPort)
        add("port 1.5", denyList(#"{"port":1.5}"#), "blocked[0].port: 1.5 " + notAPort)
        add("port 1e400", denyList(#"{"port":1e400}"#), "blocked[0].port: 1e400 " + notAPort)
        add("port Int.max + 1", denyList(#"{"port":9223372036854775808}"#), "blocked[0].port: 9223372036854775808 " + notAPort)
        add("port Int.min - 1", denyList(#"{"port":-9223372036854775809}"#), "blocked[0].port: -9223372036854775809 " + notAPort)
        add("port with 100 digits", denyList(#"{"port":"# + run("1", 100) + "}"), "blocked[0].port: 1111111111", notAPort)
        add("port 0x10", denyList(#"{"port":0x10}"#), "line 1, column 34: expected ',' or '}' in an object")
        add("port with a leading zero", denyList(#"{"port":031002}"#), "leading zeros are not allowed in numbers")
        add("port +80", denyList(#"{"port":+80}"#), "unexpected character where a value was expected")
        add("port NaN", denyList(#"{"port":NaN}"#), "unexpected character where a value was expected")
        add("port -Infinity", denyList(#"{"port":-Infinity}"#), "a number needs digits")
        add("port as a string", denyList(#"{"port":"31002"}"#), "blocked[0].port: expected a number from 1 to 65535, found a string")
        add("port null", denyList(#"{"port":null}"#), "blocked[0].port: expected a number from 1 to 65535, found null")
        add("port true", denyList(#"{"port":true}"#), "blocked[0].port: expected a number from 1 to 65535, found a boolean")
        add("port array", denyList(#"{"port":[31002]}"#), "blocked[0].port: expected a number from 1 to 65535, found an array")
        add("port object", denyList(#"{"port":{"value":31002}}"#), "blocked[0].port: expected a number from 1 to 65535, found an object")

        // Protocol, family and reason.
        add("protocol TCP", denyList(#"{"port":1,"protocol":"TCP"}"#), #"blocked[0].protocol: expected "tcp", "udp" or "sctp", found "TCP""#)
        add("protocol icmp", denyList(#"{"port":1,"protocol":"icmp"}"#), #"blocked[0].protocol: expected "tcp", "udp" or "sctp", found "icmp""#)
        add("protocol empty", denyList(#"{"port":1,"protocol":""}"#), #"blocked[0].protocol: expected "tcp", "udp" or "sctp", found """#)
        add("protocol number", denyList(#"{"port":1,"protocol":6}"#), #"blocked[0].protocol: expected "tcp", "udp" or "sctp", found a number"#)
        add("protocol null", denyList(#"{"port":1,"protocol":null}"#), "blocked[0].protocol: expected", "found null")
        add("family IPv4", denyList(#"{"port":1,"family":"IPv4"}"#), #"blocked[0].family: expected "ipv4", "ipv6" or "both", found "IPv4""#)
        add("family inet6", denyList(#"{"port":1,"family":"inet6"}"#), #"blocked[0].family: expected "ipv4", "ipv6" or "both", found "inet6""#)
        add("family number", denyList(#"{"port":1,"family":4}"#), "blocked[0].family: expected", "found a number")
        add("family array", denyList(#"{"port":1,"family":["ipv4","ipv6"]}"#), "blocked[0].family: expected", "found an array")
        add("reason of 257 bytes", denyList(#"{"port":1,"reason":""# + run("r", 257) + #""}"#), "blocked[0].reason: 257 bytes long; at most 256")
        add("reason of 129 two-byte characters", denyList(#"{"port":1,"reason":""# + String(repeating: "é", count: 129) + #""}"#),
            "blocked[0].reason: 258 bytes long; at most 256")
        add("reason with an escaped newline", denyList(#"{"port":1,"reason":"SEC-1\n  blocked[1].port: ok"}"#),
            "blocked[0].reason: contains a control or line-break character")
        add("reason with ESC", denyList(#"{"port":1,"reason":"\u001b[31mred"}"#), "blocked[0].reason: contains a control or line-break character")
        add("reason with U+2028", denyList(#"{"port":1,"reason":"a\u2028b"}"#), "blocked[0].reason: contains a control or line-break character")
        add("reason with a bidi override", denyList(#"{"port":1,"reason":"\u202Eevil"}"#), "blocked[0].reason: contains a control or line-break character")
        add("reason number", denyList(#"{"port":1,"reason":1234}"#), "blocked[0].reason: expected a string, found a number")
        add("reason array", denyList(#"{"port":1,"reason":["a"]}"#), "blocked[0].reason: expected a string, found an array")

        // allowFrom.
        add("allowFrom string", denyList(#"{"port":1,"allowFrom":"10.0.0.0/8"}"#), "blocked[0].allowFrom: expected an array of CIDR strings, found a string")
        add("allowFrom null", denyList(#"{"port":1,"allowFrom":null}"#), "blocked[0].allowFrom: expected an array of CIDR strings, found null")
        add("allowFrom element number", denyList(#"{"port":1,"allowFrom":[167772160]}"#), "blocked[0].allowFrom[0]: expected a CIDR string, found a number")
        add("allowFrom element object", denyList(#"{"port":1,"allowFrom":["10.0.0.0/8",{}]}"#), "blocked[0].allowFrom[1]: expected a CIDR string, found an object")
        add("allowFrom host bits", denyList(#"{"port":1,"allowFrom":["198.18.0.5/24"]}"#),
            "blocked[0].allowFrom[0]: '198.18.0.5/24' has host bits set; did you mean 198.18.0.0/24?")
        add("allowFrom prefix 33", denyList(#"{"port":1,"allowFrom":["10.0.0.0/33"]}"#), "blocked[0].allowFrom[0]: prefix length '33' is not from 0 to 32")
        add("allowFrom prefix -1", denyList(#"{"port":1,"allowFrom":["10.0.0.0/-1"]}"#), "blocked[0].allowFrom[0]: prefix length '-1' is not from 0 to 32")
        add("allowFrom IPv6 prefix 129", denyList(#"{"port":1,"allowFrom":["2001:db8::/129"]}"#), "blocked[0].allowFrom[0]: prefix length '129' is not from 0 to 128")
        add("allowFrom prefix of 30 digits", denyList(#"{"port":1,"allowFrom":["10.0.0.0/"# + run("9", 30) + #""]}"#),
            "blocked[0].allowFrom[0]: prefix length '999999", "is not from 0 to 32")
        add("allowFrom empty prefix", denyList(#"{"port":1,"allowFrom":["10.0.0.0/"]}"#), "blocked[0].allowFrom[0]: prefix length '' is not from 0 to 32")
        add("allowFrom octet 999", denyList(#"{"port":1,"allowFrom":["999.0.0.0/8"]}"#), "blocked[0].allowFrom[0]: '999.0.0.0' is not an IPv4 or IPv6 address")
        add("allowFrom empty string", denyList(#"{"port":1,"allowFrom":[""]}"#), "blocked[0].allowFrom[0]: '' is not an IPv4 or IPv6 address")
        add("allowFrom leading space", denyList(#"{"port":1,"allowFrom":[" 10.0.0.0/8"]}"#), "blocked[0].allowFrom[0]: ' 10.0.0.0/8' is not an IPv4 or IPv6 address (it holds a control, space or non-ASCII character)")
        add("allowFrom two slashes", denyList(#"{"port":1,"allowFrom":["10.0.0.0/8/8"]}"#), "blocked[0].allowFrom[0]: '10.0.0.0/8/8' is not an address or ADDRESS/PREFIX")
        add("allowFrom hostname", denyList(#"{"port":1,"allowFrom":["localhost"]}"#), "blocked[0].allowFrom[0]: 'localhost' is not an IPv4 or IPv6 address")
        add("allowFrom listed twice", denyList(#"{"port":1,"allowFrom":["10.0.0.0/8","10.0.0.0/8"]}"#), "blocked[0].allowFrom[1]: 10.0.0.0/8 is listed twice")

        // Limits (issue 14): each named with the limit and what to do.
        let hosts = { (count: Int) in (0..<count).map { #""10.\#($0 >> 16).\#(($0 >> 8) & 255).\#($0 & 255)""# }.joined(separator: ",") }
        add("65 sources in one entry", denyList(#"{"port":1,"allowFrom":["# + hosts(65) + "]}"),
            "corpus: blocked[0].allowFrom: 65 sources; at most 64 per entry (use wider CIDRs that cover several sources)")
        add("100000 sources in one entry", denyList(#"{"port":1,"allowFrom":["# + hosts(100_000) + "]}"),
            "blocked[0].allowFrom: 100000 sources; at most 64 per entry")
        add("4097 entries", text(#"{"version":1,"blocked":["# + (1...4097).map { #"{"port":\#($0)}"# }.joined(separator: ",") + "]}"),
            "corpus: blocked: 4097 entries; at most 4096 in a list")
        add("2049 sources in a list", text(#"{"version":1,"blocked":["# + (0...32).map { i in
                #"{"port":\#(i + 1),"allowFrom":["# + (0..<(i == 32 ? 1 : 64)).map { #""10.\#(i).\#($0).0/24""# }.joined(separator: ",") + "]}"
            }.joined(separator: ",") + "]}"),
            "corpus: blocked: 2049 allowFrom sources in all; at most 2048 in a list")
        add("IPv6 source in an ipv4 entry", denyList(#"{"port":1,"family":"ipv4","allowFrom":["10.0.0.0/8","::/0"]}"#),
            "corpus: blocked[0].allowFrom[1]: ::/0 is an IPv6 source, but the entry covers ipv4 only")
        add("IPv4 source in an ipv6 entry", denyList(#"{"port":1,"family":"ipv6","allowFrom":["198.18.0.5"]}"#),
            "corpus: blocked[0].allowFrom[0]: 198.18.0.5/32 is an IPv4 source, but the entry covers ipv6 only")

        // The list as a whole.
        add("same port and protocol twice", denyList(#"{"port":31002}"#, #"{"port":31002,"protocol":"tcp","family":"ipv4"}"#),
            "corpus: blocked[1]: 31002/tcp is already listed at blocked[0]")
        add("several problems in one entry", denyList(#"{"port":0,"protocol":"icmp","family":"ipv5","extra":1}"#),
            "corpus: 4 problems:", "blocked[0].extra: unknown field", "blocked[0].port: 0 ", "blocked[0].protocol: expected", "blocked[0].family: expected")

        // Found by this corpus and fixed: a NUL cut the address short, long and
        // control-laden values were echoed as they came, problems were unbounded.
        add("allowFrom NUL then garbage", denyList(#"{"port":1,"allowFrom":["10.0.0.0\u0000garbage/8"]}"#),
            #"'10.0.0.0\u{0}garbage/8' is not an IPv4 or IPv6 address"#)
        add("allowFrom IPv6 NUL then junk", denyList(#"{"port":1,"allowFrom":["2001:db8::\u0000junk/32"]}"#),
            "is not an IPv4 or IPv6 address")
        add("10 MB of port digits", text(#"{"version":1,"blocked":[{"port":"# + run("9", tenMB) + "}]}"), "blocked[0].port: 99999", "…")
        add("10 MB unknown key", text(#"{"version":1,"blocked":[],""# + run("k", tenMB) + #"":1}"#), "kkkk…: unknown field")
        add("a million problems", text(#"{"version":1,"blocked":["# + Array(repeating: #"{"port":1}"#, count: 100_000).joined(separator: ",") + "]}"),
            "problems:", "... and ")
        add("newline in protocol", denyList(#"{"port":1,"protocol":"tcp\n  blocked[0].port: fine"}"#), #"found "tcp\n  blocked[0].port: fine""#)
        add("escape sequence in a key", text(#"{"version":1,"blocked":[],"\u001b[2Jx":1}"#), #"\u{1b}[2Jx: unknown field"#)
        add("UTF-8 byte-order mark", [0xEF, 0xBB, 0xBF] + text(#"{"version":1,"blocked":[]}"#), "byte-order mark")
        add("UTF-16LE with a BOM", [0xFF, 0xFE] + Array(#"{"version":1}"#.utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }), "looks like UTF-16")
        add("UTF-16LE without a BOM", Array(#"{"version":1}"#.utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }), "looks like UTF-16")
        add("version as a string", text(#"{"version":"1","blocked":[]}"#), "version: expected a number, found a string")
        return corpus
    }

    // MARK: the control request corpus

    static func requestCorpus() -> [HostileInput] {
        var corpus: [HostileInput] = []
        func add(_ name: String, _ bytes: [UInt8], _ code: NodeGuardError.Code = .invalidRequest, _ fragments: String...) {
            corpus.append(HostileInput(name: name, bytes: bytes, code: code, fragments: fragments))
        }
        let notJSON = "request is not valid JSON: "
        let list = #"{"version":1,"command":"list"}"#

        // Truncated JSON and near-JSON.
        add("empty line", [], .invalidRequest, notJSON + "line 1, column 1: unexpected end of input")
        add("lone brace", text("{"), .invalidRequest, notJSON + "line 1, column 2: unexpected end of input inside an object")
        add("truncated after a colon", text(#"{"version":"#), .invalidRequest, notJSON, "unexpected end of input (truncated JSON?)")
        add("truncated inside a string", text(#"{"version":1,"command":"li"#), .invalidRequest, notJSON, "unterminated string")
        add("truncated inside an entry", text(#"{"version":1,"command":"block","entry":{"port":31002"#), .invalidRequest, notJSON,
            "unexpected end of input inside an object")
        add("truncated before the last brace", text(#"{"version":1,"command":"unblock","port":31002"#), .invalidRequest,
            "unexpected end of input inside an object")
        add("trailing garbage", text(list + "x"), .invalidRequest, notJSON + "line 1, column 31: unexpected text after the JSON value")
        add("two requests on one line", text(list + list), .invalidRequest, "unexpected text after the JSON value")
        add("trailing comma", text(#"{"version":1,"command":"list",}"#), .invalidRequest, "expected a quoted key")
        add("single quotes", text("{'version':1,'command':'list'}"), .invalidRequest, "expected a quoted key")
        add("missing comma", text(#"{"version":1 "command":"list"}"#), .invalidRequest, "expected ',' or '}' in an object")
        add("raw carriage return in a string", text("{\"version\":1,\"command\":\"li\rst\"}"), .invalidRequest,
            "unescaped control character in a string")
        add("invalid escape", text(#"{"version":1,"command":"\list"}"#), .invalidRequest, "invalid escape in a string")
        add("unpaired surrogate", text(#"{"version":1,"command":"\udbff"}"#), .invalidRequest, #"unpaired surrogate in \u escape"#)

        // Size: refused before parsing, whatever the bytes would have said.
        let tooLarge = "request is 10485760 bytes; at most 65536"
        add("10 MB of garbage", [UInt8](repeating: UInt8(ascii: "x"), count: tenMB), .messageTooLarge, tooLarge)
        add("10 MB of open brackets", [UInt8](repeating: UInt8(ascii: "["), count: tenMB), .messageTooLarge, tooLarge)
        add("10 MB of NUL bytes", [UInt8](repeating: 0, count: tenMB), .messageTooLarge, tooLarge)
        add("10 MB of invalid UTF-8", [UInt8](repeating: 0xFF, count: tenMB), .messageTooLarge, tooLarge)
        let blockPrefix = text(#"{"version":1,"command":"block","entry":{"port":31002,"reason":""#)
        let blockSuffix = text(#""}}"#)
        add("10 MB reason in a well-formed block", blockPrefix + [UInt8](repeating: UInt8(ascii: "a"), count: tenMB - blockPrefix.count - blockSuffix.count) + blockSuffix,
            .messageTooLarge, tooLarge)
        add("one byte over the limit", text(list) + [UInt8](repeating: 0x20, count: ControlProtocol.maximumMessageBytes + 1 - list.utf8.count),
            .messageTooLarge, "request is 65537 bytes; at most 65536")

        // Deep nesting.
        let tooDeep = "nesting deeper than 32 levels"
        add("1000-deep arrays", text(nested(1000)), .invalidRequest, notJSON + "line 1, column 33: " + tooDeep)
        add("1000-deep objects as the entry", text(#"{"version":1,"command":"block","entry":"# + nested(1000, open: #"{"a":"#, inner: "1", close: "}") + "}"),
            .invalidRequest, tooDeep)
        add("1000-deep arrays in an unknown field", text(#"{"version":1,"command":"list","x":"# + nested(1000) + "}"), .invalidRequest, tooDeep)
        add("30000 unclosed brackets", text(run("[", 30_000)), .invalidRequest, tooDeep)

        // Invalid UTF-8 and NUL bytes.
        add("0xFF in the command", text(#"{"version":1,"command":"li"#) + [0xFF] + text(#"st"}"#), .invalidRequest, notJSON, "invalid UTF-8 in a string")
        add("overlong slash in the command", text(#"{"version":1,"command":"li"#) + [0xC0, 0xAF] + text(#""}"#), .invalidRequest, "invalid UTF-8 in a string")
        add("UTF-8-encoded surrogate in a key", text(#"{"version":1,""#) + [0xED, 0xB0, 0x80] + text(#"":1,"command":"list"}"#), .invalidRequest,
            "invalid UTF-8 in a string")
        add("Latin-1 reason", text(#"{"version":1,"command":"block","entry":{"port":1,"reason":"caf"#) + [0xE9] + text(#""}}"#), .invalidRequest,
            "invalid UTF-8 in a string")
        add("invalid UTF-8 outside a string", text(#"{"version":1,"command":"list""#) + [0xFF] + text("}"), .invalidRequest,
            "line 1, column 30: expected ',' or '}' in an object")
        add("0xFF where a value should be", text(#"{"version":"#) + [0xFF] + text(#","command":"list"}"#), .invalidRequest,
            "unexpected character where a value was expected")
        add("NUL line", [0], .invalidRequest, notJSON + "line 1, column 1: NUL byte where a value was expected")
        add("raw NUL in the command", text(#"{"version":1,"command":"list"#) + [0] + text(#""}"#), .invalidRequest, "NUL byte in a string")
        add("NUL terminator after the request", text(list) + [0], .invalidRequest, "line 1, column 31: unexpected text after the JSON value")
        add("escaped NUL in the command", request(#""command":"list\u0000""#), .invalidRequest, #"command: unknown command "list"#)
        add("escaped NUL in a reason", request(#""command":"block","entry":{"port":1,"reason":"a\u0000"}"#), .invalidRequest,
            "entry.reason: contains a control or line-break character")

        // Not an object.
        add("array", text("[]"), .invalidRequest, "request must be a JSON object, found an array")
        add("null", text("null"), .invalidRequest, "request must be a JSON object, found null")
        add("number", text("1"), .invalidRequest, "request must be a JSON object, found a number")
        add("bare command", text(#""list""#), .invalidRequest, "request must be a JSON object, found a string")
        add("boolean", text("true"), .invalidRequest, "request must be a JSON object, found a boolean")

        // Version.
        add("missing version", text(#"{"command":"list"}"#), .invalidRequest, "version: missing (this daemon speaks version 1)")
        add("version in the wrong case", text(#"{"Version":1,"command":"list"}"#), .invalidRequest, "version: missing")
        add("version 2", text(#"{"version":2,"command":"list"}"#), .unsupportedVersion,
            "version: 2 is not supported (this daemon speaks version 1)")
        add("version 0", text(#"{"version":0,"command":"list"}"#), .unsupportedVersion, "version: 0 is not supported")
        add("version -1", text(#"{"version":-1,"command":"list"}"#), .unsupportedVersion, "version: -1 is not supported")
        add("version 1e400", text(#"{"version":1e400,"command":"list"}"#), .unsupportedVersion, "version: 1e400 is not supported")
        add("version with 40 digits", text(#"{"version":"# + run("9", 40) + #","command":"list"}"#), .unsupportedVersion,
            "version: " + run("9", 40) + " is not supported")
        add("version as a string", text(#"{"version":"1","command":"list"}"#), .invalidRequest, "version: expected a number, found a string")
        add("version null", text(#"{"version":null,"command":"list"}"#), .invalidRequest, "version: expected a number, found null")
        add("version true", text(#"{"version":true,"command":"list"}"#), .invalidRequest, "version: expected a number, found a boolean")
        add("version array", text(#"{"version":[1],"command":"list"}"#), .invalidRequest, "version: expected a number, found an array")
        add("duplicate version", text(#"{"version":1,"version":2,"command":"list"}"#), .invalidRequest, #"line 1, column 14: duplicate key "version""#)

        // Command.
        let missingCommand = "command: missing or not a string (one of block, unblock, list, status, reload, metrics, nodeports, explain)"
        add("missing command", text(#"{"version":1}"#), .invalidRequest, missingCommand)
        add("command number", request(#""command":7"#), .invalidRequest, missingCommand)
        add("command null", request(#""command":null"#), .invalidRequest, missingCommand)
        add("command array", request(#""command":["list"]"#), .invalidRequest, missingCommand)
        add("command object", request(#""command":{"name":"list"}"#), .invalidRequest, missingCommand)
        add("empty command", request(#""command":"""#), .invalidRequest, #"command: unknown command "" (one of block, unblock"#)
        add("unknown command", request(#""command":"flush""#), .invalidRequest, #"command: unknown command "flush""#)
        add("command in upper case", request(#""command":"LIST""#), .invalidRequest, #"command: unknown command "LIST""#)
        add("command with a trailing space", request(#""command":"list ""#), .invalidRequest, #"command: unknown command "list ""#)
        add("command with an escape", request(#""command":"l\u0069st\n""#), .invalidRequest, #"command: unknown command "list"#)
        add("duplicate command", request(#""command":"list","command":"reload""#), .invalidRequest, #"duplicate key "command""#)

        // Unknown fields at each level.
        for command in ["list", "status", "reload", "metrics", "nodeports"] {
            add("unknown field for \(command)", request(#""command":"\#(command)","force":true"#), .invalidRequest,
                "force: unknown field for command \(command)")
        }
        add("entry given to unblock", request(#""command":"unblock","port":1,"entry":{"port":1}"#), .invalidRequest,
            "entry: unknown field for command unblock")
        add("family given to explain", request(#""command":"explain","port":1,"family":"ipv4""#), .invalidRequest,
            "family: unknown field for command explain")
        add("port beside the entry of block", request(#""command":"block","entry":{"port":1},"port":1"#), .invalidRequest,
            "port: unknown field for command block")
        add("unknown field in the entry", request(#""command":"block","entry":{"port":1,"colour":"red"}"#), .invalidRequest,
            "entry.colour: unknown field (expected one of allowFrom, family, port, protocol, reason)")
        add("entry field in the wrong case", request(#""command":"block","entry":{"Port":1}"#), .invalidRequest,
            "entry.Port: unknown field", "entry.port: missing")

        // block's entry.
        add("block without an entry", request(#""command":"block""#), .invalidRequest, "entry: missing (the port to block)")
        add("entry null", request(#""command":"block","entry":null"#), .invalidRequest, "entry: expected an object, found null")
        add("entry number", request(#""command":"block","entry":31002"#), .invalidRequest, "entry: expected an object, found a number")
        add("entry string", request(#""command":"block","entry":"31002/tcp""#), .invalidRequest, "entry: expected an object, found a string")
        add("entry array", request(#""command":"block","entry":[{"port":1}]"#), .invalidRequest, "entry: expected an object, found an array")
        add("entry without a port", request(#""command":"block","entry":{}"#), .invalidRequest, "entry.port: missing (a number from 1 to 65535)")
        let notAPort = "is not a whole number from 1 to 65535"
        for port in ["0", "-1", "65536", "1.5", "1e400", "-0", run("7", 100)] {
            add("entry.port \(port.prefix(12))", request(#""command":"block","entry":{"port":\#(port)}"#), .invalidRequest,
                "entry.port: \(port.count > 40 ? port.prefix(40) + "…" : port) \(notAPort)")
        }
        add("entry.port as a string", request(#""command":"block","entry":{"port":"31002"}"#), .invalidRequest,
            "entry.port: expected a number from 1 to 65535, found a string")
        add("entry.protocol ICMP", request(#""command":"block","entry":{"port":1,"protocol":"ICMP"}"#), .invalidRequest,
            #"entry.protocol: expected "tcp", "udp" or "sctp", found "ICMP""#)
        add("entry.family number", request(#""command":"block","entry":{"port":1,"family":6}"#), .invalidRequest,
            #"entry.family: expected "ipv4", "ipv6" or "both", found a number"#)
        add("entry.reason too long", request(#""command":"block","entry":{"port":1,"reason":""# + run("r", 300) + #""}"#), .invalidRequest,
            "entry.reason: 300 bytes long; at most 256")
        add("entry.reason with a newline", request(#""command":"block","entry":{"port":1,"reason":"a\nb"}"#), .invalidRequest,
            "entry.reason: contains a control or line-break character")
        add("entry.allowFrom host bits", request(#""command":"block","entry":{"port":1,"allowFrom":["10.0.0.1/8"]}"#), .invalidRequest,
            "entry.allowFrom[0]: '10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?")
        add("entry.allowFrom string", request(#""command":"block","entry":{"port":1,"allowFrom":"10.0.0.0/8"}"#), .invalidRequest,
            "entry.allowFrom: expected an array of CIDR strings, found a string")
        add("duplicate key in the entry", request(#""command":"block","entry":{"port":1,"port":2}"#), .invalidRequest, #"duplicate key "port""#)
        add("several problems in the entry", request(#""command":"block","entry":{"port":0,"protocol":"icmp","allowFrom":[1]}"#), .invalidRequest,
            "entry.port: 0 ", "; entry.protocol: expected", "; entry.allowFrom[0]: expected a CIDR string, found a number")

        // unblock's and explain's port and protocol.
        for command in ["unblock", "explain"] {
            add("\(command) without a port", request(#""command":"\#(command)""#), .invalidRequest, "port: missing")
            for port in ["0", "-1", "65536", "1.5", "1e400", run("5", 100)] {
                add("\(command) port \(port.prefix(12))", request(#""command":"\#(command)","port":\#(port)"#), .invalidRequest,
                    "port: ", "not a whole number from 1 to 65535")
            }
            for (port, found) in [(#""80""#, #"found a string ("80"); write it without quotes"#), ("true", "found a boolean"),
                                  ("null", "found null"), ("[80]", "found an array")] {
                add("\(command) port \(port)", request(#""command":"\#(command)","port":\#(port)"#), .invalidRequest,
                    "port: expected a number from 1 to 65535, \(found)")
            }
            add("\(command) port 0x10", request(#""command":"\#(command)","port":0x10"#), .invalidRequest,
                notJSON, "expected ',' or '}' in an object")
            for proto in [#""icmp""#, #""TCP""#, "17", "null", #"["tcp"]"#] {
                add("\(command) protocol \(proto)", request(#""command":"\#(command)","port":80,"protocol":\#(proto)"#), .invalidRequest,
                    #"protocol: expected "tcp", "udp" or "sctp""#)
            }
        }

        // Limits (issue 14): the request of 4,073 sources that held the xtables lock for seconds.
        let manyHosts = (0..<4073).map { #""10.0.\#($0 >> 8).\#($0 & 255)""# }.joined(separator: ",")
        add("block with 4073 sources", request(#""command":"block","entry":{"port":32000,"allowFrom":["# + manyHosts + "]}"), .invalidRequest,
            "entry.allowFrom: 4073 sources; at most 64 per entry (use wider CIDRs that cover several sources)")
        add("block with an IPv6 source for ipv4", request(#""command":"block","entry":{"port":1,"family":"ipv4","allowFrom":["2001:db8::/32"]}"#),
            .invalidRequest, "entry.allowFrom[0]: 2001:db8::/32 is an IPv6 source, but the entry covers ipv4 only")
        add("block with 4000 bad sources", request(#""command":"block","entry":{"port":1,"allowFrom":["# + (0..<4000).map { #""x\#($0)""# }.joined(separator: ",") + "]}"),
            .invalidRequest, "entry.allowFrom: 4000 sources; at most 64", "; ... and 3986 more")

        add("block with NUL in allowFrom", request(#""command":"block","entry":{"port":1,"allowFrom":["10.0.0.0\u0000 evil/8"]}"#),
            .invalidRequest, "is not an IPv4 or IPv6 address")
        add("escape sequence in a command", request(#""command":"li\u001b[2Jst""#), .invalidRequest, #"unknown command "li\u{1b}[2Jst""#)
        add("request with a byte-order mark", [0xEF, 0xBB, 0xBF] + text(list), .invalidRequest, "byte-order mark")
        return corpus
    }

    // MARK: running the corpus

    private func check(_ input: HostileInput, decoder: String, error: NodeGuardError?, prefix: String) {
        let label = "\(decoder) corpus entry '\(input.name)'"
        guard let error else {
            XCTFail("\(label) was accepted")
            return
        }
        XCTAssertEqual(error.code, input.code, "\(label): \(error.message)")
        XCTAssertTrue(error.message.hasPrefix(prefix), "\(label): message should start with \(prefix.debugDescription): \(error.message.debugDescription)")
        for fragment in input.fragments {
            XCTAssertTrue(error.message.contains(fragment),
                          "\(label): message \(error.message.debugDescription) should contain \(fragment.debugDescription)")
        }
        XCTAssertLessThanOrEqual(error.message.utf8.count, Self.maximumMessageBytes,
                                 "\(label): the message should not echo the input at length")
    }

    func testCorpusSizes() {
        let denyLists = Self.denyListCorpus()
        let requests = Self.requestCorpus()
        XCTAssertGreaterThanOrEqual(denyLists.count, 50)
        XCTAssertGreaterThanOrEqual(requests.count, 50)
        XCTAssertEqual(Set(denyLists.map(\.name)).count, denyLists.count, "deny-list corpus names are unique")
        XCTAssertEqual(Set(requests.map(\.name)).count, requests.count, "request corpus names are unique")
        for input in denyLists + requests {
            XCTAssertFalse(input.fragments.isEmpty, "'\(input.name)' checks its message")
        }
    }

    /// The well-formed inputs the corpus is mutated from are accepted, so each
    /// rejection below is due to the mutation.
    func testTheUnmutatedInputsAreAccepted() throws {
        let list = try DenyListCodec.decode(
            Self.text(#"{"version":1,"blocked":[{"port":31002,"protocol":"tcp","family":"both","reason":"SEC-1","allowFrom":["10.0.0.0/8","2001:db8::/32"]},{"port":31002,"protocol":"udp"}]}"#),
            source: "corpus")
        XCTAssertEqual(list.entries.map(\.key.description), ["31002/tcp", "31002/udp"])
        XCTAssertEqual(try DenyListCodec.decode(Self.denyList(), source: "corpus").entries, [])
        XCTAssertEqual(try DenyListCodec.decode(Self.denyList(#"{"port":1,"reason":"SEC-1\u00e9"}"#), source: "corpus").entries.first?.reason, "SEC-1é")
        // 32 levels is the most the reader takes (the deepest corpus entries are far beyond).
        XCTAssertNoThrow(try JSON.parse(Self.nested(JSON.maximumDepth)))

        let requests: [(String, ControlRequest)] = [
            (#"{"version":1,"command":"list"}"#, .list),
            (#"{"version":1,"command":"status"}"#, .status),
            (#"{"version":1,"command":"reload"}"#, .reload),
            (#"{"version":1,"command":"metrics"}"#, .metrics),
            (#"{"version":1,"command":"nodeports"}"#, .nodeports),
            (#"{"version":1,"command":"unblock","port":80,"protocol":"tcp"}"#, .unblock(PortKey(port: 80, transport: .tcp))),
            (#"{"version":1,"command":"explain","port":80,"protocol":"udp"}"#, .explain(PortKey(port: 80, transport: .udp))),
            (#"{"version":1,"command":"block","entry":{"port":1,"reason":"SEC-1","allowFrom":["10.0.0.0/8"]}}"#,
             .block(BlockEntry(port: 1, reason: "SEC-1", allowFrom: [cidr("10.0.0.0/8")]))),
        ]
        for (line, expected) in requests {
            XCTAssertEqual(try ControlRequest.decode(Self.text(line)), expected, line)
        }
    }

    func testEveryHostileDenyListGetsItsError() {
        for input in Self.denyListCorpus() {
            let error = capturedError { () throws(NodeGuardError) -> DenyList in
                try DenyListCodec.decode(input.bytes, source: "corpus")
            }
            check(input, decoder: "deny-list", error: error, prefix: "corpus: ")
        }
    }

    func testEveryHostileRequestGetsItsError() {
        for input in Self.requestCorpus() {
            let error = capturedError { () throws(NodeGuardError) -> ControlRequest in
                try ControlRequest.decode(input.bytes)
            }
            check(input, decoder: "request", error: error, prefix: "")
        }
    }
}
