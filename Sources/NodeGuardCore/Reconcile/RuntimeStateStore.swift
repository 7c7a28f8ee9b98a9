/// The runtime entries (`nodeguardctl block`), persisted in the state
/// directory in the deny-list format so an operator can read them.
public struct RuntimeStateStore: Sendable {
    public let directory: String
    public var path: String { directory + "/runtime.json" }

    public init(directory: String) { self.directory = directory }

    /// A missing file is an empty list. A corrupt one is an error that names
    /// it; the file is left exactly as it is for inspection. Start-up stops
    /// on that error before it touches the kernel, so the runtime blocks'
    /// rules stay; the message warns that moving the file aside would not.
    public func load() throws(NodeGuardError) -> [BlockEntry] {
        do {
            return try DenyListCodec.decode(try readFile(path), source: path).entries
        } catch where error.errno == .noSuchFileOrDirectory {
            return []
        } catch where error.code == .invalidDenyList {
            // Too large, or not a valid list (an I/O error stays what it is).
            throw NodeGuardError(.invalidDenyList,
                "runtime state is corrupt (left untouched for inspection; it is in the deny-list format: correct what is named below and start again; moving it aside would start without the runtime blocks and remove their rules): \(error.message)")
        }
    }

    /// Writes durably: a temporary file in the same directory, fsync, rename
    /// over the old one, fsync the directory. A crash leaves the old or the new file.
    /// Never writes what `load` would refuse: a list over `DenyListLimits`,
    /// or a file over their size, is refused here and nothing is written.
    public func save(_ entries: [BlockEntry]) throws(NodeGuardError) {
        if let problem = DenyListLimits.listProblems(entries).first {
            throw NodeGuardError(.limitExceeded,
                "the runtime state \(path) would hold more than NodeGuard reads back: \(problem); unblock runtime entries first")
        }
        let bytes = Array(DenyListCodec.encode(DenyList(entries: entries), compact: true).utf8)
        guard bytes.count <= DenyListLimits.maximumFileBytes else {
            throw NodeGuardError(.limitExceeded, """
                the runtime state \(path) would be \(bytes.count) bytes; NodeGuard reads back at most \
                \(DenyListLimits.maximumFileBytes) (\(DenyListLimits.maximumFileBytes >> 20) MiB); unblock runtime entries first
                """)
        }
        try makeDirectories(directory, mode: 0o750)
        try writeDurably(bytes, to: path)
    }
}
