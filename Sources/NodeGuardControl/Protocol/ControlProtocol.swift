/// The control socket's protocol: newline-delimited JSON over a Unix stream
/// socket, one request and one response per line.
///
///     -> {"version":1,"command":"block","entry":{"port":31002,"protocol":"tcp"}}
///     <- {"version":1,"ok":true,"result":{...}}
///     <- {"version":1,"ok":false,"error":{"code":"config_entry","message":"..."}}
///
/// Commands: block (entry), unblock (port, protocol), list, status, reload, metrics, nodeports, explain (port, protocol).
public enum ControlProtocol {
    public static let version = 1
    /// A longer request line is refused with `message_too_large` and the connection closed.
    public static let maximumMessageBytes = 64 * 1024
    /// The longest answer a client reads, and so the longest the daemon sends
    /// (it answers `message_too_large` instead). `metrics` with 65,535
    /// blocked ports, both families, is about 23 MB.
    public static let maximumResponseBytes = 64 << 20
    public static let defaultSocketPath = "/run/nodeguard/nodeguard.sock"
}

public enum ControlRequest: Sendable, Hashable {
    case block(BlockEntry)
    case unblock(PortKey)
    case list
    case status
    case reload
    case metrics
    case nodeports
    case explain(PortKey)

    public var command: String {
        switch self {
        case .block: "block"
        case .unblock: "unblock"
        case .list: "list"
        case .status: "status"
        case .reload: "reload"
        case .metrics: "metrics"
        case .nodeports: "nodeports"
        case .explain: "explain"
        }
    }

    /// Whether the request changes anything (for logs now, for access checks later).
    public var isMutating: Bool {
        switch self {
        case .block, .unblock, .reload: true
        case .list, .status, .metrics, .nodeports, .explain: false
        }
    }

    public func encoded() -> String {
        var fields: [String: JSONValue] = [
            "version": .number(String(ControlProtocol.version)),
            "command": .string(command),
        ]
        switch self {
        case .block(let entry): fields["entry"] = DenyListCodec.encodeEntry(entry)
        case .unblock(let key), .explain(let key):
            fields["port"] = .number(String(key.port))
            fields["protocol"] = .string(key.transport.rawValue)
        case .list, .status, .reload, .metrics, .nodeports: break
        }
        return JSON.serialize(.object(fields))
    }

    /// Decodes one line (without its newline). Every error names the field.
    public static func decode(_ line: [UInt8]) throws(NodeGuardError) -> ControlRequest {
        guard line.count <= ControlProtocol.maximumMessageBytes else {
            throw NodeGuardError(.messageTooLarge, "request is \(line.count) bytes; at most \(ControlProtocol.maximumMessageBytes)")
        }
        let value: JSONValue
        do { value = try JSON.parse(line) } catch {
            throw NodeGuardError(.invalidRequest, "request is not valid JSON: \(error)")
        }
        guard case .object(let fields) = value else {
            throw NodeGuardError(.invalidRequest, "request must be a JSON object, found \(value.typeDescription)")
        }
        guard let version = fields["version"] else {
            throw NodeGuardError(.invalidRequest, "version: missing (this daemon speaks version \(ControlProtocol.version))")
        }
        guard case .number = version else {
            throw NodeGuardError(.invalidRequest, "version: expected a number, found \(version.typeDescription)")
        }
        guard version.integerValue == ControlProtocol.version else {
            throw NodeGuardError(.unsupportedVersion,
                "version: \(JSON.serialize(version)) is not supported (this daemon speaks version \(ControlProtocol.version))")
        }
        guard case .string(let command)? = fields["command"] else {
            throw NodeGuardError(.invalidRequest, "command: missing or not a string (one of block, unblock, list, status, reload, metrics, nodeports, explain)")
        }
        let allowed: Set<String>
        let request: ControlRequest
        switch command {
        case "block":
            allowed = ["version", "command", "entry"]
            guard let entryValue = fields["entry"] else {
                throw NodeGuardError(.invalidRequest, "entry: missing (the port to block)")
            }
            var problems: [DenyListProblem] = []
            guard let entry = DenyListCodec.decodeEntry(entryValue, path: "entry", problems: &problems) else {
                // As many as a deny-list's error lists: a request of 4,000 bad sources has 4,000.
                var listed = problems.prefix(DenyListCodec.maximumListedProblems).map(\.description)
                if problems.count > listed.count { listed.append("... and \(problems.count - listed.count) more") }
                throw NodeGuardError(.invalidRequest, listed.joined(separator: "; "))
            }
            request = .block(entry)
        case "unblock", "explain":
            allowed = ["version", "command", "port", "protocol"]
            let port: UInt16
            switch DenyListCodec.portValue(fields["port"]) {
            case .success(let value): port = value
            case .failure(let problem): throw NodeGuardError(.invalidRequest, "port: \(problem.message)")
            }
            var transport = TransportProtocol.tcp
            if let value = fields["protocol"] {
                guard case .string(let text) = value, let parsed = TransportProtocol(rawValue: text) else {
                    throw NodeGuardError(.invalidRequest, "protocol: expected \"tcp\", \"udp\" or \"sctp\", found \(DenyListCodec.shown(value))")
                }
                transport = parsed
            }
            let key = PortKey(port: port, transport: transport)
            request = command == "unblock" ? .unblock(key) : .explain(key)
        case "list": allowed = ["version", "command"]; request = .list
        case "status": allowed = ["version", "command"]; request = .status
        case "reload": allowed = ["version", "command"]; request = .reload
        case "metrics": allowed = ["version", "command"]; request = .metrics
        case "nodeports": allowed = ["version", "command"]; request = .nodeports
        default:
            throw NodeGuardError(.invalidRequest, "command: unknown command \"\(displayText(command))\" (one of block, unblock, list, status, reload, metrics, nodeports, explain)")
        }
        if let unknown = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw NodeGuardError(.invalidRequest, "\(displayText(unknown)): unknown field for command \(command)")
        }
        return request
    }
}

public enum ControlResponse: Sendable, Hashable {
    case success(JSONValue)
    case failure(NodeGuardError)

    public func encoded() -> String {
        switch self {
        case .success(let result):
            return JSON.serialize(.object(["version": .number(String(ControlProtocol.version)), "ok": .bool(true), "result": result]))
        case .failure(let error):
            return JSON.serialize(.object([
                "version": .number(String(ControlProtocol.version)), "ok": .bool(false),
                "error": .object(["code": .string(error.code.rawValue), "message": .string(error.message)]),
            ]))
        }
    }

    public static func decode(_ line: [UInt8]) throws(NodeGuardError) -> ControlResponse {
        let value: JSONValue
        do { value = try JSON.parse(line) } catch {
            throw NodeGuardError(.invalidRequest, "the daemon's response is not valid JSON: \(error)")
        }
        guard case .object = value else {
            throw NodeGuardError(.invalidRequest, "the daemon's response is not a JSON object")
        }
        guard value["version"]?.integerValue == ControlProtocol.version else {
            throw NodeGuardError(.unsupportedVersion, "the daemon speaks another protocol version; use the nodeguardctl that came with it")
        }
        switch value["ok"] {
        case .bool(true)?:
            return .success(value["result"] ?? .null)
        case .bool(false)?:
            let code = value["error"]?["code"]?.stringValue ?? "unknown"
            let message = value["error"]?["message"]?.stringValue ?? "the daemon gave no message"
            return .failure(NodeGuardError(NodeGuardError.Code(rawValue: code), message))
        default:
            throw NodeGuardError(.invalidRequest, "the daemon's response has no \"ok\" field")
        }
    }
}

extension JSONValue {
    public subscript(key: String) -> JSONValue? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public static func integer<I: BinaryInteger>(_ value: I) -> JSONValue { .number(String(value)) }
}
