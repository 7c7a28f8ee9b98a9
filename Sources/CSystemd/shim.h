// libsystemd (libsystemd-dev): readiness and watchdog notification, socket
// activation and the journal's native protocol. Only non-variadic calls are
// used (sd_journal_sendv, not sd_journal_send), so Swift can call them.
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
