//go:build race

package store

// raceEnabled: the race detector slows SQLite (a C library translated to Go) about forty times,
// so tests that need a statement to run for a while ask for less work under it.
const raceEnabled = true
