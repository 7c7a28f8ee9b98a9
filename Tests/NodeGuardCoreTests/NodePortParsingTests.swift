import Logging
import XCTest

@testable import NodeGuardCore

final class NodePortParsingTests: XCTestCase {
    func testParsesKubeProxyNodePortRulesFromSaveOutput() {
        let text = """
            *nat
            :KUBE-NODEPORTS - [0:0]
            -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS
            -A KUBE-NODEPORTS -p tcp -m comment --comment "vault/vault-ui:http" -m tcp --dport 31002 -j KUBE-EXT-VAULT
            -A KUBE-NODEPORTS -p udp -m comment --comment "dns/resolver:dns" -m udp --dport 31900 -j KUBE-EXT-DNS
            -A KUBE-NODEPORTS -p tcp -m comment --comment "odd/\\"quoted\\" name:x" -m tcp --dport 32001 -j KUBE-EXT-ODD
            COMMIT
            """
        let table = NatTableReader.parseSave(text, family: .ipv6, source: "iptables-nft")!
        let ports = DataplaneReader.kubeNodePorts(table)
        XCTAssertEqual(ports.map(\.key), [PortKey(port: 31002, transport: .tcp), PortKey(port: 31900, transport: .udp),
                                          PortKey(port: 32001, transport: .tcp)])
        XCTAssertEqual(ports.map(\.service), ["vault/vault-ui:http", "dns/resolver:dns", "odd/\"quoted\" name:x"])
        XCTAssertTrue(ports.allSatisfy { $0.family == .ipv6 && $0.source == "iptables-nft" })
    }
}
