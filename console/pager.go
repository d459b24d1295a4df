package console

import (
	"net/url"
	"strconv"
)

// offsetPager is the pager of a list the API pages with limit and offset: the span of the rows
// shown (Rows of them, First to Last of Total), the links either way, the page sizes offered.
// Noun names the rows ("failed tasks") in the count and in the links' label. The "pager"
// template draws it.
type offsetPager struct {
	Total, Limit, Offset int
	Rows, First, Last    int
	HasPrev, HasNext     bool
	PrevURL, NextURL     string
	Sizes                []int
	Noun                 string
}

// newOffsetPager is the pager of n rows at offset of a list of total at path; the links keep
// the query parameters of keep (a list's filters).
func newOffsetPager(path, noun string, keep url.Values, total, n, limit, offset int) offsetPager {
	p := offsetPager{Total: total, Limit: limit, Offset: offset, Rows: n, First: offset + 1, Last: offset + n,
		Sizes: pageSizes, Noun: noun, HasPrev: offset > 0, HasNext: offset+n < total}
	v := url.Values{}
	for k, vs := range keep {
		if len(vs) > 0 && vs[0] != "" {
			v.Set(k, vs[0])
		}
	}
	v.Set("limit", strconv.Itoa(limit))
	v.Set("offset", strconv.Itoa(max(offset-limit, 0)))
	p.PrevURL = path + "?" + v.Encode()
	v.Set("offset", strconv.Itoa(offset+n))
	p.NextURL = path + "?" + v.Encode()
	return p
}
