package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"gureum/vmm/api"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "gureum",
		Short:         "gureum: an EC2-style private cloud on Linux KVM",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "print the version",
		Run:   func(cmd *cobra.Command, args []string) { fmt.Println("gureum", version) },
	})
	root.AddCommand(newVMMCommand())
	root.AddCommand(newDiskCommand())
	root.AddCommand(withAMICommands(newImageCommand()))
	root.AddCommand(newDaemonCommand(), newInstanceCommand(), newVolumeCommand(), newSnapshotCommand(),
		newTypeCommand(), newBillingCommand(), newAccountCommand())
	root.AddCommand(newVPCCommand(), newSubnetCommand(), newSecurityGroupCommand())
	return root
}

// newVMMCommand talks to one gureum-vmm started with --api-sock.
func newVMMCommand() *cobra.Command {
	var sock string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "vmm",
		Short: "inspect and control one gureum-vmm through its API socket",
	}
	cmd.PersistentFlags().StringVar(&sock, "sock", "", "the VMM's --api-sock path (required)")
	cmd.MarkPersistentFlagRequired("sock")
	printJSON := func(v any) error {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "show the VM's state",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			info, err := api.NewClient(sock).VM(c.Context())
			if err != nil {
				return err
			}
			return printJSON(info)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "metrics",
		Short: "show per-vCPU and per-device counters",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			m, err := api.NewClient(sock).Metrics(c.Context())
			if err != nil {
				return err
			}
			return printJSON(m)
		},
	})
	for _, a := range []struct{ name, short string }{
		{"pause", "stop running the vCPUs (the guest keeps its state)"},
		{"resume", "run a paused VM again"},
		{"shutdown", "press Ctrl-Alt-Del, then stop the VM if it has not powered off within --timeout"},
		{"reboot", "reset the machine in place"},
		{"stop", "end the VM at once"},
		{"ctrl-alt-del", "press Ctrl-Alt-Del and nothing more"},
	} {
		action := a.name
		if action == "ctrl-alt-del" {
			action = "ctrl_alt_del"
		}
		sub := &cobra.Command{
			Use:   a.name,
			Short: a.short,
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, args []string) error {
				ctx, cancel := context.WithTimeout(c.Context(), 30*time.Second)
				defer cancel()
				return api.NewClient(sock).Action(ctx, api.ActionRequest{Action: action, TimeoutMS: int(timeout / time.Millisecond)})
			},
		}
		if a.name == "shutdown" {
			sub.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long the guest has to power off")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}
