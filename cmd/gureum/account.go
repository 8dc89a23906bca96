package main

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gureum/api"
	"gureum/hypervisor/accounts"
	"gureum/hypervisor/httpapi"
	"gureum/hypervisor/service"
)

// tcpAuth authenticates the daemon's TCP API: an account's API token, or
// one of the --token-file tokens, which act as the admin (kept for hosts
// set up before accounts existed).
func tcpAuth(svc *service.Service, fileTokens []string) httpapi.Authenticator {
	byAccount := httpapi.TokenAuth(svc)
	if len(fileTokens) == 0 {
		return byAccount
	}
	return func(r *http.Request) (service.Caller, error) {
		if tok, ok := accounts.TokenFromHeader(r.Header.Get("Authorization")); ok {
			for _, t := range fileTokens {
				if subtle.ConstantTimeCompare([]byte(tok), []byte(t)) == 1 {
					return service.Admin, nil
				}
			}
		}
		return byAccount(r)
	}
}

// newAccountCommand is `gureum account`: tenants and their API tokens.
func newAccountCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use: "account", Aliases: []string{"accounts"}, Short: "manage accounts and their API tokens",
		Long: `Accounts are the cloud's tenants: each sees only its own instances, volumes,
snapshots and AMIs (and AMIs shared with it). The admin account is made when
the daemon first starts; its first token is in DATA-DIR/admin.token. Requests
on the unix socket without --token act as the admin; give --token (or
GUREUM_TOKEN) to act as another account. See docs/accounts.md.`,
	}
	f := addAPIFlags(cmd)
	table := func(as []api.Account) func(w *tabwriter.Writer) {
		return func(w *tabwriter.Writer) {
			row(w, "ID", "NAME", "ADMIN", "CREATED")
			for _, a := range as {
				row(w, a.AccountID, a.Name, a.Admin, a.CreateTime.Local().Format("2006-01-02 15:04:05"))
			}
		}
	}
	tokenTable := func(ts []api.APIToken) func(w *tabwriter.Writer) {
		return func(w *tabwriter.Writer) {
			row(w, "TOKEN ID", "ACCOUNT", "CREATED", "DESCRIPTION")
			for _, t := range ts {
				row(w, t.TokenID, t.AccountID, t.CreateTime.Local().Format("2006-01-02 15:04:05"), orDash(t.Description))
			}
		}
	}
	create := &cobra.Command{
		Use: "create NAME", Short: "create an account and its first API token (admin only)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			res, err := f.client().CreateAccount(c.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(res, func(w *tabwriter.Writer) {
				table([]api.Account{res.Account})(w)
				fmt.Fprintf(w, "\ntoken (shown once): %s\n", res.Token.Secret)
			})
		},
	}
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "list accounts (all for the admin, your own otherwise)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			as, err := f.client().Accounts(c.Context())
			if err != nil {
				return err
			}
			return f.print(as, table(as))
		},
	}
	del := &cobra.Command{
		Use: "delete ID...", Aliases: []string{"rm"}, Short: "delete accounts that own nothing (admin only)", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			for _, id := range args {
				if err := f.client().DeleteAccount(c.Context(), id); err != nil {
					return err
				}
				fmt.Println(id)
			}
			return nil
		},
	}

	token := &cobra.Command{Use: "token", Aliases: []string{"tokens"}, Short: "API tokens of an account"}
	var description string
	tcreate := &cobra.Command{
		Use: "create ACCOUNT", Short: "make another API token (the secret is shown once)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			t, err := f.client().CreateToken(c.Context(), args[0], description)
			if err != nil {
				return err
			}
			return f.print(t, func(w *tabwriter.Writer) {
				tokenTable([]api.APIToken{t})(w)
				fmt.Fprintf(w, "\ntoken (shown once): %s\n", t.Secret)
			})
		},
	}
	tcreate.Flags().StringVar(&description, "description", "", "what the token is for")
	tls := &cobra.Command{
		Use: "ls ACCOUNT", Aliases: []string{"list"}, Short: "list an account's tokens (without secrets)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ts, err := f.client().Tokens(c.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(ts, tokenTable(ts))
		},
	}
	trevoke := &cobra.Command{
		Use: "revoke TOKEN-ID...", Aliases: []string{"rm"}, Short: "revoke tokens; later requests with them fail", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			for _, id := range args {
				if err := f.client().RevokeToken(c.Context(), id); err != nil {
					return err
				}
				fmt.Println(id)
			}
			return nil
		},
	}
	token.AddCommand(tcreate, tls, trevoke)
	cmd.AddCommand(create, ls, del, token)
	return cmd
}
