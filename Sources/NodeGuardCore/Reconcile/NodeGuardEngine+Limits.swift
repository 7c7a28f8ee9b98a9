extension NodeGuardEngine {
    /// Refuses an effective list over `DenyListLimits`: the current one (at
    /// start-up and after a reload), or the one that blocking `entry` would
    /// make (added, or replacing the runtime entry for its port). Called
    /// before anything is written or committed, so a refusal changes nothing.
    func checkLimits(blocking entry: BlockEntry? = nil) throws(NodeGuardError) {
        var runtime = effectiveEntries.filter { $0.source == .runtime }.map(\.entry)
        if let entry {
            runtime.removeAll { $0.key == entry.key }
            runtime.append(entry)
        }
        try DenyListLimits.checkEffective(file: configEntries, runtime: runtime,
                                          filePath: configuration.configPath, runtimePath: store.path)
    }
}
