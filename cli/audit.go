package cli

import (
	"context"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

func (a *app) auditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "read the audit trail: who changed what, from where, and how it ended",
		Long: "The project's trail is readable by its admin; the events without a project (logins, identity\n" +
			"changes, refused authentications) by the operator admin, with --operator.",
		Example: "kps audit list\nkps audit list --operator --action auth.refused --since 2025-01-31T00:00:00Z"}
	cmd.AddCommand(a.auditList())
	return cmd
}

func (a *app) auditList() *cobra.Command {
	var q client.AuditQuery
	var since, until string
	var limit int
	cmd := &cobra.Command{Use: "list", Short: "audit events, newest first (all pages unless --limit)", Args: noArgs,
		Example: "kps audit list --limit 20\n" +
			"kps audit list --action keypair.associate --resource web-01\n" +
			"kps audit list --operator --action auth.refused -o json | jq -r '.[].client_ip'"}
	cmd.Flags().BoolVar(&q.Operator, "operator", false, "the events without a project (logins, identity, refused authentications)")
	cmd.Flags().StringVar(&q.Action, "action", "", "only this action (keypair.create, auth.refused, …)")
	cmd.Flags().StringVar(&q.UserID, "user-id", "", "only events of this user ID")
	cmd.Flags().StringVar(&q.ResourceID, "resource", "", "only events whose target has this ID")
	cmd.Flags().StringVar(&since, "since", "", "only events at or after this RFC 3339 time")
	cmd.Flags().StringVar(&until, "until", "", "only events before this RFC 3339 time")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many events")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if limit < 0 {
			return usagef("--limit must not be negative")
		}
		for _, t := range []struct {
			flag, v string
			to      *time.Time
		}{{"--since", since, &q.Since}, {"--until", until, &q.Until}} {
			if t.v == "" {
				continue
			}
			v, err := time.Parse(time.RFC3339Nano, t.v)
			if err != nil {
				return usagef("%s must be an RFC 3339 time such as 2025-01-31T12:00:00Z, not %q", t.flag, t.v)
			}
			*t.to = v
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		pageSize := 1000
		if limit > 0 && limit < pageSize {
			pageSize = limit
		}
		rows := []kps.AuditEvent{}
		for e, err := range cl.AuditEvents(ctx, q, pageSize) {
			if err != nil {
				return err
			}
			rows = append(rows, e)
			if limit > 0 && len(rows) == limit {
				break
			}
		}
		return a.emit(rows, func(w io.Writer) {
			t := newTable(w, "time", "action", "target", "status", "code", "user", "client_ip", "task_id", "request_id")
			for _, e := range rows {
				target := e.TargetID
				if e.TargetType != "" {
					target = e.TargetType + " " + e.TargetID
				}
				t.row(e.Time, e.Action, target, e.Status, e.Code, e.UserName, e.ClientIP, e.TaskID, e.RequestID)
			}
			t.flush()
		})
	})
	return cmd
}
