package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"gureum/api"
)

// ImageFilter selects AMIs in DescribeImages, with EC2's filter names.
// Empty fields select everything; only images the caller may see (its
// own, shared with it, public) are ever returned.
type ImageFilter struct {
	IDs []string
	// Owners are "self", "gureum" (the daemon's default images) or
	// account ids.
	Owners []string
	// ExecutableBy are "self", "all" (public) or account ids.
	ExecutableBy []string
	// Name is matched with shell wildcards * and ?.
	Name string
	// Public, when set, keeps only public (true) or private images.
	Public *bool
}

func (f ImageFilter) query() string {
	q := url.Values{}
	for _, id := range f.IDs {
		q.Add("image-id", id)
	}
	for _, o := range f.Owners {
		q.Add("owner", o)
	}
	for _, e := range f.ExecutableBy {
		q.Add("executable-by", e)
	}
	if f.Name != "" {
		q.Set("name", f.Name)
	}
	if f.Public != nil {
		q.Set("is-public", strconv.FormatBool(*f.Public))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// DescribeImages lists the AMIs matching f.
func (c *Client) DescribeImages(ctx context.Context, f ImageFilter) ([]api.Image, error) {
	var out api.ImagesResponse
	err := c.Do(ctx, http.MethodGet, "/v1/images"+f.query(), nil, &out)
	return out.Images, err
}

// Image describes one AMI.
func (c *Client) Image(ctx context.Context, id string) (api.Image, error) {
	var out api.Image
	err := c.Do(ctx, http.MethodGet, "/v1/images/"+url.PathEscape(id), nil, &out)
	return out, err
}

// RegisterImage registers an AMI from files on the daemon's host and a
// snapshot of the caller's; it returns the new image's id.
func (c *Client) RegisterImage(ctx context.Context, req api.RegisterImageRequest) (string, error) {
	var out api.ImageIDResponse
	err := c.Do(ctx, http.MethodPost, "/v1/images", req, &out)
	return out.ImageID, err
}

// DeregisterImage removes an AMI of the caller's.
func (c *Client) DeregisterImage(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/images/"+url.PathEscape(id), nil, nil)
}

// CreateImage makes an AMI from an instance's root volume; it returns the
// new image's id.
func (c *Client) CreateImage(ctx context.Context, instanceID string, req api.CreateImageRequest) (string, error) {
	var out api.ImageIDResponse
	err := c.Do(ctx, http.MethodPost, "/v1/instances/"+url.PathEscape(instanceID)+"/image", req, &out)
	return out.ImageID, err
}

// ImageLaunchPermissions returns who may launch an AMI (owner only).
func (c *Client) ImageLaunchPermissions(ctx context.Context, id string) (api.LaunchPermissions, error) {
	var out api.LaunchPermissions
	err := c.Do(ctx, http.MethodGet, "/v1/images/"+url.PathEscape(id)+"/launch-permission", nil, &out)
	return out, err
}

// ModifyImageLaunchPermission adds and removes launch permissions.
func (c *Client) ModifyImageLaunchPermission(ctx context.Context, id string, req api.ModifyLaunchPermissionRequest) error {
	return c.Do(ctx, http.MethodPost, "/v1/images/"+url.PathEscape(id)+"/launch-permission", req, nil)
}
