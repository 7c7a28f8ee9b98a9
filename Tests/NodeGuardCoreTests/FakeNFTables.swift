import SystemPackage
@testable import NodeGuardCore

/// An in-memory nftables table behind `NFTablesTransport`, as knftables
/// ships a fake: a commit applies its edits to a copy and swaps it in only
/// if every edit succeeded (a batch is all or nothing), with the errors the
/// kernel gives where the keeper depends on them (ENOENT deleting what is not
/// there, EEXIST adding a set or chain twice, EOPNOTSUPP for a table flag the
/// kernel does not know), and the faults other programs cause.
final class FakeNFTables: NFTablesTransport {
    /// The table as the kernel would hold it; nil: there is none.
    var table: NFTTableView?
    /// Flags the simulated kernel does not know (a kernel before 6.9 refuses persist).
    var unknownFlags: NFTTableFlags = []
    /// Runs between a read and the next commit, once per commit attempt, as
    /// another writer on an ownerless table would.
    var beforeCommit: ((FakeNFTables) -> Void)?
    private(set) var commits: [[NFTEdit]] = []
    private(set) var refusedCommits = 0
    private var generation: UInt32 = 1

    func read(_ name: String) throws(NodeGuardError) -> NFTTableView? { table }

    func commit(_ name: String, _ edits: [NFTEdit]) throws(NodeGuardError) {
        beforeCommit?(self)
        var working = table
        for (index, edit) in edits.enumerated() {
            do throws(NodeGuardError) { try apply(edit, to: &working) } catch {
                refusedCommits += 1
                throw NodeGuardError(.netfilterFailure, "edit \(index + 1) (\(edit)) refused: \(error.message)", errno: error.errno)
            }
        }
        generation += 1
        working?.generation = generation
        table = working
        commits.append(edits)
    }

    private func refuse(_ errno: Errno, _ what: String) -> NodeGuardError {
        NodeGuardError(.netfilterFailure, what, errno: errno)
    }

    private func apply(_ edit: NFTEdit, to table: inout NFTTableView?) throws(NodeGuardError) {
        if case .addTable(let flags) = edit {
            if !flags.intersection(unknownFlags).isEmpty { throw refuse(.notSupported, "unknown table flag") }
            if table == nil {
                table = NFTTableView(flags: flags, ownedBySocket: flags.contains(.owner), hasOwner: flags.contains(.owner),
                                     generation: generation, chains: [], sets: [])
            } else {
                table?.flags = flags
                table?.ownedBySocket = flags.contains(.owner)
                table?.hasOwner = flags.contains(.owner)
            }
            return
        }
        guard var current = table else { throw refuse(.noSuchFileOrDirectory, "no table") }
        switch edit {
        case .addTable: break
        case .deleteTable:
            table = nil
            return
        case .addSet(let set):
            if current.sets.contains(where: { $0.name == set.name }) { throw refuse(.fileExists, "set \(set.name) exists") }
            current.sets.append(NFTObservedSet(set: set, name: set.name, elements: []))
        case .deleteSet(let name):
            guard let index = current.sets.firstIndex(where: { $0.name == name }) else { throw refuse(.noSuchFileOrDirectory, "no set \(name)") }
            current.sets.remove(at: index)
        case .addElements(let set, let elements):
            guard let index = current.sets.firstIndex(where: { $0.name == set.name }) else { throw refuse(.noSuchFileOrDirectory, "no set \(set.name)") }
            for element in elements {
                if current.sets[index].elements.contains(where: { $0.element.key == element.key }) { continue }
                if current.sets[index].elements.contains(where: { overlaps($0.element, element) }) {
                    throw refuse(.fileExists, "element \(element) overlaps")
                }
                current.sets[index].elements.append(NFTObservedElement(element: element))
            }
        case .deleteElements(let set, let elements):
            guard let index = current.sets.firstIndex(where: { $0.name == set.name }) else { throw refuse(.noSuchFileOrDirectory, "no set \(set.name)") }
            for element in elements {
                guard let found = current.sets[index].elements.firstIndex(where: { $0.element.key == element.key }) else {
                    throw refuse(.noSuchFileOrDirectory, "no element \(element)")
                }
                current.sets[index].elements.remove(at: found)
            }
        case .addChain(let chain):
            if current.chains.contains(where: { $0.name == chain.name }) { throw refuse(.fileExists, "chain \(chain.name) exists") }
            // As the socket does: the chain alone, its rules come as `.addRule`.
            current.chains.append(NFTObservedChain(name: chain.name, hook: chain.hook, priority: chain.priority, rules: []))
        case .flushChain(let name):
            guard let index = current.chains.firstIndex(where: { $0.name == name }) else { throw refuse(.noSuchFileOrDirectory, "no chain \(name)") }
            current.chains[index].rules = []
        case .deleteChain(let name):
            guard let index = current.chains.firstIndex(where: { $0.name == name }) else { throw refuse(.noSuchFileOrDirectory, "no chain \(name)") }
            current.chains.remove(at: index)
        case .addRule(let chain, let rule):
            guard let index = current.chains.firstIndex(where: { $0.name == chain }) else { throw refuse(.noSuchFileOrDirectory, "no chain \(chain)") }
            current.chains[index].rules.append(Self.observed(rule))
        }
        table = current
    }

    static func observed(_ rule: NFTRule) -> NFTObservedRule {
        NFTObservedRule(rule: rule, comment: rule.comment, handle: 0)
    }

    private func overlaps(_ a: NFTElement, _ b: NFTElement) -> Bool {
        guard a.transport == b.transport, a.ports.overlaps(b.ports) else { return false }
        switch (a.source, b.source) {
        case (nil, nil): return true
        case (let x?, let y?): return x.family == y.family && x.addressRange.overlaps(y.addressRange)
        default: return false
        }
    }

    // MARK: foreign writers

    /// Sets a drop element's counters, as packets would.
    func count(_ key: PortKey, family: AddressFamily, packets: UInt64, bytes: UInt64) {
        let name = NFTablesPlanner.dropSet(family).name
        guard let set = table?.sets.firstIndex(where: { $0.name == name }),
              let element = table?.sets[set].elements.firstIndex(where: {
                  $0.element.transport == key.transport && $0.element.ports == key.port...key.port
              }) else { return }
        table?.sets[set].elements[element].packets = packets
        table?.sets[set].elements[element].bytes = bytes
    }

    /// The socket that owned the table went away (persist keeps the table, without flags or owner).
    func ownerExited() {
        table?.flags = []
        table?.ownedBySocket = false
        table?.hasOwner = false
    }
}
