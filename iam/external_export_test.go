package iam

// CacheLen is the number of tokens External remembers, for the tests of package iam_test.
func (e *External) CacheLen() int {
	e.init()
	return e.cache.len()
}
