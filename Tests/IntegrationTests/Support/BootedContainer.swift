import Foundation
import NodeGuardCore

#if canImport(Glibc)
import Glibc
#endif

/// A real systemd booted in systemd-nspawn from a fresh copy of a cached Debian
/// root file system, in its own network namespace (--private-network).
/// Commands run inside through nsenter. `stop()` powers it off and removes
/// everything; call it even when a test fails.
final class BootedContainer {
    let name: String
    let root: String
    private let consoleLog: String
    private var nspawn: ChildProcess?
    private(set) var initPID: Int32 = 0

    init(rootfs: String) throws {
        name = "ngct" + String(UInt32.random(in: 0..<UInt32.max), radix: 36)
        root = "/var/tmp/\(name)"
        consoleLog = "/var/tmp/\(name).console.log"
        try check(runCommand(["cp", "--reflink=auto", "-a", rootfs, root]), "copying the root file system")
        try name.write(toFile: "\(root)/etc/hostname", atomically: true, encoding: .utf8)
        // --keep-unit and --register=no: no systemd runs on the host to ask.
        let log = open(consoleLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        defer { close(log) }
        let nspawn = try ChildProcess(["systemd-nspawn", "-D", root, "-b", "--private-network", "--register=no",
                                       "--keep-unit", "-M", name], stdout: log, stderr: log)
        self.nspawn = nspawn
        // The container's init is the child of nspawn that is PID 1 inside.
        let deadline = Date().addingTimeInterval(30)
        while initPID == 0 && Date() < deadline {
            let children = try runCommand(["ps", "--ppid", String(nspawn.pid), "-o", "pid="]).stdout
            for pid in children.split(separator: "\n").compactMap({ Int32($0.trimmingCharacters(in: .whitespaces)) }) {
                let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
                if let line = status.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }),
                   line.split(separator: "\t").last == "1" {
                    initPID = pid
                }
            }
            if initPID == 0 { usleep(50_000) }
        }
        guard initPID != 0 else { throw TestNodeError("the container did not boot:\n\(console)") }
        // systemctl answers once PID 1 has its private socket.
        var state = ""
        while Date() < deadline {
            state = (try? run("systemctl", "is-system-running", "--wait"))?.stdout
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            if ["running", "degraded"].contains(state) { return }
            usleep(100_000)
        }
        throw TestNodeError("systemd did not finish booting (state '\(state)'):\n\(console)")
    }

    var console: String { (try? String(contentsOfFile: consoleLog, encoding: .utf8)) ?? "" }

    /// Runs a command inside the container with a clean environment.
    @discardableResult
    func run(_ arguments: String...) throws -> CommandResult { try run(arguments) }

    @discardableResult
    func run(_ arguments: [String], input: String? = nil) throws -> CommandResult {
        try runCommand(["nsenter", "-t", String(initPID), "-m", "-u", "-i", "-n", "-p",
                        "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"] + arguments, input: input)
    }

    /// Runs a shell script inside the container.
    @discardableResult
    func sh(_ script: String) throws -> CommandResult { try run(["sh", "-c", script]) }

    /// Puts a host file into the container (its /tmp is a tmpfs of its own, so /var/tmp).
    func copyIn(_ path: String) throws -> String {
        let target = "/var/tmp/" + (path as NSString).lastPathComponent
        try check(runCommand(["cp", path, root + target]), "copying \(path) into the container")
        return target
    }

    func waitUntil(_ timeout: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
        try eventually(timeout, every: 0.2, condition)
    }

    /// Powers off (or kills) the container and removes its copy, mounts and cgroups.
    func stop() {
        if initPID != 0 { _ = try? run("systemctl", "poweroff") }
        let deadline = Date().addingTimeInterval(15)
        while let nspawn, nspawn.isRunning, Date() < deadline { usleep(100_000) }
        if let nspawn, nspawn.isRunning {
            // Killing nspawn alone would orphan the container's init: kill that first.
            if initPID != 0 { kill(initPID, SIGKILL) }
            nspawn.signal(SIGKILL)
            nspawn.wait()
        }
        _ = try? runCommand(["sh", "-c", """
            findmnt -rn -o TARGET | grep '^\(root)' | sort -r | xargs -r -n1 umount -l
            rm -rf '\(root)' '\(consoleLog)'
            for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do for g in payload supervisor; do
              [ -d $h/$g ] && find $h/$g -depth -type d -exec rmdir {} \\; 2>/dev/null; done; done
            true
            """])
    }

    private func check(_ result: CommandResult, _ what: String) throws {
        guard result.succeeded else { throw TestNodeError("\(what) failed (\(result.status)): \(result.stderr)") }
    }
}
