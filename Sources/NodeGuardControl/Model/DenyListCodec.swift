/// One thing wrong with a deny-list, located by a JSON path such as `blocked[2].port`.
public struct DenyListProblem: Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var message: String
    /// Paths and messages carry text from the input: shown escaped and cut short.
    public var description: String {
        path.isEmpty ? displayText(message, limit: 300) : "\(displayText(path, limit: 80)): \(displayText(message, limit: 300))"
    }
}

/// Reads and writes the deny-list format (also used for the runtime state
/// file and for entries in control requests). Reading collects every problem
/// instead of stopping at the first, so `nodeguardctl validate` shows them all.
public enum DenyListCodec {
    static let entryFields = Set(BlockEntry.Field.allCases.map(\.stringValue))

    /// Decodes a whole file. `source` names it in the error (a path).
    public static func decode(_ bytes: [UInt8], source: String) throws(NodeGuardError) -> DenyList {
        let problems: [DenyListProblem]
        do {
            let value = try JSON.parse(bytes)
            var found: [DenyListProblem] = []
            if let list = decode(value, problems: &found), found.isEmpty { return list }
            problems = found
        } catch {
            problems = [DenyListProblem(path: "", message: "not valid JSON: \(error)")]
        }
        throw invalid(problems, source: source)
    }

    /// At most this many problems are listed; a hostile 10 MB file has a million.
    public static let maximumListedProblems = 15

    public static func invalid(_ problems: [DenyListProblem], source: String) -> NodeGuardError {
        if problems.count == 1 {
            return NodeGuardError(.invalidDenyList, "\(source): \(problems[0])")
        }
        var lines = problems.prefix(maximumListedProblems).map { "  \($0)" }
        if problems.count > maximumListedProblems {
            lines.append("  ... and \(problems.count - maximumListedProblems) more")
        }
        return NodeGuardError(.invalidDenyList, "\(source): \(problems.count) problems:\n\(lines.joined(separator: "\n"))")
    }

    static func decode(_ value: JSONValue, problems: inout [DenyListProblem]) -> DenyList? {
        guard case .object(let top) = value else {
            problems.append(.init(path: "", message: "expected an object with \"version\" and \"blocked\", found \(value.typeDescription)"))
            return nil
        }
        for key in top.keys.sorted() where key != "version" && key != "blocked" {
            problems.append(.init(path: key, message: "unknown field (expected \"version\" and \"blocked\")"))
        }
        switch top["version"] {
        case nil:
            problems.append(.init(path: "version", message: "missing (this NodeGuard reads version \(DenyList.currentVersion))"))
        case .some(let v) where v.integerValue == DenyList.currentVersion:
            break
        case .some(.number(let n)):
            problems.append(.init(path: "version", message: "unknown version \(n) (this NodeGuard reads version \(DenyList.currentVersion))"))
        case .some(let v):
            problems.append(.init(path: "version", message: "expected a number, found \(v.typeDescription)"))
        }
        guard let blocked = top["blocked"] else {
            problems.append(.init(path: "blocked", message: "missing (use [] for an empty list)"))
            return nil
        }
        guard case .array(let items) = blocked else {
            problems.append(.init(path: "blocked", message: "expected an array, found \(blocked.typeDescription)"))
            return nil
        }
        if let problem = DenyListLimits.entriesProblem(items.count) {
            problems.append(.init(path: "blocked", message: problem))
        }
        var entries: [BlockEntry] = []
        var firstIndex: [PortKey: Int] = [:]
        for (index, item) in items.enumerated() {
            let path = "blocked[\(index)]"
            guard let entry = decodeEntry(item, path: path, problems: &problems) else { continue }
            if let earlier = firstIndex[entry.key] {
                problems.append(.init(path: path, message: "\(entry.key) is already listed at blocked[\(earlier)]"))
                continue
            }
            firstIndex[entry.key] = index
            entries.append(entry)
        }
        if let problem = DenyListLimits.sourcesProblem(DenyListLimits.sourceCount(entries)) {
            problems.append(.init(path: "blocked", message: problem))
        }
        return DenyList(entries: entries)
    }

    /// Decodes one entry object; appends problems under `path` and returns nil if any.
    public static func decodeEntry(_ value: JSONValue, path: String, problems: inout [DenyListProblem]) -> BlockEntry? {
        guard case .object(let fields) = value else {
            problems.append(.init(path: path, message: "expected an object, found \(value.typeDescription)"))
            return nil
        }
        let before = problems.count
        func report(_ field: String, _ message: String) {
            problems.append(.init(path: "\(path).\(field)", message: message))
        }
        for key in fields.keys.sorted() where !entryFields.contains(key) {
            report(key, "unknown field (expected one of \(entryFields.sorted().joined(separator: ", ")))")
        }

        var port: UInt16 = 0
        switch portValue(fields["port"]) {
        case .success(let value): port = value
        case .failure(let problem): report("port", problem.message)
        }

        var transport = TransportProtocol.tcp
        if let v = fields["protocol"] {
            if case .string(let s) = v, let p = TransportProtocol(rawValue: s) { transport = p }
            else { report("protocol", "expected \"tcp\", \"udp\" or \"sctp\", found \(shown(v))") }
        }

        var family = FamilySelection.both
        if let v = fields["family"] {
            if case .string(let s) = v, let f = FamilySelection(rawValue: s) { family = f }
            else { report("family", "expected \"ipv4\", \"ipv6\" or \"both\", found \(shown(v))") }
        }

        var reason: String?
        if let v = fields["reason"] {
            if case .string(let s) = v {
                if let problem = BlockEntry.reasonProblem(s) { report("reason", problem) } else { reason = s }
            } else if v != .null {
                report("reason", "expected a string, found \(v.typeDescription)")
            }
        }

        var allowFrom: [CIDR] = []
        if let v = fields["allowFrom"] {
            if case .array(let items) = v {
                if let problem = DenyListLimits.sourcesPerEntryProblem(items.count) { report("allowFrom", problem) }
                var seen: Set<CIDR> = []
                for (i, item) in items.enumerated() {
                    guard case .string(let text) = item else {
                        report("allowFrom[\(i)]", "expected a CIDR string, found \(item.typeDescription)")
                        continue
                    }
                    do {
                        let cidr = try CIDR(parsing: text)
                        if !seen.insert(cidr).inserted {
                            report("allowFrom[\(i)]", "\(cidr) is listed twice")
                        } else if !family.includes(cidr.family) {
                            // It would never become a rule, yet it would be kept and written back.
                            report("allowFrom[\(i)]", """
                                \(cidr) is an \(cidr.family.displayName) source, but the entry covers \(family.rawValue) only \
                                ("family": "\(family.rawValue)"), so it would never be used; remove it, or set "family" to "both"
                                """)
                        } else {
                            allowFrom.append(cidr)
                        }
                    } catch {
                        report("allowFrom[\(i)]", error.message)
                    }
                }
            } else {
                report("allowFrom", "expected an array of CIDR strings, found \(v.typeDescription)")
            }
        }
        guard problems.count == before else { return nil }
        return BlockEntry(port: port, transport: transport, family: family, reason: reason, allowFrom: allowFrom)
    }

    // MARK: warnings

    /// What is valid but almost certainly a mistake, by JSON path: so far an
    /// entry whose `allowFrom` lets every source of a family through
    /// (`BlockEntry.familiesLetThroughEntirely`). The daemon accepts such a
    /// list; `nodeguardctl validate` prints these (and fails on them with `--strict`).
    public static func warnings(_ list: DenyList) -> [DenyListProblem] {
        list.entries.enumerated().flatMap { entryWarnings($0.element, path: "blocked[\($0.offset)]") }
    }

    /// The warnings for one entry, under `path`.
    public static func entryWarnings(_ entry: BlockEntry, path: String) -> [DenyListProblem] {
        let open = entry.familiesLetThroughEntirely
        guard !open.isEmpty else { return [] }
        let covered = AddressFamily.allCases.filter { entry.family.includes($0) }
        let names = open.map(\.displayName).joined(separator: " and ")
        let sources = entry.allowFrom.filter { open.contains($0.family) }
        let whole = sources.filter { $0.prefixLength == 0 }
        let shown = whole.isEmpty ? "\(sources.count) networks that together cover every address" : whole.map(\.description).joined(separator: ", ")
        let consequence = open.count == covered.count
            ? "the entry blocks nothing: \(entry.key) stays open to everyone; remove the entry, or narrow allowFrom"
            : "\(entry.key) is not blocked over \(names) at all; narrow allowFrom, or set \"family\" to \"\(covered.first { !open.contains($0) }!.rawValue)\" if only that family is to be blocked"
        return [DenyListProblem(path: "\(path).allowFrom", message: "lets every \(names) source through (\(shown)), so \(consequence)")]
    }

    public struct PortProblem: Error, Sendable { public var message: String }

    /// A port field (deny-list entries and control requests alike), with
    /// what was found when it is not a whole number from 1 to 65535.
    public static func portValue(_ value: JSONValue?) -> Result<UInt16, PortProblem> {
        switch value {
        case nil:
            return .failure(PortProblem(message: "missing (a number from 1 to 65535)"))
        case .some(.number(let text)):
            if let n = Int(text), (1...65535).contains(n) { return .success(UInt16(n)) }
            let shownText = displayText(text, limit: 40)
            if let d = Double(text), d.rounded() == d, (1...65535).contains(d) {
                return .failure(PortProblem(message: "\(shownText) must be written as a plain integer (\(Int(d)))"))
            }
            return .failure(PortProblem(message: "\(shownText) is not a whole number from 1 to 65535"))
        case .some(.string(let text)):
            return .failure(PortProblem(message: "expected a number from 1 to 65535, found a string (\"\(displayText(text, limit: 20))\"); write it without quotes"))
        case .some(let other):
            return .failure(PortProblem(message: "expected a number from 1 to 65535, found \(other.typeDescription)"))
        }
    }

    static func shown(_ value: JSONValue) -> String {
        if case .string(let s) = value { return "\"\(displayText(s))\"" }
        return value.typeDescription
    }

    // MARK: writing

    public static func encodeEntry(_ entry: BlockEntry) -> JSONValue {
        var fields: [String: JSONValue] = [
            BlockEntry.Field.port.stringValue: .number(String(entry.port)),
            BlockEntry.Field.transport.stringValue: .string(entry.transport.rawValue),
            BlockEntry.Field.family.stringValue: .string(entry.family.rawValue),
        ]
        if let reason = entry.reason { fields[BlockEntry.Field.reason.stringValue] = .string(reason) }
        if !entry.allowFrom.isEmpty {
            fields[BlockEntry.Field.allowFrom.stringValue] = .array(entry.allowFrom.map { .string($0.description) })
        }
        return .object(fields)
    }

    /// The deny-list format, indented for people; `compact` (the runtime
    /// state file) writes each entry on one line without spaces, which is a
    /// fraction of the size and still reads and greps line by line.
    public static func encode(_ list: DenyList, compact: Bool = false) -> String {
        guard compact else {
            return JSON.serialize(.object([
                "version": .number(String(DenyList.currentVersion)),
                "blocked": .array(list.entries.map(encodeEntry)),
            ]), pretty: true) + "\n"
        }
        // Keys in the order JSON.serialize sorts them: "blocked", then "version".
        let entries = list.entries.map { JSON.serialize(encodeEntry($0)) }
        return "{\"blocked\":[" + (entries.isEmpty ? "" : "\n" + entries.joined(separator: ",\n") + "\n")
            + "],\"version\":\(DenyList.currentVersion)}\n"
    }
}

extension TransportProtocol: Codable {}
extension AddressFamily: Codable {}
extension FamilySelection: Codable {}

/// An entry in the daemon's answers (`list`, `status`), written as
/// `encodeEntry` writes it. Deny-lists and requests are not read this way:
/// `DenyListCodec` checks every field of those and reports every problem.
extension BlockEntry: Codable {
    /// An entry's keys, in deny-lists, requests and answers alike.
    public enum Field: String, CodingKey, CaseIterable {
        case port, transport = "protocol", family, reason, allowFrom
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Field.self)
        var allowFrom: [CIDR] = []
        for text in try container.decodeIfPresent([String].self, forKey: .allowFrom) ?? [] {
            do { allowFrom.append(try CIDR(parsing: text)) } catch {
                throw DecodingError.dataCorruptedError(forKey: .allowFrom, in: container, debugDescription: error.message)
            }
        }
        self.init(port: try container.decode(UInt16.self, forKey: .port),
                  transport: try container.decodeIfPresent(TransportProtocol.self, forKey: .transport) ?? .tcp,
                  family: try container.decodeIfPresent(FamilySelection.self, forKey: .family) ?? .both,
                  reason: try container.decodeIfPresent(String.self, forKey: .reason),
                  allowFrom: allowFrom)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Field.self)
        try container.encode(port, forKey: .port)
        try container.encode(transport, forKey: .transport)
        try container.encode(family, forKey: .family)
        try container.encodeIfPresent(reason, forKey: .reason)
        if !allowFrom.isEmpty { try container.encode(allowFrom.map(\.description), forKey: .allowFrom) }
    }
}
