// Package api is the wire format of the gureum daemon's REST API: the JSON
// bodies the daemon sends and receives, and the EC2-style error codes with
// the HTTP status each one maps to.
//
// The package imports only the standard library so that the Go client, the
// CLI and other people's tools can depend on it without pulling in the
// control plane. Names follow EC2's API where EC2 has a name for the thing
// (InstanceState, StateReason, InstanceType), spelled in lower_snake_case
// on the wire like the rest of gureum's JSON.
package api
