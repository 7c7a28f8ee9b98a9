import Foundation
import NodeGuardCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Nothing is lost: not to a concurrent writer of the same tables, not to a
/// SIGKILL at any moment of an apply.
final class FaultTests: NodeTestCase {
    func send(_ request: ControlRequest) throws -> ControlResponse {
        try ControlClient(socketPath: node.socketPath).send(request)
    }

    /// NodeGuard's DROP rules in one family, as ports.
    func droppedPorts(ipv6: Bool = false) throws -> [Int] {
        try node.mangleRules(ipv6: ipv6).filter { $0.hasSuffix("-j DROP") && $0.contains("NODEGUARD") }.compactMap { line in
            guard let range = line.range(of: "--dport ") else { return nil }
            return Int(line[range.upperBound...].prefix(while: \.isNumber))
        }.sorted()
    }

    /// A kube-proxy-like process rewrites the nat table with
    /// `iptables-legacy-restore --noflush` every 100 ms and creates and
    /// deletes a canary chain in mangle, while 1,000 blocks and unblocks go
    /// through the socket: both sides' updates all land.
    func testAThousandOperationsNextToAKubeProxyLikeWriterLoseNothing() throws {
        try setUpNode()
        try node.startDaemon()
        let stop = "/tmp/\(node.id)-stop"
        defer { unlink(stop) }
        let writer = try ChildProcess(["ip", "netns", "exec", node.node, "sh", "-c", """
            i=0
            while [ ! -e \(stop) ]; do
              i=$((i + 1))
              printf '*nat\\n:KUBE-SEP-WRITER - [0:0]\\n-A KUBE-SEP-WRITER -p tcp -m comment --comment "writer round %d" -j DNAT --to-destination 198.19.0.2:%d\\nCOMMIT\\n' $i $((8000 + i % 1000)) \\
                | iptables-legacy-restore -w --noflush || exit 1
              iptables-legacy -w -t mangle -N CANARY-$i && iptables-legacy -w -t mangle -X CANARY-$i || exit 1
              echo $i > \(stop).rounds
              sleep 0.1
            done
            """])
        var blocked: Set<Int> = []
        var operations = 0
        while operations < 1000 {
            let port = 30000 + Int.random(in: 0..<200)
            let request: ControlRequest = blocked.contains(port)
                ? .unblock(PortKey(port: UInt16(port), transport: .tcp))
                : .block(BlockEntry(port: UInt16(port)))
            guard case .success = try send(request) else { return XCTFail("\(request) failed") }
            if blocked.contains(port) { blocked.remove(port) } else { blocked.insert(port) }
            operations += 1
        }
        _ = FileManager.default.createFile(atPath: stop, contents: nil)
        XCTAssertEqual(writer.wait(), 0, "the other writer's every command succeeded")
        let rounds = Int((try? String(contentsOfFile: stop + ".rounds", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        defer { unlink(stop + ".rounds") }
        XCTAssertGreaterThan(rounds, 5, "the writer really ran alongside")

        let lost = Set(try droppedPorts()).symmetricDifference(blocked).count
            + Set(try droppedPorts(ipv6: true)).symmetricDifference(blocked).count
        print("concurrent writers: \(operations) NodeGuard operations, \(rounds) writer rounds, lost updates: \(lost)")
        XCTAssertEqual(lost, 0, "lost updates")
        let nat = try node.inNode("iptables-legacy-save -t nat").stdout
        XCTAssertTrue(nat.contains("writer round \(rounds)\""), "the writer's last update is there")
        XCTAssertTrue(nat.contains("-A KUBE-NODEPORTS -p tcp -m comment --comment \"vault/vault-ui:http\""), "kube-proxy's other rules are untouched")
        XCTAssertFalse(try node.mangleRules().contains { $0.contains("CANARY") }, "every canary the writer deleted is gone")
        XCTAssertTrue(try node.mangleRules().first?.hasSuffix("-j NODEGUARD") == true)
    }

    /// SIGKILL at a random moment of 100 apply cycles: the kernel always
    /// holds whole tables (the jump is never missing), and every restart
    /// adopts the rules without duplicates.
    func testSigkillDuringApplyKeepsWholeTablesAndRestartsAdoptThem() throws {
        try setUpNode()
        var expected: Set<Int> = []
        for cycle in 0..<100 {
            try node.startDaemon(extraArguments: [])
            // The state the restart adopted: exactly the durable runtime entries, once each.
            for ipv6 in [false, true] {
                let rules = try node.mangleRules(ipv6: ipv6)
                XCTAssertEqual(Set(rules).count, rules.count, "cycle \(cycle): duplicates after restart")
                let hooks = rules.filter { $0.hasPrefix("-A PREROUTING") || $0.hasPrefix("-A OUTPUT") }
                XCTAssertEqual(hooks.filter { $0.hasSuffix("-j NODEGUARD") }.count, 2, "cycle \(cycle): one jump per hook")
            }
            let adopted = Set(try droppedPorts())
            XCTAssertTrue(adopted == expected || adopted.symmetricDifference(expected).count == 1,
                          "cycle \(cycle): the kernel holds the old or the new list")
            expected = adopted
            XCTAssertEqual(Set(try droppedPorts(ipv6: true)), adopted, "cycle \(cycle): both families agree after restart")

            // Change the list and kill the daemon at some moment of applying it.
            let port = 31000 + Int.random(in: 0..<20)
            let request: ControlRequest = expected.contains(port)
                ? .unblock(PortKey(port: UInt16(port), transport: .tcp)) : .block(BlockEntry(port: UInt16(port)))
            let socketPath = node.socketPath
            let sender = Thread { _ = try? ControlClient(socketPath: socketPath).send(request) }
            sender.start()
            usleep(useconds_t.random(in: 0...20_000))
            node.stopDaemon(SIGKILL)
            // The jump is never missing, whatever moment the kill came at.
            for ipv6 in [false, true] {
                let rules = try node.mangleRules(ipv6: ipv6)
                XCTAssertTrue(rules.contains { $0.hasPrefix("-A PREROUTING") && $0.hasSuffix("-j NODEGUARD") }, "cycle \(cycle): jump missing")
                XCTAssertTrue(rules.contains { $0.hasPrefix("-A OUTPUT") && $0.hasSuffix("-j NODEGUARD") }, "cycle \(cycle): jump missing")
            }
        }
        // --remove-rules after all of that leaves nothing of NodeGuard's.
        let removal = try runCommand(["ip", "netns", "exec", node.node, TestPaths.nodeguardd, "--remove-rules", "--state-dir", node.stateDirectory])
        XCTAssertEqual(removal.status, 0, removal.stderr)
        for ipv6 in [false, true] {
            XCTAssertFalse(try node.mangleRules(ipv6: ipv6).contains { $0.contains("NODEGUARD") })
            XCTAssertFalse(try node.inNode("\(ipv6 ? "ip6tables" : "iptables")-legacy-save -t mangle").stdout.contains("NODEGUARD"))
        }
    }

    /// A corrupt runtime state file at start-up is reported and kept as it
    /// is; the daemon does not start over it, and the kernel keeps the rules.
    func testACorruptStateFileStopsStartUpAndIsKept() throws {
        try setUpNode()
        try node.startDaemon()
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        node.stopDaemon()
        let rules = try node.mangleRules()
        let path = node.stateDirectory + "/runtime.json"
        let corrupt = Array(#"{"version":1,"blocked":[{"port":31002},"#.utf8)
        try Data(corrupt).write(to: URL(fileURLWithPath: path))

        XCTAssertThrowsError(try node.startDaemon()) { error in
            XCTAssertTrue("\(error)".contains("runtime state is corrupt"), "\(error)")
        }
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: path))), corrupt, "kept byte for byte for inspection")
        XCTAssertEqual(try node.mangleRules(), rules, "the kernel keeps the rules")
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
    }

    /// Issue 14: a runtime.json over the 16 MiB the reader takes (17 MB, as
    /// an older NodeGuard could write) stops start-up with an error that says
    /// not to move it aside; the file is kept and the kernel keeps every rule.
    func testAnOversizedStateFileStopsStartUpAndIsKept() throws {
        try setUpNode()
        try node.startDaemon()
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        XCTAssertEqual(try node.ctl("block", "31003", "--allow-from", "2001:db8:18::/64").status, 0)
        node.stopDaemon()
        let rules = try node.mangleRules(), rules6 = try node.mangleRules(ipv6: true)
        let path = node.stateDirectory + "/runtime.json"
        // A valid list, padded past the limit the way pretty printing pads one.
        var oversized = Array(#"{"version":1,"blocked":[{"port":31002},"#.utf8)
        oversized += [UInt8](repeating: UInt8(ascii: " "), count: 17_000_000)
        oversized += Array(#"{"port":31003}]}"#.utf8)
        try Data(oversized).write(to: URL(fileURLWithPath: path))

        XCTAssertThrowsError(try node.startDaemon()) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("runtime state is corrupt") && text.contains("is larger than 16 MiB"), text)
            XCTAssertTrue(text.contains("moving it aside would start without the runtime blocks and remove their rules"), text)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)).count, oversized.count, "kept as it was")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)).suffix(64), Data(oversized.suffix(64)))
        XCTAssertEqual(try node.mangleRules(), rules, "the kernel keeps the rules")
        XCTAssertEqual(try node.mangleRules(ipv6: true), rules6)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
    }
}
