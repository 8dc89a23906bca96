package httpapi

import (
	"net/http"

	"gureum/api"
	"gureum/hypervisor/accounts"
	"gureum/hypervisor/service"
)

// Who a request acts for.
//
// A bearer token ("Authorization: Bearer gureum_…") names an account:
// the account registry hashes it and compares it with the stored hash
// (hypervisor/accounts). On the unix socket a request without any
// Authorization header acts as the admin: the socket's file mode (0660,
// root and the gureum group) already decided who may connect. On TCP,
// which anyone who can reach the port may use, a token is required.

// SocketAuth authenticates requests on the unix socket: a token, if one
// is given, must be valid and names the caller; no token means the admin.
func SocketAuth(svc *service.Service) Authenticator {
	return func(r *http.Request) (service.Caller, error) {
		if r.Header.Get("Authorization") == "" {
			return service.Admin, nil
		}
		return bearer(svc, r)
	}
}

// TokenAuth authenticates requests on TCP: a valid token is required.
func TokenAuth(svc *service.Service) Authenticator {
	return func(r *http.Request) (service.Caller, error) { return bearer(svc, r) }
}

func bearer(svc *service.Service, r *http.Request) (service.Caller, error) {
	tok, ok := accounts.TokenFromHeader(r.Header.Get("Authorization"))
	if !ok {
		return service.Caller{}, api.Errorf(api.CodeAuthFailure, "AWS was not able to validate the provided access credentials")
	}
	return svc.Authenticate(tok)
}

// The account routes join the server's table from here.
func init() {
	routes = append(routes, accountRoutes...)
}

var accountRoutes = []Route{
	{"GET", "/v1/accounts", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		all, err := h.svc.Accounts().List(c.AccountID)
		if err != nil {
			return nil, err
		}
		out := api.AccountsResponse{Accounts: []api.Account{}}
		for _, a := range all {
			out.Accounts = append(out.Accounts, a.API())
		}
		return out, nil
	}},
	{"POST", "/v1/accounts", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.CreateAccountRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		a, tok, err := h.svc.Accounts().Create(c.AccountID, req.Name)
		if err != nil {
			return nil, err
		}
		h.log.Info("account created", "account", a.ID, "name", a.Name, "by", c.AccountID)
		return api.CreateAccountResponse{Account: a.API(), Token: tok}, nil
	}},
	{"GET", "/v1/accounts/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		a, err := h.svc.Accounts().Get(c.AccountID, r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		return a.API(), nil
	}},
	{"DELETE", "/v1/accounts/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		if err := h.svc.Accounts().Delete(c.AccountID, r.PathValue("id")); err != nil {
			return nil, err
		}
		h.log.Info("account deleted", "account", r.PathValue("id"), "by", c.AccountID)
		return nil, nil
	}},
	{"GET", "/v1/accounts/{id}/tokens", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		toks, err := h.svc.Accounts().Tokens(c.AccountID, r.PathValue("id"))
		if toks == nil {
			toks = []api.APIToken{}
		}
		return api.TokensResponse{Tokens: toks}, err
	}},
	{"POST", "/v1/accounts/{id}/tokens", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.CreateTokenRequest
		if err := decodeOptional(r, &req); err != nil {
			return nil, err
		}
		return h.svc.Accounts().CreateToken(c.AccountID, r.PathValue("id"), req.Description)
	}},
	{"DELETE", "/v1/tokens/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return nil, h.svc.Accounts().RevokeToken(c.AccountID, r.PathValue("id"))
	}},
}
