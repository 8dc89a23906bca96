package accounts

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"gureum/api"
	"gureum/hypervisor/store"
)

// A token is "gureum_" + token id + "_" + secret: the id (16 hex digits)
// finds the record without searching, the secret (32 random bytes in hex)
// is what proves possession. The record keeps the SHA-256 of the whole
// token, never the token: someone who reads the store (a backup, a
// stolen disk) learns nothing they can present to the daemon. A plain
// hash is enough here, unlike for passwords, because the secret is 256
// random bits and cannot be guessed from its hash.
const (
	tokenPrefix    = "gureum_"
	tokenIDHex     = 16
	tokenSecretHex = 64
)

// tokenRecord is what the store keeps of a token.
type tokenRecord struct {
	ID          string    `json:"id"`
	AccountID   string    `json:"account_id"`
	Description string    `json:"description,omitempty"`
	CreateTime  time.Time `json:"create_time"`
	// SHA256 is the hex SHA-256 of the whole token string.
	SHA256 string `json:"sha256"`
}

func (t tokenRecord) api() api.APIToken {
	return api.APIToken{TokenID: t.ID, AccountID: t.AccountID, Description: t.Description, CreateTime: t.CreateTime}
}

// authFailure is the one answer to every bad token, so that the answer
// does not tell a malformed token from an unknown or revoked one.
func authFailure() error {
	return api.Errorf(api.CodeAuthFailure, "The API token is not valid.")
}

// Authenticate returns the account a token belongs to, or an AuthFailure
// error. The secret is compared in constant time, and a token with an
// unknown id costs the same hash and comparison, so the time taken says
// nothing about how close a guess was.
func (s *Service) Authenticate(token string) (Account, error) {
	sum := sha256.Sum256([]byte(token))
	id, ok := parseToken(token)
	var acct Account
	err := s.st.View(func(tx store.Tx) error {
		var t tokenRecord
		stored := make([]byte, sha256.Size) // all zero: matches no real token
		if ok {
			err := store.GetJSON(tx, kindToken, id, &t)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if err == nil {
				if b, err := hex.DecodeString(t.SHA256); err == nil && len(b) == sha256.Size {
					stored = b
				}
			}
		}
		if subtle.ConstantTimeCompare(sum[:], stored) != 1 || !ok {
			return authFailure()
		}
		a, err := getAccount(tx, t.AccountID)
		if api.CodeOf(err) == api.CodeNoSuchEntity {
			return authFailure()
		}
		acct = a
		return err
	})
	return acct, err
}

// CreateToken makes another token for an account: the admin for any
// account, others for their own. The secret is in the result only.
func (s *Service) CreateToken(callerID, accountID, description string) (api.APIToken, error) {
	if len(description) > 255 {
		return api.APIToken{}, api.Errorf(api.CodeInvalidParameterValue, "The token description is longer than 255 characters.")
	}
	var tok api.APIToken
	err := s.st.Update(func(tx store.Tx) error {
		if _, err := visibleAccount(tx, callerID, accountID); err != nil {
			return err
		}
		var err error
		tok, err = s.createToken(tx, accountID, description)
		return err
	})
	if err != nil {
		return api.APIToken{}, fmt.Errorf("create token for %s: %w", accountID, err)
	}
	return tok, nil
}

// Tokens lists an account's tokens, without secrets.
func (s *Service) Tokens(callerID, accountID string) ([]api.APIToken, error) {
	var out []api.APIToken
	err := s.st.View(func(tx store.Tx) error {
		if _, err := visibleAccount(tx, callerID, accountID); err != nil {
			return err
		}
		entries, err := tx.List(kindToken)
		if err != nil {
			return err
		}
		for _, e := range entries {
			var t tokenRecord
			if err := store.GetJSON(tx, kindToken, e.Key, &t); err != nil {
				return err
			}
			if t.AccountID == accountID {
				out = append(out, t.api())
			}
		}
		return nil
	})
	return out, err
}

// RevokeToken deletes a token: the admin any, others their own. A token
// the caller may not see is NoSuchEntity. Requests already authenticated
// with it finish; later ones fail.
func (s *Service) RevokeToken(callerID, tokenID string) error {
	return s.st.Update(func(tx store.Tx) error {
		notFound := api.Errorf(api.CodeNoSuchEntity, "The token '%s' does not exist.", tokenID)
		if !validTokenID(tokenID) {
			return notFound
		}
		var t tokenRecord
		err := store.GetJSON(tx, kindToken, tokenID, &t)
		if errors.Is(err, store.ErrNotFound) {
			return notFound
		} else if err != nil {
			return err
		}
		if _, err := visibleAccount(tx, callerID, t.AccountID); err != nil {
			return notFound
		}
		return tx.Delete(kindToken, tokenID)
	})
}

// createToken stores a new token of accountID and returns it with its
// secret. Runs inside the caller's Update.
func (s *Service) createToken(tx store.Tx, accountID, description string) (api.APIToken, error) {
	var id string
	for {
		id = randomHex(tokenIDHex / 2)
		if _, err := tx.Get(kindToken, id); errors.Is(err, store.ErrNotFound) {
			break
		} else if err != nil {
			return api.APIToken{}, err
		}
	}
	token := tokenPrefix + id + "_" + randomHex(tokenSecretHex/2)
	sum := sha256.Sum256([]byte(token))
	rec := tokenRecord{ID: id, AccountID: accountID, Description: description,
		CreateTime: s.now().UTC(), SHA256: hex.EncodeToString(sum[:])}
	if err := store.PutJSON(tx, kindToken, id, rec); err != nil {
		return api.APIToken{}, err
	}
	out := rec.api()
	out.Secret = token
	return out, nil
}

// parseToken returns the id part of a well-formed token.
func parseToken(token string) (string, bool) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || !validTokenID(id) || len(secret) != tokenSecretHex || !isHex(secret) {
		return "", false
	}
	return id, true
}

func validTokenID(id string) bool { return len(id) == tokenIDHex && isHex(id) }

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("accounts: random source failed: %v", err))
	}
	return hex.EncodeToString(b)
}

// TokenFromHeader returns the token of an "Authorization: Bearer TOKEN"
// header value, or false when the header is empty or of another scheme.
func TokenFromHeader(authorization string) (string, bool) {
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
