package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gureum/api"
)

// newVolumeCommand is `gureum volume`: EBS volumes.
func newVolumeCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Aliases: []string{"volumes", "vol"}, Short: "create and manage EBS volumes"}
	f := addAPIFlags(cmd)
	table := func(vs []api.Volume) func(w *tabwriter.Writer) {
		return func(w *tabwriter.Writer) {
			row(w, "ID", "TYPE", "SIZE", "IOPS", "MiB/s", "STATE", "INSTANCE", "DEVICE", "SNAPSHOT")
			for _, v := range vs {
				inst, dev := "", ""
				if v.Attachment != nil {
					inst, dev = v.Attachment.InstanceID, v.Attachment.Device
				}
				row(w, v.VolumeID, v.VolumeType, fmt.Sprintf("%d GiB", v.SizeGiB), v.IOPS, v.ThroughputMiBps, v.State,
					orDash(inst), orDash(dev), orDash(v.SnapshotID))
			}
		}
	}
	var req api.CreateVolumeRequest
	create := &cobra.Command{
		Use:   "create",
		Short: "create a volume, empty or from a snapshot",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			v, err := f.client().CreateVolume(c.Context(), req)
			if err != nil {
				return err
			}
			return f.print(v, table([]api.Volume{v}))
		},
	}
	create.Flags().StringVar(&req.VolumeType, "type", "", "gp3 (default), io2, st1 or sc1")
	create.Flags().Int64Var(&req.SizeGiB, "size", 0, "size in GiB (default: the snapshot's)")
	create.Flags().Int64Var(&req.IOPS, "iops", 0, "provisioned IOPS (gp3, io2)")
	create.Flags().Int64Var(&req.ThroughputMiBps, "throughput", 0, "provisioned MiB/s (gp3)")
	create.Flags().StringVar(&req.SnapshotID, "snapshot", "", "snapshot to create the volume from")

	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "list volumes", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			vs, err := f.client().Volumes(c.Context())
			if err != nil {
				return err
			}
			return f.print(vs, table(vs))
		},
	}
	describe := &cobra.Command{
		Use: "describe ID", Short: "show one volume", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			v, err := f.client().Volume(c.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(v, table([]api.Volume{v}))
		},
	}
	del := &cobra.Command{
		Use: "delete ID...", Aliases: []string{"rm"}, Short: "delete available volumes", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			for _, id := range args {
				if err := f.client().DeleteVolume(c.Context(), id); err != nil {
					return err
				}
				fmt.Println(id)
			}
			return nil
		},
	}
	var attach api.AttachVolumeRequest
	attachCmd := &cobra.Command{
		Use: "attach ID", Short: "attach a volume to a stopped instance (it joins at the next start)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			v, err := f.client().AttachVolume(c.Context(), args[0], attach)
			if err != nil {
				return err
			}
			return f.print(v, table([]api.Volume{v}))
		},
	}
	attachCmd.Flags().StringVar(&attach.InstanceID, "instance", "", "instance to attach to")
	attachCmd.Flags().StringVar(&attach.Device, "device", "", "device name (default: the next free /dev/vdX)")
	detach := &cobra.Command{
		Use: "detach ID", Short: "detach a volume from its stopped instance", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			v, err := f.client().DetachVolume(c.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(v, table([]api.Volume{v}))
		},
	}
	cmd.AddCommand(create, ls, describe, del, attachCmd, detach)
	return cmd
}
