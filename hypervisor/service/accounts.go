package service

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gureum/api"
	"gureum/hypervisor/accounts"
	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
)

// adminTokenFile is where the admin's first API token is written, once,
// readable by root alone.
const adminTokenFile = "admin.token"

// openAccounts makes the account registry over the service's store and
// runs its Init: the first start creates the admin account (with the
// fixed id AdminAccount, which every record made through the unix socket
// names as owner) and its first token, written to DATA/admin.token with
// mode 0600. Later starts find the admin and write nothing.
func (s *Service) openAccounts() error {
	s.accounts = accounts.New(s.store, accounts.Options{
		AdminID: AdminAccount, Now: s.now, BeforeDelete: s.accountInUse,
	})
	admin, secret, err := s.accounts.Init()
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if secret == "" {
		return nil
	}
	path := s.AdminTokenFile()
	if err := writePrivateFile(path, secret+"\n"); err != nil {
		// The admin still reaches the daemon on its unix socket without a
		// token, and can make another token there.
		s.log.Warn("cannot write the admin token; create one with `gureum account token create`", "file", path, "err", err)
		return nil
	}
	s.log.Info("admin account created; its API token is in a root-only file", "account", admin.ID, "file", path)
	return nil
}

// AdminTokenFile is the file holding the admin's first API token (it
// exists only if the first start could write it).
func (s *Service) AdminTokenFile() string {
	return filepath.Join(s.cfg.DataDir, adminTokenFile)
}

// writePrivateFile writes data to a new file of mode 0600, through a
// temporary file renamed into place, so the file is never seen half
// written or with a wider mode.
func writePrivateFile(path, data string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// Accounts is the account registry: the REST server authenticates tokens
// and serves the account routes with it. Safe for use from any goroutine.
func (s *Service) Accounts() *accounts.Service { return s.accounts }

// Authenticate returns the caller a bearer token acts for, or AuthFailure.
func (s *Service) Authenticate(token string) (Caller, error) {
	a, err := s.accounts.Authenticate(token)
	if err != nil {
		return Caller{}, err
	}
	return Caller{AccountID: a.ID}, nil
}

// accountInUse is asked before an account is deleted: an account that
// still owns instances (other than terminated ones), volumes, snapshots or
// images cannot go, or they would be left without an owner.
func (s *Service) accountInUse(accountID string) error {
	var held []string
	count := func(n int, what string) {
		if n > 0 {
			held = append(held, fmt.Sprintf("%d %s", n, what))
		}
	}
	err := s.store.View(func(tx store.Tx) error {
		all, err := lifecycle.List(tx)
		if err != nil {
			return err
		}
		n := 0
		for _, st := range all {
			if st.State == lifecycle.Terminated {
				continue
			}
			if r, err := getInstance(tx, st.ID); err == nil && r.Owner == accountID {
				n++
			}
		}
		count(n, "instance(s)")
		for _, kind := range []string{kindVolumeOwner, kindSnapshotOwner} {
			entries, err := tx.List(kind)
			if err != nil {
				return err
			}
			n := 0
			for _, e := range entries {
				var o struct {
					Owner string `json:"owner"`
				}
				if store.GetJSON(tx, kind, e.Key, &o) == nil && o.Owner == accountID {
					n++
				}
			}
			count(n, map[string]string{kindVolumeOwner: "volume(s)", kindSnapshotOwner: "snapshot(s)"}[kind])
		}
		return nil
	})
	if err != nil {
		return err
	}
	ims, err := s.images.OwnedBy(accountID)
	if err != nil {
		return err
	}
	count(len(ims), "image(s)")
	if len(held) > 0 {
		return api.Errorf(api.CodeDeleteConflict, "The account %s still owns %s; delete them first.", accountID, strings.Join(held, ", "))
	}
	return nil
}
