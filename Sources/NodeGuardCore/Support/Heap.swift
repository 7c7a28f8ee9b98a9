import CNodeGuardLinux

/// Sets the heap up for the daemon (CNodeGuardLinux: one arena, big buffers
/// mmapped, top of heap trimmed). Without it, each thread's arena kept the
/// free memory of the last whole-table read: 27.8 MB resident against 19.4 MB
/// with 2,768 blocked ports (BENCHMARKS.md).
public func tuneHeapForDaemon() {
    nglinux_tune_heap_for_daemon()
}

/// Returns the heap's free pages to the system (glibc's malloc_trim): reads
/// leave their freed buffers between live objects, where only a trim reaches
/// them. About a millisecond, so it runs only where nothing waits on it: the
/// reconcile loop's first turn after start-up, a scheduled read that found
/// nothing, and the moment the last control client has its answer.
public func releaseFreeHeap() {
    nglinux_release_free_memory()
}
