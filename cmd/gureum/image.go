package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"gureum/images"
)

// newImageCommand is `gureum image`: building the default Linux guest.
func newImageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "build guest images",
	}
	var opts images.Options
	build := &cobra.Command{
		Use:   "build",
		Short: "build the default Linux guest (kernels, initramfs, ext4 root disk) from Debian packages",
		Long: `Downloads the Debian cloud and generic kernels and busybox-static with
apt-get download (nothing is installed), and writes into the cache directory
vmlinuz-FLAVOUR, initramfs-FLAVOUR.cpio and root.img. A build with the same
package versions and recipe is reused. CACHE/latest points at the newest
build. See docs/images.md.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			opts.Progress = os.Stderr
			im, err := images.Build(c.Context(), opts)
			if err != nil {
				return err
			}
			for _, k := range im.Kernels {
				fmt.Printf("%-18s %s (%s)\n", k.Flavour+" kernel:", k.Vmlinuz, k.Release)
				fmt.Printf("%-18s %s\n", k.Flavour+" initramfs:", k.Initramfs)
			}
			fmt.Printf("%-18s %s\n", "root disk:", im.RootDisk)
			return nil
		},
	}
	build.Flags().StringVar(&opts.CacheDir, "cache", "", "cache directory (default ~/.cache/gureum/images, or /var/cache/gureum/images as root)")
	build.Flags().StringSliceVar(&opts.Flavours, "flavour", nil, "kernel flavours to build: cloud, generic (default both)")
	build.Flags().BoolVar(&opts.Force, "force", false, "build again even if the cache has this build")
	build.Flags().IntVar(&opts.RootSizeMiB, "root-size", 256, "root disk size in MiB")
	cmd.AddCommand(build)
	return cmd
}
