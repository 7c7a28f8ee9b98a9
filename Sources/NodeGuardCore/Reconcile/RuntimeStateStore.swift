import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

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
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        do {
            return try DenyListCodec.decode(try readFile(path), source: path).entries
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
        try makeDirectory(directory)
        try writeDurably(bytes, to: path)
    }
}

func makeDirectory(_ path: String) throws(NodeGuardError) {
    try makeDirectories(path, mode: 0o750)
}

/// Replaces `path` atomically: a new temporary file in the same directory,
/// fsync, rename over `path`, fsync the directory. A crash leaves the old or
/// the new file. The directory may belong to someone else (node_exporter's
/// textfile directory): the temporary file has an unpredictable name and is
/// created with O_EXCL|O_NOFOLLOW, so a file or symlink planted there is never
/// opened, and `mode` is set on the new file itself whatever the umask.
func writeDurably(_ bytes: [UInt8], to path: String, mode: mode_t = 0o640) throws(NodeGuardError) {
    let directory = parentDirectory(of: path)
    let (fd, temporary) = try createTemporaryFile(beside: path)
    if fchmod(fd, mode) != 0 {
        let error = ioError("cannot set the mode of \(temporary)")
        close(fd)
        unlink(temporary)
        throw error
    }
    var written = 0
    while written < bytes.count {
        let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            let error = ioError("cannot write \(temporary)")
            close(fd)
            unlink(temporary)
            throw error
        }
        written += n
    }
    if fsync(fd) != 0 {
        let error = ioError("cannot sync \(temporary)")
        close(fd)
        unlink(temporary)
        throw error
    }
    close(fd)
    if rename(temporary, path) != 0 {
        let error = ioError("cannot replace \(path)")
        unlink(temporary)
        throw error
    }
    let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dirfd >= 0 {
        defer { close(dirfd) }
        if fsync(dirfd) != 0 { throw ioError("cannot sync directory \(directory)") }
    }
}

/// Creates `PATH.tmp.XXXXXXXXXXXX` (12 random letters and digits, like
/// mkstemp's) with O_EXCL|O_NOFOLLOW, trying new names while one exists.
private func createTemporaryFile(beside path: String) throws(NodeGuardError) -> (fd: Int32, path: String) {
    let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<100 {
        let suffix = String(decoding: (0..<12).map { _ in alphabet.randomElement(using: &generator)! }, as: UTF8.self)
        let temporary = "\(path).tmp.\(suffix)"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd >= 0 { return (fd, temporary) }
        if errno != EEXIST { throw ioError("cannot create a temporary file to replace \(path)") }
    }
    throw NodeGuardError(.ioFailure, "cannot create a temporary file to replace \(path): 100 random names were all taken; remove \(path).tmp.* files")
}
