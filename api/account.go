package api

import (
	"net/http"
	"time"
)

// Error codes of the account API. IAM, not EC2, manages identities in
// AWS, so these are IAM's codes.
const (
	// CodeNoSuchEntity: no account or token has that id (or the caller
	// may not see it).
	CodeNoSuchEntity Code = "NoSuchEntity"
	// CodeEntityAlreadyExists: an account with that name exists.
	CodeEntityAlreadyExists Code = "EntityAlreadyExists"
	// CodeDeleteConflict: the account still owns resources, or is the
	// admin account, which cannot be deleted.
	CodeDeleteConflict Code = "DeleteConflict"
)

// The codes above join the one status table from here, so that this file
// adds to the API without editing the table's file.
func init() {
	codeStatus[CodeNoSuchEntity] = http.StatusNotFound
	codeStatus[CodeEntityAlreadyExists] = http.StatusConflict
	codeStatus[CodeDeleteConflict] = http.StatusConflict
}

// Account is one tenant of the cloud. Every resource has an owner account;
// an account sees only its own resources, and AMIs others share with it.
type Account struct {
	// AccountID is 12 decimal digits, as in AWS.
	AccountID string `json:"account_id"`
	Name      string `json:"name"`
	// Admin is true for the account made when the daemon first starts.
	// Only it may create and delete accounts.
	Admin      bool      `json:"admin"`
	CreateTime time.Time `json:"create_time"`
}

// CreateAccountRequest is the body of POST /accounts.
type CreateAccountRequest struct {
	Name string `json:"name"`
}

// CreateAccountResponse answers POST /accounts: the new account and its
// first API token, whose secret is shown this once.
type CreateAccountResponse struct {
	Account Account  `json:"account"`
	Token   APIToken `json:"token"`
}

// AccountsResponse answers GET /v1/accounts: every account for the
// admin, the caller's own otherwise.
type AccountsResponse struct {
	Accounts []Account `json:"accounts"`
}

// APIToken is a bearer token of an account. Secret is set only in the
// answer that created the token: the daemon keeps only its SHA-256.
type APIToken struct {
	TokenID     string    `json:"token_id"`
	AccountID   string    `json:"account_id"`
	Description string    `json:"description,omitempty"`
	CreateTime  time.Time `json:"create_time"`
	Secret      string    `json:"secret,omitempty"`
}

// CreateTokenRequest is the body of POST /accounts/{id}/tokens.
type CreateTokenRequest struct {
	Description string `json:"description,omitempty"`
}

// TokensResponse answers GET /v1/accounts/{id}/tokens. The tokens carry
// no secrets: those are shown only once, when a token is created.
type TokensResponse struct {
	Tokens []APIToken `json:"tokens"`
}
