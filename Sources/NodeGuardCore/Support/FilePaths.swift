#if canImport(Glibc)
import Glibc
#endif

/// The directory part of a path, as `dirname` prints it ("" for a bare name).
func parentDirectory(of path: String) -> String {
    var trimmed = Substring(path)
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
    guard let slash = trimmed.lastIndex(of: "/") else { return "" }
    if slash == trimmed.startIndex { return "/" }
    return String(trimmed[..<slash])
}

/// `mkdir -p` with `mode` for the directories it creates; the error names the
/// directory that could not be made and why (errno's text).
func makeDirectories(_ path: String, mode: mode_t) throws(NodeGuardError) {
    var isDirectory = stat()
    if stat(path, &isDirectory) == 0 {
        if isDirectory.st_mode & S_IFMT == S_IFDIR { return }
        throw NodeGuardError(.ioFailure, "cannot create directory \(path): a file of that name is in the way")
    }
    let parent = parentDirectory(of: path)
    if !parent.isEmpty && parent != path { try makeDirectories(parent, mode: mode) }
    if mkdir(path, mode) != 0 && errno != EEXIST {
        throw NodeGuardError(.ioFailure, "cannot create directory \(path): \(String(cString: strerror(errno)))")
    }
}

extension String {
    /// The string without leading and trailing spaces, tabs and line breaks.
    var trimmingWhitespace: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
