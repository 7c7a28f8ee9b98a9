// The deny-list model and the control protocol live in NodeGuardControl (no C
// dependencies, so nodeguardctl links neither libiptc nor libsystemd). The
// daemon, the benchmarks and the tests see them through NodeGuardCore as before.
@_exported import NodeGuardControl
