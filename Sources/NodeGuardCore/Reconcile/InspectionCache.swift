/// Reads both families' tables for counters and hook positions, unless
/// nothing can have changed since a read moments ago (the same lock releases,
/// commits, entries and table sizes, and younger than `reuse`): a hundred
/// clients polling `status` must not keep the loop from repairs.
final class InspectionCache {
    /// How stale the counters in `status` and `metrics` may be while requests keep coming.
    static let reuse: Duration = .milliseconds(250)

    private struct Key: Equatable {
        var lockReleases: Int
        var commits: Int
        var entries: [BlockEntry]
        var sizes: [TableInfo]
    }

    private var last: (key: Key, at: ContinuousClock.Instant, inspections: [TableInspection], readError: String?)?

    func inspect(_ entries: [BlockEntry], reconciler: Reconciler, lockReleases: Int,
                 now: ContinuousClock.Instant) -> (inspections: [TableInspection], readError: String?) {
        let backend = reconciler.backend
        // Only tables that exist: asking a missing legacy table's size creates it.
        let sizes = reconciler.families.filter { backend.tableExists("mangle", $0) }.compactMap { try? backend.tableInfo("mangle", $0) }
        let key = Key(lockReleases: lockReleases, commits: reconciler.commitCount, entries: entries, sizes: sizes)
        if let last, last.key == key, now - last.at < Self.reuse { return (last.inspections, last.readError) }
        var inspections: [TableInspection] = []
        var readError: String?
        do { inspections = try reconciler.inspect(entries) } catch { readError = error.message }
        last = (key, now, inspections, readError)
        return (inspections, readError)
    }
}
