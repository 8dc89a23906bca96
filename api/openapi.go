package api

import _ "embed" // for the OpenAPI document

// OpenAPI is the daemon's API described as an OpenAPI 3 document
// (api/openapi.json). A test of hypervisor/httpapi checks that it lists
// exactly the routes the daemon serves.
//
//go:embed openapi.json
var OpenAPI []byte
