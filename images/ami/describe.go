package ami

import (
	"fmt"
	"path"
	"slices"

	"gureum/api"
	"gureum/hypervisor/accounts"
	"gureum/hypervisor/store"
)

// Get returns an image the caller may see.
func (r *Registry) Get(callerID, id string) (Image, error) {
	var im Image
	err := r.st.View(func(tx store.Tx) error {
		var err error
		im, err = visibleImage(tx, callerID, id)
		return err
	})
	return im, err
}

// Launchable returns the image if callerID may launch instances from it
// now: it must be visible to the caller (own, shared or public) and
// available. The instance service calls it first in run-instances.
func (r *Registry) Launchable(callerID, id string) (Image, error) {
	im, err := r.Get(callerID, id)
	if err != nil {
		return Image{}, err
	}
	if im.State != api.ImageStateAvailable {
		return Image{}, api.Errorf(api.CodeInvalidAMIIDUnavailable, "The image '%s' is %s, not available.", id, im.State)
	}
	return im, nil
}

// Filter selects images in Describe, as EC2's DescribeImages does. Empty
// fields select everything; within a list any value matches; all the
// fields given must match. Only images the caller may see are ever
// returned.
type Filter struct {
	// ImageIDs asks for these images; a malformed id is
	// InvalidAMIID.Malformed and one the caller cannot see
	// InvalidAMIID.NotFound, as EC2 answers.
	ImageIDs []string
	// Owners are account ids, "self" (the caller), or the alias "gureum"
	// (the images the daemon registers itself).
	Owners []string
	// ExecutableBy are account ids, "self", or "all": images whose launch
	// permissions name that account, or that are public ("all").
	ExecutableBy []string
	// Name is matched with shell wildcards (* and ?), as EC2's name filter.
	Name string
	// IsPublic, when set, keeps only public (true) or non-public images.
	IsPublic *bool
}

// Describe lists the images the caller may see that match f, by id.
func (r *Registry) Describe(callerID string, f Filter) ([]Image, error) {
	for _, id := range f.ImageIDs {
		if err := checkImageID(id); err != nil {
			return nil, err
		}
	}
	if f.Name != "" {
		if _, err := path.Match(f.Name, ""); err != nil {
			return nil, api.Errorf(api.CodeInvalidParameterValue, "Invalid name pattern '%s'.", f.Name)
		}
	}
	var out []Image
	err := r.st.View(func(tx store.Tx) error {
		if len(f.ImageIDs) > 0 {
			for _, id := range f.ImageIDs {
				if _, err := visibleImage(tx, callerID, id); err != nil {
					return err
				}
			}
		}
		var err error
		out, err = listTx(tx, func(im Image) bool {
			return accounts.RelationOf(callerID, im.OwnerID, im.SharedWithAccount(callerID)) != accounts.Hidden &&
				f.matches(callerID, im)
		})
		return err
	})
	return out, err
}

func (f Filter) matches(callerID string, im Image) bool {
	self := func(s string) string {
		if s == "self" {
			return callerID
		}
		return s
	}
	if len(f.ImageIDs) > 0 && !slices.Contains(f.ImageIDs, im.ID) {
		return false
	}
	if len(f.Owners) > 0 && !slices.ContainsFunc(f.Owners, func(o string) bool {
		return self(o) == im.OwnerID || o != "" && o == im.OwnerAlias
	}) {
		return false
	}
	if len(f.ExecutableBy) > 0 && !slices.ContainsFunc(f.ExecutableBy, func(e string) bool {
		if e == api.LaunchPermissionGroupAll {
			return im.Public
		}
		return slices.Contains(im.SharedWith, self(e))
	}) {
		return false
	}
	if f.Name != "" {
		if ok, _ := path.Match(f.Name, im.Name); !ok {
			return false
		}
	}
	return f.IsPublic == nil || *f.IsPublic == im.Public
}

// LaunchPermissions returns an image's launch permissions; only its owner
// may read them.
func (r *Registry) LaunchPermissions(callerID, id string) (api.LaunchPermissions, error) {
	var im Image
	err := r.st.View(func(tx store.Tx) error {
		var err error
		im, err = ownedImage(tx, callerID, id)
		return err
	})
	if err != nil {
		return api.LaunchPermissions{}, err
	}
	out := api.LaunchPermissions{ImageID: im.ID, LaunchPermissions: []api.LaunchPermission{}}
	if im.Public {
		out.LaunchPermissions = append(out.LaunchPermissions, api.LaunchPermission{Group: api.LaunchPermissionGroupAll})
	}
	for _, a := range im.SharedWith {
		out.LaunchPermissions = append(out.LaunchPermissions, api.LaunchPermission{UserID: a})
	}
	return out, nil
}

// ModifyLaunchPermission adds and removes launch permissions; only the
// owner may. Every entry is checked before anything changes: a bad one
// fails the whole request and changes nothing. Granting the owner itself
// is a no-op, as is removing a grant that does not exist.
func (r *Registry) ModifyLaunchPermission(callerID, id string, req api.ModifyLaunchPermissionRequest) error {
	if len(req.Add) == 0 && len(req.Remove) == 0 {
		return api.Errorf(api.CodeMissingParameter, "The request must add or remove a launch permission.")
	}
	for _, p := range slices.Concat(req.Add, req.Remove) {
		if err := checkPermission(p); err != nil {
			return err
		}
	}
	for _, p := range req.Add {
		if p.UserID == "" || r.accounts == nil {
			continue
		}
		ok, err := r.accounts.Exists(p.UserID)
		if err != nil {
			return fmt.Errorf("modify launch permission of %s: %w", id, err)
		}
		if !ok {
			return api.Errorf(api.CodeInvalidAMIAttributeItemValue, "The account '%s' does not exist.", p.UserID)
		}
	}
	return r.st.Update(func(tx store.Tx) error {
		im, err := ownedImage(tx, callerID, id)
		if err != nil {
			return err
		}
		for _, p := range req.Add {
			switch {
			case p.Group != "":
				im.Public = true
			case p.UserID != im.OwnerID && !slices.Contains(im.SharedWith, p.UserID):
				im.SharedWith = append(im.SharedWith, p.UserID)
			}
		}
		for _, p := range req.Remove {
			if p.Group != "" {
				im.Public = false
			} else {
				im.SharedWith = slices.DeleteFunc(im.SharedWith, func(a string) bool { return a == p.UserID })
			}
		}
		slices.Sort(im.SharedWith)
		if len(im.SharedWith) == 0 {
			im.SharedWith = nil
		}
		return store.PutJSON(tx, kindImage, im.ID, im)
	})
}

func checkPermission(p api.LaunchPermission) error {
	switch {
	case p.Group != "" && p.UserID != "":
		return api.Errorf(api.CodeInvalidParameterValue, "A launch permission names a user or a group, not both.")
	case p.Group != "":
		if p.Group != api.LaunchPermissionGroupAll {
			return api.Errorf(api.CodeInvalidAMIAttributeItemValue, "Invalid launch permission group '%s': the only group is 'all'.", p.Group)
		}
	case !accounts.ValidID(p.UserID):
		return api.Errorf(api.CodeInvalidUserIDMalformed, "User ID '%s' must be a 12-digit account id.", p.UserID)
	}
	return nil
}

// Deregister removes an image; only its owner may. Its root snapshot
// stays (the owner deletes it separately, as in EC2), and instances
// launched from it run on, since they carry their boot recipe.
func (r *Registry) Deregister(callerID, id string) error {
	return r.st.Update(func(tx store.Tx) error {
		im, err := ownedImage(tx, callerID, id)
		if err != nil {
			return err
		}
		if im.State == api.ImageStatePending {
			return api.Errorf(api.CodeInvalidParameterValue, "The image '%s' is still pending; deregister it once it is available or failed.", id)
		}
		return tx.Delete(kindImage, id)
	})
}

// OwnedBy lists the images an account owns, for the daemon's check before
// deleting the account (accounts.Options.BeforeDelete).
func (r *Registry) OwnedBy(accountID string) ([]Image, error) {
	return r.list(func(im Image) bool { return im.OwnerID == accountID })
}

// SnapshotInUse reports the image, if any, whose root is snapshotID. The
// snapshot service refuses to delete such a snapshot (EC2's
// InvalidSnapshot.InUse) while the image is registered.
func (r *Registry) SnapshotInUse(snapshotID string) (string, bool, error) {
	ims, err := r.list(func(im Image) bool { return im.RootSnapshotID == snapshotID })
	if err != nil || len(ims) == 0 {
		return "", false, err
	}
	return ims[0].ID, true, nil
}
