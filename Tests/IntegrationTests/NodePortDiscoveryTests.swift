import Foundation
import XCTest

/// NodeGuard knows which services its blocks shut off: it reads kube-proxy's
/// KUBE-NODEPORTS chain from the legacy nat table (libiptc) or an nft-backed
/// one (iptables-nft-save), without creating tables that were not there.
final class NodePortDiscoveryTests: NodeTestCase {
    func nodePorts() throws -> [[String: Any]] {
        let result = try node.ctl("nodeports", "--json")
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((object["problems"] as? [Any])?.count, 0, "\(object)")
        return object["nodeports"] as? [[String: Any]] ?? []
    }

    func entries() throws -> [[String: Any]] {
        try node.status()["entries"] as? [[String: Any]] ?? []
    }

    func testReadsTheLegacyNatTableAndNamesTheServiceABlockShutsOff() throws {
        try setUpNode(nat: .legacy)
        try node.startDaemon()
        let before = try nodePorts()
        let vault = before.filter { $0["port"] as? Int == 31002 }
        XCTAssertEqual(Set(vault.compactMap { $0["family"] as? String }), ["ipv4", "ipv6"])
        XCTAssertTrue(vault.allSatisfy { $0["service"] as? String == "vault/vault-ui:http" && $0["source"] as? String == "iptables-legacy" })
        XCTAssertTrue(vault.allSatisfy { $0["blocked"] as? Bool == false })
        XCTAssertTrue(before.contains { $0["port"] as? Int == 31900 && $0["protocol"] as? String == "udp" && $0["service"] as? String == "dns/resolver:dns" })
        XCTAssertEqual(before.count, 6, "three NodePorts, two families: \(before)")

        XCTAssertEqual(try node.ctl("block", "31002").status, 0)
        XCTAssertEqual(try node.ctl("block", "31555").status, 0)
        XCTAssertTrue(try nodePorts().filter { $0["port"] as? Int == 31002 }.allSatisfy { $0["blocked"] as? Bool == true })

        let status = try entries()
        let blocked = try XCTUnwrap(status.first { $0["port"] as? Int == 31002 })
        XCTAssertEqual(blocked["services"] as? [String], ["vault/vault-ui:http"])
        XCTAssertNil(blocked["warning"])
        let typo = try XCTUnwrap(status.first { $0["port"] as? Int == 31555 })
        XCTAssertTrue((typo["warning"] as? String)?.contains("no NodePort on this node uses 31555/tcp") == true, "\(typo)")
        let list = try node.ctl("list").stdout
        XCTAssertTrue(list.contains("[vault/vault-ui:http]") && list.contains("WARNING"), list)
    }

    func testReadsAnNftBackedNatTableWithoutCreatingALegacyOne() throws {
        try setUpNode(nat: .nft)
        try node.startDaemon()
        let ports = try nodePorts()
        XCTAssertTrue(ports.contains { $0["port"] as? Int == 31003 && $0["service"] as? String == "web/frontend:http"
            && $0["source"] as? String == "iptables-nft" && $0["family"] as? String == "ipv6" }, "\(ports)")
        XCTAssertFalse(ports.contains { $0["source"] as? String == "iptables-legacy" })
        let dataplane = try XCTUnwrap(node.status()["dataplane"] as? [String: Any])
        XCTAssertEqual(dataplane["kubeProxy"] as? [String], ["iptables-nft"])
        for file in ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"] {
            let names = try node.inNode("cat \(file)").stdout
            XCTAssertFalse(names.split(separator: "\n").contains("nat"), "reading must not create a legacy nat table: \(names)")
        }
    }
}
