package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"gureum/storage/qcow2"
)

// newDiskCheckCommand is `disk check`: qcow2's own consistency check.
// A raw image has no metadata, so there is nothing to check in one.
func newDiskCheckCommand() *cobra.Command {
	var repair bool
	cmd := &cobra.Command{
		Use:   "check [--repair] FILE",
		Short: "check a qcow2 image's metadata (leaks, overlaps, refcounts); --repair frees leaked clusters",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := args[0]
			isQcow2, err := hasQcow2Magic(path)
			if err != nil {
				return err
			}
			if !isQcow2 {
				fmt.Fprintf(c.OutOrStdout(), "%s: raw image, no metadata to check\n", path)
				return nil
			}
			check := qcow2.Check
			if repair {
				check = qcow2.Repair
			}
			res, err := check(path)
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			for _, p := range res.Problems {
				fmt.Fprintln(w, p)
			}
			if repair && res.LeaksFixed > 0 {
				fmt.Fprintf(w, "freed %d leaked clusters\n", res.LeaksFixed)
			}
			leaks := res.Leaks - res.LeaksFixed
			switch {
			case res.Corruptions > 0:
				return fmt.Errorf("check %s: %d corruptions, %d leaked clusters", path, res.Corruptions, leaks)
			case leaks > 0:
				return fmt.Errorf("check %s: %d leaked clusters (harmless; --repair frees them)", path, leaks)
			}
			fmt.Fprintf(w, "%s: no errors found (%d clusters)\n", path, res.FileClusters)
			return nil
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "free leaked clusters")
	return cmd
}

// hasQcow2Magic reports whether the file starts with qcow2's magic,
// "QFI" and 0xfb. Anything else is treated as raw, as Open would.
func hasQcow2Magic(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("check: %w", err)
	}
	defer f.Close()
	var head [4]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return false, nil // shorter than a qcow2 header: raw
	}
	return bytes.Equal(head[:], []byte("QFI\xfb")), nil
}
