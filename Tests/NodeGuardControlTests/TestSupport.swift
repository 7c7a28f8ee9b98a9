import NodeGuardControl

/// Runs `body` and returns the NodeGuardError it threw, or nil if it did not throw.
func capturedError<T>(_ body: () throws(NodeGuardError) -> T) -> NodeGuardError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}
