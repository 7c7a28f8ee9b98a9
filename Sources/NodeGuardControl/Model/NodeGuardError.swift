import SystemPackage

/// The one error type NodeGuard reports: a stable code a machine can match on
/// (it travels over the control socket as is), a message a person can act on,
/// and, when a system call failed, its errno, typed, for the code that must
/// tell one errno from another (a commit that lost a race, EAGAIN, is retried).
public struct NodeGuardError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A deny-list file or runtime state file is not valid.
        public static let invalidDenyList = Code(rawValue: "invalid_denylist")
        /// A control request is malformed or names an unknown command or field.
        public static let invalidRequest = Code(rawValue: "invalid_request")
        /// The peer speaks a protocol version this side does not.
        public static let unsupportedVersion = Code(rawValue: "unsupported_version")
        /// A control message is longer than the protocol allows.
        public static let messageTooLarge = Code(rawValue: "message_too_large")
        /// The port is not blocked.
        public static let notFound = Code(rawValue: "not_found")
        /// The request contradicts an entry that already exists.
        public static let conflict = Code(rawValue: "conflict")
        /// The change would take a list past `DenyListLimits` (entries or
        /// allowFrom sources in the effective list, or the runtime state's size).
        public static let limitExceeded = Code(rawValue: "limit_exceeded")
        /// The entry comes from the deny-list file and can only be changed there.
        public static let configEntry = Code(rawValue: "config_entry")
        /// The kernel has no legacy xtables (ENOPROTOOPT).
        public static let netfilterUnavailable = Code(rawValue: "netfilter_unavailable")
        /// Missing CAP_NET_ADMIN / CAP_NET_RAW (EPERM).
        public static let permissionDenied = Code(rawValue: "permission_denied")
        /// Reading or committing the tables failed for another reason.
        public static let netfilterFailure = Code(rawValue: "netfilter_failure")
        /// Another process held /run/xtables.lock for too long.
        public static let lockTimeout = Code(rawValue: "lock_timeout")
        /// Reading or writing a file (state, config, socket) failed.
        public static let ioFailure = Code(rawValue: "io_failure")
        /// The daemon cannot be reached over its control socket.
        public static let daemonUnreachable = Code(rawValue: "daemon_unreachable")
        /// The daemon is shutting down.
        public static let shuttingDown = Code(rawValue: "shutting_down")
        /// The daemon serves as many connections as it takes: retry.
        public static let busy = Code(rawValue: "busy")
        /// The daemon took the connection but gave no answer (in time).
        public static let noAnswer = Code(rawValue: "no_answer")
    }

    public var code: Code
    public var message: String
    /// The system call's errno that caused this error, if one did. Match on
    /// it, never on the message's text; it does not travel over the socket.
    public var errno: Errno?

    public init(_ code: Code, _ message: String, errno: Errno? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    /// A failed system call: `action` and the C library's words for
    /// `errno` ("cannot read /etc/nodeguard/denylist.json: Permission denied").
    public init(io action: String, _ errno: Errno, code: Code = .ioFailure) {
        self.init(code, "\(action): \(errno)", errno: errno)
    }

    public var description: String { message }
}
