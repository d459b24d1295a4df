package docs_test

import (
	"testing"

	"github.com/openkps/kps/internal/openapitest"
)

// TestOpenAPI3 validates openapi.json as an OpenAPI 3 document with kin-openapi: its structure,
// its references, its examples against their schemas. The end-to-end suites then check every
// answer they receive against it (internal/openapitest).
func TestOpenAPI3(t *testing.T) {
	if _, err := openapitest.Docs(); err != nil {
		t.Fatal(err)
	}
}
