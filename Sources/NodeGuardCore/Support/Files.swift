import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// Durably replacing NodeGuard's files (the runtime state, the metrics
// textfile), on swift-system's descriptors; reading them is readFile
// (NodeGuardControl), which the CLI shares.

/// The directory part of a path, as `dirname` prints it ("" for a bare name).
func parentDirectory(of path: String) -> String {
    var trimmed = Substring(path)
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
    guard let slash = trimmed.lastIndex(of: "/") else { return "" }
    if slash == trimmed.startIndex { return "/" }
    return String(trimmed[..<slash])
}

/// `mkdir -p` with `mode` for the directories it creates; the error names the
/// directory that could not be made and why.
func makeDirectories(_ path: String, mode: mode_t) throws(NodeGuardError) {
    if let existing = try? FilePath(path).stat() {
        if existing.type == .directory { return }
        throw NodeGuardError(.ioFailure, "cannot create directory \(path): a file of that name is in the way", errno: .fileExists)
    }
    let parent = parentDirectory(of: path)
    if !parent.isEmpty && parent != path { try makeDirectories(parent, mode: mode) }
    do {
        try createDirectory(path, permissions: FilePermissions(rawValue: mode))
    } catch where error != .fileExists {
        throw NodeGuardError(io: "cannot create directory \(path)", error)
    } catch {}
}

/// Replaces `path` atomically: a new temporary file in the same directory,
/// fsync, rename over `path`, fsync the directory. A crash leaves the old or
/// the new file. The directory may belong to someone else (node_exporter's
/// textfile directory): the temporary file has an unpredictable name and is
/// created with O_EXCL|O_NOFOLLOW, so a file or symlink planted there is never
/// opened, and `mode` is set on the new file itself whatever the umask.
func writeDurably(_ bytes: [UInt8], to path: String, mode: mode_t = 0o640) throws(NodeGuardError) {
    let (fd, temporary) = try createTemporaryFile(beside: path)
    do throws(NodeGuardError) {
        defer { fd.closeQuietly() }
        try io("cannot set the mode of \(temporary)") { try fd.setPermissions(FilePermissions(rawValue: mode)) }
        try io("cannot write \(temporary)") { try fd.writeAll(bytes) }
        try io("cannot sync \(temporary)") { try fd.sync() }
    } catch {
        try? removeFile(temporary)
        throw error
    }
    do throws(NodeGuardError) {
        try io("cannot replace \(path)") { try renameFile(temporary, to: path) }
    } catch {
        try? removeFile(temporary)
        throw error
    }
    // The rename is durable once the directory is; a directory this process
    // may not open (only search) is left to the next sync.
    let directory = parentDirectory(of: path)
    guard let dirfd = try? FileDescriptor.openClosingOnExec(directory.isEmpty ? "." : directory, .readOnly, options: .directory) else { return }
    defer { dirfd.closeQuietly() }
    try io("cannot sync directory \(directory)") { try dirfd.sync() }
}

/// Creates `PATH.tmp.XXXXXXXXXXXX` (12 random letters and digits, like
/// mkstemp's) with O_EXCL|O_NOFOLLOW, trying new names while one exists.
private func createTemporaryFile(beside path: String) throws(NodeGuardError) -> (fd: FileDescriptor, path: String) {
    let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<100 {
        let suffix = String(decoding: (0..<12).map { _ in alphabet.randomElement(using: &generator)! }, as: UTF8.self)
        let temporary = "\(path).tmp.\(suffix)"
        do {
            let fd = try FileDescriptor.openClosingOnExec(temporary, .writeOnly, options: [.create, .exclusiveCreate, .noFollow],
                                                          permissions: [.ownerReadWrite])
            return (fd, temporary)
        } catch where error != .fileExists {
            throw NodeGuardError(io: "cannot create a temporary file to replace \(path)", error)
        } catch {}
    }
    throw NodeGuardError(.ioFailure, "cannot create a temporary file to replace \(path): 100 random names were all taken; remove \(path).tmp.* files")
}
