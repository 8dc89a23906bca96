package accounts

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"gureum/api"
	"gureum/hypervisor/store"
)

func newService(t *testing.T, opts Options) (*Service, Account, string) {
	t.Helper()
	s := New(store.NewMemory(), opts)
	admin, secret, err := s.Init()
	if err != nil {
		t.Fatal(err)
	}
	return s, admin, secret
}

func wantCode(t *testing.T, err error, code api.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	if got := api.CodeOf(err); got != code {
		t.Fatalf("error %v has code %s, want %s", err, got, code)
	}
}

func TestInitMakesOneAdminAndIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	s := New(st, Options{})
	admin, secret, err := s.Init()
	if err != nil {
		t.Fatal(err)
	}
	if !admin.Admin || admin.Name != AdminName || !ValidID(admin.ID) || secret == "" {
		t.Fatalf("admin %+v secret %q", admin, secret)
	}
	st.Close()

	// A restart finds the admin and makes no new token.
	st, err = store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s = New(st, Options{})
	again, secret2, err := s.Init()
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != admin.ID || secret2 != "" {
		t.Fatalf("second init: %+v %q", again, secret2)
	}
	if a, err := s.Authenticate(secret); err != nil || a.ID != admin.ID {
		t.Fatalf("first token after restart: %+v %v", a, err)
	}
	if got, err := s.Admin(); err != nil || got.ID != admin.ID {
		t.Fatalf("Admin: %+v %v", got, err)
	}
}

func TestInitWithFixedAdminID(t *testing.T) {
	s, admin, _ := newService(t, Options{AdminID: "000000000001"})
	if admin.ID != "000000000001" || !admin.Admin {
		t.Fatalf("admin %+v", admin)
	}
	bad := New(store.NewMemory(), Options{AdminID: "1"})
	if _, _, err := bad.Init(); err == nil {
		t.Fatal("Init took a malformed admin id")
	}
	if a, _, err := s.Create(admin.ID, "alice"); err != nil || a.ID == admin.ID {
		t.Fatalf("alice %+v %v", a, err)
	}
}

func TestCreateListDeleteAccounts(t *testing.T) {
	var askedDelete []string
	s, admin, _ := newService(t, Options{BeforeDelete: func(id string) error {
		askedDelete = append(askedDelete, id)
		return nil
	}})
	alice, aliceTok, err := s.Create(admin.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if alice.Admin || aliceTok.Secret == "" || aliceTok.AccountID != alice.ID {
		t.Fatalf("alice %+v token %+v", alice, aliceTok)
	}
	bob, _, err := s.Create(admin.ID, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if bob.ID == alice.ID {
		t.Fatal("two accounts with one id")
	}

	_, _, err = s.Create(admin.ID, "alice")
	wantCode(t, err, api.CodeEntityAlreadyExists)
	_, _, err = s.Create(admin.ID, "no spaces")
	wantCode(t, err, api.CodeInvalidParameterValue)
	_, _, err = s.Create(admin.ID, "")
	wantCode(t, err, api.CodeInvalidParameterValue)
	_, _, err = s.Create(alice.ID, "carol")
	wantCode(t, err, api.CodeUnauthorizedOperation)

	all, err := s.List(admin.ID)
	if err != nil || len(all) != 3 {
		t.Fatalf("admin lists %d accounts (%v)", len(all), err)
	}
	mine, err := s.List(alice.ID)
	if err != nil || len(mine) != 1 || mine[0].ID != alice.ID {
		t.Fatalf("alice lists %+v (%v)", mine, err)
	}
	if _, err := s.Get(alice.ID, bob.ID); api.CodeOf(err) != api.CodeNoSuchEntity {
		t.Fatalf("alice gets bob: %v", err)
	}
	if a, err := s.Get(admin.ID, bob.ID); err != nil || a.Name != "bob" {
		t.Fatalf("admin gets bob: %+v %v", a, err)
	}

	wantCode(t, s.Delete(alice.ID, bob.ID), api.CodeUnauthorizedOperation)
	wantCode(t, s.Delete(admin.ID, admin.ID), api.CodeDeleteConflict)
	wantCode(t, s.Delete(admin.ID, "000000000000"), api.CodeNoSuchEntity)
	if err := s.Delete(admin.ID, alice.ID); err != nil {
		t.Fatal(err)
	}
	if len(askedDelete) != 1 || askedDelete[0] != alice.ID {
		t.Fatalf("BeforeDelete asked for %v", askedDelete)
	}
	if _, err := s.Authenticate(aliceTok.Secret); api.CodeOf(err) != api.CodeAuthFailure {
		t.Fatalf("token of a deleted account: %v", err)
	}
	if ok, err := s.Exists(alice.ID); ok || err != nil {
		t.Fatalf("Exists(deleted) = %v, %v", ok, err)
	}
	if ok, err := s.Exists(bob.ID); !ok || err != nil {
		t.Fatalf("Exists(bob) = %v, %v", ok, err)
	}
}

func TestBeforeDeleteCanRefuse(t *testing.T) {
	s, admin, _ := newService(t, Options{BeforeDelete: func(id string) error {
		return api.Errorf(api.CodeDeleteConflict, "account %s owns 1 instance", id)
	}})
	a, tok, err := s.Create(admin.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.Delete(admin.ID, a.ID), api.CodeDeleteConflict)
	if _, err := s.Authenticate(tok.Secret); err != nil {
		t.Fatalf("a refused delete removed the token: %v", err)
	}
}

func TestTokens(t *testing.T) {
	s, admin, adminSecret := newService(t, Options{})
	alice, first, err := s.Create(admin.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := s.Create(admin.ID, "bob")
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.CreateToken(alice.ID, alice.ID, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if second.Secret == first.Secret || !strings.HasPrefix(second.Secret, tokenPrefix) {
		t.Fatalf("tokens %q %q", first.Secret, second.Secret)
	}
	for _, sec := range []string{first.Secret, second.Secret} {
		if a, err := s.Authenticate(sec); err != nil || a.ID != alice.ID {
			t.Fatalf("Authenticate: %+v %v", a, err)
		}
	}
	if a, err := s.Authenticate(adminSecret); err != nil || !a.Admin {
		t.Fatalf("admin token: %+v %v", a, err)
	}

	// Bad tokens of every kind get the same code.
	bad := []string{"", "gureum_", first.Secret + "0", first.Secret[:len(first.Secret)-1] + "x",
		strings.Replace(first.Secret, first.TokenID, "0000000000000000", 1),
		first.Secret[:len(first.Secret)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", first.Secret[len(first.Secret)-1])+1)%16])}
	for _, b := range bad {
		if _, err := s.Authenticate(b); api.CodeOf(err) != api.CodeAuthFailure {
			t.Errorf("Authenticate(%q): %v", b, err)
		}
	}

	// The store holds no secret.
	var leaked bool
	s.st.View(func(tx store.Tx) error {
		entries, _ := tx.List(kindToken)
		for _, e := range entries {
			leaked = leaked || strings.Contains(string(e.Value), first.Secret[len(tokenPrefix)+tokenIDHex+1:])
		}
		return nil
	})
	if leaked {
		t.Fatal("a token secret is stored in clear")
	}

	list, err := s.Tokens(alice.ID, alice.ID)
	if err != nil || len(list) != 2 {
		t.Fatalf("alice's tokens: %+v %v", list, err)
	}
	for _, tk := range list {
		if tk.Secret != "" {
			t.Fatal("a listing shows a secret")
		}
	}
	if _, err := s.Tokens(bob.ID, alice.ID); api.CodeOf(err) != api.CodeNoSuchEntity {
		t.Fatalf("bob lists alice's tokens: %v", err)
	}
	if _, err := s.CreateToken(bob.ID, alice.ID, ""); api.CodeOf(err) != api.CodeNoSuchEntity {
		t.Fatalf("bob makes a token for alice: %v", err)
	}
	wantCode(t, s.RevokeToken(bob.ID, first.TokenID), api.CodeNoSuchEntity)
	wantCode(t, s.RevokeToken(alice.ID, "nonsense"), api.CodeNoSuchEntity)
	if err := s.RevokeToken(alice.ID, first.TokenID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(first.Secret); api.CodeOf(err) != api.CodeAuthFailure {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := s.Authenticate(second.Secret); err != nil {
		t.Fatalf("the other token: %v", err)
	}
	if err := s.RevokeToken(admin.ID, second.TokenID); err != nil {
		t.Fatalf("admin revokes alice's token: %v", err)
	}
}

func TestVisibilityRule(t *testing.T) {
	notFound := api.Errorf(api.CodeInvalidAMIIDNotFound, "The image id '[ami-x]' does not exist")
	owner, other := "111111111111", "222222222222"
	cases := []struct {
		caller       string
		shared       bool
		rel          Relation
		visible, own api.Code // "" for allowed
	}{
		{owner, false, Owner, "", ""},
		{owner, true, Owner, "", ""},
		{other, true, Shared, "", api.CodeUnauthorizedOperation},
		{other, false, Hidden, api.CodeInvalidAMIIDNotFound, api.CodeInvalidAMIIDNotFound},
		{"", false, Hidden, api.CodeInvalidAMIIDNotFound, api.CodeInvalidAMIIDNotFound},
	}
	for _, c := range cases {
		if r := RelationOf(c.caller, owner, c.shared); r != c.rel {
			t.Errorf("RelationOf(%q, shared=%v) = %d, want %d", c.caller, c.shared, r, c.rel)
		}
		check := func(what string, err error, want api.Code) {
			if want == "" && err != nil || want != "" && api.CodeOf(err) != want {
				t.Errorf("%s(%q, shared=%v) = %v, want %q", what, c.caller, c.shared, err, want)
			}
		}
		check("RequireVisible", RequireVisible(c.caller, owner, c.shared, notFound), c.visible)
		check("RequireOwner", RequireOwner(c.caller, owner, c.shared, notFound), c.own)
	}
	if !errors.Is(RequireOwner(other, owner, false, notFound), notFound) {
		t.Error("the hidden answer must be the caller's NotFound error itself")
	}

	type rec struct{ id, owner string }
	got := OwnedBy(owner, []rec{{"a", owner}, {"b", other}, {"c", owner}}, func(r rec) string { return r.owner })
	if len(got) != 2 || got[0].id != "a" || got[1].id != "c" {
		t.Errorf("OwnedBy: %+v", got)
	}
	if got := OwnedBy("", []rec{{"a", ""}}, func(r rec) string { return r.owner }); len(got) != 0 {
		t.Errorf("an empty caller owns %+v", got)
	}
}

func TestContextCarriesAccount(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("empty context has an account")
	}
	a := Account{ID: "123456789012", Name: "alice"}
	got, ok := FromContext(NewContext(context.Background(), a))
	if !ok || got != a {
		t.Fatalf("FromContext: %+v %v", got, ok)
	}
}

func TestOwners(t *testing.T) {
	o := NewOwners(store.NewMemory())
	if _, err := o.Owner("vol-0123456789abcdef0"); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("unrecorded owner: %v", err)
	}
	if err := o.SetOwner("vol-0123456789abcdef0", "not-an-id"); err == nil {
		t.Fatal("SetOwner took a malformed account id")
	}
	if err := o.SetOwner("vol-0123456789abcdef0", "123456789012"); err != nil {
		t.Fatal(err)
	}
	if got, err := o.Owner("vol-0123456789abcdef0"); err != nil || got != "123456789012" {
		t.Fatalf("Owner: %q %v", got, err)
	}
	if err := o.Forget("vol-0123456789abcdef0"); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Owner("vol-0123456789abcdef0"); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("forgotten owner: %v", err)
	}
}

func TestTokenFromHeader(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "": "", "Bearer ": ""} {
		got, ok := TokenFromHeader(h)
		if got != want || ok != (want != "") {
			t.Errorf("TokenFromHeader(%q) = %q, %v", h, got, ok)
		}
	}
}
