package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/openkps/kps"
)

// The audit trail's side of `kps serve` (docs/spec/audit.md): the --audit-log stream and the
// retention sweep. The events themselves are written by the store, in the transactions of the
// changes they record.

// DefaultAuditRetention is how long audit events are kept unless --audit-retention says
// otherwise.
const DefaultAuditRetention = 90 * 24 * time.Hour

// auditSweepEvery is how often the audit events past their retention are deleted, as often as
// the runner purges old tasks.
const auditSweepEvery = time.Hour

// auditLog writes each committed audit event as one JSON line (--audit-log) for a SIEM to
// ship. The store calls it after the commit, never before: a line is an event that exists.
type auditLog struct {
	mu    sync.Mutex
	w     io.Writer
	close func() error
	log   *slog.Logger
}

// openAuditLog opens path for appending (created 0600: the trail names users and addresses),
// or stdout for "-"; "" is no stream.
func openAuditLog(path string, stdout io.Writer, log *slog.Logger) (*auditLog, error) {
	switch path {
	case "":
		return nil, nil
	case "-":
		return &auditLog{w: stdout, close: func() error { return nil }, log: log}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, usageError{fmt.Errorf("--audit-log: %w", err)}
	}
	return &auditLog{w: f, close: f.Close, log: log}, nil
}

// write appends ev as one line; a failure is logged, the change it records stands.
func (l *auditLog) write(ev *kps.AuditEvent) {
	b, err := json.Marshal(ev)
	if err == nil {
		l.mu.Lock()
		_, err = l.w.Write(append(b, '\n'))
		l.mu.Unlock()
	}
	if err != nil {
		l.log.Error("writing an audit event to --audit-log failed", "request_id", ev.RequestID, "action", ev.Action, "err", err)
	}
}

// sweepAudit deletes the audit events older than retention at start and then every
// auditSweepEvery, until ctx ends; done is closed when it has stopped.
func sweepAudit(ctx context.Context, trail kps.AuditStore, retention time.Duration, log *slog.Logger, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(auditSweepEvery)
	defer t.Stop()
	for {
		if n, err := trail.PurgeAuditEvents(ctx, retention); err != nil && ctx.Err() == nil {
			log.Error("purging old audit events failed", "err", err)
		} else if n > 0 {
			log.Info("old audit events purged", "count", n, "retention", retention.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
