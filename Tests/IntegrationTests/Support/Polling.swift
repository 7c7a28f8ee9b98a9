import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Polls `condition` until it holds or `timeout` seconds pass.
func eventually(_ timeout: Double, every interval: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    repeat {
        if try condition() { return true }
        usleep(useconds_t(interval * 1_000_000))
    } while Date() < deadline
    return false
}

