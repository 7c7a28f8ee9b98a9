import XCTest

@testable import NodeGuardCore

final class DataplaneParsingTests: XCTestCase {
    func testFollowsKubeProxyChainsFromANodePortToItsEndpoints() throws {
        let text = """
            *nat
            :KUBE-NODEPORTS - [0:0]
            :KUBE-EXT-A - [0:0]
            :KUBE-SVC-A - [0:0]
            :KUBE-SEP-1 - [0:0]
            :KUBE-SEP-2 - [0:0]
            :KUBE-MARK-MASQ - [0:0]
            -A KUBE-NODEPORTS -p tcp -m comment --comment "shop/cart:http" -m tcp --dport 30080 -j KUBE-EXT-A
            -A KUBE-EXT-A -j KUBE-MARK-MASQ
            -A KUBE-EXT-A -j KUBE-SVC-A
            -A KUBE-SVC-A -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-1
            -A KUBE-SVC-A -j KUBE-SEP-2
            -A KUBE-SEP-1 -s 10.244.0.5/32 -j KUBE-MARK-MASQ
            -A KUBE-SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.244.0.5:8080
            -A KUBE-SEP-2 -p tcp -m tcp -j DNAT --to-destination 10.244.1.7:8080
            -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
            -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
            -A CNI-DN-x -p tcp -m tcp --dport 8443 -j DNAT --to-destination 10.244.0.9:443
            COMMIT
            """
        let table = try XCTUnwrap(NatTableReader.parseSave(text, family: .ipv4, source: "iptables-nft"))
        let ports = DataplaneReader.kubeNodePorts(table)
        XCTAssertEqual(ports.map(\.service), ["shop/cart:http"])
        XCTAssertEqual(ports.first?.endpoints, ["10.244.0.5:8080", "10.244.1.7:8080"])
        let rewrites = DataplaneReader.rewrites(table).sorted { $0.key < $1.key }
        XCTAssertEqual(rewrites.map(\.kind), [.docker, .cniHostPort])
        XCTAssertEqual(rewrites.map(\.to), ["172.17.0.2:80", "10.244.0.9:443"])
        XCTAssertNil(NatTableReader.parseSave("", family: .ipv4, source: "iptables-nft"), "no nat table, nothing read")
    }

    /// The legacy reader decodes only the chains that can lead a NodePort to
    /// its endpoints, and every chain that is not kube-proxy's.
    func testTheLegacyReaderSkipsKubeProxyChainsThatLeadNowhere() {
        for chain in ["KUBE-NODEPORTS", "KUBE-EXT-ABC", "KUBE-SVC-ABC", "KUBE-SVL-ABC", "KUBE-SEP-ABC", "KUBE-FW-ABC",
                      "DOCKER", "CNI-HOSTPORT-DNAT", "CNI-DN-123", "PREROUTING", "OUTPUT", "my-chain"] {
            XCTAssertTrue(NatTableReader.mayLeadToEndpoints(chain), chain)
        }
        for chain in ["KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-PROXY-CANARY", "KUBE-NODE-PORT"] {
            XCTAssertFalse(NatTableReader.mayLeadToEndpoints(chain), chain)
        }
    }

    func testReadsKubeProxyNftablesModeJSON() throws {
        let document = try JSON.parse(#"""
            {"nftables": [
              {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
              {"table": {"family": "ip6", "name": "kube-proxy", "handle": 1}},
              {"map": {"family": "ip6", "name": "service-nodeports", "table": "kube-proxy", "type": ["inet_proto", "inet_service"], "map": "verdict",
                "elem": [
                  [{"concat": ["tcp", 31002]}, {"goto": {"target": "external-UVTPQ5XX-vault/vault-ui/tcp/http"}}],
                  [{"elem": {"val": {"concat": ["udp", 31900]}, "comment": "dns"}}, {"goto": {"target": "external-EYZPX2Q7-dns/resolver/udp/dns"}}],
                  [{"concat": ["tcp", 31999]}, {"drop": null}]]}},
              {"rule": {"family": "ip6", "table": "kube-proxy", "chain": "endpoint-MOPCL4PF-vault/vault-ui/tcp/http__2001.db8.19..2/8200",
                "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
                         {"dnat": {"addr": "2001:db8:19::2", "port": 8200}}]}}
            ]}
            """#)
        let ports = KubeProxyNftables.parse(document, family: .ipv6)
        XCTAssertEqual(ports.map(\.key), [PortKey(port: 31002, transport: .tcp), PortKey(port: 31900, transport: .udp)])
        XCTAssertEqual(ports.map(\.service), ["vault/vault-ui:http", "dns/resolver:dns"])
        XCTAssertEqual(ports.first?.endpoints, ["[2001:db8:19::2]:8200"])
        XCTAssertEqual(ports.last?.endpoints, [])
        XCTAssertTrue(ports.allSatisfy { $0.source == "nftables" && $0.family == .ipv6 })
    }
}
