package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gureum/api"
)

// newVPCCommand is `gureum vpc`: VPCs.
func newVPCCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "vpc", Aliases: []string{"vpcs"}, Short: "create and manage VPCs (isolated networks)"}
	f := addAPIFlags(cmd)
	table := func(vs []api.Vpc) func(w *tabwriter.Writer) {
		return func(w *tabwriter.Writer) {
			row(w, "ID", "CIDR", "DEFAULT", "DEFAULT GROUP", "UPLINK", "OWNER")
			for _, v := range vs {
				row(w, v.VpcID, v.CidrBlock, v.IsDefault, v.DefaultSecurityGroupID, v.Uplink, v.OwnerID)
			}
		}
	}
	var req api.CreateVpcRequest
	var tags []string
	create := &cobra.Command{
		Use: "create", Short: "create a VPC with its default security group", Args: cobra.NoArgs,
		Example: "  gureum vpc create --cidr 10.1.0.0/16\n  gureum vpc create --cidr 10.2.0.0/16 --uplink",
		RunE: func(c *cobra.Command, args []string) error {
			req.Tags = parseTags(tags)
			v, err := f.client().CreateVpc(c.Context(), req)
			if err != nil {
				return err
			}
			return f.print(v, table([]api.Vpc{v}))
		},
	}
	create.Flags().StringVar(&req.CidrBlock, "cidr", "", "the VPC's IPv4 range, /16 to /28")
	create.Flags().StringSliceVar(&tags, "tag", nil, "tags as key=value (repeatable)")
	create.Flags().BoolVar(&req.Uplink, "uplink", false, "give the VPC a way out through the host (veth with masquerade; turns on the host's IPv4 forwarding)")
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "list VPCs", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			vs, err := f.client().Vpcs(c.Context())
			if err != nil {
				return err
			}
			return f.print(vs, table(vs))
		},
	}
	describe := &cobra.Command{
		Use: "describe ID", Short: "show one VPC", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			v, err := f.client().Vpc(c.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(v, table([]api.Vpc{v}))
		},
	}
	del := &cobra.Command{
		Use: "delete ID...", Aliases: []string{"rm"}, Short: "delete VPCs without subnets or extra groups", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			for _, id := range args {
				if err := f.client().DeleteVpc(c.Context(), id); err != nil {
					return err
				}
				fmt.Println(id)
			}
			return nil
		},
	}
	zones := &cobra.Command{
		Use: "zones", Short: "list the host's availability zones", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			zs, err := f.client().AvailabilityZones(c.Context())
			if err != nil {
				return err
			}
			return f.print(zs, func(w *tabwriter.Writer) {
				row(w, "ZONE", "STATE")
				for _, z := range zs {
					row(w, z.ZoneName, z.State)
				}
			})
		},
	}
	cmd.AddCommand(create, ls, describe, del, zones)
	return cmd
}

// newSubnetCommand is `gureum subnet`: subnets of VPCs.
func newSubnetCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "subnet", Aliases: []string{"subnets"}, Short: "create and manage subnets (a VPC range in one zone)"}
	f := addAPIFlags(cmd)
	table := func(ss []api.Subnet) func(w *tabwriter.Writer) {
		return func(w *tabwriter.Writer) {
			row(w, "ID", "VPC", "CIDR", "ZONE", "FREE", "DEFAULT")
			for _, s := range ss {
				row(w, s.SubnetID, s.VpcID, s.CidrBlock, s.AvailabilityZone, s.AvailableIPAddressCount, s.DefaultForAz)
			}
		}
	}
	var req api.CreateSubnetRequest
	var tags []string
	create := &cobra.Command{
		Use: "create", Short: "add a subnet to a VPC", Args: cobra.NoArgs,
		Example: "  gureum subnet create --vpc vpc-0123456789abcdef0 --cidr 10.1.1.0/24 --zone local-1b",
		RunE: func(c *cobra.Command, args []string) error {
			req.Tags = parseTags(tags)
			s, err := f.client().CreateSubnet(c.Context(), req)
			if err != nil {
				return err
			}
			return f.print(s, table([]api.Subnet{s}))
		},
	}
	create.Flags().StringVar(&req.VpcID, "vpc", "", "the VPC")
	create.Flags().StringVar(&req.CidrBlock, "cidr", "", "the subnet's range, inside the VPC's")
	create.Flags().StringVar(&req.AvailabilityZone, "zone", "", "availability zone (default: the first)")
	create.Flags().StringSliceVar(&tags, "tag", nil, "tags as key=value (repeatable)")
	var vpcID string
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "list subnets", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ss, err := f.client().Subnets(c.Context(), vpcID)
			if err != nil {
				return err
			}
			return f.print(ss, table(ss))
		},
	}
	ls.Flags().StringVar(&vpcID, "vpc", "", "only this VPC's subnets")
	describe := &cobra.Command{
		Use: "describe ID", Short: "show one subnet", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := f.client().Subnet(c.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(s, table([]api.Subnet{s}))
		},
	}
	del := &cobra.Command{
		Use: "delete ID...", Aliases: []string{"rm"}, Short: "delete subnets no instance is in", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			for _, id := range args {
				if err := f.client().DeleteSubnet(c.Context(), id); err != nil {
					return err
				}
				fmt.Println(id)
			}
			return nil
		},
	}
	cmd.AddCommand(create, ls, describe, del)
	return cmd
}

func parseTags(kvs []string) []api.Tag {
	var out []api.Tag
	for _, t := range kvs {
		k, v, _ := strings.Cut(t, "=")
		out = append(out, api.Tag{Key: k, Value: v})
	}
	return out
}
