import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

// Timestamps and numbers for logs, the audit file, status and metrics,
// formatted with the C library: Foundation's ISO8601DateFormatter and
// String(format:) bring ICU up at first use, about 10 MB of resident memory
// for a daemon that otherwise needs a few.

/// "2026-11-27T13:57:31Z": UTC, whole seconds, as ISO8601DateFormatter writes by default.
public func iso8601(_ date: Date) -> String {
    var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
    var parts = tm()
    gmtime_r(&seconds, &parts)
    return "\(parts.tm_year + 1900)-\(twoDigits(parts.tm_mon + 1))-\(twoDigits(parts.tm_mday))T"
        + "\(twoDigits(parts.tm_hour)):\(twoDigits(parts.tm_min)):\(twoDigits(parts.tm_sec))Z"
}

/// "07" for 7.
public func twoDigits(_ value: some BinaryInteger) -> String {
    value < 10 ? "0\(value)" : "\(value)"
}

/// `value` with exactly `decimals` digits after the point ("%.3f").
public func fixedPoint(_ value: Double, decimals: Int) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    let format = "%.\(decimals)f"
    _ = withVaList([value]) { vsnprintf(&buffer, buffer.count, format, $0) }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension String {
    /// The string without leading and trailing spaces, tabs and line breaks.
    var trimmingWhitespace: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}

extension String {
    /// At most `maximumBytes` bytes of UTF-8, cut at a character's end; a
    /// text that had to be cut ends in "..." (within the limit), so a reader
    /// of a kernel's comment sees it is not all there.
    func cut(toUTF8Bytes maximumBytes: Int) -> String {
        guard utf8.count > maximumBytes else { return self }
        var out = ""
        var used = 0
        for character in self {
            let size = character.utf8.count
            if used + size > maximumBytes - 3 { break }
            out.append(character)
            used += size
        }
        return out + "..."
    }
}
