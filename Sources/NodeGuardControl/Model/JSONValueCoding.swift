/// Codable to and from `JSONValue`, for the control protocol's typed responses.
///
/// The protocol's envelope and the strict request and deny-list readers work
/// on `JSONValue`; a typed response is encoded straight into one (no text in
/// between) and decoded straight from the one the strict reader parsed. Keys
/// are the types' coding keys, so each is written once; `nil` optionals are
/// left out, as `JSONEncoder` leaves them out. Decoding ignores keys a type
/// does not know (a newer daemon may add some) and fails, naming the path,
/// on a missing key or a wrong type.
public struct JSONValueEncoder {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let root = EncodingNode()
        try value.encode(to: NodeEncoder(node: root, codingPath: []))
        return root.value
    }
}

public struct JSONValueDecoder {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try T(from: ValueDecoder(value: value, codingPath: []))
    }
}

/// A path as the deny-list's problems write it: `entries[2].dropped.packets`.
func jsonPath(_ codingPath: [any CodingKey]) -> String {
    var path = ""
    for key in codingPath {
        if let index = key.intValue { path += "[\(index)]" } else { path += (path.isEmpty ? "" : ".") + key.stringValue }
    }
    return path.isEmpty ? "the top level" : path
}

private struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String { "\(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(intValue: Int) { self.intValue = intValue }
    init?(stringValue: String) { return nil }
}

// MARK: encoding

/// What one value encodes to: a scalar, or members and items filled in by
/// nested containers (which may outlive the call that made them).
private final class EncodingNode {
    var scalar: JSONValue?
    var members: [String: EncodingNode]?
    var items: [EncodingNode]?

    var value: JSONValue {
        if let members { return .object(members.mapValues(\.value)) }
        if let items { return .array(items.map(\.value)) }
        return scalar ?? .object([:])
    }
}

private func scalar(_ value: some BinaryInteger) -> JSONValue { .number(String(value)) }

private func scalar(_ value: Double, _ codingPath: [any CodingKey]) throws -> JSONValue {
    guard value.isFinite else {
        throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "JSON has no \(value)"))
    }
    return .number(value.description)
}

private struct NodeEncoder: Encoder {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if node.members == nil { node.members = [:] }
        return KeyedEncodingContainer(KeyedNodeEncoder<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if node.items == nil { node.items = [] }
        return UnkeyedNodeEncoder(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleNodeEncoder(node: node, codingPath: codingPath) }
}

private struct KeyedNodeEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: EncodingNode
    let codingPath: [any CodingKey]

    private func child(_ key: Key) -> EncodingNode {
        let child = EncodingNode()
        node.members![key.stringValue] = child
        return child
    }

    private func put(_ value: JSONValue, _ key: Key) { child(key).scalar = value }

    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(try scalar(value, codingPath + [key]), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { put(try scalar(Double(value), codingPath + [key]), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(scalar(value), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { put(scalar(value), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { put(scalar(value), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(scalar(value), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(scalar(value), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { put(scalar(value), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { put(scalar(value), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { put(scalar(value), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { put(scalar(value), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(scalar(value), key) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try value.encode(to: NodeEncoder(node: child(key), codingPath: codingPath + [key]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type,
                                                        forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        NodeEncoder(node: child(key), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        NodeEncoder(node: child(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { NodeEncoder(node: node, codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { NodeEncoder(node: child(key), codingPath: codingPath + [key]) }
}

/// The scalar encodes, alike for an array's next item and for a single value.
private protocol ScalarEncoder {
    /// Stores `value` where the next scalar goes; `path` is that place's.
    mutating func put(_ value: JSONValue)
    var scalarPath: [any CodingKey] { get }
}

extension ScalarEncoder {
    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ value: Bool) throws { put(.bool(value)) }
    mutating func encode(_ value: String) throws { put(.string(value)) }
    mutating func encode(_ value: Double) throws { put(try scalar(value, scalarPath)) }
    mutating func encode(_ value: Float) throws { put(try scalar(Double(value), scalarPath)) }
    mutating func encode(_ value: Int) throws { put(scalar(value)) }
    mutating func encode(_ value: Int8) throws { put(scalar(value)) }
    mutating func encode(_ value: Int16) throws { put(scalar(value)) }
    mutating func encode(_ value: Int32) throws { put(scalar(value)) }
    mutating func encode(_ value: Int64) throws { put(scalar(value)) }
    mutating func encode(_ value: UInt) throws { put(scalar(value)) }
    mutating func encode(_ value: UInt8) throws { put(scalar(value)) }
    mutating func encode(_ value: UInt16) throws { put(scalar(value)) }
    mutating func encode(_ value: UInt32) throws { put(scalar(value)) }
    mutating func encode(_ value: UInt64) throws { put(scalar(value)) }
}

private struct UnkeyedNodeEncoder: UnkeyedEncodingContainer, ScalarEncoder {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    var count: Int { node.items!.count }
    var scalarPath: [any CodingKey] { codingPath + [IndexKey(count)] }

    private func next() -> (EncodingNode, [any CodingKey]) {
        let child = EncodingNode()
        let path = scalarPath
        node.items!.append(child)
        return (child, path)
    }

    func put(_ value: JSONValue) { next().0.scalar = value }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let (child, path) = next()
        try value.encode(to: NodeEncoder(node: child, codingPath: path))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let (child, path) = next()
        return NodeEncoder(node: child, codingPath: path).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let (child, path) = next()
        return NodeEncoder(node: child, codingPath: path).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        let (child, path) = next()
        return NodeEncoder(node: child, codingPath: path)
    }
}

private struct SingleNodeEncoder: SingleValueEncodingContainer, ScalarEncoder {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    var scalarPath: [any CodingKey] { codingPath }

    func put(_ value: JSONValue) { node.scalar = value }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try value.encode(to: NodeEncoder(node: node, codingPath: codingPath))
    }
}

// MARK: decoding

private func mismatch(_ expected: String, _ found: JSONValue, _ codingPath: [any CodingKey]) -> DecodingError {
    .typeMismatch(Any.self, .init(codingPath: codingPath,
                                  debugDescription: "\(jsonPath(codingPath)): expected \(expected), found \(found.typeDescription)"))
}

private func decodeBool(_ value: JSONValue, _ codingPath: [any CodingKey]) throws -> Bool {
    guard case .bool(let bool) = value else { throw mismatch("a boolean", value, codingPath) }
    return bool
}

private func decodeString(_ value: JSONValue, _ codingPath: [any CodingKey]) throws -> String {
    guard case .string(let string) = value else { throw mismatch("a string", value, codingPath) }
    return string
}

private func decodeInteger<T: FixedWidthInteger>(_ value: JSONValue, _ codingPath: [any CodingKey]) throws -> T {
    guard case .number(let text) = value else { throw mismatch("a number", value, codingPath) }
    guard let integer = T(text) else {
        throw DecodingError.dataCorrupted(.init(codingPath: codingPath,
                                                debugDescription: "\(jsonPath(codingPath)): \(text) is not a whole number that fits \(T.self)"))
    }
    return integer
}

private func decodeDouble(_ value: JSONValue, _ codingPath: [any CodingKey]) throws -> Double {
    guard case .number(let text) = value, let double = Double(text) else { throw mismatch("a number", value, codingPath) }
    return double
}

private struct ValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let members) = value else { throw mismatch("an object", value, codingPath) }
        return KeyedDecodingContainer(KeyedValueDecoder<Key>(members: members, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else { throw mismatch("an array", value, codingPath) }
        return UnkeyedValueDecoder(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleValueDecoder(value: value, codingPath: codingPath) }
}

private struct KeyedValueDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let members: [String: JSONValue]
    let codingPath: [any CodingKey]
    var allKeys: [Key] { members.keys.compactMap(Key.init(stringValue:)) }

    func contains(_ key: Key) -> Bool { members[key.stringValue] != nil }

    private func member(_ key: Key) throws -> JSONValue {
        guard let value = members[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath,
                                                       debugDescription: "\(jsonPath(codingPath + [key])): missing"))
        }
        return value
    }

    func decodeNil(forKey key: Key) throws -> Bool { try member(key) == .null }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decodeBool(member(key), codingPath + [key]) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try decodeString(member(key), codingPath + [key]) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decodeDouble(member(key), codingPath + [key]) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { Float(try decodeDouble(member(key), codingPath + [key])) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decodeInteger(member(key), codingPath + [key]) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try decodeInteger(member(key), codingPath + [key]) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try decodeInteger(member(key), codingPath + [key]) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decodeInteger(member(key), codingPath + [key]) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decodeInteger(member(key), codingPath + [key]) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try decodeInteger(member(key), codingPath + [key]) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try decodeInteger(member(key), codingPath + [key]) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try decodeInteger(member(key), codingPath + [key]) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try decodeInteger(member(key), codingPath + [key]) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try decodeInteger(member(key), codingPath + [key]) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try T(from: ValueDecoder(value: member(key), codingPath: codingPath + [key]))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type,
                                               forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try ValueDecoder(value: member(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try ValueDecoder(value: member(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { ValueDecoder(value: .object(members), codingPath: codingPath) }
    func superDecoder(forKey key: Key) throws -> any Decoder {
        ValueDecoder(value: members[key.stringValue] ?? .null, codingPath: codingPath + [key])
    }
}

private struct UnkeyedValueDecoder: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [any CodingKey]
    var currentIndex = 0
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [JSONValue], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    private mutating func next() throws -> (JSONValue, [any CodingKey]) {
        let path = codingPath + [IndexKey(currentIndex)]
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: path, debugDescription: "\(jsonPath(path)): past the array's end"))
        }
        defer { currentIndex += 1 }
        return (items[currentIndex], path)
    }

    private mutating func decode<T>(_ body: (JSONValue, [any CodingKey]) throws -> T) throws -> T {
        let (value, path) = try next()
        return try body(value, path)
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try decode(decodeBool) }
    mutating func decode(_ type: String.Type) throws -> String { try decode(decodeString) }
    mutating func decode(_ type: Double.Type) throws -> Double { try decode(decodeDouble) }
    mutating func decode(_ type: Float.Type) throws -> Float { Float(try decode(decodeDouble)) }
    mutating func decode(_ type: Int.Type) throws -> Int { try decode(decodeInteger) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try decode(decodeInteger) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try decode(decodeInteger) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try decode(decodeInteger) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try decode(decodeInteger) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try decode(decodeInteger) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try decode(decodeInteger) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try decode(decodeInteger) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try decode(decodeInteger) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try decode(decodeInteger) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try decode { value, path in try T(from: ValueDecoder(value: value, codingPath: path)) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try decode { value, path in try ValueDecoder(value: value, codingPath: path).container(keyedBy: type) }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try decode { value, path in try ValueDecoder(value: value, codingPath: path).unkeyedContainer() }
    }

    mutating func superDecoder() throws -> any Decoder {
        try decode { value, path in ValueDecoder(value: value, codingPath: path) }
    }
}

private struct SingleValueDecoder: SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool { value == .null }
    func decode(_ type: Bool.Type) throws -> Bool { try decodeBool(value, codingPath) }
    func decode(_ type: String.Type) throws -> String { try decodeString(value, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try decodeDouble(value, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { Float(try decodeDouble(value, codingPath)) }
    func decode(_ type: Int.Type) throws -> Int { try decodeInteger(value, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try decodeInteger(value, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try decodeInteger(value, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try decodeInteger(value, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try decodeInteger(value, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try decodeInteger(value, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try decodeInteger(value, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try decodeInteger(value, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decodeInteger(value, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decodeInteger(value, codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        return try T(from: ValueDecoder(value: value, codingPath: codingPath))
    }
}
