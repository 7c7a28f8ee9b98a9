/// Rules as `iptables-legacy-save` writes them (`-A CHAIN ...`). NodeGuard's
/// decoder reads only the shapes it writes, so other programs' rules (string,
/// u32, multiport, CT, ...) are named to an operator by the tool that knows
/// every extension. For reports (fights, explain, status), never on a
/// repair's path.
public enum SavedRules {
    /// Each chain's rules in order, or nil where the tool is missing or fails.
    /// Saving a table that does not exist creates it: check `tableExists` first.
    public static func read(_ table: String, _ family: AddressFamily) -> [String: [String]]? {
        let tool = family == .ipv4 ? "iptables-legacy-save" : "ip6tables-legacy-save"
        guard let path = findProgram(tool),
              let result = try? runProgram([path, "-t", table], timeout: .seconds(5)), result.status == 0 else { return nil }
        var chains: [String: [String]] = [:]
        for line in String(decoding: result.stdout, as: UTF8.self).split(separator: "\n") where line.hasPrefix("-A ") {
            let chain = line.dropFirst(3).prefix { $0 != " " }
            chains[String(chain), default: []].append(String(line))
        }
        return chains
    }

    /// The text of rule `index` (0-based) of `chain`, or `fallback` when the
    /// save could not be read or no longer has that rule.
    public static func text(_ saved: [String: [String]]?, chain: String, index: Int, fallback: @autoclosure () -> String) -> String {
        guard let rules = saved?[chain], index < rules.count else { return fallback() }
        return rules[index]
    }
}
