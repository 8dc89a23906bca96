// Command gureum is gureum's command-line tool. Today it drives a single
// gureum-vmm over its socket (`gureum vmm ...`); the daemon and the EC2-style
// commands join it as the control plane lands.
package main

import (
	"errors"
	"fmt"
	"os"

	"gureum/api"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		// The daemon's errors already read "Error (Code): message".
		var apiErr *api.Error
		if errors.As(err, &apiErr) {
			fmt.Fprintln(os.Stderr, apiErr.Error())
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "gureum:", err)
		os.Exit(1)
	}
}
