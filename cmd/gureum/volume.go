package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gureum/api"
)

// newVolumeCommand is `gureum volume`: EBS volumes.
func newVolumeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use: "volume", Aliases: []string{"volumes", "vol"}, Short: "create and manage EBS volumes",
		Long: `EBS volumes: block devices that live apart from any instance. A volume is in
one availability zone and attaches only to instances of that zone, running or
stopped; a running guest sees the new disk at once. Snapshots (gureum snapshot)
are not tied to a zone: a volume made from one may be placed in any zone.
Sizes only grow; modify changes a volume in place, attached or not.`,
	}
	f := addAPIFlags(cmd)
	table := func(vs []api.Volume) func(w *tabwriter.Writer) {
		return func(w *tabwriter.Writer) {
			row(w, "ID", "ZONE", "TYPE", "SIZE", "IOPS", "MiB/s", "STATE", "INSTANCE", "DEVICE", "SNAPSHOT")
			for _, v := range vs {
				inst, dev := "", ""
				if v.Attachment != nil {
					inst, dev = v.Attachment.InstanceID, v.Attachment.Device
				}
				row(w, v.VolumeID, orDash(v.AvailabilityZone), v.VolumeType, fmt.Sprintf("%d GiB", v.SizeGiB), v.IOPS,
					v.ThroughputMiBps, v.State, orDash(inst), orDash(dev), orDash(v.SnapshotID))
			}
		}
	}
	var req api.CreateVolumeRequest
	create := &cobra.Command{
		Use:   "create",
		Short: "create a volume, empty or from a snapshot",
		Example: `  gureum volume create --size 8
  gureum volume create --snapshot snap-0123456789abcdef0 --availability-zone local-1b`,
		Args: cobra.NoArgs,
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
	create.Flags().StringVar(&req.AvailabilityZone, "availability-zone", "", "zone of the volume (default: the first; see gureum vpc zones)")
	// --zone is accepted too (hidden), as `gureum subnet create` names it.
	create.Flags().StringVar(&req.AvailabilityZone, "zone", "", "same as --availability-zone")
	create.Flags().MarkHidden("zone")

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
		Use: "delete ID...", Aliases: []string{"rm"}, Short: "delete available (detached) volumes", Args: cobra.MinimumNArgs(1),
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
	var mod api.ModifyVolumeRequest
	modify := &cobra.Command{
		Use:   "modify ID",
		Short: "grow a volume or change its type, IOPS or throughput (attached or not)",
		Long: `Changes a volume in place. Flags not given keep their value; a new type
re-derives the IOPS and throughput the type implies unless they are given too.
The size only grows. On a running instance the change is immediate: the guest
sees the new capacity and the new I/O limits apply at once (the file system
inside still has to be grown by the guest).`,
		Example: `  gureum volume modify vol-0123456789abcdef0 --size 20
  gureum volume modify vol-0123456789abcdef0 --type io2 --iops 4000`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if mod == (api.ModifyVolumeRequest{}) {
				return fmt.Errorf("nothing to change: give --size, --type, --iops or --throughput")
			}
			v, err := f.client().ModifyVolume(c.Context(), args[0], mod)
			if err != nil {
				return err
			}
			return f.print(v, table([]api.Volume{v}))
		},
	}
	modify.Flags().Int64Var(&mod.SizeGiB, "size", 0, "new size in GiB (only grows)")
	modify.Flags().StringVar(&mod.VolumeType, "type", "", "new type: gp3, io2, st1 or sc1")
	modify.Flags().Int64Var(&mod.IOPS, "iops", 0, "new provisioned IOPS (gp3, io2)")
	modify.Flags().Int64Var(&mod.ThroughputMiBps, "throughput", 0, "new provisioned MiB/s (gp3)")
	var attach api.AttachVolumeRequest
	attachCmd := &cobra.Command{
		Use:   "attach ID --instance i-…",
		Short: "attach a volume to an instance of its zone, running or stopped",
		Long: `Attaches an available volume to an instance in the same availability zone.
On a running instance the volume goes into one of the VMM's free drive slots
and the guest sees a new disk at once; on a stopped one it joins at the next
start.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			v, err := f.client().AttachVolume(c.Context(), args[0], attach)
			if err != nil {
				return err
			}
			return f.print(v, table([]api.Volume{v}))
		},
	}
	attachCmd.Flags().StringVar(&attach.InstanceID, "instance", "", "instance to attach to (required)")
	attachCmd.MarkFlagRequired("instance")
	attachCmd.Flags().StringVar(&attach.Device, "device", "", "device name (default: the next free /dev/vdX)")
	detach := &cobra.Command{
		Use:   "detach ID",
		Short: "detach a volume from its instance, running or stopped (not the root volume)",
		Long: `Detaches a volume. From a running instance the VMM first flushes the drive and
closes it; the guest sees its disk go away. The root volume of an EBS-backed
instance cannot be detached.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			v, err := f.client().DetachVolume(c.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(v, table([]api.Volume{v}))
		},
	}
	cmd.AddCommand(create, ls, describe, modify, del, attachCmd, detach)
	return cmd
}
