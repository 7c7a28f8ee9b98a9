/// The C shims' fixed-size arrays (imported as tuples) filled from and read
/// into Swift values, without pointer arithmetic on the structs around them.

/// Copies `text` into a fixed-size C char array, NUL-terminated, cut to fit.
func copyCString<Buffer>(_ text: String, into buffer: inout Buffer) {
    withUnsafeMutableBytes(of: &buffer) { raw in
        let bytes = Array(text.utf8.prefix(raw.count - 1))
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
}

/// The text of a fixed-size C char array, up to its first NUL.
func readCString<Buffer>(_ buffer: inout Buffer) -> String {
    withUnsafeBytes(of: &buffer) { raw in
        String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}

/// Copies `bytes` to the start of a fixed-size C byte array, as many as fit.
func copyBytes<Buffer>(_ bytes: [UInt8], into buffer: inout Buffer) {
    withUnsafeMutableBytes(of: &buffer) { raw in
        for (i, byte) in bytes.enumerated() where i < raw.count { raw[i] = byte }
    }
}

/// The first `count` bytes of a fixed-size C byte array.
func leadingBytes<Buffer>(_ buffer: inout Buffer, _ count: Int) -> [UInt8] {
    withUnsafeBytes(of: &buffer) { Array($0.prefix(count)) }
}
