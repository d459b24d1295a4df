package api

import (
	"net/http"
	"slices"
)

// A Mux is an http.ServeMux that remembers the patterns registered on it, so that the routes a
// family serves are listed from what it registered, not from its source (docs' tests compare
// them with openapi.json).
type Mux struct {
	*http.ServeMux
	patterns []string
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{ServeMux: http.NewServeMux()} }

// Handle registers h for pattern, as http.ServeMux.Handle does, and remembers the pattern.
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

// HandleFunc registers f for pattern, as http.ServeMux.HandleFunc does, and remembers the pattern.
func (m *Mux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// Patterns are the patterns registered, in the order of registration.
func (m *Mux) Patterns() []string { return slices.Clone(m.patterns) }
