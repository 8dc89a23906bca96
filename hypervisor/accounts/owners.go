package accounts

import (
	"errors"
	"fmt"

	"gureum/hypervisor/store"
)

// kindOwner maps a resource id (vol-…, snap-…, ami-…, i-…) to the account
// that owns it, for resources whose own records live outside the control
// plane's store: volumes and snapshots are kept by storage/volume, which
// knows nothing of accounts.
const kindOwner = "resource-owner"

// Owners records which account owns each resource, in the control plane's
// store. It is safe for use from any goroutine. Code that writes its own
// records in a transaction uses SetOwnerTx in the same transaction.
type Owners struct {
	st store.Store
}

// NewOwners returns the owner records of st.
func NewOwners(st store.Store) *Owners { return &Owners{st: st} }

// ErrNoOwner is returned for a resource no owner was recorded for.
var ErrNoOwner = errors.New("no owner recorded")

// Owner returns the account that owns resourceID, or an error wrapping
// ErrNoOwner.
func (o *Owners) Owner(resourceID string) (string, error) {
	var owner string
	err := o.st.View(func(tx store.Tx) error {
		var err error
		owner, err = OwnerTx(tx, resourceID)
		return err
	})
	return owner, err
}

// SetOwner records that accountID owns resourceID.
func (o *Owners) SetOwner(resourceID, accountID string) error {
	return o.st.Update(func(tx store.Tx) error { return SetOwnerTx(tx, resourceID, accountID) })
}

// Forget drops the record of a deleted resource.
func (o *Owners) Forget(resourceID string) error {
	return o.st.Update(func(tx store.Tx) error { return tx.Delete(kindOwner, resourceID) })
}

// OwnerTx is Owner inside the caller's transaction.
func OwnerTx(tx store.Tx, resourceID string) (string, error) {
	b, err := tx.Get(kindOwner, resourceID)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%s: %w", resourceID, ErrNoOwner)
	}
	return string(b), err
}

// SetOwnerTx is SetOwner inside the caller's transaction.
func SetOwnerTx(tx store.Tx, resourceID, accountID string) error {
	if !ValidID(accountID) {
		return fmt.Errorf("owner of %s: %q is not an account id", resourceID, accountID)
	}
	return tx.Put(kindOwner, resourceID, []byte(accountID))
}
