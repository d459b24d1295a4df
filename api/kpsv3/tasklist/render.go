package tasklist

import (
	"context"
	"strconv"

	"github.com/openkps/kps"
)

// headerRoom is reserved in front of a rendered list for `{"total":N,"tasks":[`, which can only
// be written once the rows have brought the total.
const headerRoom = len(`{"total":-2147483648,"tasks":[`)

// render reads a page and renders it as json.Marshal renders
// struct{Total int32 `json:"total"`; Tasks []FailedTask `json:"tasks"`} (or []RunningTask),
// straight from the rows the store hands over. It returns the task version the page was read
// at.
func (l *Lists) render(ctx context.Context, key pageKey) ([]byte, int64, error) {
	phases := kps.RunningPhases
	if key.failed {
		phases = kps.FailedPhases
	}
	rows, err := l.reader.ReadTaskList(ctx, key.project, phases, kps.Page{Limit: key.limit, Offset: key.offset})
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	buf := make([]byte, headerRoom, headerRoom+64+min(key.limit, 1000)*320)
	for n := 0; rows.Next(); n++ {
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = appendTaskItem(buf, rows.Row(), key.failed)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	buf = append(buf, "]}"...)
	var head [headerRoom]byte
	h := append(head[:0], `{"total":`...)
	h = strconv.AppendInt(h, int64(int32(rows.Total())), 10)
	h = append(h, `,"tasks":[`...)
	start := headerRoom - len(h)
	copy(buf[start:], h)
	return buf[start:], rows.Version(), nil
}

// RunningTask and FailedTask are the items of the two lists (RunningTasks, and FailedTasks of
// the seed page with the field order of Huawei's example). The lists are rendered by
// appendTaskItem; these types are the reference its tests compare it with, byte for byte.
type RunningTask struct {
	TaskID      string `json:"task_id"`
	OperateType string `json:"operate_type"`
	TaskTime    string `json:"task_time"`
	ServerName  string `json:"server_name"`
	ServerID    string `json:"server_id"`
	KeyPairName string `json:"keypair_name"`
}

// FailedTask is an item of the failed list (see RunningTask).
type FailedTask struct {
	TaskID        string `json:"task_id"`
	OperateType   string `json:"operate_type"`
	TaskTime      string `json:"task_time"`
	TaskErrorCode string `json:"task_error_code"`
	TaskErrorMsg  string `json:"task_error_msg"`
	ServerName    string `json:"server_name"`
	ServerID      string `json:"server_id"`
	KeyPairName   string `json:"keypair_name"`
}

// appendTaskItem appends one item of a list: the members of FailedTask or RunningTask, in
// their order.
func appendTaskItem(b []byte, t *kps.TaskRow, failed bool) []byte {
	b = append(b, `{"task_id":"`...)
	b = appendJSONStringBody(b, t.ID)
	// operate_type is kps.Status: phase and operation (both plain ASCII words, by the
	// schema's CHECK constraints) joined by "_".
	b = append(b, `","operate_type":"`...)
	b = appendJSONStringBody(b, t.Phase)
	b = append(b, '_')
	b = appendJSONStringBody(b, t.Operation)
	b = append(b, `","task_time":"`...)
	b = appendJSONStringBody(b, t.Created)
	if failed {
		b = append(b, `","task_error_code":"`...)
		b = appendJSONStringBody(b, t.ErrorCode)
		b = append(b, `","task_error_msg":"`...)
		b = appendJSONStringBody(b, t.ErrorMsg)
	}
	// server_name as serverName: the server ID when the name is empty.
	name := t.ServerName
	if len(name) == 0 {
		name = t.ServerID
	}
	b = append(b, `","server_name":"`...)
	b = appendJSONStringBody(b, name)
	b = append(b, `","server_id":"`...)
	b = appendJSONStringBody(b, t.ServerID)
	b = append(b, `","keypair_name":"`...)
	b = appendJSONStringBody(b, t.KeyPairName)
	return append(b, `"}`...)
}
