import CNodeGuardLinux

#if canImport(Glibc)
import Glibc
#endif

/// Who may use the control socket, decided on the kernel's word about the
/// peer (SO_PEERCRED and SO_PEERGROUPS), never on anything the client says:
/// root, or a member of the control group (`nodeguard` by default). The
/// socket file's mode (0660 root:nodeguard) says the same; this check holds
/// even if someone loosens that mode. Anyone else's connection is answered
/// with one line and closed as soon as it is accepted.
public struct ControlAccess: Sendable {
    /// The peer of one connection.
    public struct Peer: Sendable, Hashable {
        public var pid: Int32
        public var uid: UInt32
        public var gid: UInt32
        public var groups: [UInt32]

        public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32]) {
            self.pid = pid
            self.uid = uid
            self.gid = gid
            self.groups = groups
        }

        public var origin: RequestOrigin { .socket(pid: pid, uid: uid, gid: gid) }
    }

    public var groupName: String
    /// nil when the group does not exist: then only root may connect.
    public var groupID: UInt32?

    public init(groupName: String = "nodeguard") {
        self.groupName = groupName
        groupID = getgrnam(groupName).map { $0.pointee.gr_gid }
    }

    public init(groupName: String, groupID: UInt32?) {
        self.groupName = groupName
        self.groupID = groupID
    }

    /// nil when `peer` may use the socket, else the error to answer with
    /// before closing the connection. Checked once, at accept: the kernel's
    /// record of the peer does not change for the connection's life.
    public func check(_ peer: Peer) -> NodeGuardError? {
        if peer.uid == 0 { return nil }
        if let groupID, peer.gid == groupID || peer.groups.contains(groupID) { return nil }
        let group = groupID == nil ? "root only: the group '\(groupName)' does not exist on this node"
                                   : "root or members of the group '\(groupName)'"
        return NodeGuardError(.permissionDenied,
            "uid \(peer.uid) may not use nodeguardd's control socket: it serves \(group); ask an administrator to add you to it, or use sudo")
    }

    /// The connecting process as the kernel saw it at connect().
    public static func peer(of fd: Int32) -> Peer {
        var pid: Int32 = 0, uid = UInt32.max, gid = UInt32.max
        _ = nglinux_peer_credentials(fd, &pid, &uid, &gid)
        var groups = [UInt32](repeating: 0, count: 64)
        var count = nglinux_peer_groups(fd, &groups, Int32(groups.count))
        if count > groups.count {
            groups = [UInt32](repeating: 0, count: Int(count))
            count = nglinux_peer_groups(fd, &groups, Int32(groups.count))
        }
        return Peer(pid: pid, uid: uid, gid: gid, groups: count > 0 ? Array(groups.prefix(Int(count))) : [])
    }
}
