package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gureum/api"
)

// newSnapshotCommand is `gureum snapshot`: EBS snapshots.
func newSnapshotCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Aliases: []string{"snapshots", "snap"}, Short: "create and manage EBS snapshots"}
	f := addAPIFlags(cmd)
	table := func(ss []api.Snapshot) func(w *tabwriter.Writer) {
		return func(w *tabwriter.Writer) {
			row(w, "ID", "VOLUME", "SIZE", "DATA", "STATE", "STARTED", "DESCRIPTION")
			for _, s := range ss {
				row(w, s.SnapshotID, s.VolumeID, fmt.Sprintf("%d GiB", s.VolumeSize), fmt.Sprintf("%.1f MiB", float64(s.DataBytes)/(1<<20)),
					s.State, s.StartTime.Local().Format("2006-01-02 15:04:05"), orDash(s.Description))
			}
		}
	}
	var req api.CreateSnapshotRequest
	create := &cobra.Command{
		Use: "create VOLUME", Short: "snapshot a volume (attached or not)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			req.VolumeID = args[0]
			s, err := f.client().CreateSnapshot(c.Context(), req)
			if err != nil {
				return err
			}
			return f.print(s, table([]api.Snapshot{s}))
		},
	}
	create.Flags().StringVar(&req.Description, "description", "", "free text")
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "list snapshots", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ss, err := f.client().Snapshots(c.Context())
			if err != nil {
				return err
			}
			return f.print(ss, table(ss))
		},
	}
	describe := &cobra.Command{
		Use: "describe ID", Short: "show one snapshot", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := f.client().Snapshot(c.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(s, table([]api.Snapshot{s}))
		},
	}
	del := &cobra.Command{
		Use: "delete ID...", Aliases: []string{"rm"}, Short: "delete snapshots", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			for _, id := range args {
				if err := f.client().DeleteSnapshot(c.Context(), id); err != nil {
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
