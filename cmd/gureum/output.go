package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"gureum/client"
)

// apiFlags are the flags every command that talks to the daemon shares:
// where it is and how to print answers.
type apiFlags struct {
	socket   string
	endpoint string
	token    string
	output   string
}

// addAPIFlags puts the shared flags on cmd (persistent, so subcommands
// inherit them).
func addAPIFlags(cmd *cobra.Command) *apiFlags {
	f := &apiFlags{}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.socket, "socket", envOr("GUREUM_SOCKET", defaultSocket), "the daemon's unix socket (env GUREUM_SOCKET)")
	pf.StringVar(&f.endpoint, "endpoint", os.Getenv("GUREUM_ENDPOINT"), "reach the daemon on TCP host:port instead (env GUREUM_ENDPOINT)")
	pf.StringVar(&f.token, "token", os.Getenv("GUREUM_TOKEN"), "API token: acts as its account (required with --endpoint; env GUREUM_TOKEN)")
	pf.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	return f
}

func (f *apiFlags) client() *client.Client {
	if f.endpoint != "" {
		return client.NewTCP(f.endpoint, f.token)
	}
	// On the unix socket a token is optional: without one the request
	// acts as the admin, with one as the token's account.
	return client.New(f.socket).WithToken(f.token)
}

// print writes v as JSON with -o json, else calls table.
func (f *apiFlags) print(v any, table func(w *tabwriter.Writer)) error {
	switch f.output {
	case "json":
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "table", "":
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		table(w)
		return w.Flush()
	}
	return fmt.Errorf("unknown output format %q (table or json)", f.output)
}

// row writes tab-separated cells and a newline.
func row(w io.Writer, cells ...any) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(w, strings.Join(parts, "\t"))
}

// orDash shows an empty cell as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// spinner shows a turning wheel and a status text on stderr while a wait
// runs, when stderr is a terminal; otherwise it prints nothing.
type spinner struct {
	tty   bool
	frame int
	start time.Time
}

func newSpinner() *spinner {
	fi, err := os.Stderr.Stat()
	return &spinner{tty: err == nil && fi.Mode()&os.ModeCharDevice != 0, start: time.Now()}
}

// update redraws the line with status.
func (s *spinner) update(status string) {
	if !s.tty {
		return
	}
	frames := `|/-\`
	s.frame++
	fmt.Fprintf(os.Stderr, "\r%c %s (%.0fs)\033[K", frames[s.frame%len(frames)], status, time.Since(s.start).Seconds())
}

// done clears the line.
func (s *spinner) done() {
	if s.tty {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
}

// rawTerminal puts stdin, if it is a terminal, in raw mode (keys go to the
// guest as typed, without echo or line editing) and returns the function
// that restores it.
func rawTerminal() func() {
	fd := int(os.Stdin.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return func() {}
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return func() {}
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}
