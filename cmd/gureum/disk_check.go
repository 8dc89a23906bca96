package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newDiskCheckCommand() *cobra.Command {
	var repair bool
	cmd := &cobra.Command{
		Use:   "check [--repair] FILE",
		Short: "check a qcow2 image's metadata (leaks, overlaps, refcounts); --repair fixes leaks",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return fmt.Errorf("check %s: not available yet", args[0])
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "free leaked clusters")
	return cmd
}
