import Foundation
import XCTest

/// NodeGuard knows the node's dataplane: which kube-proxy mode writes the
/// NodePorts (legacy, nft backend, nftables mode), their services and
/// endpoints, Docker and CNI rewrites, and an eBPF dataplane that defeats it;
/// `explain` shows a packet's path; the reading is cached until a table changes.
final class DataplaneTests: NodeTestCase {
    func json(_ arguments: String...) throws -> [String: Any] {
        let result = try node.ctl(Array(arguments) + ["--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    func dataplane() throws -> [String: Any] {
        try XCTUnwrap(node.status()["dataplane"] as? [String: Any])
    }

    func testLegacyKubeProxyServicesEndpointsAndExplain() throws {
        try setUpNode(nat: .legacy)
        try node.startDaemon()
        XCTAssertEqual(try dataplane()["kubeProxy"] as? [String], ["iptables-legacy"])
        let ports = try XCTUnwrap(json("nodeports")["nodeports"] as? [[String: Any]])
        let vault4 = try XCTUnwrap(ports.first { $0["port"] as? Int == 31002 && $0["family"] as? String == "ipv4" })
        XCTAssertEqual(vault4["endpoints"] as? [String], ["198.19.0.2:8200"])
        let vault6 = try XCTUnwrap(ports.first { $0["port"] as? Int == 31002 && $0["family"] as? String == "ipv6" })
        XCTAssertEqual(vault6["endpoints"] as? [String], ["[2001:db8:19::2]:8200"])

        var explained = try json("explain", "31002")
        XCTAssertTrue((explained["verdict"] as? String)?.hasPrefix("open") == true, "\(explained)")
        let rewrites = try XCTUnwrap(explained["rewrites"] as? [[String: Any]])
        XCTAssertTrue(rewrites.contains { $0["by"] as? String == "kube-proxy service vault/vault-ui:http" && $0["to"] as? [String] == ["198.19.0.2:8200"] }, "\(rewrites)")

        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        explained = try json("explain", "31002")
        XCTAssertTrue((explained["verdict"] as? String)?.hasPrefix("closed") == true, "\(explained)")
        XCTAssertEqual(explained["defeats"] as? [String], [])
        let dropped = try XCTUnwrap((explained["nodeguard"] as? [String: Any])?["dropped"] as? [String: [String: Int]])
        XCTAssertGreaterThan(dropped["ipv4"]?["packets"] ?? 0, 0)
        let text = try node.ctl("explain", "31002").stdout
        XCTAssertTrue(text.contains("rewritten by: kube-proxy service vault/vault-ui:http") && text.contains("verdict:      closed"), text)

        // An IPv4-only block leaves the service open over IPv6, and explain says so.
        XCTAssertEqual(try node.ctl("block", "31003", "--family", "ipv4").status, 0)
        explained = try json("explain", "31003")
        XCTAssertTrue((explained["defeats"] as? [String])?.contains { $0.contains("the service also listens on ipv6") } == true, "\(explained)")
    }

    func testKubeProxyNftablesModeIsReadAndBlocked() throws {
        try setUpNode(nat: .nftables)
        try node.startDaemon()
        XCTAssertEqual(try dataplane()["kubeProxy"] as? [String], ["nftables"])
        let ports = try XCTUnwrap(json("nodeports")["nodeports"] as? [[String: Any]])
        XCTAssertTrue(ports.contains { $0["port"] as? Int == 31002 && $0["service"] as? String == "vault/vault-ui:http"
            && $0["source"] as? String == "nftables" && $0["endpoints"] as? [String] == ["198.19.0.2:8200"] }, "\(ports)")
        XCTAssertTrue(ports.contains { $0["port"] as? Int == 31900 && $0["protocol"] as? String == "udp" && $0["family"] as? String == "ipv6"
            && $0["endpoints"] as? [String] == ["[2001:db8:19::2]:5300"] }, "\(ports)")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31002), "kube-proxy's nftables DNAT works before the block")
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 31002))
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv6, 31002, from: .node))
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 31003))
        for file in ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"] {
            XCTAssertFalse(try node.inNode("cat \(file)").stdout.contains("nat"), "no legacy nat table may be created")
        }
    }

    func testACiliumKubeProxyReplacementIsSaidPlainly() throws {
        try setUpNode(nat: .none)
        try node.loadFixture("cilium-kpr.rules")
        try node.startDaemon()
        let plane = try dataplane()
        XCTAssertEqual(plane["kubeProxy"] as? [String], [])
        XCTAssertEqual(plane["ebpf"] as? String, "cilium-kube-proxy-replacement")
        XCTAssertTrue((plane["warnings"] as? [String])?.first?.contains("NodeGuard's mangle drops never see those packets") == true, "\(plane)")
        XCTAssertTrue(node.daemonLog.contains("dataplane: Cilium's eBPF kube-proxy replacement"), node.daemonLog)
        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        let explained = try json("explain", "31002")
        XCTAssertTrue((explained["verdict"] as? String)?.hasPrefix("at risk") == true, "\(explained)")
        let status = try node.ctl("status").stdout
        XCTAssertTrue(status.contains("WARNING:     Cilium's eBPF kube-proxy replacement"), status)
    }

    func testIPVSModeIsRecognisedAndTheBlockStillWorks() throws {
        try setUpNode(nat: .none)
        // What IPVS mode leaves behind: the interface for service addresses (a
        // dummy there; a veth here, whose kernel has no dummy driver) and its nat chain.
        let made = try node.inNode("ip link add kube-ipvs0 type veth peer name ipvs-peer && iptables-legacy -w -t nat -N KUBE-SERVICES && iptables-legacy -w -t nat -N KUBE-NODE-PORT")
        XCTAssertEqual(made.status, 0, made.stderr)
        try node.startDaemon()
        let plane = try dataplane()
        XCTAssertEqual(plane["kubeProxy"] as? [String], ["ipvs"])
        XCTAssertTrue((plane["warnings"] as? [String])?.contains { $0.contains("IPVS mode") } == true, "\(plane)")
        XCTAssertEqual(try node.status()["healthy"] as? Bool, true)
    }

    func testDockerAndCNIHostPortRewritesAreExplainedAndBlocked() throws {
        try setUpNode(nat: .legacy)
        try node.loadFixture("docker-cni-nat.rules", tool: ["iptables-legacy-restore", "--noflush"])
        try node.startDaemon()
        XCTAssertEqual(try dataplane()["others"] as? [String], ["cni-hostport", "docker"])
        let docker = try json("explain", "8080")
        XCTAssertTrue((docker["rewrites"] as? [[String: Any]])?.contains {
            $0["kind"] as? String == "docker" && $0["to"] as? [String] == ["198.19.0.2:8200"] } == true, "\(docker)")
        let cni = try json("explain", "8443")
        XCTAssertTrue((cni["rewrites"] as? [[String: Any]])?.contains {
            $0["kind"] as? String == "cni-hostport" && $0["to"] as? [String] == ["198.19.0.2:8300"] } == true, "\(cni)")
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 8080))
        XCTAssertEqual(try node.ctl("block", "8080").status, 0)
        XCTAssertFalse(try node.answers("tcp", TestNode.nodeIPv4, 8080))
        XCTAssertTrue(try node.isOpen("tcp", TestNode.nodeIPv4, 8443))
    }

    func testA5000ServiceNatTableIsReadOnlyWhenItChanges() throws {
        try setUpNode(nat: .none)
        let generated = try runCommand(["python3", TestPaths.fixtures.appendingPathComponent("make-kube-proxy-nat.py").path, "--services", "5000"])
        XCTAssertEqual(generated.status, 0, generated.stderr)
        let load = try runCommand(["ip", "netns", "exec", node.node, "iptables-legacy-restore"], input: generated.stdout)
        XCTAssertEqual(load.status, 0, load.stderr)
        try node.startDaemon()
        let reads = try XCTUnwrap(dataplane()["reads"] as? Int)
        let ports = try XCTUnwrap(json("nodeports")["nodeports"] as? [[String: Any]])
        XCTAssertEqual(ports.count, 5000)
        XCTAssertTrue(ports.allSatisfy { ($0["endpoints"] as? [String])?.count == 2 }, "every service has its two endpoints")
        XCTAssertEqual(try dataplane()["reads"] as? Int, reads, "unchanged tables are not read again")
        // kube-proxy changes one endpoint (same size): the digest sees it.
        let sep = try XCTUnwrap(generated.stdout.split(separator: "\n").first { $0.hasPrefix("-A KUBE-SEP-") && $0.contains("DNAT") })
        let chain = sep.split(separator: " ")[1]
        let moved = sep.replacingOccurrences(of: #"--to-destination [0-9.]+:"#, with: "--to-destination 10.244.255.254:", options: .regularExpression)
        XCTAssertEqual(try node.inNode("iptables-legacy -w -t nat -R \(chain) 2 \(moved.split(separator: " ").dropFirst(2).joined(separator: " "))").status, 0)
        XCTAssertEqual(try dataplane()["reads"] as? Int, reads + 1)
        let after = try XCTUnwrap(json("nodeports")["nodeports"] as? [[String: Any]])
        XCTAssertTrue(after.contains { ($0["endpoints"] as? [String])?.contains("10.244.255.254:8080") == true })
    }
}
