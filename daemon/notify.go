package daemon

import (
	"log/slog"
	"os"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"drfs/internal/logging"
)

// Systemd returns the Notify function and watchdog period for a daemon started by systemd
// (Type=notify: NOTIFY_SOCKET is set; WatchdogSec: WATCHDOG_USEC is). Outside systemd, Notify
// is nil and the period 0.
func Systemd(logger *slog.Logger) (notify func(string), watchdog time.Duration) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil, 0
	}
	watchdog, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		logger.Warn("systemd watchdog", logging.Err(err))
	}
	return func(state string) {
		if _, err := sd.SdNotify(false, state); err != nil {
			logger.Warn("systemd notify", "state", state, logging.Err(err))
		}
	}, watchdog
}
