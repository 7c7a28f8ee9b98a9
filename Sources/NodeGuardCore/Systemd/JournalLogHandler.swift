import CSystemd
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Writes log events to journald with structured fields (sd_journal_sendv):
/// MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, CODE_FILE/CODE_LINE/CODE_FUNC, and
/// each metadata key as an upper-case field (PORT=31002, PROTOCOL=tcp,
/// ACTION=block), so `journalctl -u nodeguardd PORT=31002` finds a block.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level
    public let identifier: String

    public init(identifier: String, logLevel: Logger.Level) {
        self.identifier = identifier
        self.logLevel = logLevel
    }

    /// Whether stderr is connected to journald: systemd sets JOURNAL_STREAM
    /// to "DEVICE:INODE" of that stream (see systemd.exec(5)).
    public static func stderrIsJournal() -> Bool {
        guard let value = getenv("JOURNAL_STREAM") else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return journalStream(String(cString: value), matchesDevice: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    static func journalStream(_ value: String, matchesDevice device: UInt64, inode: UInt64) -> Bool {
        let parts = value.split(separator: ":")
        guard parts.count == 2, let d = UInt64(parts[0]), let i = UInt64(parts[1]) else { return false }
        return d == device && i == inode
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        var fields = Self.fields(level: event.level, message: "\(event.message)", metadata: merged, identifier: identifier)
        fields += ["CODE_FILE=\(event.file)", "CODE_LINE=\(event.line)", "CODE_FUNC=\(event.function)"]
        Self.send(fields)
    }

    /// The journal fields for one entry (pure, so it can be tested).
    static func fields(level: Logger.Level, message: String, metadata: Logger.Metadata, identifier: String) -> [String] {
        var fields = [
            "MESSAGE=\(message)",
            "PRIORITY=\(priority(level))",
            "SYSLOG_IDENTIFIER=\(identifier)",
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            guard let name = fieldName(key) else { continue }
            fields.append("\(name)=\(value)")
        }
        return fields
    }

    /// Journal field names: upper-case letters, digits and underscores, not
    /// starting with an underscore or digit, at most 64 bytes.
    static func fieldName(_ key: String) -> String? {
        let mapped = String(key.uppercased().unicodeScalars.map { scalar -> Character in
            ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar) ? Character(scalar) : "_"
        }).trimmingPrefix { $0 == "_" || $0.isNumber }
        let reserved: Set<String> = ["MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC"]
        guard !mapped.isEmpty, mapped.count <= 64, !reserved.contains(String(mapped)) else { return nil }
        return String(mapped)
    }

    /// syslog priorities, as journald expects them.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func send(_ fields: [String]) {
        // One allocation holds every field; each iovec points into it.
        let utf8 = fields.map { Array($0.utf8) }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, utf8.reduce(0) { $0 + $1.count }), alignment: 1)
        defer { storage.deallocate() }
        var iovecs: [iovec] = []
        var offset = 0
        for bytes in utf8 {
            let slice = UnsafeMutableRawBufferPointer(rebasing: storage[offset..<offset + bytes.count])
            slice.copyBytes(from: bytes)
            iovecs.append(iovec(iov_base: slice.baseAddress, iov_len: bytes.count))
            offset += bytes.count
        }
        _ = sd_journal_sendv(iovecs, Int32(iovecs.count))
    }
}
