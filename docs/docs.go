// Package docs holds the project's API description (the documents beside it are prose). It
// imports nothing.
package docs

import _ "embed"

// OpenAPI is the API description served by the binary at /openapi.json: the OpenAPI 3.0.3
// document of docs/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte
