import CNodeGuardIPTC
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// What the kernel says of a legacy table without copying a rule
/// (IPT_SO_GET_INFO): sizes, entry count and where each hook starts. It
/// costs the same for any table size and changes with any insert, delete,
/// flush or resize; a same-size edit (two rules swapped in one commit, a
/// rule replaced by one as long) needs `TableFingerprint.digest`.
public struct TableInfo: Sendable, Hashable {
    public var validHooks: UInt32
    public var hookEntry: [UInt32]
    public var underflow: [UInt32]
    public var entryCount: UInt32
    public var size: UInt32

    public init(validHooks: UInt32 = 0, hookEntry: [UInt32] = [], underflow: [UInt32] = [], entryCount: UInt32, size: UInt32) {
        self.validHooks = validHooks
        self.hookEntry = hookEntry
        self.underflow = underflow
        self.entryCount = entryCount
        self.size = size
    }
}

/// A table's info plus a digest of every entry with its counters zeroed:
/// traffic leaves it alone, any edit to any rule changes it.
public struct TableFingerprint: Sendable, Hashable {
    public var info: TableInfo
    public var digest: UInt64

    public init(info: TableInfo, digest: UInt64) {
        self.info = info
        self.digest = digest
    }
}

/// Reads table info and digests straight from the kernel, one raw socket
/// and one reusable buffer per family. Safe from any thread.
final class KernelTableReader: @unchecked Sendable {
    private let lock = ConditionLock()
    private var readers: [AddressFamily: OpaquePointer] = [:]

    deinit {
        for reader in readers.values { ngiptc_reader_close(reader) }
    }

    private func reader(_ family: AddressFamily) throws(NodeGuardError) -> OpaquePointer {
        if let reader = readers[family] { return reader }
        var error: Int32 = 0
        guard let reader = ngiptc_reader_open(family == .ipv4 ? AF_INET : AF_INET6, &error) else {
            throw netfilterError(error, family: family, doing: "opening a raw socket to read the tables")
        }
        readers[family] = reader
        return reader
    }

    func info(_ table: String, _ family: AddressFamily) throws(NodeGuardError) -> TableInfo {
        lock.lock()
        defer { lock.unlock() }
        var info = ngiptc_table_info()
        var error: Int32 = 0
        guard ngiptc_reader_info(try reader(family), table, &info, &error) == 0 else {
            throw netfilterError(error, family: family, doing: "reading the size of the \(family.rawValue) \(table) table")
        }
        return Self.convert(info)
    }

    func fingerprint(_ table: String, _ family: AddressFamily) throws(NodeGuardError) -> TableFingerprint {
        lock.lock()
        defer { lock.unlock() }
        var info = ngiptc_table_info()
        var digest: UInt64 = 0
        var error: Int32 = 0
        guard ngiptc_reader_digest(try reader(family), table, &info, &digest, &error) == 0 else {
            throw netfilterError(error, family: family, doing: "reading the \(family.rawValue) \(table) table's entries")
        }
        return TableFingerprint(info: Self.convert(info), digest: digest)
    }

    /// The table's info and a digest of NodeGuard's part of it alone
    /// (`KernelTableSnapshot.ownedFingerprint`).
    func ownedFingerprint(_ table: String, _ family: AddressFamily) throws(NodeGuardError) -> TableFingerprint {
        let snapshot = try snapshot(table, family)
        guard let fingerprint = snapshot.ownedFingerprint else {
            throw NodeGuardError(.netfilterFailure, "reading the \(family.rawValue) \(table) table: no fingerprint")
        }
        return fingerprint
    }

    /// A read-only snapshot of the whole table (see KernelTableSnapshot).
    func snapshot(_ table: String, _ family: AddressFamily) throws(NodeGuardError) -> KernelTableSnapshot {
        lock.lock()
        defer { lock.unlock() }
        var error: Int32 = 0
        guard let blob = ngiptc_reader_snapshot(try reader(family), table, &error) else {
            throw netfilterError(error, family: family, doing: "reading the \(family.rawValue) \(table) table")
        }
        return KernelTableSnapshot(blob: blob, family: family, table: table)
    }

    static func convert(_ info: ngiptc_table_info) -> TableInfo {
        var copy = info
        let hooks = withUnsafeBytes(of: &copy.hook_entry) { Array($0.bindMemory(to: UInt32.self)) }
        let underflow = withUnsafeBytes(of: &copy.underflow) { Array($0.bindMemory(to: UInt32.self)) }
        return TableInfo(validHooks: info.valid_hooks, hookEntry: hooks, underflow: underflow,
                         entryCount: info.num_entries, size: info.size)
    }
}
