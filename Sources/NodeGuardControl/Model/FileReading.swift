import SystemPackage

// Reading files for the deny-list and the runtime state (the daemon) and
// `nodeguardctl validate` (the CLI): here, so the CLI needs no NodeGuardCore.

/// The whole file; a file larger than a deny-list may be is refused
/// (`DenyListLimits.maximumFileBytes`) without reading the rest.
package func readFile(_ path: String) throws(NodeGuardError) -> [UInt8] {
    let bytes = try io("cannot read \(path)") {
        let fd = try FileDescriptor.openClosingOnExec(path, .readOnly)
        defer { fd.closeQuietly() }
        return try fd.readToEnd(limit: DenyListLimits.maximumFileBytes)
    }
    guard bytes.count <= DenyListLimits.maximumFileBytes else {
        throw NodeGuardError(.invalidDenyList, "\(path) is larger than \(DenyListLimits.maximumFileBytes >> 20) MiB; that is not a deny-list")
    }
    return bytes
}

extension DenyListCodec {
    /// Reads and decodes the deny-list file at `path` (the daemon's `--config`,
    /// `nodeguardctl validate`).
    public static func load(_ path: String) throws(NodeGuardError) -> DenyList {
        let bytes: [UInt8]
        do {
            bytes = try readFile(path)
        } catch where error.errno == .noSuchFileOrDirectory {
            throw NodeGuardError(.ioFailure,
                "deny-list \(path) does not exist; create it (an empty list is {\"version\": 1, \"blocked\": []}) or pass --config",
                errno: .noSuchFileOrDirectory)
        }
        return try decode(bytes, source: path)
    }
}
