// Package tasklist is the read model of the two task lists of the KPS v3 API, the running
// tasks (§2.15) and the failed tasks (§2.16): what GET /v3/{project_id}/failed-tasks answers,
// the hot path the README puts first. It is one seam between the handler and the store:
//
//   - the store's read path, kps.TaskListReader: a page and its total from one statement, the
//     rows handed over as the database returns them (TaskListRows), and the project's task
//     version, which moves with every committed change to the project's tasks on every
//     replica (store/taskversion.go);
//   - rendering: the rows written straight into the JSON body that encoding/json would write
//     for the reference structs (render.go, json.go), byte for byte;
//   - the page cache: rendered pages kept, each with the task version it was rendered at, and
//     served while that version is current (cache.go).
//
// kps.TaskStore knows nothing of it: its transitions move the versions, which is all the cache
// needs. It imports the domain package only.
package tasklist

import (
	"context"

	"github.com/openkps/kps"
)

// Lists renders the task lists of any project, caching pages.
type Lists struct {
	reader kps.TaskListReader
	pages  *pageCache
}

// DefaultCacheBytes bounds the rendered task list pages kept: about 240 pages of 1,000 failed
// tasks.
const DefaultCacheBytes = 64 << 20

// New returns the read model on reader; cacheBytes bounds the pages kept: 0 means
// DefaultCacheBytes, a negative value keeps none.
func New(reader kps.TaskListReader, cacheBytes int64) *Lists {
	return &Lists{reader: reader, pages: newPageCache(cacheBytes)}
}

// Page returns the body of one page of a project's running (failed false) or failed tasks: from
// the cache when the page it holds is as new as the project's tasks, else rendered from a
// fresh read. version, when given, is the project's task version the request has read already
// (kps.RequestReads.TaskVersion), read after the request arrived; otherwise Page reads it.
func (l *Lists) Page(ctx context.Context, projectID string, failed bool, p kps.Page, version *int64) ([]byte, error) {
	key := pageKey{project: projectID, failed: failed, limit: p.Limit, offset: p.Offset}
	var v int64
	if l.pages != nil {
		if version != nil {
			v = *version
		} else {
			var err error
			if v, err = l.reader.TaskVersion(ctx, projectID); err != nil {
				return nil, err
			}
		}
	}
	return l.pages.page(key, v, func() ([]byte, int64, error) { return l.render(ctx, key) })
}

// CachedPages returns the number of pages kept and their cost in bytes.
func (l *Lists) CachedPages() (int, int64) {
	if l.pages == nil {
		return 0, 0
	}
	return l.pages.len()
}

// Caching reports whether the read model keeps pages.
func (l *Lists) Caching() bool { return l.pages != nil }
