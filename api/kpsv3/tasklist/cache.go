package tasklist

import (
	"container/list"
	"errors"
	"sync"
)

// pageKey names one rendered page: everything its bytes depend on. The caller's identity
// is not part of it: every caller authenticated for the project sees the same tasks
// (kps-v3-api.md §1.2), and authorization happens before the page is looked up.
type pageKey struct {
	project       string
	failed        bool // failed-tasks, else running-tasks
	limit, offset int
}

// pageCache keeps rendered task list pages, each with the project's task version it was
// rendered at (kps.TaskListReader.TaskVersion), least recently used first out once the bodies
// exceed max bytes. A page is served only while the project's version has not moved past
// its own; the store moves the version with every committed change to the project's tasks,
// on every replica, so a served page is never older than the last change. A nil *pageCache
// caches nothing.
type pageCache struct {
	max int64

	mu      sync.Mutex
	size    int64
	entries map[pageKey]*list.Element // of *pageEntry
	lru     list.List                 // front: most recently used
	fills   map[fillKey]*fill
}

type pageEntry struct {
	key     pageKey
	version int64
	body    []byte
}

// fillKey is a render in progress: concurrent misses of one page at one version wait for it
// instead of querying the database side by side.
type fillKey struct {
	key     pageKey
	version int64
}

type fill struct {
	done chan struct{}
	body []byte
	err  error
}

// newPageCache returns a cache of at most max bytes of pages, or nil (no cache) when max < 0.
func newPageCache(max int64) *pageCache {
	if max < 0 {
		return nil
	}
	if max == 0 {
		max = DefaultCacheBytes
	}
	return &pageCache{max: max, entries: map[pageKey]*list.Element{}, fills: map[fillKey]*fill{}}
}

// entryCost is what an entry counts against max: its body and its bookkeeping.
func entryCost(e *pageEntry) int64 { return int64(len(e.body)+len(e.key.project)) + 128 }

// get returns the page if it was rendered at version or later.
func (c *pageCache) get(key pageKey, version int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*pageEntry)
	if e.version < version {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return e.body, true
}

// put keeps body as the page rendered at version, unless a page rendered later is kept.
// A page larger than an eighth of the cache is not kept: it would push out too many others.
func (c *pageCache) put(key pageKey, version int64, body []byte) {
	e := &pageEntry{key: key, version: version, body: body}
	if entryCost(e) > c.max/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		old := el.Value.(*pageEntry)
		if old.version > version {
			return
		}
		c.size -= entryCost(old)
		el.Value = e
		c.lru.MoveToFront(el)
	} else {
		c.entries[key] = c.lru.PushFront(e)
	}
	c.size += entryCost(e)
	for c.size > c.max {
		el := c.lru.Back()
		old := el.Value.(*pageEntry)
		c.lru.Remove(el)
		delete(c.entries, old.key)
		c.size -= entryCost(old)
	}
}

// page returns the page for key current at version: from the cache, from a render of it
// already under way, or from render, whose result (rendered at renderedAt ≥ version) it keeps.
func (c *pageCache) page(key pageKey, version int64, render func() (body []byte, renderedAt int64, err error)) ([]byte, error) {
	if c == nil {
		body, _, err := render()
		return body, err
	}
	if body, ok := c.get(key, version); ok {
		return body, nil
	}
	fk := fillKey{key, version}
	c.mu.Lock()
	if f, ok := c.fills[fk]; ok {
		c.mu.Unlock()
		<-f.done
		if f.err == nil {
			return f.body, nil
		}
		// The render failed for its own request (its client went away, say): try for this one.
		body, _, err := render()
		return body, err
	}
	f := &fill{done: make(chan struct{})}
	c.fills[fk] = f
	c.mu.Unlock()

	// Deferred: a render that panics must not leave its waiters waiting.
	f.err = errRenderAborted
	defer func() {
		c.mu.Lock()
		delete(c.fills, fk)
		c.mu.Unlock()
		close(f.done)
	}()
	body, renderedAt, err := render()
	if err == nil {
		c.put(key, renderedAt, body)
	}
	f.body, f.err = body, err
	return body, err
}

var errRenderAborted = errors.New("tasklist: render aborted")

// len returns the number of pages kept and their cost in bytes.
func (c *pageCache) len() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.size
}
