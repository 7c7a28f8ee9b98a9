import FoundationEssentials
import SystemPackage

/// Who asked for a change.
public enum RequestOrigin: Sendable, Hashable, CustomStringConvertible {
    /// A control-socket request; the peer's credentials come from SO_PEERCRED,
    /// so they are the kernel's word, not the client's.
    case socket(pid: Int32, uid: UInt32, gid: UInt32)
    /// SIGHUP (systemctl reload).
    case signal
    /// The daemon itself: start-up or a drift repair.
    case daemon

    public var description: String {
        switch self {
        case .socket(let pid, let uid, let gid): "socket peer uid \(uid) gid \(gid) pid \(pid)"
        case .signal: "SIGHUP"
        case .daemon: "nodeguardd"
        }
    }

    var json: JSONValue {
        switch self {
        case .socket(let pid, let uid, let gid):
            .object(["kind": .string("socket"), "pid": .integer(pid), "uid": .integer(uid), "gid": .integer(gid)])
        case .signal: .object(["kind": .string("signal")])
        case .daemon: .object(["kind": .string("daemon")])
        }
    }
}

/// An append-only record of every change to the deny-list and the rules, one
/// JSON object per line in `audit.log` in the state directory: when, what,
/// who, and whether it worked.
public struct AuditLog: Sendable {
    public let path: String

    public init(directory: String) { path = directory + "/audit.log" }

    /// One line (pure, so it can be tested).
    static func line(time: Date, action: String, origin: RequestOrigin, details: [String: JSONValue], error: String?) -> String {
        var fields = details
        fields["time"] = .string(iso8601(time))
        fields["action"] = .string(action)
        fields["origin"] = origin.json
        fields["result"] = .string(error == nil ? "ok" : "error")
        if let error { fields["error"] = .string(error) }
        return JSON.serialize(.object(fields)) + "\n"
    }

    /// Appends a record and syncs it. Opened with O_APPEND each time, so a
    /// record is never written over another, whoever else appends.
    public func record(_ action: String, origin: RequestOrigin, details: [String: JSONValue] = [:],
                       error: String? = nil, at time: Date = Date()) throws(NodeGuardError) {
        let bytes = Array(Self.line(time: time, action: action, origin: origin, details: details, error: error).utf8)
        try makeDirectories(parentDirectory(of: path), mode: 0o750)
        let fd = try io("cannot open the audit log \(path)") {
            try FileDescriptor.openClosingOnExec(path, .writeOnly, options: [.append, .create],
                                                 permissions: [.ownerReadWrite, .groupRead])
        }
        defer { fd.closeQuietly() }
        try io("cannot append to the audit log \(path)") { try fd.writeAll(bytes) }
        try io("cannot sync the audit log \(path)") { try fd.syncData() }
    }
}
