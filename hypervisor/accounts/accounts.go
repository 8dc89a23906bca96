// Package accounts holds the cloud's tenants: accounts, their API tokens,
// and the rule that decides what one account may see of another's
// resources.
//
// The daemon makes an admin account the first time it starts (Init). The
// admin creates and deletes the other accounts; each account has API
// tokens, random secrets shown once and kept only as SHA-256 hashes, that
// the REST server turns back into an account with Authenticate.
//
// Every resource records the id of the account that owns it. The EC2
// visibility rule (access.go) is: an account's own resources are its to
// use; another account's resource does not exist as far as the caller can
// tell (NotFound), unless the owner shared it (only AMIs can be shared),
// in which case the caller may use it but not change it
// (UnauthorizedOperation).
//
// State lives in a hypervisor/store.Store under the kinds "account" and
// "account-token". A Service may be used from any goroutine: every method
// is one store transaction.
package accounts

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"time"

	"gureum/api"
	"gureum/hypervisor/store"
)

// Store kinds.
const (
	kindAccount = "account"
	kindToken   = "account-token"
)

// AdminName is the name of the account Init creates.
const AdminName = "admin"

// Account is an account's record.
type Account struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Admin      bool      `json:"admin,omitempty"`
	CreateTime time.Time `json:"create_time"`
}

// API is the account as the REST API shows it.
func (a Account) API() api.Account {
	return api.Account{AccountID: a.ID, Name: a.Name, Admin: a.Admin, CreateTime: a.CreateTime}
}

// Options configure a Service.
type Options struct {
	// Now is the clock for creation times; nil means time.Now.
	Now func() time.Time
	// AdminID is the id Init gives the admin account, for a daemon whose
	// records already name its admin by a fixed id; "" means a random id.
	// It must be 12 digits.
	AdminID string
	// BeforeDelete is asked before an account is deleted, inside no
	// transaction of this package. The daemon returns a DeleteConflict
	// error while the account still owns instances, volumes, snapshots or
	// images, so that no resource is left without an owner. Nil allows
	// every deletion.
	BeforeDelete func(accountID string) error
}

// Service manages accounts and tokens in a store.
type Service struct {
	st           store.Store
	now          func() time.Time
	beforeDelete func(string) error
	adminID      string
}

// New returns a Service over st. It does not touch the store; call Init
// once at daemon start.
func New(st store.Store, opts Options) *Service {
	s := &Service{st: st, now: opts.Now, beforeDelete: opts.BeforeDelete, adminID: opts.AdminID}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Init makes the admin account and its first token if the store has no
// admin yet, and returns the admin. The token's secret is returned only
// when it was just made (the daemon prints it or writes it to a file
// readable by root alone); on every later start secret is "". Init is
// idempotent and safe to run at each start.
func (s *Service) Init() (admin Account, secret string, err error) {
	err = s.st.Update(func(tx store.Tx) error {
		all, err := listAccounts(tx)
		if err != nil {
			return err
		}
		for _, a := range all {
			if a.Admin {
				admin = a
				return nil
			}
		}
		admin, err = s.createAccount(tx, AdminName, s.adminID, true)
		if err != nil {
			return err
		}
		tok, err := s.createToken(tx, admin.ID, "made at init")
		secret = tok.Secret
		return err
	})
	if err != nil {
		return Account{}, "", fmt.Errorf("init accounts: %w", err)
	}
	return admin, secret, nil
}

// Admin returns the admin account. Requests over the daemon's unix socket
// without a token act as it: the socket's file mode already limits them
// to root and the gureum group.
func (s *Service) Admin() (Account, error) {
	var admin Account
	err := s.st.View(func(tx store.Tx) error {
		all, err := listAccounts(tx)
		if err != nil {
			return err
		}
		for _, a := range all {
			if a.Admin {
				admin = a
				return nil
			}
		}
		return errors.New("no admin account: Init was not run")
	})
	return admin, err
}

// Create makes an account and its first token; only the admin may. The
// token's secret is in the returned APIToken, and nowhere else after.
func (s *Service) Create(callerID, name string) (Account, api.APIToken, error) {
	if err := validName(name); err != nil {
		return Account{}, api.APIToken{}, err
	}
	var (
		acct Account
		tok  api.APIToken
	)
	err := s.st.Update(func(tx store.Tx) error {
		if err := requireAdmin(tx, callerID); err != nil {
			return err
		}
		var err error
		if acct, err = s.createAccount(tx, name, "", false); err != nil {
			return err
		}
		tok, err = s.createToken(tx, acct.ID, "made with the account")
		return err
	})
	if err != nil {
		return Account{}, api.APIToken{}, fmt.Errorf("create account %s: %w", name, err)
	}
	return acct, tok, nil
}

// Get returns one account. The admin sees every account, others only
// their own: any other id is NoSuchEntity, whether it exists or not.
func (s *Service) Get(callerID, accountID string) (Account, error) {
	var a Account
	err := s.st.View(func(tx store.Tx) error {
		var err error
		a, err = visibleAccount(tx, callerID, accountID)
		return err
	})
	return a, err
}

// List returns the accounts the caller sees, by id: all of them for the
// admin, its own for anyone else.
func (s *Service) List(callerID string) ([]Account, error) {
	var out []Account
	err := s.st.View(func(tx store.Tx) error {
		caller, err := getAccount(tx, callerID)
		if err != nil {
			return err
		}
		if !caller.Admin {
			out = []Account{caller}
			return nil
		}
		out, err = listAccounts(tx)
		return err
	})
	return out, err
}

// Exists reports whether an account has this id. AMI launch permissions
// use it to refuse grants to accounts that do not exist.
func (s *Service) Exists(accountID string) (bool, error) {
	var ok bool
	err := s.st.View(func(tx store.Tx) error {
		_, err := getAccount(tx, accountID)
		if api.CodeOf(err) == api.CodeNoSuchEntity {
			return nil
		}
		ok = err == nil
		return err
	})
	return ok, err
}

// Delete removes an account and all its tokens; only the admin may, and
// the admin account itself cannot be deleted. Options.BeforeDelete is
// asked first.
func (s *Service) Delete(callerID, accountID string) error {
	err := s.st.View(func(tx store.Tx) error {
		if err := requireAdmin(tx, callerID); err != nil {
			return err
		}
		a, err := getAccount(tx, accountID)
		if err != nil {
			return err
		}
		if a.Admin {
			return api.Errorf(api.CodeDeleteConflict, "The admin account cannot be deleted.")
		}
		return nil
	})
	if err == nil && s.beforeDelete != nil {
		err = s.beforeDelete(accountID)
	}
	if err == nil {
		err = s.st.Update(func(tx store.Tx) error {
			toks, err := tx.List(kindToken)
			if err != nil {
				return err
			}
			for _, e := range toks {
				var t tokenRecord
				if err := store.GetJSON(tx, kindToken, e.Key, &t); err != nil {
					return err
				}
				if t.AccountID == accountID {
					if err := tx.Delete(kindToken, e.Key); err != nil {
						return err
					}
				}
			}
			return tx.Delete(kindAccount, accountID)
		})
	}
	if err != nil {
		return fmt.Errorf("delete account %s: %w", accountID, err)
	}
	return nil
}

// createAccount stores a new account with id (a fresh one if "") and a
// name no other account has. It runs inside the caller's Update, which
// makes the checks and the write one step.
func (s *Service) createAccount(tx store.Tx, name, id string, admin bool) (Account, error) {
	all, err := listAccounts(tx)
	if err != nil {
		return Account{}, err
	}
	for _, a := range all {
		if a.Name == name {
			return Account{}, api.Errorf(api.CodeEntityAlreadyExists, "An account named '%s' already exists.", name)
		}
	}
	if id != "" {
		if !ValidID(id) {
			return Account{}, fmt.Errorf("account id %q is not 12 digits", id)
		}
		if _, err := tx.Get(kindAccount, id); err == nil {
			return Account{}, fmt.Errorf("account id %s is taken", id)
		}
	}
	for id == "" {
		candidate := newAccountID()
		if _, err := tx.Get(kindAccount, candidate); errors.Is(err, store.ErrNotFound) {
			id = candidate
		} else if err != nil {
			return Account{}, err
		}
	}
	a := Account{ID: id, Name: name, Admin: admin, CreateTime: s.now().UTC()}
	return a, store.PutJSON(tx, kindAccount, id, a)
}

func getAccount(tx store.Tx, id string) (Account, error) {
	var a Account
	if !ValidID(id) {
		return a, api.Errorf(api.CodeNoSuchEntity, "The account '%s' does not exist.", id)
	}
	err := store.GetJSON(tx, kindAccount, id, &a)
	if errors.Is(err, store.ErrNotFound) {
		return a, api.Errorf(api.CodeNoSuchEntity, "The account '%s' does not exist.", id)
	}
	return a, err
}

func listAccounts(tx store.Tx) ([]Account, error) {
	entries, err := tx.List(kindAccount)
	if err != nil {
		return nil, err
	}
	out := make([]Account, 0, len(entries))
	for _, e := range entries {
		var a Account
		if err := store.GetJSON(tx, kindAccount, e.Key, &a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// visibleAccount applies the account rule: the admin sees all, others
// themselves only; anything else is NoSuchEntity.
func visibleAccount(tx store.Tx, callerID, accountID string) (Account, error) {
	caller, err := getAccount(tx, callerID)
	if err != nil {
		return Account{}, err
	}
	if !caller.Admin && callerID != accountID {
		return Account{}, api.Errorf(api.CodeNoSuchEntity, "The account '%s' does not exist.", accountID)
	}
	return getAccount(tx, accountID)
}

func requireAdmin(tx store.Tx, callerID string) error {
	caller, err := getAccount(tx, callerID)
	if err != nil {
		return err
	}
	if !caller.Admin {
		return api.Errorf(api.CodeUnauthorizedOperation, "Only the admin account may manage accounts.")
	}
	return nil
}

// IDDigits is the length of an account id, as in AWS.
const IDDigits = 12

// ValidID reports whether s has the shape of an account id: 12 decimal
// digits.
func ValidID(s string) bool {
	if len(s) != IDDigits {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func newAccountID() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1e12))
	if err != nil {
		// crypto/rand does not fail on Linux once the system has booted.
		panic(fmt.Sprintf("accounts: random source failed: %v", err))
	}
	return fmt.Sprintf("%012d", n)
}

// validName checks an account name with IAM's rule for user names: 1–64
// characters from letters, digits and + = , . @ _ -.
func validName(name string) error {
	bad := len(name) == 0 || len(name) > 64
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		switch c {
		case '+', '=', ',', '.', '@', '_', '-':
			ok = true
		}
		bad = bad || !ok
	}
	if bad {
		return api.Errorf(api.CodeInvalidParameterValue,
			"Invalid account name '%s': use 1 to 64 letters, digits and + = , . @ _ -.", name)
	}
	return nil
}
