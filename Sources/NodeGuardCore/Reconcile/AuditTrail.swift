import Logging

/// Records what changed the tables, and who asked, in the audit log; says
/// it in the journal too when a client asked. A failure to record is logged,
/// not fatal: the change itself (closing a port) matters more than its record.
final class AuditTrail {
    let log: AuditLog
    let logger: Logger

    init(log: AuditLog, logger: Logger) {
        self.log = log
        self.logger = logger
    }

    func record(_ action: String, from origin: RequestOrigin, details: [String: JSONValue], error: String? = nil) {
        do {
            try log.record(action, origin: origin, details: details, error: error)
        } catch {
            logger.error("audit: \(error.message)")
        }
        if case .socket = origin {
            logger.info("\(action) requested by \(origin)\(error.map { ": failed: \($0)" } ?? "")", metadata: Self.metadata(origin))
        }
    }

    /// The peer's credentials as journal fields, for a request from a client.
    static func metadata(_ origin: RequestOrigin) -> Logger.Metadata {
        guard case .socket(let pid, let uid, let gid) = origin else { return [:] }
        return ["peer_pid": "\(pid)", "peer_uid": "\(uid)", "peer_gid": "\(gid)"]
    }
}
