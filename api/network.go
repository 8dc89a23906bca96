package api

// The networking part of the API: VPCs, subnets, availability zones and
// security groups (docs/networking.md, "The daemon").

// Values of RunInstancesRequest.MetadataHTTPTokens, as EC2's HttpTokens:
// "optional" serves IMDSv1 requests too, "required" only IMDSv2 (token)
// requests.
const (
	HTTPTokensOptional = "optional"
	HTTPTokensRequired = "required"
)

// Vpc is one virtual private cloud: an isolated IPv4 network.
type Vpc struct {
	VpcID     string `json:"vpc_id"`
	OwnerID   string `json:"owner_id"`
	CidrBlock string `json:"cidr_block"`
	State     string `json:"state"` // available
	IsDefault bool   `json:"is_default"`
	// DefaultSecurityGroupID is the group instances get when the launch
	// names none.
	DefaultSecurityGroupID string `json:"default_security_group_id"`
	Tags                   []Tag  `json:"tags,omitempty"`
	// Uplink says the VPC has a way out to the host's network (see
	// CreateVpcRequest.Uplink).
	Uplink bool `json:"uplink,omitempty"`
}

// CreateVpcRequest is the body of POST /v1/vpcs.
type CreateVpcRequest struct {
	CidrBlock string `json:"cidr_block"`
	Tags      []Tag  `json:"tags,omitempty"`
	// Uplink asks for a veth pair from the VPC to the host with
	// masquerade on both sides, so that instances can open connections
	// to wherever the host can reach (nothing outside can open one to
	// them). Off by default: a VPC is closed. docs/networking.md,
	// "Uplink".
	Uplink bool `json:"uplink,omitempty"`
}

// DescribeVpcsResponse answers GET /v1/vpcs.
type DescribeVpcsResponse struct {
	Vpcs []Vpc `json:"vpcs"`
}

// Subnet is a range of a VPC's addresses in one availability zone.
type Subnet struct {
	SubnetID         string `json:"subnet_id"`
	VpcID            string `json:"vpc_id"`
	OwnerID          string `json:"owner_id"`
	CidrBlock        string `json:"cidr_block"`
	AvailabilityZone string `json:"availability_zone"`
	State            string `json:"state"` // available
	// AvailableIPAddressCount is how many addresses are still free (five
	// of every subnet are reserved, as in EC2).
	AvailableIPAddressCount int `json:"available_ip_address_count"`
	// DefaultForAz marks the default VPC's subnet of its zone: launches
	// that name no subnet go to the first zone's.
	DefaultForAz bool  `json:"default_for_az"`
	Tags         []Tag `json:"tags,omitempty"`
}

// CreateSubnetRequest is the body of POST /v1/subnets.
type CreateSubnetRequest struct {
	VpcID            string `json:"vpc_id"`
	CidrBlock        string `json:"cidr_block"`
	AvailabilityZone string `json:"availability_zone,omitempty"` // default: the first zone
	Tags             []Tag  `json:"tags,omitempty"`
}

// DescribeSubnetsResponse answers GET /v1/subnets.
type DescribeSubnetsResponse struct {
	Subnets []Subnet `json:"subnets"`
}

// AvailabilityZone is one zone of the host's region.
type AvailabilityZone struct {
	ZoneName string `json:"zone_name"`
	State    string `json:"state"` // available
}

// DescribeAvailabilityZonesResponse answers GET /v1/availability-zones.
type DescribeAvailabilityZonesResponse struct {
	AvailabilityZones []AvailabilityZone `json:"availability_zones"`
}

// SecurityGroupRule allows one kind of traffic to or from the instances
// of a group. Direction is "ingress" or "egress"; Protocol is tcp, udp,
// icmp or all (or 6, 17, 1, -1). For tcp and udp FromPort..ToPort is the
// destination port range; for icmp FromPort is the type and ToPort the
// code (-1: any). The peer is exactly one of CidrIP (an IPv4 network) and
// GroupID (every instance in that group of the same VPC).
type SecurityGroupRule struct {
	Direction string `json:"direction"`
	Protocol  string `json:"protocol"`
	FromPort  int    `json:"from_port"`
	ToPort    int    `json:"to_port"`
	CidrIP    string `json:"cidr_ip,omitempty"`
	GroupID   string `json:"group_id,omitempty"`
}

// Directions of a SecurityGroupRule.
const (
	DirectionIngress = "ingress"
	DirectionEgress  = "egress"
)

// SecurityGroup is a named set of rules of one VPC.
type SecurityGroup struct {
	GroupID     string              `json:"group_id"`
	GroupName   string              `json:"group_name"`
	Description string              `json:"description"`
	VpcID       string              `json:"vpc_id"`
	OwnerID     string              `json:"owner_id"`
	Rules       []SecurityGroupRule `json:"rules"`
}

// CreateSecurityGroupRequest is the body of POST /v1/security-groups. A
// new group allows all outbound traffic and no inbound traffic, as in EC2.
type CreateSecurityGroupRequest struct {
	VpcID       string `json:"vpc_id,omitempty"` // default: the default VPC
	GroupName   string `json:"group_name"`
	Description string `json:"description,omitempty"`
}

// DescribeSecurityGroupsResponse answers GET /v1/security-groups.
type DescribeSecurityGroupsResponse struct {
	SecurityGroups []SecurityGroup `json:"security_groups"`
}

// SecurityGroupRulesRequest is the body of POST
// /v1/security-groups/{id}/authorize and .../revoke: the rules to add or
// remove, all or nothing.
type SecurityGroupRulesRequest struct {
	Rules []SecurityGroupRule `json:"rules"`
}

// InstanceSecurityGroupsRequest is the body of PUT
// /v1/instances/{id}/security-groups: the instance's new set of groups,
// applied to its interface at once.
type InstanceSecurityGroupsRequest struct {
	GroupIDs []string `json:"group_ids"`
}
