package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"gureum/hypervisor/httpapi"
	"gureum/hypervisor/instancetype"
	"gureum/hypervisor/service"
)

// Defaults of the daemon's locations, overridden by flags or environment.
const (
	defaultDataDir = "/var/lib/gureum"
	defaultSocket  = "/run/gureum/gureum.sock"
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// newDaemonCommand is `gureum daemon`: the control plane of one host.
func newDaemonCommand() *cobra.Command {
	var (
		cfg       service.Config
		socket    string
		listen    string
		tokenFile string
		// defaultImage is a build directory of `gureum image build`.
		defaultImage string
		logLevel     string
		logJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "run the control plane: instances, volumes and snapshots over a REST API",
		Long: `Runs gureum's control plane for this host. State is kept in DIR/state.db
(bbolt); each instance runs in its own gureum-vmm process, started detached in
a cgroup, so stopping or killing the daemon leaves instances running: the next
daemon on the same data directory re-adopts them. SIGTERM or SIGINT shut the
daemon down cleanly. See docs/daemon.md.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return runDaemon(cfg, socket, listen, tokenFile, defaultImage, logLevel, logJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", envOr("GUREUM_DATA_DIR", defaultDataDir), "data directory (env GUREUM_DATA_DIR)")
	f.StringVar(&socket, "socket", envOr("GUREUM_SOCKET", defaultSocket), "unix socket of the API, mode 0660 (env GUREUM_SOCKET)")
	f.StringVar(&listen, "listen", "", "also serve the API on this TCP address (every request needs an account's API token)")
	f.StringVar(&tokenFile, "token-file", "", "file of extra bearer tokens accepted on --listen as the admin, one per line")
	f.StringVar(&defaultImage, "default-image", "", "build directory of gureum image build registered as the default AMI (default: the newest build in the image cache; the test guest on hosts that cannot boot Linux; none: no default image)")
	f.StringVar(&cfg.VMM, "vmm", "", "gureum-vmm binary (default: next to this binary)")
	f.StringVar(&cfg.RunDir, "run-dir", "", "directory of the VMMs' sockets and logs (default DATA-DIR/run)")
	f.StringVar(&cfg.PricesFile, "prices", "", "price list (default DATA-DIR/prices.json if present, else built-in prices)")
	f.Float64Var(&cfg.Host.CPUOvercommit, "cpu-overcommit", 1, "guest vCPUs offered per host CPU")
	f.Float64Var(&cfg.Host.MemoryOvercommit, "memory-overcommit", 1, "guest memory offered per byte of host memory")
	f.Uint64Var(&cfg.MaxGuestMemoryMiB, "max-guest-memory", 0, "give each guest at most this many MiB of RAM, whatever its type (0: the type's)")
	f.IntVar(&cfg.MaxGuestVCPUs, "max-guest-vcpus", 0, "give each guest at most this many vCPUs, whatever its type (0: the type's)")
	f.DurationVar(&cfg.StopTimeout, "stop-timeout", 30*time.Second, "how long a graceful stop waits for the guest to power off")
	f.DurationVar(&cfg.CreditEvery, "credit-interval", 10*time.Second, "how often CPU credits are sampled")
	f.DurationVar(&cfg.ReconcileEvery, "reconcile-interval", 5*time.Second, "how often failed steps are retried and expired instances removed")
	f.StringVar(&cfg.CgroupName, "cgroup", "gureum", "name of gureum's parent cgroup")
	f.BoolVar(&cfg.CgroupNested, "cgroup-nested", false, "make the parent cgroup under the daemon's own cgroup (a delegated subtree)")
	f.BoolVar(&cfg.Network.Enabled, "network", true, "give instances VPC networking (needs root, iproute2 and nftables)")
	f.StringSliceVar(&cfg.Zones, "zones", service.DefaultZones, "availability zones of this host")
	f.StringVar(&cfg.Network.DefaultVPCCIDR, "default-vpc-cidr", service.DefaultVPCCIDR, "range of the default VPC made at the first start (\"none\": no default VPC)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&logJSON, "log-json", false, "log JSON lines instead of text")
	return cmd
}

func runDaemon(cfg service.Config, socket, listen, tokenFile, defaultImage, logLevel string, logJSON bool) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if logJSON {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	log := slog.New(h)
	slog.SetDefault(log)
	cfg.Logger = log

	var tokens []string
	if tokenFile != "" {
		var err error
		if tokens, err = fileTokens(tokenFile); err != nil {
			return err
		}
	}
	var err error
	if cfg.VMM, err = vmmPath(cfg.VMM); err != nil {
		return err
	}
	// A child subreaper inherits the orphans of its descendants: the VMM
	// wrappers it starts stay its children even through a shell, so their
	// exits are reaped here rather than left to PID 1.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		log.Warn("cannot become a child subreaper", "err", err)
	}
	if cfg.Host.CPUOvercommit <= 0 || cfg.Host.MemoryOvercommit <= 0 {
		return errors.New("overcommit ratios must be positive")
	}
	cfg.Host = instancetype.Host{CPUOvercommit: cfg.Host.CPUOvercommit, MemoryOvercommit: cfg.Host.MemoryOvercommit}

	svc, err := service.Open(cfg)
	if err != nil {
		return err
	}
	defer svc.Close()
	registerDefaultImage(svc, defaultImage, cfg.VMM, log)

	ln, err := listenUnix(socket)
	if err != nil {
		return err
	}
	servers := []*http.Server{{Handler: httpapi.New(svc, httpapi.SocketAuth(svc), log), ReadHeaderTimeout: 10 * time.Second}}
	listeners := []net.Listener{ln}
	if listen != "" {
		tl, err := net.Listen("tcp", listen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen %s: %w", listen, err)
		}
		servers = append(servers, &http.Server{Handler: httpapi.New(svc, tcpAuth(svc, tokens), log), ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, tl)
		log.Info("serving the API on TCP", "addr", tl.Addr().String())
	}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- srv.Serve(listeners[i]) }()
	}
	log.Info("gureum daemon ready", "socket", socket, "data_dir", cfg.DataDir, "vmm", cfg.VMM)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		log.Info("shutting down; instances keep running", "signal", s.String())
	case err := <-errc:
		log.Error("API server failed", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		srv.Shutdown(ctx)
	}
	os.Remove(socket)
	return nil
}

// vmmPath resolves --vmm to the absolute path of a gureum-vmm binary
// (default: the one next to this binary). The path must be absolute: the
// supervisor starts every VMM's wrapper in that instance's run directory,
// where a path relative to the daemon's working directory names nothing.
func vmmPath(flag string) (string, error) {
	p := flag
	if p == "" {
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find gureum-vmm: %w", err)
		}
		p = filepath.Join(filepath.Dir(self), "gureum-vmm")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("gureum-vmm %s: %w", p, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("gureum-vmm: %w (give --vmm)", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("gureum-vmm: %s is not an executable file (give --vmm)", abs)
	}
	return abs, nil
}

// listenUnix listens on the socket path with mode 0660 (owner and group
// may use the API). A socket file left by a daemon that died is replaced;
// a live one (another daemon answers) is an error.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another daemon answers on %s", path)
	}
	os.Remove(path)
	// The umask makes the socket 0660 from its creation, with no moment
	// in which others could connect.
	old := unix.Umask(0o117)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	return ln, nil
}
