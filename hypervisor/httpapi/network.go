package httpapi

import (
	"net/http"

	"gureum/api"
	"gureum/hypervisor/service"
)

// The network routes (VPCs, subnets, zones, security groups) join the
// server's table from here.
func init() {
	routes = append(routes, networkRoutes...)
}

var networkRoutes = []Route{
	{"GET", "/v1/availability-zones", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return api.DescribeAvailabilityZonesResponse{AvailabilityZones: h.svc.Zones()}, nil
	}},
	{"GET", "/v1/vpcs", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		out, err := h.svc.Vpcs(c)
		return api.DescribeVpcsResponse{Vpcs: out}, err
	}},
	{"POST", "/v1/vpcs", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.CreateVpcRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.CreateVpc(c, req)
	}},
	{"GET", "/v1/vpcs/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return h.svc.Vpc(c, r.PathValue("id"))
	}},
	{"DELETE", "/v1/vpcs/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return nil, h.svc.DeleteVpc(c, r.PathValue("id"))
	}},
	{"GET", "/v1/subnets", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		out, err := h.svc.Subnets(c, r.URL.Query().Get("vpc_id"))
		return api.DescribeSubnetsResponse{Subnets: out}, err
	}},
	{"POST", "/v1/subnets", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.CreateSubnetRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.CreateSubnet(c, req)
	}},
	{"GET", "/v1/subnets/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return h.svc.Subnet(c, r.PathValue("id"))
	}},
	{"DELETE", "/v1/subnets/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return nil, h.svc.DeleteSubnet(c, r.PathValue("id"))
	}},
	{"GET", "/v1/security-groups", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		out, err := h.svc.SecurityGroups(c, r.URL.Query().Get("vpc_id"))
		return api.DescribeSecurityGroupsResponse{SecurityGroups: out}, err
	}},
	{"POST", "/v1/security-groups", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.CreateSecurityGroupRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.CreateSecurityGroup(c, req)
	}},
	{"GET", "/v1/security-groups/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return h.svc.SecurityGroup(c, r.PathValue("id"))
	}},
	{"DELETE", "/v1/security-groups/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return nil, h.svc.DeleteSecurityGroup(c, r.PathValue("id"))
	}},
	{"POST", "/v1/security-groups/{id}/authorize", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.SecurityGroupRulesRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.AuthorizeSecurityGroup(c, r.PathValue("id"), req)
	}},
	{"POST", "/v1/security-groups/{id}/revoke", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.SecurityGroupRulesRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.RevokeSecurityGroup(c, r.PathValue("id"), req)
	}},
	{"PUT", "/v1/instances/{id}/security-groups", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.InstanceSecurityGroupsRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.SetInstanceSecurityGroups(c, r.PathValue("id"), req)
	}},
}
