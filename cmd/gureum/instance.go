package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"gureum/api"
	"gureum/client"
)

// newInstanceCommand is `gureum instance`: EC2's instance operations.
func newInstanceCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "instance", Aliases: []string{"instances", "i"}, Short: "run and manage instances"}
	f := addAPIFlags(cmd)
	cmd.AddCommand(instanceRun(f), instanceList(f), instanceDescribe(f), instanceConsole(f))
	for _, a := range []struct{ name, short, want string }{
		{"start", "start stopped instances", api.StateNameRunning},
		{"stop", "stop running EBS-backed instances", api.StateNameStopped},
		{"reboot", "reboot running instances", api.StateNameRunning},
		{"terminate", "terminate instances", api.StateNameTerminated},
	} {
		cmd.AddCommand(instanceAction(f, a.name, a.short, a.want))
	}
	return cmd
}

func instanceTable(w *tabwriter.Writer, ins []api.Instance) {
	row(w, "ID", "NAME", "TYPE", "STATE", "ROOT", "LAUNCHED", "REASON")
	for _, in := range ins {
		name := ""
		for _, t := range in.Tags {
			if t.Key == "Name" {
				name = t.Value
			}
		}
		reason := ""
		if in.StateReason != nil {
			reason = in.StateReason.Code
		}
		row(w, in.InstanceID, orDash(name), in.InstanceType, in.State.Name, in.RootDeviceType,
			in.LaunchTime.Local().Format("2006-01-02 15:04:05"), orDash(reason))
	}
}

func instanceRun(f *apiFlags) *cobra.Command {
	var (
		req     api.RunInstancesRequest
		img     api.ImageSpec
		tags    []string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "launch instances from an AMI (--image-id) or from boot files (--kernel ...)",
		Example: `  gureum instance run --kernel bin/testguest.elf --type t3.nano --name web --wait
  gureum instance run --image-id ami-0123456789abcdef0 --type m5.large --count 3`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if img.Kernel != "" {
				// The daemon runs elsewhere: local paths become absolute.
				for _, p := range []*string{&img.Kernel, &img.Initrd, &img.RootDisk} {
					if *p != "" {
						abs, err := filepath.Abs(*p)
						if err != nil {
							return err
						}
						*p = abs
					}
				}
				req.Image = &img
			}
			for _, t := range tags {
				k, v, _ := strings.Cut(t, "=")
				req.Tags = append(req.Tags, api.Tag{Key: k, Value: v})
			}
			if req.UserData != "" && strings.HasPrefix(req.UserData, "@") {
				b, err := os.ReadFile(req.UserData[1:])
				if err != nil {
					return fmt.Errorf("user data: %w", err)
				}
				req.UserData = string(b)
			}
			cl := f.client()
			res, err := cl.RunInstances(c.Context(), req)
			if err != nil {
				return err
			}
			ins := res.Instances
			if wait {
				ids := make([]string, len(ins))
				for i, in := range ins {
					ids[i] = in.InstanceID
				}
				if ins, err = waitFor(c.Context(), cl, ids, []string{api.StateNameRunning, api.StateNameStopped, api.StateNameTerminated}, timeout); err != nil {
					return err
				}
			}
			return f.print(res, func(w *tabwriter.Writer) { instanceTable(w, ins) })
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.ImageID, "image-id", "", "AMI to launch")
	fl.StringVar(&img.Kernel, "kernel", "", "kernel to boot (instead of an AMI)")
	fl.StringVar(&img.Initrd, "initrd", "", "initrd (with --kernel)")
	fl.StringVar(&img.Cmdline, "cmdline", "", "kernel command line (with --kernel)")
	fl.StringVar(&img.RootDisk, "root-disk", "", "root disk image the root volume is made from (with --kernel)")
	fl.StringVarP(&req.InstanceType, "type", "t", "t3.micro", "instance type (gureum type ls)")
	fl.IntVarP(&req.Count, "count", "n", 1, "how many instances")
	fl.StringVar(&req.Name, "name", "", "the Name tag")
	fl.StringSliceVar(&tags, "tag", nil, "tags as key=value (repeatable)")
	fl.StringVar(&req.UserData, "user-data", "", "user data, or @FILE")
	fl.StringVar(&req.RootDeviceType, "root-device-type", "", "ebs (default) or instance-store")
	fl.Int64Var(&req.RootVolumeGiB, "root-size", 0, "root volume size in GiB")
	fl.StringVar(&req.RootVolumeType, "root-type", "", "root volume type: gp3 (default), io2, st1, sc1")
	fl.StringSliceVar(&req.Volumes, "volume", nil, "existing volumes to attach (repeatable)")
	fl.StringVar(&req.ShutdownBehavior, "shutdown-behavior", "", "what a poweroff in the guest does: stop (default) or terminate")
	fl.StringVar(&req.CreditMode, "credits", "", "CPU credit mode of T types: standard or unlimited")
	fl.StringVar(&req.SubnetID, "subnet", "", "subnet to launch into (default: the default subnet of the first zone)")
	fl.StringSliceVar(&req.SecurityGroupIDs, "security-group", nil, "security groups of the subnet's VPC (default: its default group; repeatable)")
	fl.StringVar(&req.PrivateIP, "private-ip", "", "the private address (one instance only; default: the next free)")
	fl.StringVar(&req.MetadataHTTPTokens, "metadata-tokens", "", "instance metadata: optional (IMDSv1 and v2, default) or required (v2 only)")
	fl.BoolVar(&wait, "wait", false, "wait until the instances run")
	fl.DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait waits")
	return cmd
}

// waitFor waits with a spinner until every instance is in one of states.
func waitFor(ctx context.Context, cl *client.Client, ids, states []string, timeout time.Duration) ([]api.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sp := newSpinner()
	defer sp.done()
	return cl.WaitState(ctx, ids, states, func(ins []api.Instance) {
		count := map[string]int{}
		for _, in := range ins {
			count[in.State.Name]++
		}
		var parts []string
		for _, s := range []string{"pending", "running", "stopping", "stopped", "shutting-down", "terminated"} {
			if count[s] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", count[s], s))
			}
		}
		sp.update("waiting: " + strings.Join(parts, ", "))
	})
}

func instanceList(f *apiFlags) *cobra.Command {
	var flt client.Filter
	cmd := &cobra.Command{
		Use:     "ls [ID...]",
		Aliases: []string{"list"},
		Short:   "list instances",
		RunE: func(c *cobra.Command, args []string) error {
			flt.IDs = args
			ins, err := f.client().DescribeInstances(c.Context(), flt)
			if err != nil {
				return err
			}
			return f.print(ins, func(w *tabwriter.Writer) { instanceTable(w, ins) })
		},
	}
	cmd.Flags().StringSliceVar(&flt.States, "state", nil, "only instances in these states")
	cmd.Flags().StringSliceVar(&flt.Tags, "tag", nil, "only instances with this tag (key=value or key)")
	return cmd
}

func instanceDescribe(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "describe ID",
		Short: "show everything about one instance",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			in, err := f.client().Instance(c.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(in, func(w *tabwriter.Writer) {
				row(w, "id", in.InstanceID)
				row(w, "owner", in.OwnerID)
				row(w, "image", orDash(in.ImageID))
				row(w, "type", in.InstanceType)
				row(w, "state", fmt.Sprintf("%s (%d)", in.State.Name, in.State.Code))
				if in.StateReason != nil {
					row(w, "state reason", in.StateReason.Message)
				}
				if in.StateTransitionReason != "" {
					row(w, "transition", in.StateTransitionReason)
				}
				row(w, "launched", in.LaunchTime.Local().Format(time.RFC3339))
				row(w, "root device", in.RootDeviceType+" "+in.RootDeviceName)
				if in.SubnetID != "" {
					row(w, "network", fmt.Sprintf("%s %s %s in %s", in.PrivateIP, in.MACAddress, in.SubnetID, in.VpcID))
					row(w, "zone", in.AvailabilityZone)
					row(w, "security groups", strings.Join(in.SecurityGroupIDs, " "))
					row(w, "metadata tokens", in.MetadataHTTPTokens)
				}
				for _, b := range in.BlockDevices {
					row(w, "volume", fmt.Sprintf("%s %s delete-on-termination=%v", b.DeviceName, b.VolumeID, b.DeleteOnTermination))
				}
				if in.InstanceStoreGB > 0 {
					row(w, "instance store", fmt.Sprintf("%d GB", in.InstanceStoreGB))
				}
				row(w, "shutdown behavior", in.ShutdownBehavior)
				for _, t := range in.Tags {
					row(w, "tag", t.Key+"="+t.Value)
				}
				if cr := in.Credits; cr != nil {
					row(w, "cpu credits", fmt.Sprintf("%s, balance %.2f, surplus %.2f, charged %.2f, throttled %v",
						cr.Mode, cr.Balance, cr.SurplusBalance, cr.SurplusCharged, cr.Throttled))
				}
			})
		},
	}
}

func instanceAction(f *apiFlags, name, short, want string) *cobra.Command {
	var (
		force    bool
		deadline time.Duration
		wait     bool
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   name + " ID...",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl := f.client()
			req := api.StopRequest{Force: force, DeadlineSeconds: int(deadline.Round(time.Second) / time.Second)}
			var changes []api.StateChange
			for _, id := range args {
				var ch api.StateChange
				var err error
				switch name {
				case "start":
					ch, err = cl.StartInstance(c.Context(), id)
				case "stop":
					ch, err = cl.StopInstance(c.Context(), id, req)
				case "reboot":
					ch, err = cl.RebootInstance(c.Context(), id)
				case "terminate":
					ch, err = cl.TerminateInstance(c.Context(), id, req)
				}
				if err != nil {
					return err
				}
				changes = append(changes, ch)
			}
			if wait {
				states := []string{want}
				if name == "start" {
					states = append(states, api.StateNameStopped, api.StateNameTerminated)
				}
				ins, err := waitFor(c.Context(), cl, args, states, timeout)
				if err != nil {
					return err
				}
				for i := range changes {
					changes[i].CurrentState = ins[i].State
				}
			}
			return f.print(changes, func(w *tabwriter.Writer) {
				row(w, "ID", "PREVIOUS", "CURRENT")
				for _, ch := range changes {
					row(w, ch.InstanceID, ch.PreviousState.Name, ch.CurrentState.Name)
				}
			})
		},
	}
	if name == "stop" || name == "terminate" {
		cmd.Flags().BoolVar(&force, "force", false, "kill the VMM instead of asking the guest to power off")
		cmd.Flags().DurationVar(&deadline, "deadline", 0, "how long the guest has to power off (default: the daemon's)")
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the instances are "+want)
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait waits")
	return cmd
}

func instanceConsole(f *apiFlags) *cobra.Command {
	var attach bool
	cmd := &cobra.Command{
		Use:   "console ID",
		Short: "print the serial console's output, or attach to it (--attach; Ctrl-] detaches)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl := f.client()
			if !attach {
				out, err := cl.ConsoleOutput(c.Context(), args[0])
				if err != nil {
					return err
				}
				if f.output == "json" {
					return f.print(out, nil)
				}
				fmt.Print(out.Output)
				return nil
			}
			conn, err := cl.AttachConsole(c.Context(), args[0])
			if err != nil {
				return err
			}
			defer conn.Close()
			fmt.Fprintln(os.Stderr, "attached to the console of "+args[0]+"; Ctrl-] detaches")
			restore := rawTerminal()
			defer restore()
			done := make(chan struct{})
			go func() {
				io.Copy(os.Stdout, conn)
				close(done)
			}()
			go func() {
				buf := make([]byte, 256)
				for {
					n, err := os.Stdin.Read(buf)
					if err != nil {
						conn.Close()
						return
					}
					for i := 0; i < n; i++ {
						if buf[i] == 0x1d { // Ctrl-]
							conn.Write(buf[:i])
							conn.Close()
							return
						}
					}
					if _, err := conn.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
			<-done
			return nil
		},
	}
	cmd.Flags().BoolVar(&attach, "attach", false, "attach to the live console instead of printing its log")
	return cmd
}
