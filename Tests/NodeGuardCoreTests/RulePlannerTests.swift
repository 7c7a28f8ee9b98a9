import XCTest
@testable import NodeGuardControl
@testable import NodeGuardCore

/// A packet as the planned chains see it.
struct SimulatedPacket {
    var transport: TransportProtocol
    var port: UInt16
    /// Source address bytes (4 or 16), or nil for "some source no rule names".
    var source: [UInt8]? = nil
    /// Its direction in a tracked connection; nil for a packet conntrack does
    /// not track (raw's CT --notrack, or invalid).
    var conntrack: ConntrackDirection? = .original
}

/// What happened to a packet that walked the planned chains.
struct SimulatedWalk {
    /// "DROP" if a DROP rule matched, nil if the packet left NODEGUARD without a verdict.
    var verdict: String?
    /// The rule that gave the verdict.
    var verdictRule: RuleSpec?
    /// Every rule evaluated, in every chain.
    var rulesEvaluated = 0
    /// Whether a RETURN rule matched on the way.
    var returned = false
    var problems: [String] = []
}

enum PlanSimulator {
    static func matches(_ rule: RuleSpec, _ packet: SimulatedPacket) -> Bool {
        if let transport = rule.transport, transport != packet.transport { return false }
        if let ports = rule.destinationPorts, !ports.contains(packet.port) { return false }
        if let direction = rule.direction, direction != packet.conntrack { return false }
        if let source = rule.source {
            guard let address = packet.source, address.count == source.address.count else { return false }
            if CIDR.masked(address, prefixLength: source.prefixLength) != source.address { return false }
        }
        return true
    }

    /// Starts at NODEGUARD and evaluates rules as netfilter does: a matching jump
    /// enters the chain, RETURN or the end of a chain goes back to the caller,
    /// DROP ends the walk.
    static func walk(_ plan: TablePlan, _ packet: SimulatedPacket) -> SimulatedWalk {
        walk(chains: index(plan), packet)
    }

    /// The plan's chains by name, to walk many packets through one plan.
    static func index(_ plan: TablePlan) -> [String: [RuleSpec]] {
        var chains: [String: [RuleSpec]] = [:]
        for chain in plan.chains { chains[chain.name] = chain.rules }
        return chains
    }

    static func walk(chains: [String: [RuleSpec]], _ packet: SimulatedPacket) -> SimulatedWalk {
        var result = SimulatedWalk()

        // Returns true when a verdict ends the walk.
        func run(_ name: String, depth: Int) -> Bool {
            guard depth <= 8 else {
                result.problems.append("jumps nest deeper than 8 at \(name)")
                return true
            }
            guard let rules = chains[name] else {
                result.problems.append("jump to unplanned chain \(name)")
                return true
            }
            for rule in rules {
                result.rulesEvaluated += 1
                guard matches(rule, packet) else { continue }
                switch rule.target {
                case "DROP", "ACCEPT":
                    result.verdict = rule.target
                    result.verdictRule = rule
                    return true
                case "RETURN":
                    result.returned = true
                    return false
                default:
                    if run(rule.target, depth: depth + 1) { return true }
                }
            }
            return false
        }
        _ = run(RulePlanner.entryChain, depth: 0)
        return result
    }

    /// Structural checks every plan must pass. Returns the problems found.
    static func structuralProblems(_ plan: TablePlan) -> [String] {
        var problems: [String] = []
        let names = plan.chains.map(\.name)
        if names.first != RulePlanner.entryChain { problems.append("first chain is \(names.first ?? "none"), not NODEGUARD") }
        if Set(names).count != names.count { problems.append("chain names repeat") }
        let planned = Set(names)
        var jumpedTo: [String: Int] = [:]
        for chain in plan.chains {
            if chain.name.utf8.count > 28 { problems.append("\(chain.name) is longer than 28 characters") }
            if !chain.name.hasPrefix("NODEGUARD") || !RulePlanner.isNodeGuardChain(chain.name) {
                problems.append("\(chain.name) is not a NodeGuard chain name")
            }
            for rule in chain.rules {
                if rule.matchLocalDestination || (rule.direction != nil && rule != RulePlanner.replyRule) {
                    problems.append("\(chain.name) has a hook-only match")
                }
                if rule.comment.utf8.count > RulePlanner.maximumCommentBytes {
                    problems.append("comment longer than 255 bytes in \(chain.name)")
                }
                switch rule.target {
                case "DROP", "RETURN": break
                default:
                    if !planned.contains(rule.target) { problems.append("\(chain.name) jumps to unplanned \(rule.target)") }
                    if rule.target == RulePlanner.entryChain { problems.append("\(chain.name) jumps back to NODEGUARD") }
                    jumpedTo[rule.target, default: 0] += 1
                }
                if rule.target == "RETURN", rule.source == nil, rule != RulePlanner.replyRule { problems.append("RETURN without a source in \(chain.name)") }
                if let source = rule.source, source.family != plan.family {
                    problems.append("\(source) in the \(plan.family) plan")
                }
            }
        }
        // Reachability from NODEGUARD.
        var reachable: Set<String> = [RulePlanner.entryChain]
        var queue = [RulePlanner.entryChain]
        let byName = Dictionary(plan.chains.map { ($0.name, $0.rules) }, uniquingKeysWith: { a, _ in a })
        while let name = queue.popLast() {
            for rule in byName[name] ?? [] where planned.contains(rule.target) && !reachable.contains(rule.target) {
                reachable.insert(rule.target)
                queue.append(rule.target)
            }
        }
        for name in names where !reachable.contains(name) { problems.append("\(name) is not reachable from NODEGUARD") }
        for (name, count) in jumpedTo where count > 1 { problems.append("\(name) is jumped to \(count) times") }
        return problems
    }
}

final class RulePlannerTests: XCTestCase {
    private func dropRule(_ port: UInt16, _ transport: TransportProtocol = .tcp, comment: String? = nil) -> RuleSpec {
        RuleSpec(transport: transport, destinationPorts: port...port,
                 comment: comment ?? "NodeGuard: block \(port)/\(transport.rawValue)", target: "DROP")
    }

    private func assertWellFormed(_ plan: TablePlan, file: StaticString = #filePath, line: UInt = #line) {
        let problems = PlanSimulator.structuralProblems(plan)
        XCTAssertEqual(problems, [], file: file, line: line)
    }

    /// Counts the DROP rules per port key in the plan.
    private func dropCounts(_ plan: TablePlan) -> [PortKey: Int] {
        var counts: [PortKey: Int] = [:]
        for chain in plan.chains {
            for rule in chain.rules where rule.target == "DROP" {
                guard let transport = rule.transport, let ports = rule.destinationPorts, ports.count == 1 else { continue }
                counts[PortKey(port: ports.lowerBound, transport: transport), default: 0] += 1
            }
        }
        return counts
    }

    // MARK: the example list

    func testExamplePlanForIPv4() {
        let plan = RulePlanner.plan(Fixtures.exampleEntries, family: .ipv4)
        XCTAssertEqual(plan.family, .ipv4)
        XCTAssertEqual(plan.hookRule, RulePlanner.hookRule)
        XCTAssertEqual(plan.chains.map(\.name), ["NODEGUARD", "NODEGUARD-TCP", "NODEGUARD-UDP"])
        XCTAssertEqual(plan.chains[0].rules, [
            RulePlanner.replyRule,
            RuleSpec(transport: .tcp, comment: "NodeGuard: tcp ports", target: "NODEGUARD-TCP"),
            RuleSpec(transport: .udp, comment: "NodeGuard: udp ports", target: "NODEGUARD-UDP"),
        ])
        XCTAssertEqual(plan.chains[1].rules, [
            dropRule(31002, comment: "NodeGuard: block 31002/tcp: vault UI CVE, ticket SEC-1234"),
            RuleSpec(source: Fixtures.v4Net, transport: .tcp, destinationPorts: 32000...32000,
                     comment: "NodeGuard: allow 198.18.0.0/24 to 32000/tcp", target: "RETURN"),
            dropRule(32000),
        ])
        XCTAssertEqual(plan.chains[2].rules, [dropRule(31900, .udp)])
        XCTAssertEqual(plan.chains[1].rules.map(\.iptablesArguments), [
            #"-p tcp -m tcp --dport 31002 -m comment --comment "NodeGuard: block 31002/tcp: vault UI CVE, ticket SEC-1234" -j DROP"#,
            #"-s 198.18.0.0/24 -p tcp -m tcp --dport 32000 -m comment --comment "NodeGuard: allow 198.18.0.0/24 to 32000/tcp" -j RETURN"#,
            #"-p tcp -m tcp --dport 32000 -m comment --comment "NodeGuard: block 32000/tcp" -j DROP"#,
        ])
        assertWellFormed(plan)
    }

    func testExamplePlanForIPv6() {
        let plan = RulePlanner.plan(Fixtures.exampleEntries, family: .ipv6)
        XCTAssertEqual(plan.family, .ipv6)
        XCTAssertEqual(plan.hookRule, RulePlanner.hookRule)
        // 31900/udp is ipv4 only, so there is no UDP chain at all.
        XCTAssertEqual(plan.chains.map(\.name), ["NODEGUARD", "NODEGUARD-TCP"])
        XCTAssertEqual(plan.chains[0].rules, [
            RulePlanner.replyRule,
            RuleSpec(transport: .tcp, comment: "NodeGuard: tcp ports", target: "NODEGUARD-TCP"),
        ])
        XCTAssertEqual(plan.chains[1].rules, [
            dropRule(31002, comment: "NodeGuard: block 31002/tcp: vault UI CVE, ticket SEC-1234"),
            RuleSpec(source: Fixtures.v6Net, transport: .tcp, destinationPorts: 32000...32000,
                     comment: "NodeGuard: allow 2001:db8:1::/64 to 32000/tcp", target: "RETURN"),
            dropRule(32000),
        ])
        XCTAssertEqual(plan.chains[1].rules[1].iptablesArguments,
                       #"-s 2001:db8:1::/64 -p tcp -m tcp --dport 32000 -m comment --comment "NodeGuard: allow 2001:db8:1::/64 to 32000/tcp" -j RETURN"#)
        assertWellFormed(plan)
    }

    func testExamplePacketsBehaveAsIntended() {
        let v4 = RulePlanner.plan(Fixtures.exampleEntries, family: .ipv4)
        let v6 = RulePlanner.plan(Fixtures.exampleEntries, family: .ipv6)
        XCTAssertEqual(PlanSimulator.walk(v4, SimulatedPacket(transport: .tcp, port: 31002)).verdict, "DROP")
        XCTAssertEqual(PlanSimulator.walk(v6, SimulatedPacket(transport: .tcp, port: 31002)).verdict, "DROP")
        XCTAssertEqual(PlanSimulator.walk(v4, SimulatedPacket(transport: .udp, port: 31900)).verdict, "DROP")
        XCTAssertNil(PlanSimulator.walk(v6, SimulatedPacket(transport: .udp, port: 31900)).verdict, "ipv4 only")
        XCTAssertNil(PlanSimulator.walk(v4, SimulatedPacket(transport: .tcp, port: 31900)).verdict, "udp only")
        XCTAssertNil(PlanSimulator.walk(v4, SimulatedPacket(transport: .udp, port: 31002)).verdict, "tcp only")
        // allowFrom: the allowed network passes, others are dropped, per family.
        let allowed4 = PlanSimulator.walk(v4, SimulatedPacket(transport: .tcp, port: 32000, source: [198, 18, 0, 77]))
        XCTAssertNil(allowed4.verdict)
        XCTAssertTrue(allowed4.returned)
        XCTAssertEqual(PlanSimulator.walk(v4, SimulatedPacket(transport: .tcp, port: 32000, source: [198, 18, 1, 77])).verdict, "DROP")
        var inside6 = Fixtures.v6Net.address
        inside6[15] = 9
        let allowed6 = PlanSimulator.walk(v6, SimulatedPacket(transport: .tcp, port: 32000, source: inside6))
        XCTAssertNil(allowed6.verdict)
        XCTAssertTrue(allowed6.returned)
        var outside6 = Fixtures.v6Net.address
        outside6[7] = 1
        XCTAssertEqual(PlanSimulator.walk(v6, SimulatedPacket(transport: .tcp, port: 32000, source: outside6)).verdict, "DROP")
        // the allowed network does not exempt other ports
        XCTAssertEqual(PlanSimulator.walk(v4, SimulatedPacket(transport: .tcp, port: 31002, source: [198, 18, 0, 77])).verdict, "DROP")
    }

    func testAllowFromRulesComeBeforeTheirDropAndOnlyForTheirFamily() {
        let entry = BlockEntry(port: 30080, allowFrom: [cidr("10.0.0.0/8"), cidr("fd00::/8"), cidr("192.168.0.0/16"), cidr("2001:db8::1")])
        let v4 = RulePlanner.plan([entry], family: .ipv4).chains[1].rules
        XCTAssertEqual(v4.map(\.target), ["RETURN", "RETURN", "DROP"])
        XCTAssertEqual(v4.compactMap(\.source).map(\.description), ["10.0.0.0/8", "192.168.0.0/16"])
        let v6 = RulePlanner.plan([entry], family: .ipv6).chains[1].rules
        XCTAssertEqual(v6.map(\.target), ["RETURN", "RETURN", "DROP"])
        XCTAssertEqual(v6.compactMap(\.source).map(\.description), ["fd00::/8", "2001:db8::1/128"])
        for rule in v4 + v6 { XCTAssertEqual(rule.destinationPorts, 30080...30080) }
    }

    func testFamilyFiltering() {
        let entries = [
            BlockEntry(port: 1, family: .ipv4), BlockEntry(port: 2, family: .ipv6), BlockEntry(port: 3, family: .both),
        ]
        XCTAssertEqual(RulePlanner.plan(entries, family: .ipv4).chains[1].rules.compactMap(\.destinationPorts?.lowerBound), [1, 3])
        XCTAssertEqual(RulePlanner.plan(entries, family: .ipv6).chains[1].rules.compactMap(\.destinationPorts?.lowerBound), [2, 3])
    }

    func testEmptyListPlansAnEmptyEntryChain() {
        for family in AddressFamily.allCases {
            let plan = RulePlanner.plan([], family: family)
            XCTAssertEqual(plan.chains, [ChainPlan(name: "NODEGUARD", rules: [RulePlanner.replyRule])])
            XCTAssertEqual(plan.hookRule, RulePlanner.hookRule)
            XCTAssertNil(PlanSimulator.walk(plan, SimulatedPacket(transport: .tcp, port: 80)).verdict)
        }
        // A list whose only entry is for the other family is empty too.
        XCTAssertEqual(RulePlanner.plan([BlockEntry(port: 1, family: .ipv6)], family: .ipv4).chains,
                       [ChainPlan(name: "NODEGUARD", rules: [RulePlanner.replyRule])])
    }

    func testProtocolChainsInFixedOrderWhateverTheEntryOrder() {
        let entries = [BlockEntry(port: 9, transport: .sctp), BlockEntry(port: 8, transport: .udp), BlockEntry(port: 7, transport: .tcp)]
        let plan = RulePlanner.plan(entries, family: .ipv4)
        XCTAssertEqual(plan.chains.map(\.name), ["NODEGUARD", "NODEGUARD-TCP", "NODEGUARD-UDP", "NODEGUARD-SCTP"])
        XCTAssertEqual(plan.chains[0].rules.map(\.target), ["RETURN", "NODEGUARD-TCP", "NODEGUARD-UDP", "NODEGUARD-SCTP"])
        XCTAssertEqual(plan.chains[0].rules.map(\.transport), [nil, .tcp, .udp, .sctp])
        XCTAssertEqual(plan.chains[3].rules, [dropRule(9, .sctp)])
        XCTAssertEqual(plan.chains[0].rules[3].iptablesArguments, #"-p sctp -m comment --comment "NodeGuard: sctp ports" -j NODEGUARD-SCTP"#)
    }

    func testPlanDoesNotDependOnEntryOrder() {
        var rng = SplitMix64(seed: 77)
        let entries = (0..<300).map { (i: Int) -> BlockEntry in
            let transport: TransportProtocol = i % 3 == 0 ? .udp : .tcp
            return BlockEntry(port: UInt16(30000 + i * 7), transport: transport)
        }
        let reference = RulePlanner.plan(entries, family: .ipv4)
        for _ in 0..<5 {
            XCTAssertEqual(RulePlanner.plan(entries.shuffled(using: &rng), family: .ipv4), reference)
        }
    }

    func testThreePortsGiveOneFlatChain() {
        let plan = RulePlanner.plan([BlockEntry(port: 32000), BlockEntry(port: 30000), BlockEntry(port: 31000)], family: .ipv4)
        XCTAssertEqual(plan.chains.map(\.name), ["NODEGUARD", "NODEGUARD-TCP"])
        XCTAssertEqual(plan.chains[1].rules, [dropRule(30000), dropRule(31000), dropRule(32000)])
    }

    func testSixteenPortsStayFlatAndSeventeenDispatch() {
        let sixteen = (0..<16).map { BlockEntry(port: UInt16(30000 + $0)) }
        let flat = RulePlanner.plan(sixteen, family: .ipv4)
        XCTAssertEqual(flat.chains.map(\.name), ["NODEGUARD", "NODEGUARD-TCP"])
        XCTAssertEqual(flat.chains[1].rules.count, RulePlanner.leafCapacity)

        let seventeen = sixteen + [BlockEntry(port: 40000)]
        let plan = RulePlanner.plan(seventeen, family: .ipv4)
        assertWellFormed(plan)
        // 30000-30015 all fall in 0x7000-0x7FFF, 16 ports, so that child is a leaf;
        // 40000 (0x9C40) is alone in its range and stays inline.
        XCTAssertEqual(plan.chains.map(\.name), ["NODEGUARD", "NODEGUARD-TCP", "NODEGUARD-TCP-7"])
        XCTAssertEqual(plan.chains[1].rules, [
            RuleSpec(transport: .tcp, destinationPorts: 28672...32767, comment: "NodeGuard: tcp ports 28672-32767", target: "NODEGUARD-TCP-7"),
            dropRule(40000),
        ])
        XCTAssertEqual(plan.chains[2].rules, sixteen.map { dropRule($0.port) })
        XCTAssertEqual(plan.chains[1].rules[0].iptablesArguments,
                       #"-p tcp -m tcp --dport 28672:32767 -m comment --comment "NodeGuard: tcp ports 28672-32767" -j NODEGUARD-TCP-7"#)
    }

    func testDispatchLevelsAreNamedByHexDigits() {
        // 17 ports in 0x7530-0x7540 force three dispatch levels.
        let ports = (0...16).map { UInt16(30000 + $0) }
        let plan = RulePlanner.plan(ports.map { BlockEntry(port: $0, transport: .udp) }, family: .ipv6)
        assertWellFormed(plan)
        XCTAssertEqual(plan.chains.map(\.name),
                       ["NODEGUARD", "NODEGUARD-UDP", "NODEGUARD-UDP-7", "NODEGUARD-UDP-75", "NODEGUARD-UDP-753"])
        XCTAssertEqual(plan.chains[1].rules.map(\.destinationPorts), [28672...32767])
        XCTAssertEqual(plan.chains[2].rules.map(\.destinationPorts), [29952...30207])
        // 0x7530-0x753F holds 16 ports (a jump), 0x7540 holds one (inline).
        XCTAssertEqual(plan.chains[3].rules.map(\.target), ["NODEGUARD-UDP-753", "DROP"])
        XCTAssertEqual(plan.chains[3].rules.map(\.destinationPorts), [30000...30015, 30016...30016])
        XCTAssertEqual(plan.chains[4].rules, ports.dropLast().map { dropRule($0, .udp) })
    }

    // MARK: the whole NodePort range

    func testWholeNodePortRange() {
        let ports = Array(UInt16(30000)...UInt16(32767))
        XCTAssertEqual(ports.count, 2768)
        let plan = RulePlanner.plan(ports.map { BlockEntry(port: $0) }, family: .ipv4)
        assertWellFormed(plan)

        // Every port has exactly one DROP rule across all chains, and nothing else is dropped.
        let counts = dropCounts(plan)
        XCTAssertEqual(counts.count, ports.count)
        for port in ports { XCTAssertEqual(counts[PortKey(port: port, transport: .tcp)], 1, "port \(port)") }
        XCTAssertEqual(plan.chains.flatMap(\.rules).filter { $0.target == "DROP" }.count, ports.count)

        // No chain is longer than a leaf; names fit the kernel.
        for chain in plan.chains {
            XCTAssertLessThanOrEqual(chain.rules.count, RulePlanner.leafCapacity, chain.name)
            XCTAssertLessThanOrEqual(chain.name.utf8.count, 28, chain.name)
            XCTAssertTrue(chain.name.hasPrefix("NODEGUARD"), chain.name)
        }
        // 1 entry chain + NODEGUARD-TCP + NODEGUARD-TCP-7 + 11 chains 75..7F + 2768/16 leaves.
        XCTAssertEqual(plan.chains.count, 1 + 1 + 1 + 11 + 173)

        // Every jump target is planned; every chain but NODEGUARD is reachable.
        let names = Set(plan.chains.map(\.name))
        var reachable: Set<String> = []
        for rule in plan.chains.flatMap(\.rules) where rule.target != "DROP" && rule.target != "RETURN" {
            XCTAssertTrue(names.contains(rule.target), rule.target)
            reachable.insert(rule.target)
        }
        XCTAssertEqual(reachable, names.subtracting([RulePlanner.entryChain]))

        // A packet to any port walks at most 4 levels of 16 rules plus the protocol dispatch.
        let bound = 4 * RulePlanner.leafCapacity + 3
        let chains = PlanSimulator.index(plan)
        var longest = 0
        for port in stride(from: 0, through: 65535, by: 7) {
            let walk = PlanSimulator.walk(chains: chains, SimulatedPacket(transport: .tcp, port: UInt16(port)))
            XCTAssertEqual(walk.problems, [])
            XCTAssertLessThanOrEqual(walk.rulesEvaluated, bound, "port \(port)")
            longest = max(longest, walk.rulesEvaluated)
            XCTAssertEqual(walk.verdict, (30000...32767).contains(port) ? "DROP" : nil, "port \(port)")
        }
        XCTAssertGreaterThan(longest, 16, "the walk must actually go through the dispatch levels")

        // A packet to each blocked port reaches its own DROP.
        for port in ports {
            let walk = PlanSimulator.walk(chains: chains, SimulatedPacket(transport: .tcp, port: port))
            XCTAssertEqual(walk.verdict, "DROP", "port \(port)")
            XCTAssertEqual(walk.verdictRule?.destinationPorts, port...port, "port \(port)")
            XCTAssertLessThanOrEqual(walk.rulesEvaluated, bound, "port \(port)")
        }
        // Other protocols are not touched at all.
        XCTAssertNil(PlanSimulator.walk(plan, SimulatedPacket(transport: .udp, port: 31000)).verdict)
    }

    func testEveryPortOfEveryProtocolStaysWithinTheBound() {
        // The worst case: every port of every protocol blocked.
        var entries: [BlockEntry] = []
        for transport in TransportProtocol.allCases {
            for port in UInt16(1)...UInt16.max { entries.append(BlockEntry(port: port, transport: transport)) }
        }
        let plan = RulePlanner.plan(entries, family: .ipv6)
        assertWellFormed(plan)
        for chain in plan.chains {
            XCTAssertLessThanOrEqual(chain.rules.count, RulePlanner.leafCapacity, chain.name)
        }
        let bound = 4 * RulePlanner.leafCapacity + 3
        let chains = PlanSimulator.index(plan)
        var longest = 0
        for transport in TransportProtocol.allCases {
            for port in stride(from: 0, through: 65535, by: 7) {
                let walk = PlanSimulator.walk(chains: chains, SimulatedPacket(transport: transport, port: UInt16(port)))
                XCTAssertLessThanOrEqual(walk.rulesEvaluated, bound, "\(port)/\(transport)")
                XCTAssertEqual(walk.verdict, port == 0 ? nil : "DROP", "\(port)/\(transport)")
                if port != 0 { XCTAssertEqual(walk.verdictRule?.destinationPorts, UInt16(port)...UInt16(port)) }
                longest = max(longest, walk.rulesEvaluated)
            }
        }
        XCTAssertGreaterThan(longest, 3 * 16, "a full table needs several full levels")
    }

    func testRandomListsProperty() {
        var rng = SplitMix64(seed: 0x5EED)
        let networks4 = ["10.0.0.0/8", "192.168.7.0/24", "198.51.100.1"].map { cidr($0) }
        let networks6 = ["fd00::/8", "2001:db8:7::/48"].map { cidr($0) }
        for round in 0..<60 {
            var seen: Set<PortKey> = []
            var entries: [BlockEntry] = []
            let count = [0, 1, 5, 16, 17, 40, 300, 1500].randomElement(using: &rng)!
            let clustered = Bool.random(using: &rng)
            while entries.count < count {
                let port = clustered ? UInt16.random(in: 30000...30600, using: &rng) : UInt16.random(in: 1...65535, using: &rng)
                let transport = TransportProtocol.allCases.randomElement(using: &rng)!
                guard seen.insert(PortKey(port: port, transport: transport)).inserted else { continue }
                let family = FamilySelection.allCases.randomElement(using: &rng)!
                var allow: [CIDR] = []
                if Int.random(in: 0..<5, using: &rng) == 0 {
                    allow = (networks4 + networks6).filter { _ in Bool.random(using: &rng) }
                }
                entries.append(BlockEntry(port: port, transport: transport, family: family, allowFrom: allow))
            }
            for family in AddressFamily.allCases {
                let plan = RulePlanner.plan(entries, family: family)
                let chains = PlanSimulator.index(plan)
                let problems = PlanSimulator.structuralProblems(plan)
                XCTAssertEqual(problems, [], "round \(round) \(family)")
                if !problems.isEmpty { return }
                let mine = entries.filter { $0.family.includes(family) }
                let byKey = Dictionary(uniqueKeysWithValues: mine.map { ($0.key, $0) })
                XCTAssertEqual(dropCounts(plan), Dictionary(uniqueKeysWithValues: mine.map { ($0.key, 1) }), "round \(round)")
                // each entry: unknown sources dropped, allowed sources pass
                for entry in mine {
                    let walk = PlanSimulator.walk(chains: chains, SimulatedPacket(transport: entry.transport, port: entry.port))
                    XCTAssertEqual(walk.verdict, "DROP", "round \(round): \(entry.key) \(family)")
                    XCTAssertEqual(walk.problems, [])
                    for network in entry.allowFrom {
                        let inside = SimulatedPacket(transport: entry.transport, port: entry.port, source: network.address)
                        let result = PlanSimulator.walk(chains: chains, inside)
                        if network.family == family {
                            XCTAssertNil(result.verdict, "round \(round): \(network) should be allowed to \(entry.key)")
                            XCTAssertTrue(result.returned)
                        } else {
                            XCTAssertEqual(result.verdict, "DROP", "\(network) belongs to the other family")
                        }
                    }
                }
                // sampled ports: dropped exactly when listed
                for _ in 0..<200 {
                    let packet = SimulatedPacket(transport: TransportProtocol.allCases.randomElement(using: &rng)!,
                                                 port: UInt16.random(in: 0...65535, using: &rng))
                    let walk = PlanSimulator.walk(chains: chains, packet)
                    let listed = byKey[PortKey(port: packet.port, transport: packet.transport)] != nil
                    XCTAssertEqual(walk.verdict, listed ? "DROP" : nil, "round \(round): \(packet.port)/\(packet.transport)")
                    if !mine.contains(where: { !$0.allowFrom.isEmpty }) {
                        XCTAssertLessThanOrEqual(walk.rulesEvaluated, 4 * RulePlanner.leafCapacity + 3)
                    }
                }
                if !mine.contains(where: { !$0.allowFrom.isEmpty }) {
                    for chain in plan.chains {
                        XCTAssertLessThanOrEqual(chain.rules.count, RulePlanner.leafCapacity, "round \(round) \(chain.name)")
                    }
                }
            }
        }
    }

    /// ChainDiff keeps its diff near-linear because a chain's desired rules
    /// are distinct (it stays exact without that, only slower): no plan, in
    /// mangle or in the raw hold, of a list the codec accepts repeats a rule
    /// within a chain, even where long reasons cut every comment to the same text.
    func testNoChainOfAnyPlanRepeatsARuleProperty() throws {
        var rng = SplitMix64(seed: 0xD15C)
        let networks: [AddressFamily: [String]] = [
            .ipv4: ["10.0.0.0/8", "10.0.0.0/9", "192.168.7.0/24", "198.51.100.1", "0.0.0.0/1"],
            .ipv6: ["fd00::/8", "fd00::/9", "2001:db8:7::/48", "2001:db8::1"],
        ]
        let longReason = String(repeating: "r", count: BlockEntry.maximumReasonBytes)
        for round in 0..<80 {
            var seen: Set<PortKey> = []
            var entries: [String] = []
            var sourceCount = 0
            let count = [0, 1, 16, 17, 300, 2000].randomElement(using: &rng)!
            let clustered = Bool.random(using: &rng)
            while entries.count < count {
                let port = clustered ? UInt16.random(in: 30000...31000, using: &rng) : UInt16.random(in: 1...65535, using: &rng)
                let transport = TransportProtocol.allCases.randomElement(using: &rng)!
                guard seen.insert(PortKey(port: port, transport: transport)).inserted else { continue }
                let family = FamilySelection.allCases.randomElement(using: &rng)!
                let covered = AddressFamily.allCases.filter { family.includes($0) }
                var allow = covered.flatMap { networks[$0]! }.filter { _ in Int.random(in: 0..<3, using: &rng) == 0 }
                if sourceCount + allow.count > DenyListLimits.sources { allow = [] }
                sourceCount += allow.count
                let reason = Bool.random(using: &rng) ? #","reason":"\#(longReason)""# : ""
                let sources = allow.map { "\"\($0)\"" }.joined(separator: ",")
                entries.append(#"{"port":\#(port),"protocol":"\#(transport.rawValue)","family":"\#(family.rawValue)","allowFrom":[\#(sources)]\#(reason)}"#)
            }
            let list = try DenyListCodec.decode(Array(#"{"version":1,"blocked":[\#(entries.joined(separator: ","))]}"#.utf8), source: "round \(round)")
            for family in AddressFamily.allCases {
                for plan in [RulePlanner.plan(list.entries, family: family), RulePlanner.holdPlan(list.entries, family: family)] {
                    for chain in plan.chains {
                        XCTAssertEqual(Set(chain.rules).count, chain.rules.count, "round \(round): \(plan.table) \(family) \(chain.name) repeats a rule")
                    }
                }
            }
        }
    }

    // MARK: comments

    func testCommentsNamePortProtocolAndReason() {
        let plan = RulePlanner.plan([BlockEntry(port: 31555, transport: .udp, reason: "legacy syslog")], family: .ipv4)
        let comment = plan.chains[1].rules[0].comment
        XCTAssertEqual(comment, "NodeGuard: block 31555/udp: legacy syslog")
        // An empty reason adds nothing.
        XCTAssertEqual(RulePlanner.plan([BlockEntry(port: 5, reason: "")], family: .ipv4).chains[1].rules[0].comment,
                       "NodeGuard: block 5/tcp")
    }

    func testLongMultibyteReasonIsTruncatedAtACharacterBoundary() {
        let prefix = "NodeGuard: block 31002/tcp: "
        XCTAssertEqual(prefix.utf8.count, 28)
        let cases: [(reason: String, expectedKept: Int)] = [
            (String(repeating: "é", count: 128), 112),          // 2-byte: 28 + 224 = 252
            (String(repeating: "€", count: 85) + "x", 74),      // 3-byte: 28 + 222 = 250
            (String(repeating: "😀", count: 64), 56),           // 4-byte: 28 + 224 = 252
            (String(repeating: "e\u{301}", count: 85) + "x", 74), // 3-byte grapheme clusters
        ]
        for (reason, kept) in cases {
            XCTAssertEqual(reason.utf8.count, 256)
            let entry = BlockEntry(port: 31002, reason: reason)
            let rules = RulePlanner.plan([entry], family: .ipv4).chains[1].rules
            let comment = rules[0].comment
            XCTAssertLessThanOrEqual(comment.utf8.count, 255)
            XCTAssertGreaterThan(comment.utf8.count, 250)
            XCTAssertTrue(comment.hasPrefix(prefix))
            XCTAssertTrue(comment.hasSuffix("..."))
            let body = String(comment.dropFirst(prefix.count).dropLast(3))
            XCTAssertEqual(body.count, kept)
            XCTAssertTrue(reason.hasPrefix(body))
            // The cut is at a character boundary: the kept bytes re-decode to the same characters.
            let bytes = Array(comment.utf8)
            XCTAssertEqual(String(validating: bytes, as: UTF8.self), comment)
        }
    }

    func testTruncatedCommentBoundaries() {
        let exact = String(repeating: "a", count: 255)
        XCTAssertEqual(RulePlanner.truncatedComment(exact), exact)
        let over = String(repeating: "a", count: 256)
        XCTAssertEqual(RulePlanner.truncatedComment(over), String(repeating: "a", count: 252) + "...")
        XCTAssertEqual(RulePlanner.truncatedComment(""), "")
        XCTAssertEqual(RulePlanner.truncatedComment("short é"), "short é")
        let multibyteExact = String(repeating: "é", count: 127) + "a"   // 255 bytes
        XCTAssertEqual(RulePlanner.truncatedComment(multibyteExact), multibyteExact)
    }

    func testReasonOfMaximumLengthStillFitsEveryRule() {
        let entry = BlockEntry(port: 65535, transport: .sctp, reason: String(repeating: "z", count: BlockEntry.maximumReasonBytes),
                               allowFrom: [cidr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124")])
        for family in AddressFamily.allCases {
            for rule in RulePlanner.plan([entry], family: family).chains.flatMap(\.rules) {
                XCTAssertLessThanOrEqual(rule.comment.utf8.count, RulePlanner.maximumCommentBytes, rule.comment)
            }
        }
    }

    // MARK: names and the hook rule

    func testNodeGuardChainNames() {
        XCTAssertTrue(RulePlanner.isNodeGuardChain("NODEGUARD"))
        XCTAssertTrue(RulePlanner.isNodeGuardChain("NODEGUARD-TCP"))
        XCTAssertTrue(RulePlanner.isNodeGuardChain("NODEGUARD-UDP-7A3"))
        XCTAssertFalse(RulePlanner.isNodeGuardChain("NODEGUARDX"))
        XCTAssertFalse(RulePlanner.isNodeGuardChain("nodeguard"))
        XCTAssertFalse(RulePlanner.isNodeGuardChain("KUBE-SERVICES"))
        XCTAssertFalse(RulePlanner.isNodeGuardChain("DROP"))
        XCTAssertFalse(RulePlanner.isNodeGuardChain(""))
    }

    func testHookRule() {
        let hook = RulePlanner.hookRule
        XCTAssertEqual(hook.target, "NODEGUARD")
        XCTAssertTrue(hook.matchLocalDestination)
        // No --ctdir: a packet conntrack does not track has no direction and
        // would pass a jump that asks for ORIGINAL.
        XCTAssertNil(hook.direction)
        XCTAssertNil(hook.transport)
        XCTAssertNil(hook.destinationPorts)
        XCTAssertNil(hook.source)
        XCTAssertEqual(hook.iptablesArguments,
                       #"-m addrtype --dst-type LOCAL -m comment --comment "NodeGuard: drop blocked NodePorts before DNAT" -j NODEGUARD"#)
        XCTAssertEqual(TablePlan.hookChains, ["PREROUTING", "OUTPUT"])
    }

    func testUntrackedPacketsAreDroppedAndRepliesPass() {
        let plan = RulePlanner.plan([BlockEntry(port: 31002, transport: .tcp)], family: .ipv4)
        XCTAssertEqual(PlanSimulator.walk(plan, SimulatedPacket(transport: .tcp, port: 31002, conntrack: nil)).verdict, "DROP")
        XCTAssertEqual(PlanSimulator.walk(plan, SimulatedPacket(transport: .tcp, port: 31002)).verdict, "DROP")
        let reply = PlanSimulator.walk(plan, SimulatedPacket(transport: .tcp, port: 31002, conntrack: .reply))
        XCTAssertNil(reply.verdict)
        XCTAssertTrue(reply.returned)
    }

    func testRepliesLeaveTheEntryChainFirstAndOnlyInMangle() {
        let entries = [BlockEntry(port: 31002, transport: .tcp)]
        for family in AddressFamily.allCases {
            let plan = RulePlanner.plan(entries, family: family)
            XCTAssertEqual(plan.chains[0].name, RulePlanner.entryChain)
            XCTAssertEqual(plan.chains[0].rules.first, RulePlanner.replyRule)
            XCTAssertEqual(RulePlanner.replyRule.iptablesArguments,
                           #"-m conntrack --ctdir REPLY -m comment --comment "NodeGuard: replies to established connections pass" -j RETURN"#)
            let hold = RulePlanner.holdPlan(entries, family: family)
            XCTAssertFalse(hold.chains[0].rules.contains(RulePlanner.replyRule), "raw runs before conntrack")
        }
    }
}

final class RuleSpecTests: XCTestCase {
    func testRendersLikeIptablesSave() {
        XCTAssertEqual(RuleSpec(comment: "", target: "DROP").iptablesArguments, "-j DROP")
        XCTAssertEqual(RuleSpec(transport: .udp, comment: "", target: "ACCEPT").iptablesArguments, "-p udp -j ACCEPT")
        XCTAssertEqual(RuleSpec(transport: .tcp, destinationPorts: 80...80, comment: "web", target: "DROP").iptablesArguments,
                       "-p tcp -m tcp --dport 80 -m comment --comment web -j DROP")
        XCTAssertEqual(RuleSpec(transport: .sctp, destinationPorts: 0...65535, comment: "", target: "X").iptablesArguments,
                       "-p sctp -m sctp --dport 0:65535 -j X")
        XCTAssertEqual(RuleSpec(source: cidr("10.0.0.0/8"), transport: .tcp, matchLocalDestination: true,
                                direction: .original, destinationPorts: 1...2, comment: "c d", target: "RETURN").iptablesArguments,
                       #"-s 10.0.0.0/8 -p tcp -m addrtype --dst-type LOCAL -m conntrack --ctdir ORIGINAL -m tcp --dport 1:2 -m comment --comment "c d" -j RETURN"#)
        XCTAssertEqual(RuleSpec(source: cidr("2001:db8::1"), comment: "", target: "RETURN").iptablesArguments,
                       "-s 2001:db8::1/128 -j RETURN")
        // --dport needs a protocol match, so ports without a protocol are not rendered.
        XCTAssertEqual(RuleSpec(destinationPorts: 80...80, comment: "", target: "DROP").iptablesArguments, "-j DROP")
    }

    func testCommentQuoting() {
        XCTAssertEqual(RuleSpec.saveQuoted("plain_Word-123"), "plain_Word-123")
        XCTAssertEqual(RuleSpec.saveQuoted("two words"), #""two words""#)
        XCTAssertEqual(RuleSpec.saveQuoted(#"say "hi""#), #""say \"hi\"""#)
        XCTAssertEqual(RuleSpec.saveQuoted(#"back\slash"#), #""back\\slash""#)
        XCTAssertEqual(RuleSpec.saveQuoted("it's"), #""it\'s""#)
        XCTAssertEqual(RuleSpec.saveQuoted(""), #""""#)
        XCTAssertEqual(RuleSpec.saveQuoted("a.b"), #""a.b""#)
        XCTAssertEqual(RuleSpec.saveQuoted("naïve"), #""naïve""#)
        XCTAssertEqual(RuleSpec.saveQuoted("a:b/c"), #""a:b/c""#)
        XCTAssertEqual(RuleSpec(comment: #"x "y" \z"#, target: "DROP").iptablesArguments,
                       #"-m comment --comment "x \"y\" \\z" -j DROP"#)
    }

    func testObservedRuleDescription() {
        let spec = RuleSpec(transport: .tcp, destinationPorts: 5...5, comment: "c", target: "DROP")
        let observed = ObservedRule(spec)
        XCTAssertEqual(observed.spec, spec)
        XCTAssertEqual(observed.target, "DROP")
        XCTAssertEqual(observed.comment, "c")
        XCTAssertEqual(observed.packets, 0)
        XCTAssertEqual(observed.description, spec.iptablesArguments)
        XCTAssertEqual(ObservedRule(spec: nil, target: "KUBE-SERVICES", comment: "kube proxy").description,
                       #"[a rule with matches NodeGuard does not write] -m comment --comment "kube proxy" -j KUBE-SERVICES"#)
        XCTAssertEqual(ObservedRule(spec: nil, target: "ACCEPT", comment: "").description,
                       "[a rule with matches NodeGuard does not write] -j ACCEPT")
    }
}
