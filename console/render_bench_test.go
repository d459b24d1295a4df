package console

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/openkps/kps/client"
)

// BenchmarkRenderFailedPage1000 is the template's share of a failed-task page of 1,000 rows.
func BenchmarkRenderFailedPage1000(b *testing.B) {
	pg := client.TaskPage{Total: 5000}
	now := time.Now().UnixMilli()
	for i := range 1000 {
		pg.Tasks = append(pg.Tasks, client.TaskEntry{TaskID: fmt.Sprintf("%08d-6a5f-4e3d-8c2b-1a0f9e8d7c6b", i), Status: "FAILED_REPLACE",
			TaskTime: strconv.FormatInt(now-int64(i)*1000, 10), ServerID: fmt.Sprintf("host-%04d", i), ServerName: fmt.Sprintf("host-%04d (rack %d)", i, i%40),
			KeyPairName: "seed", ErrorCode: "KPS.6601", ErrorMsg: "Connecting over SSH as 'root' on 127.0.0.1:4711 failed: the connection was refused."})
	}
	d := newTaskList(httptest.NewRequest("GET", "/console/tasks/failed?limit=1000", nil), "failed tasks", pg, 1000, 0)
	p := &page{Title: "Failed tasks", Section: "failed", Data: d, User: &userView{Name: "admin", Domain: "Default", Project: "local-1",
		CSRF: "0123456789abcdef0123456789abcdef0123456789a", Can: can{Write: true, Admin: true, Export: true}}}
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := templates["failed"].ExecuteTemplate(&buf, "layout", p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes/page")
}

// BenchmarkMountOverhead is what Mount adds to an API request: the API's handler alone, then
// behind Mount (the console costs API requests one prefix comparison).
func BenchmarkMountOverhead(b *testing.B) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	r := httptest.NewRequest(http.MethodGet, "/v3/0b7e4c2a91d34f5e8c6a2d1f3e5b7a90/failed-tasks?limit=1000", nil)
	w := httptest.NewRecorder()
	b.Run("api", func(b *testing.B) {
		for b.Loop() {
			api.ServeHTTP(w, r)
		}
	})
	b.Run("mounted", func(b *testing.B) {
		h := Mount(api, Config{Region: "local-1"})
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
	})
}
