import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

// Reading files for the deny-list and the runtime state (the daemon) and
// `nodeguardctl validate` (the CLI): here, so the CLI needs no NodeGuardCore.

package func readFile(_ path: String) throws(NodeGuardError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw ioError("cannot read \(path)") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 {
            if errno == EINTR { continue }
            throw ioError("cannot read \(path)")
        }
        if n == 0 { return bytes }
        bytes += chunk[0..<n]
        if bytes.count > DenyListLimits.maximumFileBytes {
            throw NodeGuardError(.invalidDenyList, "\(path) is larger than \(DenyListLimits.maximumFileBytes >> 20) MiB; that is not a deny-list")
        }
    }
}

package func ioError(_ action: String) -> NodeGuardError {
    NodeGuardError(.ioFailure, "\(action): \(String(cString: strerror(errno)))")
}

extension DenyListCodec {
    /// Reads and decodes the deny-list file at `path` (the daemon's `--config`,
    /// `nodeguardctl validate`).
    public static func load(_ path: String) throws(NodeGuardError) -> DenyList {
        guard FileManager.default.fileExists(atPath: path) else {
            throw NodeGuardError(.ioFailure,
                "deny-list \(path) does not exist; create it (an empty list is {\"version\": 1, \"blocked\": []}) or pass --config")
        }
        return try decode(readFile(path), source: path)
    }
}
