import SystemPackage

/// Who holds a flock, from /proc/locks (the kernel's own record): named in
/// the instance lock's and the xtables lock's "held by" messages.
enum FlockHolder {
    /// The PID holding a flock on the file `info` describes, from lines like
    /// `1: FLOCK  ADVISORY  WRITE 4711 08:01:1835010 0 EOF` (device in hex);
    /// nil if nobody does or it cannot be told.
    static func pid(of info: Stat) -> Int32? {
        guard let table = try? readFile("/proc/locks") else { return nil }
        // glibc's dev_t encoding (gnu_dev_major, gnu_dev_minor).
        let dev = UInt64(info.deviceID.rawValue)
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)
        let minor = (dev & 0xff) | ((dev >> 12) & ~0xff)
        let file = "\(hex2(major)):\(hex2(minor)):\(info.inode.rawValue)"
        for line in String(decoding: table, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            // Waiters are listed as "N: -> FLOCK ..."; only the holder counts.
            guard fields.count >= 6, fields[1] == "FLOCK", fields[5] == file else { continue }
            return Int32(fields[4]).flatMap { $0 > 0 ? $0 : nil }   // 0 or -1: in a PID namespace this one cannot see
        }
        return nil
    }

    /// What the process calls itself (/proc/PID/comm), if it can be read.
    static func processName(_ pid: Int32) -> String? {
        guard let bytes = try? readFile("/proc/\(pid)/comm") else { return nil }
        let name = String(decoding: bytes, as: UTF8.self).trimmingWhitespace
        return name.isEmpty ? nil : name
    }

    private static func hex2(_ value: UInt64) -> String {
        let text = String(value, radix: 16)
        return text.count < 2 ? "0" + text : text
    }
}
