package client

import (
	"context"
	"net/http"
	"net/url"

	"gureum/api"
)

// WithToken returns a client of the same daemon that sends token as
// "Authorization: Bearer" on every request, so it acts for the token's
// account. On the unix socket a client without a token acts as the admin.
// The two clients share connections.
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// Accounts lists the accounts the caller sees (all of them for the admin).
func (c *Client) Accounts(ctx context.Context) ([]api.Account, error) {
	var out api.AccountsResponse
	err := c.Do(ctx, http.MethodGet, "/v1/accounts", nil, &out)
	return out.Accounts, err
}

// Account describes one account.
func (c *Client) Account(ctx context.Context, id string) (api.Account, error) {
	var out api.Account
	err := c.Do(ctx, http.MethodGet, "/v1/accounts/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CreateAccount makes an account (admin only); the answer holds its first
// token's secret, shown this once.
func (c *Client) CreateAccount(ctx context.Context, name string) (api.CreateAccountResponse, error) {
	var out api.CreateAccountResponse
	err := c.Do(ctx, http.MethodPost, "/v1/accounts", api.CreateAccountRequest{Name: name}, &out)
	return out, err
}

// DeleteAccount deletes an account and its tokens (admin only).
func (c *Client) DeleteAccount(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/accounts/"+url.PathEscape(id), nil, nil)
}

// Tokens lists an account's tokens, without secrets.
func (c *Client) Tokens(ctx context.Context, accountID string) ([]api.APIToken, error) {
	var out api.TokensResponse
	err := c.Do(ctx, http.MethodGet, "/v1/accounts/"+url.PathEscape(accountID)+"/tokens", nil, &out)
	return out.Tokens, err
}

// CreateToken makes another API token of an account; its secret is in
// the answer only.
func (c *Client) CreateToken(ctx context.Context, accountID, description string) (api.APIToken, error) {
	var out api.APIToken
	err := c.Do(ctx, http.MethodPost, "/v1/accounts/"+url.PathEscape(accountID)+"/tokens",
		api.CreateTokenRequest{Description: description}, &out)
	return out, err
}

// RevokeToken deletes a token; later requests with it fail.
func (c *Client) RevokeToken(ctx context.Context, tokenID string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(tokenID), nil, nil)
}
