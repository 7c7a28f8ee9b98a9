import XCTest

extension NodeTestCase {
    /// The seed's story once 31002/tcp and 31900/udp are blocked, whatever
    /// the backend: closed to remote and local clients, IPv4 and IPv6; and
    /// nothing else broken: another NodePort, pod traffic routed through the
    /// node to a pod listening on 31002, replies to the node's own
    /// connections from local port 31002.
    func assertStoryBlocked(file: StaticString = #filePath, line: UInt = #line) throws {
        let v4 = TestNode.nodeIPv4, v6 = TestNode.nodeIPv6
        for (host, origin) in [(v4, TestNode.Origin.client), (v6, .client), (v4, .node), (v6, .node)] {
            XCTAssertFalse(try node.answers("tcp", host, 31002, from: origin), "31002 must be closed for \(origin) on \(host)", file: file, line: line)
        }
        XCTAssertFalse(try node.answers("udp", v4, 31900), "UDP NodePort 31900 must be closed (IPv4)", file: file, line: line)
        XCTAssertFalse(try node.answers("udp", v6, 31900), "UDP NodePort 31900 must be closed (IPv6)", file: file, line: line)

        // Nothing else breaks: another NodePort, pod traffic routed through the
        // node to a pod listening on 31002, and replies to the node's own
        // connection from local port 31002.
        XCTAssertTrue(try node.isOpen("tcp", v4, 31003), "another NodePort must still answer", file: file, line: line)
        XCTAssertTrue(try node.isOpen("tcp", v6, 31003, from: .node), "another NodePort must still answer locally", file: file, line: line)
        XCTAssertTrue(try node.isOpen("tcp", TestNode.podIPv4, 31002), "routed traffic to a pod on port 31002 must flow", file: file, line: line)
        XCTAssertTrue(try node.isOpen("tcp", TestNode.podIPv6, 31002), "routed IPv6 traffic to a pod on port 31002 must flow", file: file, line: line)
        XCTAssertTrue(try node.isOpen("tcp", TestNode.podIPv4, 8200, from: .node, sourcePort: 31002),
                      "a connection the node opens from local port 31002 must get its replies", file: file, line: line)
        XCTAssertTrue(try node.isOpen("tcp", TestNode.podIPv6, 8200, from: .node, sourcePort: 31002),
                      "an IPv6 connection the node opens from local port 31002 must get its replies", file: file, line: line)
    }
}
