package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gureum/api"
)

// newSecurityGroupCommand is `gureum sg`: security groups and their rules.
func newSecurityGroupCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "sg", Aliases: []string{"security-group", "security-groups"}, Short: "create and manage security groups (stateful firewalls)"}
	f := addAPIFlags(cmd)
	table := func(gs []api.SecurityGroup) func(w *tabwriter.Writer) {
		return func(w *tabwriter.Writer) {
			row(w, "ID", "NAME", "VPC", "RULES")
			for _, g := range gs {
				var rules []string
				for _, r := range g.Rules {
					rules = append(rules, ruleString(r))
				}
				row(w, g.GroupID, g.GroupName, g.VpcID, orDash(strings.Join(rules, "; ")))
			}
		}
	}
	var req api.CreateSecurityGroupRequest
	create := &cobra.Command{
		Use: "create NAME", Short: "create a group: all outbound, no inbound", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			req.GroupName = args[0]
			g, err := f.client().CreateSecurityGroup(c.Context(), req)
			if err != nil {
				return err
			}
			return f.print(g, table([]api.SecurityGroup{g}))
		},
	}
	create.Flags().StringVar(&req.VpcID, "vpc", "", "the group's VPC (default: the default VPC)")
	create.Flags().StringVar(&req.Description, "description", "", "what the group is for")
	var vpcID string
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "list security groups", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			gs, err := f.client().SecurityGroups(c.Context(), vpcID)
			if err != nil {
				return err
			}
			return f.print(gs, table(gs))
		},
	}
	ls.Flags().StringVar(&vpcID, "vpc", "", "only this VPC's groups")
	describe := &cobra.Command{
		Use: "describe ID", Short: "show one group", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			g, err := f.client().SecurityGroup(c.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(g, table([]api.SecurityGroup{g}))
		},
	}
	del := &cobra.Command{
		Use: "delete ID...", Aliases: []string{"rm"}, Short: "delete groups nothing uses", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			for _, id := range args {
				if err := f.client().DeleteSecurityGroup(c.Context(), id); err != nil {
					return err
				}
				fmt.Println(id)
			}
			return nil
		},
	}
	cmd.AddCommand(create, ls, describe, del)
	for _, a := range []struct {
		name, short string
		add         bool
	}{{"authorize", "allow traffic: add a rule (applies at once)", true}, {"revoke", "remove a rule (applies at once to new connections)", false}} {
		var (
			egress         bool
			proto, port    string
			cidrIP, source string
		)
		sub := &cobra.Command{
			Use: a.name + " ID", Short: a.short, Args: cobra.ExactArgs(1),
			Example: "  gureum sg " + a.name + " sg-0123456789abcdef0 --protocol tcp --port 80 --source-group sg-0fedcba9876543210\n" +
				"  gureum sg " + a.name + " sg-0123456789abcdef0 --protocol icmp --cidr 10.0.0.0/8",
			RunE: func(c *cobra.Command, args []string) error {
				r := api.SecurityGroupRule{Direction: api.DirectionIngress, Protocol: proto, CidrIP: cidrIP, GroupID: source}
				if egress {
					r.Direction = api.DirectionEgress
				}
				var err error
				if r.FromPort, r.ToPort, err = parsePortRange(proto, port); err != nil {
					return err
				}
				cl := f.client()
				var g api.SecurityGroup
				if a.add {
					g, err = cl.AuthorizeSecurityGroup(c.Context(), args[0], r)
				} else {
					g, err = cl.RevokeSecurityGroup(c.Context(), args[0], r)
				}
				if err != nil {
					return err
				}
				return f.print(g, table([]api.SecurityGroup{g}))
			},
		}
		fl := sub.Flags()
		fl.BoolVar(&egress, "egress", false, "an outbound rule (default: inbound)")
		fl.StringVar(&proto, "protocol", "tcp", "tcp, udp, icmp or all")
		fl.StringVar(&port, "port", "", "port or FROM-TO range (tcp, udp); TYPE or TYPE:CODE (icmp); empty: any")
		fl.StringVar(&cidrIP, "cidr", "", "peer network (inbound: source; outbound: destination)")
		fl.StringVar(&source, "source-group", "", "peer group instead of a network")
		cmd.AddCommand(sub)
	}
	return cmd
}

// parsePortRange reads --port: "80", "8000-8080" for tcp and udp (empty:
// all ports), "8" or "8:0" (type:code) for icmp (empty: any).
func parsePortRange(proto, s string) (int, int, error) {
	bad := fmt.Errorf("--port %q: want PORT or FROM-TO (tcp, udp), TYPE or TYPE:CODE (icmp)", s)
	switch strings.ToLower(proto) {
	case "icmp", "1":
		if s == "" {
			return -1, -1, nil
		}
		t, c, hasCode := strings.Cut(s, ":")
		typ, err := strconv.Atoi(t)
		if err != nil {
			return 0, 0, bad
		}
		code := -1
		if hasCode {
			if code, err = strconv.Atoi(c); err != nil {
				return 0, 0, bad
			}
		}
		return typ, code, nil
	case "all", "-1":
		return -1, -1, nil
	}
	if s == "" {
		return 0, 65535, nil
	}
	from, to, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(from)
	if err != nil {
		return 0, 0, bad
	}
	b := a
	if isRange {
		if b, err = strconv.Atoi(to); err != nil {
			return 0, 0, bad
		}
	}
	return a, b, nil
}

// ruleString is a rule in a few words: "in tcp 80 from sg-…".
func ruleString(r api.SecurityGroupRule) string {
	dir, peerWord := "in", "from"
	if r.Direction == api.DirectionEgress {
		dir, peerWord = "out", "to"
	}
	ports := ""
	switch r.Protocol {
	case "tcp", "udp":
		ports = " " + strconv.Itoa(r.FromPort)
		if r.ToPort != r.FromPort {
			ports += "-" + strconv.Itoa(r.ToPort)
		}
	case "icmp":
		if r.FromPort >= 0 {
			ports = " type " + strconv.Itoa(r.FromPort)
		}
	}
	peer := r.CidrIP
	if r.GroupID != "" {
		peer = r.GroupID
	}
	return fmt.Sprintf("%s %s%s %s %s", dir, r.Protocol, ports, peerWord, peer)
}
