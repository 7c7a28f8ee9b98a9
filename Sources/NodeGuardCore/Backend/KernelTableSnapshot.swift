import CNodeGuardIPTC

/// A read-only snapshot of one table taken straight from the kernel
/// (IPT_SO_GET_ENTRIES through CNodeGuardIPTC's reader): one buffer of the
/// table's size plus an index. libiptc, which edits need, also copies every
/// rule and its chain bookkeeping, about three times the table's size: 3.5 MB
/// for 2,768 blocked ports, and most of a status call's peak next to a
/// 5,000-service kube-proxy nat table. A view only: edits go through libiptc.
final class KernelTableSnapshot: TableView {
    let family: AddressFamily
    let tableName: String
    private let blob: OpaquePointer
    private lazy var chainIndex: [String: UInt32] = {
        var index: [String: UInt32] = [:]
        let count = ngiptc_snapshot_chain_count(blob)
        index.reserveCapacity(Int(count))
        for chain in 0..<count { index[String(cString: ngiptc_snapshot_chain_name(blob, chain))] = chain }
        return index
    }()

    init(blob: OpaquePointer, family: AddressFamily, table: String) {
        self.blob = blob
        self.family = family
        self.tableName = table
    }

    deinit { ngiptc_snapshot_free(blob) }

    func chainNames() -> [String] {
        (0..<ngiptc_snapshot_chain_count(blob)).map { String(cString: ngiptc_snapshot_chain_name(blob, $0)) }
    }

    func rules(in chain: String) throws(NodeGuardError) -> [ObservedRule] {
        try rules(in: chain, limit: Int.max)
    }

    func rules(in chain: String, limit: Int) throws(NodeGuardError) -> [ObservedRule] {
        guard let index = chainIndex[chain] else {
            throw NodeGuardError(.netfilterFailure, "reading chain \(chain) in the \(family.rawValue) \(tableName) table: no such chain")
        }
        let count = min(limit, Int(ngiptc_snapshot_rule_count(blob, index)))
        guard count > 0 else { return [] }
        // Decoded in slices so a long foreign chain (kube-proxy's KUBE-SERVICES
        // has one rule per service) never needs all its C records at once.
        var rules: [ObservedRule] = []
        rules.reserveCapacity(count)
        var infos = [ngiptc_rule_info](repeating: ngiptc_rule_info(), count: min(count, 256))
        var done = 0
        while done < count {
            let read = Int(ngiptc_snapshot_read_rules_from(blob, index, Int32(done), &infos, Int32(min(infos.count, count - done))))
            guard read > 0 else { break }
            for info in infos.prefix(read) { rules.append(IPTCTable.observed(info, family: family)) }
            done += read
        }
        return rules
    }

    /// The snapshot's sizes and a digest of NodeGuard's part of it: its chains
    /// and each hook chain down to its jump (ngiptc_snapshot_owned_digest). It
    /// is taken from the same bytes the snapshot's rules come from, so a
    /// verdict reached on those rules and this fingerprint describe one state.
    var ownedFingerprint: TableFingerprint? {
        var info = ngiptc_table_info()
        ngiptc_snapshot_info(blob, &info)
        let hooks = TablePlan.hookChains.reduce(UInt32(0)) { mask, name in
            mask | (Self.hookNumbers[name].map { UInt32(1) << $0 } ?? 0)
        }
        return TableFingerprint(info: KernelTableReader.convert(info),
                                digest: ngiptc_snapshot_owned_digest(blob, RulePlanner.entryChain, hooks))
    }

    /// NF_INET_* numbers of the built-in chains.
    static let hookNumbers: [String: UInt32] = ["PREROUTING": 0, "INPUT": 1, "FORWARD": 2, "OUTPUT": 3, "POSTROUTING": 4]
}
