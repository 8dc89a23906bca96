package client

import (
	"context"
	"net/http"
	"net/url"

	"gureum/api"
)

// ModifyVolume grows a volume or changes its type, IOPS or throughput; a
// running instance's guest sees the change at once.
func (c *Client) ModifyVolume(ctx context.Context, id string, req api.ModifyVolumeRequest) (api.Volume, error) {
	var out api.Volume
	err := c.Do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(id)+"/modify", req, &out)
	return out, err
}
