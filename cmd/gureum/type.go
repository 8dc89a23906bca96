package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gureum/api"
)

// newTypeCommand is `gureum type`: the instance type catalog.
func newTypeCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "type", Aliases: []string{"types"}, Short: "instance types"}
	f := addAPIFlags(cmd)
	var family string
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "list instance types and whether this host can run them", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			all, err := f.client().InstanceTypes(c.Context())
			if err != nil {
				return err
			}
			var ts []api.InstanceTypeInfo
			for _, t := range all {
				if family == "" || strings.EqualFold(t.Family, family) || strings.HasPrefix(t.Name, family+".") {
					ts = append(ts, t)
				}
			}
			return f.print(ts, func(w *tabwriter.Writer) {
				row(w, "TYPE", "FAMILY", "VCPUS", "MEMORY", "INSTANCE STORE", "ACCELERATORS", "CREDITS", "AVAILABLE")
				for _, t := range ts {
					acc, cr, avail := "", "", "yes"
					if t.Accelerators > 0 {
						acc = fmt.Sprintf("%d %s", t.Accelerators, t.AcceleratorKind)
					}
					if b := t.Burstable; b != nil {
						cr = fmt.Sprintf("%g%% baseline, %g/h, max %g", b.BaselinePercent, b.CreditsPerHour, b.MaxCreditBalance)
					}
					if !t.Available {
						avail = "no: " + t.Reason
					}
					row(w, t.Name, t.Family, t.VCPUs, fmt.Sprintf("%g GiB", t.MemoryGiB), orDash(t.InstanceStore), orDash(acc), orDash(cr), avail)
				}
			})
		},
	}
	ls.Flags().StringVar(&family, "family", "", "only this family (letter, e.g. T) or prefix (e.g. m5)")
	cmd.AddCommand(ls)
	return cmd
}
