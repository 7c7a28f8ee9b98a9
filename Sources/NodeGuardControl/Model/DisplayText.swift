/// Text from an untrusted input, made safe to put in an error message, a
/// log line or a terminal: control characters escaped (so an input cannot
/// forge a line of the message or move the cursor) and cut to `limit`
/// characters (so a 10 MB value does not become a 10 MB message).
public func displayText(_ text: some StringProtocol, limit: Int = 60) -> String {
    var out = ""
    var count = 0
    for scalar in text.unicodeScalars {
        if count >= limit { return out + "…" }
        switch scalar {
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        case _ where scalar.value < 0x20 || scalar.value == 0x7f || (0x80..<0xa0).contains(scalar.value):
            out += "\\u{\(String(scalar.value, radix: 16))}"
        default: out.unicodeScalars.append(scalar)
        }
        count += 1
    }
    return out
}
