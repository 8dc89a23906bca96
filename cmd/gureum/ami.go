package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gureum/api"
	"gureum/client"
	"gureum/hypervisor/service"
	"gureum/images"
	"gureum/images/ami"
	"gureum/images/nested"
)

// withAMICommands adds the AMI registry's subcommands to `gureum image`,
// beside `image build` (which works without a daemon). Each subcommand
// has its own daemon flags so that `image build` keeps only its own.
func withAMICommands(image *cobra.Command) *cobra.Command {
	image.Short = "build guest images and manage AMIs"
	for _, mk := range []func(*apiFlags) *cobra.Command{
		imageRegister, imageList, imageDescribe, imageDeregister, imageCreate,
		func(f *apiFlags) *cobra.Command { return imageShare(f, true) },
		func(f *apiFlags) *cobra.Command { return imageShare(f, false) },
		imagePermissions,
	} {
		// The subcommand's closures read f when they run; the flag values
		// land in the struct addAPIFlags binds and are copied over first.
		f := &apiFlags{}
		sub := mk(f)
		bound := addAPIFlags(sub)
		sub.PreRun = func(*cobra.Command, []string) { *f = *bound }
		image.AddCommand(sub)
	}
	return image
}

func imageTable(ims []api.Image) func(w *tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		row(w, "ID", "NAME", "OWNER", "STATE", "VISIBILITY", "ROOT", "BOOT", "CREATED")
		for _, im := range ims {
			owner := im.OwnerID
			if im.ImageOwnerAlias != "" {
				owner = im.ImageOwnerAlias
			}
			vis := "private"
			if im.Public {
				vis = "public"
			}
			row(w, im.ImageID, im.Name, owner, im.State, vis,
				fmt.Sprintf("%s %d GiB", orDash(im.RootSnapshotID), im.RootSizeGiB), im.BootMode,
				im.CreationDate.Local().Format("2006-01-02 15:04:05"))
		}
	}
}

func imageRegister(f *apiFlags) *cobra.Command {
	var req api.RegisterImageRequest
	cmd := &cobra.Command{
		Use:   "register NAME --kernel FILE --snapshot snap-…",
		Short: "register an AMI from a kernel (and initramfs) and a snapshot of yours",
		Long: `Registers an AMI. The daemon copies the kernel and initramfs (files on its
host) into its image store, so later changes to the files do not change the
AMI. The root snapshot must be yours and completed; instances launched from
the AMI get copy-on-write root volumes made from it.`,
		Example: `  gureum volume create --size 1
  gureum snapshot create vol-…
  gureum image register my-guest --kernel bin/testguest.elf --snapshot snap-…`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			req.Name = args[0]
			for _, p := range []*string{&req.KernelPath, &req.InitramfsPath} {
				if *p != "" {
					abs, err := filepath.Abs(*p)
					if err != nil {
						return err
					}
					*p = abs
				}
			}
			cl := f.client()
			id, err := cl.RegisterImage(c.Context(), req)
			if err != nil {
				return err
			}
			im, err := cl.Image(c.Context(), id)
			if err != nil {
				return err
			}
			return f.print(im, imageTable([]api.Image{im}))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.KernelPath, "kernel", "", "kernel: a bzImage or a PVH ELF (required)")
	fl.StringVar(&req.InitramfsPath, "initrd", "", "initramfs")
	fl.StringVar(&req.RootSnapshotID, "snapshot", "", "root snapshot, snap-… (required)")
	fl.StringVar(&req.KernelCmdline, "cmdline", "", "kernel command line")
	fl.StringVar(&req.Description, "description", "", "free text, up to 255 characters")
	fl.StringVar(&req.RootDeviceName, "root-device", "", "root device name (default /dev/vda)")
	fl.StringVar(&req.BootMode, "boot-mode", "", "bzimage or pvh (default: what the kernel file is)")
	return cmd
}

func imageList(f *apiFlags) *cobra.Command {
	var (
		filter client.ImageFilter
		public string
	)
	cmd := &cobra.Command{
		Use:     "ls [ID...]",
		Aliases: []string{"list"},
		Short:   "list the AMIs you may launch: yours, shared with you, public",
		Args:    cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			filter.IDs = args
			if public != "" {
				b := public == "true"
				if !b && public != "false" {
					return fmt.Errorf("--public: use true or false, not %q", public)
				}
				filter.Public = &b
			}
			ims, err := f.client().DescribeImages(c.Context(), filter)
			if err != nil {
				return err
			}
			return f.print(ims, imageTable(ims))
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&filter.Owners, "owner", nil, "self, gureum (the default images) or an account id")
	fl.StringSliceVar(&filter.ExecutableBy, "executable-by", nil, "self (shared with you), all (public) or an account id")
	fl.StringVar(&filter.Name, "name", "", "name pattern with * and ?")
	fl.StringVar(&public, "public", "", "true or false")
	return cmd
}

func imageDescribe(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use: "describe ID", Short: "show one AMI", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			im, err := f.client().Image(c.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(im, func(w *tabwriter.Writer) {
				kv := func(k, v string) { row(w, k+":", orDash(v)) }
				kv("id", im.ImageID)
				kv("name", im.Name)
				kv("description", im.Description)
				kv("owner", im.OwnerID+" "+im.ImageOwnerAlias)
				kv("state", im.State)
				if im.StateReason != nil {
					kv("state reason", im.StateReason.Message)
				}
				kv("public", fmt.Sprint(im.Public))
				kv("architecture", im.Architecture)
				kv("root", fmt.Sprintf("%s on %s, %d GiB", im.RootSnapshotID, im.RootDeviceName, im.RootSizeGiB))
				kv("boot mode", im.BootMode)
				kv("kernel sha256", im.KernelSHA256)
				kv("initramfs sha256", im.InitramfsSHA256)
				kv("command line", im.KernelCmdline)
				kv("created", im.CreationDate.Local().Format("2006-01-02 15:04:05"))
			})
		},
	}
}

func imageDeregister(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use: "deregister ID...", Aliases: []string{"rm"}, Short: "deregister AMIs of yours (their snapshots stay)",
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			for _, id := range args {
				if err := f.client().DeregisterImage(c.Context(), id); err != nil {
					return err
				}
				fmt.Println(id)
			}
			return nil
		},
	}
}

func imageCreate(f *apiFlags) *cobra.Command {
	var req api.CreateImageRequest
	cmd := &cobra.Command{
		Use:   "create INSTANCE NAME",
		Short: "make an AMI from a snapshot of an instance's root volume",
		Long: `Snapshots the instance's root volume (also while it runs: what its disk
holds at that moment, as after a power cut; stop it first for a clean file
system) and registers an AMI with the boot recipe the instance was launched
with. The instance must have been launched from an AMI.`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			req.Name = args[1]
			cl := f.client()
			id, err := cl.CreateImage(c.Context(), args[0], req)
			if err != nil {
				return err
			}
			im, err := cl.Image(c.Context(), id)
			if err != nil {
				return err
			}
			return f.print(im, imageTable([]api.Image{im}))
		},
	}
	cmd.Flags().StringVar(&req.Description, "description", "", "free text")
	return cmd
}

// imageShare is `image share` (add) and `image unshare` (remove).
func imageShare(f *apiFlags, add bool) *cobra.Command {
	use, short := "share", "let accounts (or everyone, --public) launch an AMI of yours"
	if !add {
		use, short = "unshare", "take back launch permissions"
	}
	var (
		accts  []string
		public bool
	)
	cmd := &cobra.Command{
		Use: use + " ID [ACCOUNT...]", Short: short, Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var perms []api.LaunchPermission
			for _, a := range append(accts, args[1:]...) {
				perms = append(perms, api.LaunchPermission{UserID: a})
			}
			if public {
				perms = append(perms, api.LaunchPermission{Group: api.LaunchPermissionGroupAll})
			}
			if len(perms) == 0 {
				return fmt.Errorf("name accounts or give --public")
			}
			req := api.ModifyLaunchPermissionRequest{Add: perms}
			if !add {
				req = api.ModifyLaunchPermissionRequest{Remove: perms}
			}
			cl := f.client()
			if err := cl.ModifyImageLaunchPermission(c.Context(), args[0], req); err != nil {
				return err
			}
			return printPermissions(c, f, cl, args[0])
		},
	}
	cmd.Flags().StringSliceVar(&accts, "account", nil, "account ids (repeatable)")
	cmd.Flags().BoolVar(&public, "public", false, "everyone (the group all)")
	return cmd
}

func imagePermissions(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use: "permissions ID", Short: "show who may launch an AMI of yours", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return printPermissions(c, f, f.client(), args[0])
		},
	}
}

func printPermissions(c *cobra.Command, f *apiFlags, cl *client.Client, id string) error {
	p, err := cl.ImageLaunchPermissions(c.Context(), id)
	if err != nil {
		return err
	}
	return f.print(p, func(w *tabwriter.Writer) {
		row(w, "IMAGE", "LAUNCH PERMISSION")
		if len(p.LaunchPermissions) == 0 {
			row(w, p.ImageID, "private (owner only)")
		}
		for _, lp := range p.LaunchPermissions {
			if lp.Group != "" {
				row(w, p.ImageID, "group "+lp.Group)
			} else {
				row(w, p.ImageID, "account "+lp.UserID)
			}
		}
	})
}

// The default image, registered by the daemon at every start (only the
// first registration reads files; docs/images.md).

// pickDefaultImage decides what the daemon registers as its default AMI:
//
//   - on a host whose KVM cannot boot a stock Linux kernel (PVM: no
//     VT-x/AMD-V module), always the test guest, testguest.elf beside
//     gureum-vmm;
//   - otherwise the Debian guest of `gureum image build`: the build in
//     dir if given, else the newest build in the image cache;
//   - otherwise (nothing built yet) the test guest.
//
// why says which, in one line, for the log. ok is false when there is
// nothing to register (no test guest either).
func pickDefaultImage(dir, vmm string) (d ami.DefaultImage, why string, ok bool, err error) {
	testGuest := ami.DefaultImage{
		Name:        ami.DefaultTestGuestName,
		Description: "gureum's test guest (a small PVH kernel that prints ready and idles) with an empty 1 GiB root",
		Kernel:      filepath.Join(filepath.Dir(vmm), "testguest.elf"),
		RootSizeGiB: 1,
	}
	useTestGuest := func(why string) (ami.DefaultImage, string, bool, error) {
		if _, err := os.Stat(testGuest.Kernel); err != nil {
			return ami.DefaultImage{}, why + "; no test guest at " + testGuest.Kernel + " either", false, nil
		}
		return testGuest, why, true, nil
	}
	if !nested.HardwareKVM() {
		return useTestGuest("this host's KVM has no VT-x/AMD-V (PVM) and cannot boot Linux guests: the default image is the test guest")
	}
	if dir == "" {
		cache, err := images.DefaultCacheDir()
		if err != nil {
			return useTestGuest("no image cache")
		}
		dir = filepath.Join(cache, "latest")
		if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
			return useTestGuest("no Debian image built yet (gureum image build): the default image is the test guest")
		}
	}
	d, err = debianImage(dir)
	if err != nil {
		return ami.DefaultImage{}, "", false, err
	}
	return d, "the default image is the Debian guest built in " + dir, true, nil
}

// debianImage reads a build of `gureum image build` (its manifest.json)
// and returns its cloud kernel (or the first one), initramfs and root
// disk.
func debianImage(dir string) (ami.DefaultImage, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return ami.DefaultImage{}, fmt.Errorf("default image: %w", err)
	}
	var m images.Image
	if err := json.Unmarshal(b, &m); err != nil || len(m.Kernels) == 0 || m.RootDisk == "" {
		return ami.DefaultImage{}, fmt.Errorf("default image: %s/manifest.json is not a finished build (%v)", dir, err)
	}
	k := m.Kernels[0]
	if cloud, ok := m.Kernel("cloud"); ok {
		k = cloud
	}
	inDir := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	return ami.DefaultImage{
		Name:          ami.DefaultLinuxName,
		Description:   "Debian 12 with the " + k.Release + " kernel, built by gureum image build",
		Kernel:        inDir(k.Vmlinuz),
		Initramfs:     inDir(k.Initramfs),
		RootDisk:      inDir(m.RootDisk),
		KernelCmdline: "console=ttyS0 quiet",
	}, nil
}

// registerDefaultImage registers the default AMI at daemon start. A
// failure is logged, not fatal: the daemon still serves everything else.
// "none" registers nothing (for tests that account for every file).
func registerDefaultImage(svc *service.Service, dir, vmm string, log *slog.Logger) {
	if dir == "none" {
		return
	}
	d, why, ok, err := pickDefaultImage(dir, vmm)
	if err != nil {
		log.Error("no default image", "err", err)
		return
	}
	log.Info(why)
	if !ok {
		return
	}
	im, err := svc.RegisterDefaultImage(d)
	if err != nil {
		log.Error("default image not registered", "name", d.Name, "err", err)
		return
	}
	log.Info("default image", "image", im.ImageID, "name", im.Name, "public", im.Public)
}

// fileTokens reads a --token-file: one token per line, # comments.
func fileTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("token file %s holds no token", path)
	}
	return out, nil
}
