// Command gureum is gureum's command-line tool. Today it drives a single
// gureum-vmm over its socket (`gureum vmm ...`); the daemon and the EC2-style
// commands join it as the control plane lands.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "gureum:", err)
		os.Exit(1)
	}
}
