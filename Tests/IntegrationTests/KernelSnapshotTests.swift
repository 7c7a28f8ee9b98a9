import Foundation
@testable import NodeGuardCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// NodeGuard reads tables it does not change (its scheduled check, status,
/// other agents' nat tables) straight from the kernel's blob instead of
/// through libiptc, which copies every rule. That reader must see exactly
/// what libiptc sees, and a scheduled check of an unchanged table must
/// neither wait for the xtables lock nor commit.
final class KernelSnapshotTests: NodeTestCase {
    struct Comparison {
        var libiptcChains: Set<String> = []
        var kernelChains: Set<String> = []
        /// Chains whose rules differ: (libiptc's, the kernel reader's).
        var differences: [String: ([ObservedRule], [ObservedRule])] = [:]
        var rules: [ObservedRule] = []
    }

    /// Reads `table` both ways in the node's namespace.
    func compareReaders(_ table: String, _ family: AddressFamily) throws -> Comparison {
        try node.inNodeNamespace {
            var result = Comparison()
            let viaLibiptc = try IPTCTable(family: family, table: table)
            defer { viaLibiptc.close() }
            let viaKernel = try KernelTableReader().snapshot(table, family)
            result.libiptcChains = Set(viaLibiptc.chainNames())
            result.kernelChains = Set(viaKernel.chainNames())
            for chain in viaLibiptc.chainNames() {
                let expected = try viaLibiptc.rules(in: chain)
                let actual = try viaKernel.rules(in: chain)
                if actual != expected { result.differences[chain] = (expected, actual) }
                result.rules += expected
            }
            return result
        }
    }

    func assertSameReads(_ table: String, _ family: AddressFamily, atLeast rules: Int,
                         file: StaticString = #filePath, line: UInt = #line) throws -> [ObservedRule] {
        let comparison = try compareReaders(table, family)
        XCTAssertEqual(comparison.kernelChains, comparison.libiptcChains, "\(family) \(table) chains", file: file, line: line)
        for (chain, (expected, actual)) in comparison.differences.sorted(by: { $0.key < $1.key }).prefix(3) {
            XCTFail("\(family) \(table) \(chain): libiptc read\n\(expected.map(\.description).joined(separator: "\n"))\n"
                    + "the kernel reader read\n\(actual.map(\.description).joined(separator: "\n"))", file: file, line: line)
        }
        // Not a vacuous comparison: the tables hold what the test put there.
        XCTAssertGreaterThanOrEqual(comparison.rules.count, rules, "\(family) \(table) rules compared", file: file, line: line)
        return comparison.rules
    }

    func testTheKernelReaderReadsEveryTableAsLibiptcDoes() throws {
        try setUpNode()
        try node.loadFixture("docker-cni-nat.rules", tool: ["iptables-legacy-restore", "--noflush"])
        // NodeGuard's own rules: a trie (40 ports), allowed sources, reasons, every protocol.
        var blocked = (0..<40).map { #"{"port": \#(30100 + $0), "protocol": "tcp"}"# }
        blocked += [
            #"{"port": 31002, "protocol": "tcp", "reason": "SEC-1234 \"vault\" UI", "allowFrom": ["198.18.0.0/24", "2001:db8:18::/64"]}"#,
            #"{"port": 31900, "protocol": "udp"}"#, #"{"port": 31010, "protocol": "sctp", "family": "ipv6"}"#,
        ]
        try node.writeDenyList(#"{"version": 1, "blocked": [\#(blocked.joined(separator: ", "))]}"#)
        try node.startDaemon()
        // Other agents' rules around them: user chains (one empty), jumps, a
        // verdict NodeGuard never writes, a match it does not know, a MARK target.
        for tool in ["iptables-legacy", "ip6tables-legacy"] {
            for command in [
                "-t mangle -N FOREIGN", "-t mangle -N FOREIGN-EMPTY",
                "-t mangle -A FOREIGN -p tcp --dport 80 -j MARK --set-mark 7",
                "-t mangle -A FOREIGN -j RETURN",
                "-t mangle -A PREROUTING -j FOREIGN",
                "-t mangle -A OUTPUT -p tcp -m multiport --dports 1,2,3 -j ACCEPT",
                "-t mangle -A FORWARD -p udp --dport 53 -j QUEUE",
                "-t mangle -A POSTROUTING -j FOREIGN-EMPTY",
            ] {
                let result = try node.inNode("\(tool) -w \(command)")
                XCTAssertEqual(result.status, 0, "\(tool) \(command): \(result.stderr)")
            }
        }

        let mangle4 = try assertSameReads("mangle", .ipv4, atLeast: 50)
        _ = try assertSameReads("mangle", .ipv6, atLeast: 50)
        XCTAssertTrue(mangle4.contains { $0.spec == nil && $0.target == "ACCEPT" }, "the multiport rule reads as foreign")
        XCTAssertTrue(mangle4.contains { $0.target == "FOREIGN" }, "a jump reads as its chain's name")
        XCTAssertTrue(mangle4.contains { $0.target == "QUEUE" })
        let nat4 = try assertSameReads("nat", .ipv4, atLeast: 10)
        XCTAssertTrue(nat4.contains { $0.natDestination == "\(TestNode.podIPv4):8200" }, "kube-proxy's DNAT decoded")
        let nat6 = try assertSameReads("nat", .ipv6, atLeast: 3)
        XCTAssertTrue(nat6.contains { $0.natDestination == "[\(TestNode.podIPv6)]:8200" })
        _ = try assertSameReads("filter", .ipv4, atLeast: 0)

        // A kube-proxy-shaped table of 300 services (thousands of chains).
        let generated = try runCommand(["python3", TestPaths.fixtures.appendingPathComponent("make-kube-proxy-nat.py").path,
                                        "--services", "300"])
        XCTAssertEqual(generated.status, 0, generated.stderr)
        XCTAssertEqual(try runCommand(["ip", "netns", "exec", node.node, "iptables-legacy-restore"], input: generated.stdout).status, 0)
        let big = try assertSameReads("nat", .ipv4, atLeast: 3000)
        XCTAssertGreaterThanOrEqual(big.filter { $0.natDestination != nil }.count, 300)
    }

    func testAScheduledCheckOfAnUnchangedTableTakesNoLockAndCommitsNothing() throws {
        try setUpNode()
        let lockPath = node.directory.appendingPathComponent("xtables.lock").path
        let entries = [BlockEntry(port: 31002), BlockEntry(port: 31900, transport: .udp)]
        let outcome = try node.inNodeNamespace { () throws -> [String] in
            var notes: [String] = []
            let backend = LibIPTCBackend(lockPath: lockPath, lockTimeout: .milliseconds(300))
            let reconciler = Reconciler(backend: backend, families: [.ipv4, .ipv6])
            try reconciler.apply(entries)
            let commits = reconciler.commitCount
            // Another program holds the lock, as iptables-restore does while it works.
            let holder = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            defer { close(holder) }
            guard flock(holder, LOCK_EX) == 0 else { return ["could not take the lock"] }

            let unchanged = try reconciler.apply(entries, checkFirst: true)
            if !unchanged.isEmpty { notes.append("unchanged table reported changes: \(unchanged)") }
            if reconciler.commitCount != commits { notes.append("unchanged table was committed") }

            // Drift: now the check must hand over to the locked path, which waits.
            let deleted = try runCommand(["iptables-legacy", "-w", "-t", "mangle", "-D", "NODEGUARD-TCP", "1"])
            if deleted.status != 0 { notes.append("iptables-legacy -D: \(deleted.stderr)") }
            do throws(NodeGuardError) {
                try reconciler.apply(entries, checkFirst: true)
                notes.append("apply returned without waiting for the held xtables lock although the table had drifted")
            } catch {
                if error.code != .lockTimeout { notes.append("expected lock_timeout, got \(error.code): \(error.message)") }
            }
            flock(holder, LOCK_UN)
            let repaired = try reconciler.apply(entries, checkFirst: true)
            if repaired.isEmpty { notes.append("the drift was not repaired once the lock was free") }
            if reconciler.commitCount != commits + 1 { notes.append("expected one commit for the repair, saw \(reconciler.commitCount - commits)") }
            return notes
        }
        XCTAssertEqual(outcome, [String]())
        XCTAssertTrue(try node.mangleRules().contains("-A NODEGUARD-TCP -p tcp -m tcp --dport 31002 -m comment --comment \"NodeGuard: block 31002/tcp\" -j DROP"))
    }
}
