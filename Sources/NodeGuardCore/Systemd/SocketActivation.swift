import CSystemd

#if canImport(Glibc)
import Glibc
#endif

/// Socket activation (sd_listen_fds): systemd's nodeguardd.socket hands the
/// control socket to the daemon as file descriptor 3.
public enum SocketActivation {
    /// The passed listening Unix stream socket, or nil when systemd passed
    /// none (the daemon then creates the socket itself).
    public static func listeningUnixSocket() throws(NodeGuardError) -> Int32? {
        // 1: unset LISTEN_FDS/LISTEN_PID so nothing we start inherits them.
        let count = sd_listen_fds(1)
        guard count > 0 else { return nil }
        for fd in SD_LISTEN_FDS_START..<(SD_LISTEN_FDS_START + count) {
            if sd_is_socket_unix(fd, Int32(SOCK_STREAM.rawValue), 1, nil, 0) > 0 { return fd }
        }
        throw NodeGuardError(.ioFailure,
            "systemd passed \(count) socket(s) but none is a listening Unix stream socket; check ListenStream= in nodeguardd.socket")
    }
}
