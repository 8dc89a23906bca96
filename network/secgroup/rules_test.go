package secgroup

import (
	"net/netip"
	"testing"

	"gureum/network"
)

func TestValidate(t *testing.T) {
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	for _, c := range []struct {
		r  Rule
		ok bool
	}{
		{Rule{Direction: Ingress, Protocol: TCP, FromPort: 22, ToPort: 22, CIDR: any4}, true},
		{Rule{Direction: Egress, Protocol: "-1", Group: "sg-1"}, true},
		{Rule{Direction: Ingress, Protocol: "17", FromPort: 0, ToPort: 65535, CIDR: netip.MustParsePrefix("10.0.0.0/8")}, true},
		{Rule{Direction: Ingress, Protocol: ICMP, FromPort: 8, ToPort: 0, CIDR: any4}, true},
		{Rule{Direction: Ingress, Protocol: ICMP, FromPort: -1, ToPort: -1, CIDR: any4}, true},
		{Rule{Direction: Ingress, Protocol: ICMP, FromPort: -1, ToPort: 3, CIDR: any4}, false},
		{Rule{Direction: Ingress, Protocol: ICMP, FromPort: 256, ToPort: -1, CIDR: any4}, false},
		{Rule{Direction: Ingress, Protocol: TCP, FromPort: -1, ToPort: 80, CIDR: any4}, false},
		{Rule{Direction: Ingress, Protocol: TCP, FromPort: 80, ToPort: 65536, CIDR: any4}, false},
		{Rule{Direction: Ingress, Protocol: TCP, FromPort: 81, ToPort: 80, CIDR: any4}, false},
		{Rule{Direction: Ingress, Protocol: "sctp", CIDR: any4}, false},
		{Rule{Direction: "in", Protocol: TCP, CIDR: any4}, false},
		{Rule{Direction: Ingress, Protocol: TCP, FromPort: 80, ToPort: 80}, false},
		{Rule{Direction: Ingress, Protocol: TCP, FromPort: 80, ToPort: 80, CIDR: any4, Group: "sg-1"}, false},
		{Rule{Direction: Ingress, Protocol: TCP, FromPort: 80, ToPort: 80, CIDR: netip.MustParsePrefix("10.0.0.1/8")}, false},
		{Rule{Direction: Ingress, Protocol: TCP, FromPort: 80, ToPort: 80, CIDR: netip.MustParsePrefix("::/0")}, false},
	} {
		err := Validate(c.r)
		if c.ok && err != nil {
			t.Errorf("%v: %v", c.r, err)
		}
		if !c.ok && network.CodeOf(err) != network.CodeInvalidParameterValue {
			t.Errorf("%v: %v, want InvalidParameterValue", c.r, err)
		}
	}
}
