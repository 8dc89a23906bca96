// Package network holds what the VPC packages share: the error type that
// carries an EC2-style code. The packages under it build a VPC:
//
//   - namespace: named Linux network namespaces and running code inside one
//   - vpc: a VPC as a namespace with a bridge (the router) and one tap per
//     instance interface
//   - ipam: subnets, fixed private addresses and stable MACs, persisted
//   - dhcp: the DHCP server on a VPC's bridge
//   - imds: the instance metadata service at 169.254.169.254
//   - secgroup: security groups as nftables rules in the VPC's namespace
//
// docs/networking.md draws the picture.
package network

import (
	"errors"
	"fmt"
)

// EC2-style error codes the network packages return. The daemon maps an
// *Error to its API error of the same code.
const (
	CodeInvalidParameterValue = "InvalidParameterValue"
	CodeInvalidSubnetRange    = "InvalidSubnet.Range"
	CodeInvalidSubnetConflict = "InvalidSubnet.Conflict"
	CodeDependencyViolation   = "DependencyViolation"
	CodeVPCNotFound           = "InvalidVpcID.NotFound"
	CodeSubnetNotFound        = "InvalidSubnetID.NotFound"
	CodeInterfaceNotFound     = "InvalidNetworkInterfaceID.NotFound"
	CodeAddressInUse          = "InvalidIPAddress.InUse"
	CodeAddressLimitExceeded  = "InsufficientFreeAddressesInSubnet"
	CodeAlreadyExists         = "InvalidParameterValue.AlreadyExists"
	CodeGroupNotFound         = "InvalidGroup.NotFound"
)

// Error is a refusal with an EC2-style code: the request was wrong or
// conflicts with what exists, and nothing was changed. Failures of the
// machine (netlink, files) are plain wrapped errors instead.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf makes an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of the first *Error in err's chain, or "" if
// there is none.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
