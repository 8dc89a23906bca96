package httpapi

import (
	"net/http"

	"gureum/api"
	"gureum/hypervisor/service"
	"gureum/images/ami"
)

// The AMI routes join the server's table from here.
func init() {
	routes = append(routes, imageRoutes...)
}

var imageRoutes = []Route{
	{"GET", "/v1/images", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		// The filter names are EC2's (image-id, owner, executable-by,
		// name, is-public); ami.FilterFromQuery refuses unknown ones.
		f, err := ami.FilterFromQuery(r.URL.Query())
		if err != nil {
			return nil, err
		}
		out, err := h.svc.DescribeImages(c, f)
		return api.ImagesResponse{Images: out}, err
	}},
	{"POST", "/v1/images", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.RegisterImageRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.RegisterImage(c, req)
	}},
	{"GET", "/v1/images/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return h.svc.Image(c, r.PathValue("id"))
	}},
	{"DELETE", "/v1/images/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return nil, h.svc.DeregisterImage(c, r.PathValue("id"))
	}},
	{"GET", "/v1/images/{id}/launch-permission", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return h.svc.ImageLaunchPermissions(c, r.PathValue("id"))
	}},
	{"POST", "/v1/images/{id}/launch-permission", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.ModifyLaunchPermissionRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return nil, h.svc.ModifyImageLaunchPermission(c, r.PathValue("id"), req)
	}},
	{"POST", "/v1/instances/{id}/image", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.CreateImageRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.CreateImage(c, r.PathValue("id"), req)
	}},
}
