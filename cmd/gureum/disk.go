package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"gureum/storage"
	"gureum/storage/qcow2"
	"gureum/storage/raw"
)

// newDiskCommand is `gureum disk`: qemu-img's everyday subcommands on
// image files, without the daemon.
func newDiskCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disk",
		Short: "create, inspect, check, convert and resize raw and qcow2 image files",
	}
	cmd.AddCommand(newDiskCreateCommand(), newDiskInfoCommand(), newDiskCheckCommand(),
		newDiskConvertCommand(), newDiskResizeCommand())
	return cmd
}

func newDiskCreateCommand() *cobra.Command {
	var format, backing, backingFormat string
	cmd := &cobra.Command{
		Use:   "create -f raw|qcow2 [-b BACKING [-F FORMAT]] FILE [SIZE]",
		Short: "create an image file (SIZE like 10G; with -b it defaults to the backing file's size)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			path := args[0]
			var size int64 = -1
			if len(args) == 2 {
				n, err := parseSize(args[1])
				if err != nil {
					return err
				}
				size = n
			}
			if err := createImage(path, format, size, backing, backingFormat); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "created %s (%s)\n", path, format)
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "qcow2", "image format: raw or qcow2")
	cmd.Flags().StringVarP(&backing, "backing", "b", "", "backing file (qcow2 only), relative to FILE's directory unless absolute")
	cmd.Flags().StringVarP(&backingFormat, "backing-format", "F", "", "backing file format (default: probe it)")
	return cmd
}

// createImage is `disk create`. size -1 means "the backing file's size".
func createImage(path, format string, size int64, backing, backingFormat string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("create %s: file exists", path)
	}
	if backing != "" {
		if format != "qcow2" {
			return fmt.Errorf("create %s: only qcow2 images can have a backing file", path)
		}
		b, err := storage.Open(resolveBacking(path, backing), storage.OpenOptions{ReadOnly: true, Format: backingFormat})
		if err != nil {
			return fmt.Errorf("create %s: backing file: %w", path, err)
		}
		if size < 0 {
			size = b.Size()
		}
		if backingFormat == "" {
			backingFormat = formatOf(b)
		}
		b.Close()
	}
	if size < 0 {
		return fmt.Errorf("create %s: give a SIZE (e.g. 10G)", path)
	}
	switch format {
	case "raw":
		return raw.Create(path, size)
	case "qcow2":
		return qcow2.Create(path, size, qcow2.CreateOptions{BackingFile: backing, BackingFormat: backingFormat})
	default:
		return fmt.Errorf("create %s: unknown format %q (raw or qcow2)", path, format)
	}
}

// resolveBacking is where a backing name points, as the image will see it.
func resolveBacking(image, backing string) string {
	if filepath.IsAbs(backing) {
		return backing
	}
	return filepath.Join(filepath.Dir(image), backing)
}

// formatOf names the format of an open disk.
func formatOf(d storage.Disk) string {
	switch d.(type) {
	case *qcow2.Image:
		return "qcow2"
	case *raw.Disk:
		return "raw"
	}
	return "unknown"
}

// chainLink is one file of a backing chain, as info shows it.
type chainLink struct {
	path, format      string
	virtual, allocked int64
}

func newDiskInfoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "info FILE",
		Short: "show format, virtual and allocated size, and the backing chain",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			chain, err := imageChain(args[0])
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			for i, l := range chain {
				if i > 0 {
					fmt.Fprintln(w, "backed by:")
				}
				fmt.Fprintf(w, "image: %s\nformat: %s\nvirtual size: %s (%d bytes)\nallocated size: %s\n",
					l.path, l.format, humanSize(l.virtual), l.virtual, humanSize(l.allocked))
			}
			return nil
		},
	}
}

// imageChain opens path with its backing chain and describes each file,
// top first.
func imageChain(path string) ([]chainLink, error) {
	d, err := storage.Open(path, storage.OpenOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var chain []chainLink
	for d != nil {
		alloc, err := allocatedSize(path)
		if err != nil {
			return nil, err
		}
		chain = append(chain, chainLink{path: path, format: formatOf(d), virtual: d.Size(), allocked: alloc})
		img, ok := d.(*qcow2.Image)
		if !ok || img.BackingFile() == "" {
			break
		}
		path = resolveBacking(path, img.BackingFile())
		d = img.Backing()
	}
	return chain, nil
}

func allocatedSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512, nil
	}
	return st.Size(), nil
}

func newDiskConvertCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "convert -O raw|qcow2 SRC DST",
		Short: "copy an image (with its backing chain flattened) into a new file; zero ranges stay sparse",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return convertImage(args[0], args[1], format)
		},
	}
	cmd.Flags().StringVarP(&format, "output-format", "O", "qcow2", "format of DST: raw or qcow2")
	return cmd
}

// convertImage is `disk convert`: DST must not exist; on failure it is
// removed.
func convertImage(src, dst, format string) (err error) {
	in, err := storage.Open(src, storage.OpenOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer in.Close()
	if err := createImage(dst, format, in.Size(), "", ""); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(dst)
		}
	}()
	out, err := storage.Open(dst, storage.OpenOptions{Format: format})
	if err != nil {
		return err
	}
	if err := copyDisk(out, in); err != nil {
		out.Close()
		return fmt.Errorf("convert %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("convert %s to %s: %w", src, dst, err)
	}
	return nil
}

// copyDisk copies in to out in 1 MiB pieces, skipping 64 KiB blocks that
// are all zero: a new image already reads zero there, and not writing
// keeps it sparse.
func copyDisk(out, in storage.Disk) error {
	const piece, block = 1 << 20, 64 << 10
	buf := make([]byte, piece)
	size := in.Size()
	for off := int64(0); off < size; off += piece {
		n := min(int64(piece), size-off)
		if _, err := in.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		for b := int64(0); b < n; b += block {
			e := min(b+block, n)
			if isZero(buf[b:e]) {
				continue
			}
			if _, err := out.WriteAt(buf[b:e], off+b); err != nil {
				return err
			}
		}
	}
	return out.Flush()
}

func isZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

func newDiskResizeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "resize FILE SIZE",
		Short: "grow an image to SIZE (like 20G, or +5G); shrinking is refused",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			d, err := storage.Open(args[0], storage.OpenOptions{})
			if err != nil {
				return err
			}
			size, err := parseSize(strings.TrimPrefix(args[1], "+"))
			if err != nil {
				d.Close()
				return err
			}
			if strings.HasPrefix(args[1], "+") {
				size += d.Size()
			}
			r, ok := d.(storage.Resizer)
			if !ok {
				d.Close()
				return fmt.Errorf("resize %s: this format cannot be resized", args[0])
			}
			if err := r.Resize(size); err != nil {
				d.Close()
				if errors.Is(err, storage.ErrShrink) {
					return fmt.Errorf("resize %s: images can only grow (now %d bytes, asked %d)", args[0], d.Size(), size)
				}
				return err
			}
			if err := d.Close(); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "resized %s to %s\n", args[0], humanSize(size))
			return nil
		},
	}
}

// parseSize reads "1048576", "512K", "64M", "10G", "2T" (powers of 1024;
// an optional trailing "iB" or "B" is accepted).
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	mult := int64(1)
	if t != "" {
		if i := strings.IndexByte("KMGTP", t[len(t)-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q (examples: 1048576, 512M, 10G)", s)
	}
	return n * mult, nil
}

// humanSize prints bytes in the largest binary unit that keeps one
// decimal.
func humanSize(n int64) string {
	const units = "KMGTP"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f, u := float64(n)/1024, 0
	for f >= 1024 && u < len(units)-1 {
		f, u = f/1024, u+1
	}
	return fmt.Sprintf("%.1f %ciB", f, units[u])
}
