package api

import _ "embed"

// OpenAPI is the OpenAPI 3 document of the socket API (openapi.json). A
// test in package vmm checks it against the handlers.
//
//go:embed openapi.json
var OpenAPI []byte
