/// How much NodeGuard accepts, so that the work of any apply is bounded.
///
/// Every entry is a DROP rule in each family it covers and every `allowFrom`
/// source a RETURN rule in its family's table; a repair reads and commits the
/// whole table while it holds the xtables lock, and kube-proxy's next
/// `iptables-restore` waits that long. At these limits a table holds at most
/// about 6,400 NodeGuard rules and the lock is held for tens of
/// milliseconds (BENCHMARKS.md, "Limits"; `bench/limits.sh` measures it:
/// twice as many sources and entries held it 80-150 ms).
/// The deny-list file, the runtime state file and `block` requests are
/// checked against them when decoded (`DenyListCodec`), the effective list
/// (the file's entries and the runtime ones) when it changes
/// (`checkEffective`), and the runtime state again before it is written.
public enum DenyListLimits {
    /// Entries in one list, and in the effective list. The whole default
    /// NodePort range (30000-32767) is 2,768 ports of one protocol.
    public static let entries = 4096
    /// `allowFrom` sources in one entry. A chain holds the rules of at most
    /// 16 entries, so no chain is longer than 16 x 65 rules.
    public static let sourcesPerEntry = 64
    /// `allowFrom` sources across one list, and across the effective list
    /// (each source is a rule; the table's size sets the lock's hold).
    public static let sources = 2048
    /// The largest deny-list or runtime state file NodeGuard reads, or writes.
    /// A runtime state at the limits above, every reason 256 bytes of quotes
    /// (each written as two) and every source the longest IPv6 text, is
    /// 2.4 MB (RuntimeStateStoreTests): far below it.
    public static let maximumFileBytes = 16 << 20

    /// What to do about too many sources (the same advice everywhere).
    static let fewerSources = "use wider CIDRs that cover several sources"

    /// The problem with an entry's `allowFrom` of `count` sources, or nil.
    public static func sourcesPerEntryProblem(_ count: Int) -> String? {
        guard count > sourcesPerEntry else { return nil }
        return "\(count) sources; at most \(sourcesPerEntry) per entry (\(fewerSources))"
    }

    /// The problem with a list of `count` entries, or nil.
    public static func entriesProblem(_ count: Int) -> String? {
        guard count > entries else { return nil }
        return "\(count) entries; at most \(entries) in a list (remove entries that are no longer needed)"
    }

    /// The problem with a list of `count` sources in all, or nil.
    public static func sourcesProblem(_ count: Int) -> String? {
        guard count > sources else { return nil }
        return "\(count) allowFrom sources in all; at most \(sources) in a list (\(fewerSources))"
    }

    /// A whole list's problems, at `path` (the array of its entries).
    public static func listProblems(_ list: [BlockEntry], path: String = "blocked") -> [DenyListProblem] {
        [entriesProblem(list.count), sourcesProblem(sourceCount(list))].compactMap { message in
            message.map { DenyListProblem(path: path, message: $0) }
        }
    }

    static func sourceCount(_ list: [BlockEntry]) -> Int {
        list.reduce(0) { $0 + $1.allowFrom.count }
    }

    /// Refuses an effective list over the limits: `file` the deny-list
    /// file's entries (from `filePath`), `runtime` the runtime entries in
    /// effect (those the file does not shadow; kept in `runtimePath`). The
    /// message says how many come from where, and how to remove some.
    public static func checkEffective(file: [BlockEntry], runtime: [BlockEntry],
                                      filePath: String, runtimePath: String) throws(NodeGuardError) {
        let remedy = "remove entries from \(filePath), or runtime ones (`nodeguardctl unblock`, or from \(runtimePath) while the daemon is stopped)"
        let count = file.count + runtime.count
        if count > entries {
            throw NodeGuardError(.limitExceeded, """
                the effective list would hold \(count) entries (\(file.count) from \(filePath), \(runtime.count) runtime); \
                at most \(entries): \(remedy)
                """)
        }
        let fileSources = sourceCount(file), runtimeSources = sourceCount(runtime)
        if fileSources + runtimeSources > sources {
            throw NodeGuardError(.limitExceeded, """
                the effective list would hold \(fileSources + runtimeSources) allowFrom sources \
                (\(fileSources) from \(filePath), \(runtimeSources) runtime); at most \(sources): \(fewerSources), or \(remedy)
                """)
        }
    }
}
