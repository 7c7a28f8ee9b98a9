import FoundationEssentials
import Logging

/// What NodeGuard blocks: the deny-list file's entries and the runtime ones
/// (`nodeguardctl block`, kept in the state directory), and every change to
/// them. A change is saved before the kernel is touched and rolled back, file
/// and kernel, if the kernel refuses it: what is reported is what holds.
/// The kernel is reached through `apply`, which the caller passes with each
/// change (the drift guard's, under the xtables lock).
final class DenyListEntries {
    typealias Apply = ([BlockEntry]) throws(NodeGuardError) -> [TableChange]

    let configPath: String
    let store: RuntimeStateStore
    private let logger: Logger

    private(set) var config: [BlockEntry] = []
    private(set) var runtime: [BlockEntry] = []
    /// When a change last reached the kernel.
    private(set) var lastApply: Date?

    init(configPath: String, store: RuntimeStateStore, logger: Logger) {
        self.configPath = configPath
        self.store = store
        self.logger = logger
    }

    /// The file's entries first; a runtime entry for a port the file also
    /// lists is shadowed by the file's.
    var effective: [(entry: BlockEntry, source: EntrySource)] {
        let fileKeys = Set(config.map(\.key))
        return config.map { ($0, .config) } + runtime.filter { !fileKeys.contains($0.key) }.map { ($0, .runtime) }
    }

    var effectiveEntries: [BlockEntry] { effective.map(\.entry) }

    /// Reads the file and the state directory; nothing is applied yet.
    func load() throws(NodeGuardError) {
        config = try DenyListCodec.load(configPath).entries
        runtime = try store.load()
        try checkLimits()
        logWarnings()
    }

    /// The first apply, after `load`, is the caller's; this notes its time.
    func applied() { lastApply = Date() }

    func block(_ entry: BlockEntry, apply: Apply) throws(NodeGuardError) -> BlockResult {
        if let existing = config.first(where: { $0.key == entry.key }) {
            guard Self.sameRules(existing, entry) else {
                throw NodeGuardError(.conflict,
                    "\(entry.key) is already blocked by \(configPath) with other settings; change it there and run `nodeguardctl reload`")
            }
            return BlockResult(port: entry.key, source: .config, changed: false)
        }
        var updated = runtime
        if let index = updated.firstIndex(where: { $0.key == entry.key }) {
            if updated[index] == entry {
                return BlockResult(port: entry.key, source: .runtime, changed: false)
            }
            updated[index] = entry
        } else {
            updated.append(entry)
        }
        try checkLimits(blocking: entry)
        let changes = try commitRuntime(updated, apply: apply)
        logger.info("blocked \(entry.key)", metadata: [
            "port": "\(entry.port)", "protocol": "\(entry.transport.rawValue)",
            "family": "\(entry.family.rawValue)", "reason": "\(entry.reason ?? "")", "action": "block",
        ])
        return BlockResult(port: entry.key, source: .runtime, changed: true, changes: changes.map(\.description))
    }

    func unblock(_ key: PortKey, apply: Apply) throws(NodeGuardError) -> UnblockResult {
        if config.contains(where: { $0.key == key }) {
            throw NodeGuardError(.configEntry,
                "\(key) is blocked by the deny-list file \(configPath); remove it there and run `nodeguardctl reload`")
        }
        guard runtime.contains(where: { $0.key == key }) else {
            throw NodeGuardError(.notFound, "\(key) is not blocked")
        }
        let changes = try commitRuntime(runtime.filter { $0.key != key }, apply: apply)
        logger.info("unblocked \(key)", metadata: ["port": "\(key.port)", "protocol": "\(key.transport.rawValue)", "action": "unblock"])
        return UnblockResult(port: key, changes: changes.map(\.description))
    }

    /// Re-reads the deny-list file. A bad file, or one the kernel refuses,
    /// keeps the last good list in force.
    func reload(apply: Apply) throws(NodeGuardError) -> ReloadResult {
        let entries: [BlockEntry]
        do {
            entries = try DenyListCodec.load(configPath).entries
        } catch {
            logger.error("reload refused, keeping the last good deny-list: \(error.message)")
            throw error
        }
        let previous = config
        config = entries
        do {
            try checkLimits()
            let changes = try apply(effectiveEntries)
            lastApply = Date()
            for change in changes { logger.info("applied: \(change)") }
            logger.info("reloaded \(configPath): \(entries.count) entries")
            logWarnings()
            return ReloadResult(entries: entries.count, changes: changes.map(\.description))
        } catch {
            config = previous
            throw error
        }
    }

    /// State file first, then the kernel: a crash in between leaves the port
    /// blocked after restart rather than open. If the kernel refuses, the old
    /// state file and rules are put back.
    private func commitRuntime(_ updated: [BlockEntry], apply: Apply) throws(NodeGuardError) -> [TableChange] {
        let previous = runtime
        try store.save(updated)
        runtime = updated
        do {
            let changes = try apply(effectiveEntries)
            lastApply = Date()
            return changes
        } catch {
            runtime = previous
            do {
                try store.save(previous)
                _ = try apply(effectiveEntries)
            } catch let rollback {
                logger.critical("could not roll back after a failed change: \(rollback.message)")
            }
            throw error
        }
    }

    /// Refuses an effective list over `DenyListLimits`: the current one (at
    /// start-up and after a reload), or the one that blocking `entry` would
    /// make (added, or replacing the runtime entry for its port). Called
    /// before anything is written or committed, so a refusal changes nothing.
    private func checkLimits(blocking entry: BlockEntry? = nil) throws(NodeGuardError) {
        var runtime = effective.filter { $0.source == .runtime }.map(\.entry)
        if let entry {
            runtime.removeAll { $0.key == entry.key }
            runtime.append(entry)
        }
        try DenyListLimits.checkEffective(file: config, runtime: runtime, filePath: configPath, runtimePath: store.path)
    }

    /// What `nodeguardctl validate` warns of (an entry whose allowFrom lets
    /// every client through blocks nothing), said in the journal too.
    private func logWarnings() {
        for warning in DenyListCodec.warnings(DenyList(entries: config)) {
            logger.warning("deny-list \(configPath): \(warning)")
        }
    }

    static func sameRules(_ a: BlockEntry, _ b: BlockEntry) -> Bool {
        a.key == b.key && a.family == b.family && Set(a.allowFrom) == Set(b.allowFrom)
    }
}
