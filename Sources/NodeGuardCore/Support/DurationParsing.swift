extension Duration {
    /// Parses "250ms", "1s", "1.5s", "2m" (a bare number is seconds), as the
    /// daemon's flags are written.
    public init(parsing text: String) throws(NodeGuardError) {
        let units: [(suffix: String, seconds: Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        var number = Substring(text)
        var scale = 1.0
        for unit in units where text.hasSuffix(unit.suffix) {
            number = text.dropLast(unit.suffix.count)
            scale = unit.seconds
            break
        }
        let decimal = !number.isEmpty && number.allSatisfy { $0.isASCII && ($0.isNumber || $0 == ".") }
        guard decimal, let value = Double(number), value > 0 else {
            throw NodeGuardError(.invalidRequest, "'\(text)' is not a positive duration such as 500ms, 1s or 2m")
        }
        guard value * scale <= 86_400 else {
            throw NodeGuardError(.invalidRequest, "'\(text)' is longer than a day")
        }
        self = .milliseconds(Int64((value * scale * 1000).rounded()))
        guard self >= .milliseconds(1) else {
            throw NodeGuardError(.invalidRequest, "'\(text)' is shorter than 1ms")
        }
    }
}
