import XCTest
@testable import NodeGuardCore

final class JSONTests: XCTestCase {
    // MARK: helpers

    private func parsed(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> JSONValue? {
        do {
            return try JSON.parse(text)
        } catch {
            XCTFail("\(text.debugDescription) should parse: \(error)", file: file, line: line)
            return nil
        }
    }

    private func parsed(bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> JSONValue? {
        do {
            return try JSON.parse(bytes)
        } catch {
            XCTFail("\(bytes) should parse: \(error)", file: file, line: line)
            return nil
        }
    }

    /// The syntax error for `bytes`, failing the test if they parsed.
    private func syntaxError(bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> JSONSyntaxError? {
        let error = capturedSyntaxError { () throws(JSONSyntaxError) -> JSONValue in try JSON.parse(bytes) }
        if error == nil { XCTFail("\(bytes) should be rejected", file: file, line: line) }
        return error
    }

    private func syntaxError(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> JSONSyntaxError? {
        let error = capturedSyntaxError { () throws(JSONSyntaxError) -> JSONValue in try JSON.parse(text) }
        if error == nil { XCTFail("\(text.debugDescription) should be rejected", file: file, line: line) }
        return error
    }

    private func assertRejected(_ text: String, containing fragment: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        guard let error = syntaxError(text, file: file, line: line) else { return }
        XCTAssertTrue(error.message.contains(fragment),
                      "error for \(text.debugDescription) was \(error.message.debugDescription), expected \(fragment.debugDescription)",
                      file: file, line: line)
    }

    private func assertRejected(bytes: [UInt8], containing fragment: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        guard let error = syntaxError(bytes: bytes, file: file, line: line) else { return }
        XCTAssertTrue(error.message.contains(fragment),
                      "error for \(bytes) was \(error.message.debugDescription), expected \(fragment.debugDescription)",
                      file: file, line: line)
    }

    private func nested(_ depth: Int, open: String = "[", close: String = "]") -> String {
        String(repeating: open, count: depth) + String(repeating: close, count: depth)
    }

    // MARK: valid documents

    func testParsesScalarsOfEveryType() {
        XCTAssertEqual(parsed("null"), .null)
        XCTAssertEqual(parsed("true"), .bool(true))
        XCTAssertEqual(parsed("false"), .bool(false))
        XCTAssertEqual(parsed("0"), .number("0"))
        XCTAssertEqual(parsed("-12"), .number("-12"))
        XCTAssertEqual(parsed("3.25e-2"), .number("3.25e-2"))
        XCTAssertEqual(parsed("1E+2"), .number("1E+2"))
        XCTAssertEqual(parsed("-0.0"), .number("-0.0"))
        XCTAssertEqual(parsed("\"hi\""), .string("hi"))
        XCTAssertEqual(parsed("\"\""), .string(""))
        XCTAssertEqual(parsed("[]"), .array([]))
        XCTAssertEqual(parsed("{}"), .object([:]))
    }

    func testParsesNestedDocumentWithWhitespace() {
        let text = " \t\r\n{ \"a\" : [ 1 , \"x\" , null , true , { \"k\" : [ false ] } ] ,\n\"b\":{}, \"c\":[[]] }\n "
        XCTAssertEqual(parsed(text), .object([
            "a": .array([.number("1"), .string("x"), .null, .bool(true), .object(["k": .array([.bool(false)])])]),
            "b": .object([:]),
            "c": .array([.array([])]),
        ]))
    }

    func testParsesFromAnyByteCollection() {
        let text = #"{"a":[1,2]}"#
        let expected: JSONValue = .object(["a": .array([.number("1"), .number("2")])])
        XCTAssertEqual(try JSON.parse(text.utf8), expected)
        XCTAssertEqual(try JSON.parse(Array(text.utf8)), expected)
        XCTAssertEqual(try JSON.parse(Array(("xx" + text).utf8).dropFirst(2)), expected)
    }

    func testSameKeyInDifferentObjectsIsAllowed() {
        XCTAssertEqual(parsed(#"[{"a":1},{"a":2}]"#),
                       .array([.object(["a": .number("1")]), .object(["a": .number("2")])]))
        XCTAssertEqual(parsed(#"{"a":{"a":1}}"#), .object(["a": .object(["a": .number("1")])]))
    }

    // MARK: numbers

    func testBigIntegersKeepTheirExactText() {
        let big = "123456789012345678901234567890123456789"
        XCTAssertEqual(parsed(big), .number(big))
        XCTAssertNil(parsed(big)?.integerValue, "too big for Int")
        XCTAssertEqual(parsed("-" + big), .number("-" + big))
        XCTAssertEqual(parsed("[\(big)]"), .array([.number(big)]))
        // The text survives a round trip exactly, no float rounding.
        XCTAssertEqual(JSON.serialize(.array([.number(big)])), "[\(big)]")
        XCTAssertEqual(parsed("9007199254740993"), .number("9007199254740993"))
        XCTAssertEqual(parsed("9007199254740993")?.integerValue, 9_007_199_254_740_993)
    }

    func testIntegerValue() {
        XCTAssertEqual(parsed("42")?.integerValue, 42)
        XCTAssertEqual(parsed("-7")?.integerValue, -7)
        XCTAssertEqual(parsed("9223372036854775807")?.integerValue, Int.max)
        XCTAssertNil(parsed("9223372036854775808")?.integerValue)
        XCTAssertNil(parsed("1.0")?.integerValue, "a fraction is not an integer")
        XCTAssertNil(parsed("1e2")?.integerValue, "an exponent is not an integer")
        XCTAssertNil(parsed("\"42\"")?.integerValue, "a string is not a number")
        XCTAssertNil(JSONValue.bool(true).integerValue)
        XCTAssertEqual(JSONValue.integer(UInt16(65535)), .number("65535"))
        XCTAssertEqual(JSONValue.integer(-3), .number("-3"))
    }

    func testLeadingZerosAreRejected() {
        assertRejected("01", containing: "leading zeros")
        assertRejected("-01", containing: "leading zeros")
        assertRejected("00", containing: "leading zeros")
        assertRejected("[007]", containing: "leading zeros")
        assertRejected("00.5", containing: "leading zeros")
        // but a single zero is fine
        XCTAssertEqual(parsed("0.5"), .number("0.5"))
        XCTAssertEqual(parsed("-0"), .number("-0"))
        XCTAssertEqual(parsed("0e5"), .number("0e5"))
    }

    func testMalformedNumbersAreRejected() {
        assertRejected("-", containing: "needs digits")
        assertRejected("-a", containing: "needs digits")
        assertRejected("1.", containing: "fraction needs digits")
        assertRejected("1.e5", containing: "fraction needs digits")
        assertRejected("1e", containing: "exponent needs digits")
        assertRejected("1e+", containing: "exponent needs digits")
        assertRejected("1E-x", containing: "exponent needs digits")
        for text in [".5", "+1", "NaN", "Infinity", "-Infinity", "0x10", "1.5.2", "1_000", "٣"] {
            XCTAssertNotNil(syntaxError(text), text)
        }
    }

    // MARK: duplicate keys and depth

    func testDuplicateKeysAreRejectedNamingTheKey() {
        assertRejected(#"{"port":1,"port":2}"#, containing: #"duplicate key "port""#)
        assertRejected(#"{"a":{"inner":1,"other":2,"inner":3}}"#, containing: #"duplicate key "inner""#)
        assertRejected(#"[{"x":1,"x":1}]"#, containing: #"duplicate key "x""#)
        // Escapes are decoded before comparing: "\u0061" is "a".
        assertRejected(#"{"a":1,"\u0061":2}"#, containing: #"duplicate key "a""#)
    }

    func testDuplicateKeyErrorPointsAtTheSecondKey() {
        let text = "{\n  \"a\": 1,\n  \"a\": 2\n}"
        guard let error = syntaxError(text) else { return }
        XCTAssertEqual(error.line, 3)
        XCTAssertEqual(error.column, 3)
        XCTAssertEqual(error.description, "line 3, column 3: duplicate key \"a\"")
    }

    func testNestingUpToTheMaximumDepthIsAccepted() {
        XCTAssertEqual(JSON.maximumDepth, 32)
        XCTAssertNotNil(parsed(nested(JSON.maximumDepth)))
        XCTAssertNotNil(parsed(String(repeating: #"{"a":"#, count: JSON.maximumDepth) + "1"
                               + String(repeating: "}", count: JSON.maximumDepth)))
        XCTAssertNotNil(parsed(String(repeating: #"[{"a":"#, count: JSON.maximumDepth / 2) + "1"
                               + String(repeating: "}]", count: JSON.maximumDepth / 2)))
    }

    func testNestingDeeperThanTheMaximumIsRejected() {
        let fragment = "nesting deeper than \(JSON.maximumDepth) levels"
        assertRejected(nested(JSON.maximumDepth + 1), containing: fragment)
        assertRejected(String(repeating: #"{"a":"#, count: JSON.maximumDepth + 1) + "1"
                       + String(repeating: "}", count: JSON.maximumDepth + 1), containing: fragment)
        // Mixed arrays and objects count together.
        assertRejected(String(repeating: #"[{"a":"#, count: (JSON.maximumDepth + 2) / 2) + "1"
                       + String(repeating: "}]", count: (JSON.maximumDepth + 2) / 2), containing: fragment)
    }

    func testHostileNestingIsRejectedWithoutExhaustingTheStack() {
        // Unclosed, so only the depth check can stop it early.
        assertRejected(String(repeating: "[", count: 200_000), containing: "nesting deeper")
        assertRejected(String(repeating: #"{"a":"#, count: 200_000), containing: "nesting deeper")
    }

    // MARK: strings and bytes

    func testInvalidUTF8InStringsIsRejected() {
        let cases: [[UInt8]] = [
            [0x22, 0xFF, 0x22],                 // never valid
            [0x22, 0x61, 0x80, 0x62, 0x22],     // lone continuation byte
            [0x22, 0xC0, 0x80, 0x22],           // overlong NUL
            [0x22, 0xE0, 0x80, 0xAF, 0x22],     // overlong '/'
            [0x22, 0xE2, 0x82, 0x22],           // truncated €
            [0x22, 0xED, 0xA0, 0x80, 0x22],     // UTF-8 encoded surrogate
            [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], // above U+10FFFF
            [0x22, 0xE2, 0x82, 0x5C, 0x6E, 0x22], // truncated sequence cut by an escape
            [0x7B, 0x22, 0xFE, 0x22, 0x3A, 0x31, 0x7D], // in a key
        ]
        for bytes in cases {
            assertRejected(bytes: bytes, containing: "invalid UTF-8")
        }
    }

    func testInvalidBytesOutsideStringsAreRejected() {
        XCTAssertNotNil(syntaxError(bytes: [0xFF]))
        XCTAssertNotNil(syntaxError(bytes: [0x5B, 0xC3, 0xA9, 0x5D]))  // [é]
        XCTAssertNotNil(syntaxError(bytes: [0xEF, 0xBB, 0xBF, 0x31]))  // BOM then 1
    }

    func testValidMultibyteUTF8IsDecoded() {
        let text = "\"é€😀中\""
        XCTAssertEqual(parsed(bytes: Array(text.utf8)), .string("é€😀中"))
        XCTAssertEqual(parsed("{\"clé\":\"naïve\"}"), .object(["clé": .string("naïve")]))
    }

    func testNulByteIsRejected() {
        assertRejected(bytes: [0x22, 0x61, 0x00, 0x62, 0x22], containing: "NUL byte in a string")
        assertRejected(bytes: [0x00], containing: "NUL byte where a value was expected")
        assertRejected(bytes: [0x5B, 0x00, 0x5D], containing: "NUL byte")
        assertRejected(bytes: [0x7B, 0x22, 0x00, 0x22, 0x3A, 0x31, 0x7D], containing: "NUL byte in a string")
        // An escaped NUL is valid JSON (the deny-list codec rejects it as a control character).
        XCTAssertEqual(parsed(#""a\u0000b""#), .string("a\u{0}b"))
    }

    func testRawControlCharactersInStringsAreRejected() {
        for byte in UInt8(1)...UInt8(0x1F) {
            assertRejected(bytes: [0x22, 0x61, byte, 0x22], containing: "unescaped control character")
        }
        // DEL is not a control character for JSON, and escaped controls are fine.
        XCTAssertEqual(parsed(bytes: [0x22, 0x7F, 0x22]), .string("\u{7F}"))
        XCTAssertEqual(parsed(#""\t\n\u001f""#), .string("\t\n\u{1F}"))
    }

    func testSimpleEscapes() {
        XCTAssertEqual(parsed(#""\"\\\/\b\f\n\r\t""#), .string("\"\\/\u{08}\u{0C}\n\r\t"))
        XCTAssertEqual(parsed(#""a\u00e9b\u20AC\u0041""#), .string("aéb€A"))
        XCTAssertEqual(parsed(#""\u00E9\u00e9""#), .string("éé"))
    }

    func testSurrogatePairs() {
        XCTAssertEqual(parsed(#""\ud83d\ude00""#), .string("😀"))
        XCTAssertEqual(parsed(#""\uD83D\uDE00x""#), .string("😀x"))
        XCTAssertEqual(parsed(#""\ud800\udc00""#), .string("\u{10000}"))
        XCTAssertEqual(parsed(#""\udbff\udfff""#), .string("\u{10FFFF}"))
        XCTAssertEqual(parsed(#""a\ud834\udd1eb""#), .string("a𝄞b"))
    }

    func testUnpairedSurrogatesAreRejected() {
        assertRejected(#""\ud83d""#, containing: "unpaired surrogate")
        assertRejected(#""\ud83dx""#, containing: "unpaired surrogate")
        assertRejected(#""\ud83d\u0041""#, containing: "unpaired surrogate")
        assertRejected(#""\ud83d\ue000""#, containing: "unpaired surrogate")   // just above the low range
        assertRejected(#""\ud83d\udbff""#, containing: "unpaired surrogate")   // just below it
        assertRejected(#""\ud83d\uffff""#, containing: "unpaired surrogate")
        assertRejected(#""\ud83d\ud83d""#, containing: "unpaired surrogate")
        assertRejected(#""\ude00""#, containing: "unpaired surrogate")
        assertRejected(#""\ude00\ud83d""#, containing: "unpaired surrogate")
        assertRejected(#""\ud83d\n""#, containing: "unpaired surrogate")
    }

    func testBadEscapesAreRejected() {
        assertRejected(#""\x41""#, containing: "invalid escape")
        assertRejected(#""\'""#, containing: "invalid escape")
        assertRejected(#""\U0041""#, containing: "invalid escape")
        assertRejected(#""\u12G4""#, containing: "invalid hex digit")
        assertRejected(#""\u12""#, containing: "truncated \\u escape")
        assertRejected(#""\"#, containing: "unterminated escape")
    }

    // MARK: truncation, garbage, other syntax

    func testTruncatedInputIsRejected() {
        assertRejected("", containing: "unexpected end of input")
        assertRejected(" \n\t ", containing: "unexpected end of input")
        assertRejected("[", containing: "unexpected end of input")
        assertRejected("[1", containing: "unexpected end of input inside an array")
        assertRejected("[1,", containing: "unexpected end of input")
        assertRejected("{", containing: "unexpected end of input inside an object")
        assertRejected(#"{"a""#, containing: "expected ':'")
        assertRejected(#"{"a":"#, containing: "unexpected end of input")
        assertRejected(#"{"a":1"#, containing: "unexpected end of input inside an object")
        assertRejected(#"{"a":1,"#, containing: "unexpected end of input inside an object")
        assertRejected(#""abc"#, containing: "unterminated string")
        assertRejected(#""abc\"#, containing: "unterminated escape")
        assertRejected(#""\u12"#, containing: "truncated \\u escape")
        assertRejected("tru", containing: "invalid literal (expected true)")
        assertRejected("fals", containing: "invalid literal (expected false)")
        assertRejected("nul", containing: "invalid literal (expected null)")
        // Every proper prefix of a valid document is invalid.
        let document = #"{"version":1,"blocked":[{"port":31002,"reason":"a\u00e9\"b"},[true,false,null,-1.5e3]]}"#
        let bytes = Array(document.utf8)
        XCTAssertNotNil(parsed(bytes: bytes))
        for length in 0..<bytes.count {
            XCTAssertNotNil(syntaxError(bytes: Array(bytes[..<length])), "prefix of length \(length)")
        }
    }

    func testTrailingGarbageIsRejected() {
        for text in ["1 2", "{} x", "[]]", "{}}", "truex", "null,", "\"a\"\"b\"", "[1] [2]", "0 0", "{}\u{0}"] {
            assertRejected(text, containing: "unexpected text after the JSON value")
        }
        // but trailing whitespace is fine
        XCTAssertEqual(parsed("[1] \n\r\t"), .array([.number("1")]))
    }

    func testOtherSyntaxErrors() {
        assertRejected("[1,]", containing: "unexpected character where a value was expected")
        assertRejected("[,1]", containing: "unexpected character")
        assertRejected(#"{"a":1,}"#, containing: "expected a quoted key")
        assertRejected("{a:1}", containing: "expected a quoted key")
        assertRejected("{'a':1}", containing: "expected a quoted key")
        assertRejected(#"{"a" 1}"#, containing: "expected ':'")
        assertRejected(#"{"a":1 "b":2}"#, containing: "expected ',' or '}'")
        assertRejected("[1 2]", containing: "expected ',' or ']'")
        assertRejected("'a'", containing: "unexpected character")
        assertRejected("// comment\n1", containing: "unexpected character")
        assertRejected("TRUE", containing: "unexpected character")
        assertRejected("\u{0B}1", containing: "unexpected character")   // vertical tab is not JSON whitespace
    }

    func testErrorPositionsCountLinesAndColumns() {
        guard let error = syntaxError("[\n1,\n  x]") else { return }
        XCTAssertEqual(error.line, 3)
        XCTAssertEqual(error.column, 3)
        guard let first = syntaxError("x") else { return }
        XCTAssertEqual(first.line, 1)
        XCTAssertEqual(first.column, 1)
        XCTAssertEqual(first.description, "line 1, column 1: unexpected character where a value was expected")
        guard let leading = syntaxError("[1, 012]") else { return }
        XCTAssertEqual(leading.column, 5, "points at the number's first digit")
    }

    // MARK: writing

    func testSerializeSortsKeysStably() {
        var forward: [String: JSONValue] = [:]
        var backward: [String: JSONValue] = [:]
        let keys = ["b", "a", "B", "A", "aa", "_", "1", "z", "é"]
        for (i, key) in keys.enumerated() { forward[key] = .number(String(i)) }
        for (i, key) in keys.enumerated().reversed() { backward[key] = .number(String(i)) }
        let one = JSON.serialize(.object(forward))
        let two = JSON.serialize(.object(backward))
        XCTAssertEqual(one, two)
        XCTAssertEqual(one, #"{"1":6,"A":3,"B":2,"_":5,"a":1,"aa":4,"b":0,"z":7,"é":8}"#)
        // Serialising many times gives the same text.
        for _ in 0..<20 { XCTAssertEqual(JSON.serialize(.object(forward)), one) }
    }

    func testSerializeCompactForm() {
        let value: JSONValue = .object([
            "list": .array([.null, .bool(true), .bool(false), .number("-1.5e3"), .string("x"), .array([]), .object([:])]),
            "n": .number("12345678901234567890"),
        ])
        XCTAssertEqual(JSON.serialize(value),
                       #"{"list":[null,true,false,-1.5e3,"x",[],{}],"n":12345678901234567890}"#)
    }

    func testSerializePrettyForm() {
        let value: JSONValue = .object(["b": .object([:]), "a": .array([.number("1"), .object(["c": .null])]), "d": .array([])])
        let expected = """
        {
          "a": [
            1,
            {
              "c": null
            }
          ],
          "b": {},
          "d": []
        }
        """
        XCTAssertEqual(JSON.serialize(value, pretty: true), expected)
    }

    func testSerializeEscapesStrings() {
        let value = JSONValue.string("\"\\\n\t\r\u{01}\u{08}\u{0C}\u{1F}\u{7F}/é😀")
        XCTAssertEqual(JSON.serialize(value), #""\"\\\n\t\r\u0001\u0008\u000c\u001f\u007f/é😀""#)
        XCTAssertEqual(JSON.serialize(.string("\u{0}")), #""\u0000""#)
        XCTAssertEqual(JSON.serialize(.object(["k\"ey": .string("v")])), #"{"k\"ey":"v"}"#)
    }

    func testRoundTripOfARichDocument() {
        let value: JSONValue = .object([
            "version": .number("1"),
            "nested": .array([.array([.array([.object(["deep": .string("yes")])])])]),
            "text": .string("tab\there \"quoted\" back\\slash NUL\u{0} DEL\u{7F} é 😀 \u{2028}"),
            "empty": .object([:]),
            "": .string(""),
            "numbers": .array([.number("0"), .number("-0"), .number("1e-7"), .number("99999999999999999999999")]),
            "flags": .array([.bool(true), .bool(false), .null]),
        ])
        for pretty in [false, true] {
            let text = JSON.serialize(value, pretty: pretty)
            XCTAssertEqual(parsed(text), value, "pretty: \(pretty)")
            XCTAssertEqual(parsed(bytes: Array(text.utf8)), value, "pretty: \(pretty)")
        }
    }

    func testRoundTripOfRandomDocuments() {
        var rng = SplitMix64(seed: 0x4A53_4F4E)
        for round in 0..<400 {
            let value = randomValue(depth: 0, using: &rng)
            for pretty in [false, true] {
                let text = JSON.serialize(value, pretty: pretty)
                guard let back = parsed(text) else { return }
                XCTAssertEqual(back, value, "round \(round), pretty \(pretty): \(text)")
                // and the text itself is stable
                XCTAssertEqual(JSON.serialize(back, pretty: pretty), text, "round \(round)")
            }
        }
    }

    private func randomString(using rng: inout SplitMix64) -> String {
        let pools: [ClosedRange<UInt32>] = [
            0x20...0x7E, 0x20...0x7E, 0x00...0x1F, 0x7F...0xFF, 0x100...0x17F, 0x300...0x36F,
            0x4E00...0x4E20, 0x2028...0x2029, 0xE000...0xE010, 0xFFF0...0xFFFD, 0x1F600...0x1F64F, 0x10FFF0...0x10FFFF,
        ]
        var scalars = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: 0...12, using: &rng) {
            let pool = pools.randomElement(using: &rng)!
            if let scalar = Unicode.Scalar(UInt32.random(in: pool, using: &rng)) { scalars.append(scalar) }
        }
        if Bool.random(using: &rng) { scalars.append(["\"", "\\", "/"].randomElement(using: &rng)!) }
        return String(scalars)
    }

    private func randomNumber(using rng: inout SplitMix64) -> String {
        var text = Bool.random(using: &rng) ? "-" : ""
        if Int.random(in: 0..<4, using: &rng) == 0 {
            text += "0"
        } else {
            text += String(Int.random(in: 1...9, using: &rng))
            for _ in 0..<Int.random(in: 0...30, using: &rng) { text += String(Int.random(in: 0...9, using: &rng)) }
        }
        if Bool.random(using: &rng) { text += "." + String(Int.random(in: 0...999_999, using: &rng)) }
        if Int.random(in: 0..<3, using: &rng) == 0 {
            text += ["e", "E", "e+", "e-", "E-"].randomElement(using: &rng)! + String(Int.random(in: 0...400, using: &rng))
        }
        return text
    }

    private func randomValue(depth: Int, using rng: inout SplitMix64) -> JSONValue {
        let kinds = depth >= 6 ? 4 : 6
        switch Int.random(in: 0..<kinds, using: &rng) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2: return .number(randomNumber(using: &rng))
        case 3: return .string(randomString(using: &rng))
        case 4:
            return .array((0..<Int.random(in: 0...5, using: &rng)).map { _ in randomValue(depth: depth + 1, using: &rng) })
        default:
            var members: [String: JSONValue] = [:]
            for _ in 0..<Int.random(in: 0...5, using: &rng) {
                members[randomString(using: &rng)] = randomValue(depth: depth + 1, using: &rng)
            }
            return .object(members)
        }
    }

    // MARK: accessors

    func testTypeDescriptionsAndAccessors() {
        XCTAssertEqual(JSONValue.null.typeDescription, "null")
        XCTAssertEqual(JSONValue.bool(false).typeDescription, "a boolean")
        XCTAssertEqual(JSONValue.number("1").typeDescription, "a number")
        XCTAssertEqual(JSONValue.string("").typeDescription, "a string")
        XCTAssertEqual(JSONValue.array([]).typeDescription, "an array")
        XCTAssertEqual(JSONValue.object([:]).typeDescription, "an object")

        let value: JSONValue = .object(["s": .string("x"), "a": .array([.null]), "b": .bool(true)])
        XCTAssertEqual(value["s"]?.stringValue, "x")
        XCTAssertEqual(value["a"]?.arrayValue, [.null])
        XCTAssertEqual(value["b"]?.boolValue, true)
        XCTAssertNil(value["missing"])
        XCTAssertNil(JSONValue.array([])["s"], "subscript on a non-object is nil")
        XCTAssertNil(value["s"]?.boolValue)
        XCTAssertNil(value["b"]?.stringValue)
        XCTAssertNil(value["s"]?.arrayValue)
    }

    /// `nodeguardctl metrics` reads one string of 20+ MB with escapes on every
    /// line. Parsing it copied the string built so far at each escape, so it
    /// took minutes; it must take time in proportion to its length.
    func testALongStringWithManyEscapesParsesInLinearTime() throws {
        let line = "nodeguard_dropped_bytes_total{family=\"ipv4\",port=\"31002\",protocol=\"tcp\"} 720\n"
        let text = String(repeating: line, count: 100_000)   // 8.4 MB, 600,000 escapes once serialised
        let document = JSON.serialize(.object(["text": .string(text)]))
        let start = ContinuousClock.now
        let parsed = try JSON.parse(document)
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(10), "about 1 s in a debug build; quadratic took minutes")
        XCTAssertEqual(parsed["text"]?.stringValue, text)
    }
}
