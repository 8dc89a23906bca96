package client

import (
	"context"
	"net/http"
	"net/url"

	"gureum/api"
)

// AvailabilityZones lists the host's zones.
func (c *Client) AvailabilityZones(ctx context.Context) ([]api.AvailabilityZone, error) {
	var out api.DescribeAvailabilityZonesResponse
	err := c.Do(ctx, http.MethodGet, "/v1/availability-zones", nil, &out)
	return out.AvailabilityZones, err
}

// Vpcs lists the VPCs the caller may use (its own and the default VPC).
func (c *Client) Vpcs(ctx context.Context) ([]api.Vpc, error) {
	var out api.DescribeVpcsResponse
	err := c.Do(ctx, http.MethodGet, "/v1/vpcs", nil, &out)
	return out.Vpcs, err
}

// Vpc describes one VPC.
func (c *Client) Vpc(ctx context.Context, id string) (api.Vpc, error) {
	var out api.Vpc
	err := c.Do(ctx, http.MethodGet, "/v1/vpcs/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CreateVpc makes a VPC (with its default security group).
func (c *Client) CreateVpc(ctx context.Context, req api.CreateVpcRequest) (api.Vpc, error) {
	var out api.Vpc
	err := c.Do(ctx, http.MethodPost, "/v1/vpcs", req, &out)
	return out, err
}

// DeleteVpc deletes an empty VPC.
func (c *Client) DeleteVpc(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/vpcs/"+url.PathEscape(id), nil, nil)
}

// Subnets lists subnets, of one VPC or ("") of all.
func (c *Client) Subnets(ctx context.Context, vpcID string) ([]api.Subnet, error) {
	path := "/v1/subnets"
	if vpcID != "" {
		path += "?vpc_id=" + url.QueryEscape(vpcID)
	}
	var out api.DescribeSubnetsResponse
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out.Subnets, err
}

// Subnet describes one subnet.
func (c *Client) Subnet(ctx context.Context, id string) (api.Subnet, error) {
	var out api.Subnet
	err := c.Do(ctx, http.MethodGet, "/v1/subnets/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CreateSubnet adds a subnet to a VPC.
func (c *Client) CreateSubnet(ctx context.Context, req api.CreateSubnetRequest) (api.Subnet, error) {
	var out api.Subnet
	err := c.Do(ctx, http.MethodPost, "/v1/subnets", req, &out)
	return out, err
}

// DeleteSubnet deletes a subnet no instance is in.
func (c *Client) DeleteSubnet(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/subnets/"+url.PathEscape(id), nil, nil)
}

// SecurityGroups lists security groups, of one VPC or ("") of all.
func (c *Client) SecurityGroups(ctx context.Context, vpcID string) ([]api.SecurityGroup, error) {
	path := "/v1/security-groups"
	if vpcID != "" {
		path += "?vpc_id=" + url.QueryEscape(vpcID)
	}
	var out api.DescribeSecurityGroupsResponse
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out.SecurityGroups, err
}

// SecurityGroup describes one security group.
func (c *Client) SecurityGroup(ctx context.Context, id string) (api.SecurityGroup, error) {
	var out api.SecurityGroup
	err := c.Do(ctx, http.MethodGet, "/v1/security-groups/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CreateSecurityGroup makes a security group.
func (c *Client) CreateSecurityGroup(ctx context.Context, req api.CreateSecurityGroupRequest) (api.SecurityGroup, error) {
	var out api.SecurityGroup
	err := c.Do(ctx, http.MethodPost, "/v1/security-groups", req, &out)
	return out, err
}

// DeleteSecurityGroup deletes a security group nothing uses.
func (c *Client) DeleteSecurityGroup(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/security-groups/"+url.PathEscape(id), nil, nil)
}

// AuthorizeSecurityGroup adds rules to a group.
func (c *Client) AuthorizeSecurityGroup(ctx context.Context, id string, rules ...api.SecurityGroupRule) (api.SecurityGroup, error) {
	var out api.SecurityGroup
	err := c.Do(ctx, http.MethodPost, "/v1/security-groups/"+url.PathEscape(id)+"/authorize", api.SecurityGroupRulesRequest{Rules: rules}, &out)
	return out, err
}

// RevokeSecurityGroup removes rules from a group.
func (c *Client) RevokeSecurityGroup(ctx context.Context, id string, rules ...api.SecurityGroupRule) (api.SecurityGroup, error) {
	var out api.SecurityGroup
	err := c.Do(ctx, http.MethodPost, "/v1/security-groups/"+url.PathEscape(id)+"/revoke", api.SecurityGroupRulesRequest{Rules: rules}, &out)
	return out, err
}

// SetInstanceSecurityGroups replaces an instance's security groups.
func (c *Client) SetInstanceSecurityGroups(ctx context.Context, id string, groups []string) (api.Instance, error) {
	var out api.Instance
	err := c.Do(ctx, http.MethodPut, "/v1/instances/"+url.PathEscape(id)+"/security-groups", api.InstanceSecurityGroupsRequest{GroupIDs: groups}, &out)
	return out, err
}
