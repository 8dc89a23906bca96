package accounts

import (
	"context"

	"gureum/api"
)

// The EC2 visibility rule, in one place for every kind of resource.
//
// A caller meets a resource in one of three relations: it owns it, the
// owner shared it with the caller (launch permissions of an AMI: named
// accounts or everyone), or neither. EC2 answers the third exactly as if
// the id did not exist, so that ids say nothing about other tenants; and
// it lets a caller use a shared resource without letting it change it.

// Relation is what a caller is to a resource.
type Relation int

// Relations, weakest first.
const (
	// Hidden: another account's resource, not shared with the caller.
	Hidden Relation = iota
	// Shared: another account's resource the caller may use (launch an
	// AMI from) but not modify or delete.
	Shared
	// Owner: the caller's own resource.
	Owner
)

// RelationOf classifies a resource owned by ownerID for callerID; shared
// says whether the owner granted the caller use of it.
func RelationOf(callerID, ownerID string, shared bool) Relation {
	switch {
	case callerID != "" && callerID == ownerID:
		return Owner
	case shared:
		return Shared
	default:
		return Hidden
	}
}

// RequireVisible allows using a resource (describe it, launch from it):
// nil for its owner and for accounts it is shared with, notFound for
// everyone else. notFound is the resource's own NotFound error, e.g.
// api.Errorf(api.CodeInvalidAMIIDNotFound, ...).
func RequireVisible(callerID, ownerID string, shared bool, notFound error) error {
	if RelationOf(callerID, ownerID, shared) == Hidden {
		return notFound
	}
	return nil
}

// RequireOwner allows changing a resource (modify, delete, stop ...): nil
// for the owner; UnauthorizedOperation for an account that can see the
// resource because it is shared with it; notFound for everyone else.
func RequireOwner(callerID, ownerID string, shared bool, notFound error) error {
	switch RelationOf(callerID, ownerID, shared) {
	case Owner:
		return nil
	case Shared:
		return api.Errorf(api.CodeUnauthorizedOperation, "You are not authorized to perform this operation.")
	default:
		return notFound
	}
}

// OwnedBy keeps the items of a listing that callerID owns, in order. owner
// returns an item's owner id. Describe calls of unshareable resources
// (instances, volumes, snapshots) filter their records with it.
func OwnedBy[T any](callerID string, items []T, owner func(T) string) []T {
	out := make([]T, 0, len(items))
	for _, it := range items {
		if callerID != "" && owner(it) == callerID {
			out = append(out, it)
		}
	}
	return out
}

type contextKey struct{}

// NewContext returns ctx carrying the caller's account. The REST server's
// authentication step calls it once per request; handlers read it back
// with FromContext.
func NewContext(ctx context.Context, a Account) context.Context {
	return context.WithValue(ctx, contextKey{}, a)
}

// FromContext returns the account NewContext stored, if any.
func FromContext(ctx context.Context) (Account, bool) {
	a, ok := ctx.Value(contextKey{}).(Account)
	return a, ok
}
