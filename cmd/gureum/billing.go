package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// newBillingCommand is `gureum billing`: usage and cost per resource.
func newBillingCommand() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "billing",
		Short: "show usage and cost per resource for a period (default: this month)",
		Args:  cobra.NoArgs,
	}
	f := addAPIFlags(cmd)
	cmd.Flags().StringVar(&from, "from", "", "start of the period (RFC 3339 or YYYY-MM-DD)")
	cmd.Flags().StringVar(&to, "to", "", "end of the period, exclusive (RFC 3339 or YYYY-MM-DD; default now)")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		var fromT, toT time.Time
		for _, p := range []struct {
			s   string
			dst *time.Time
		}{{from, &fromT}, {to, &toT}} {
			if p.s == "" {
				continue
			}
			t, err := time.Parse(time.RFC3339, p.s)
			if err != nil {
				if t, err = time.ParseInLocation("2006-01-02", p.s, time.Local); err != nil {
					return fmt.Errorf("bad time %q: want RFC 3339 or YYYY-MM-DD", p.s)
				}
			}
			*p.dst = t
		}
		rep, err := f.client().Billing(c.Context(), fromT, toT)
		if err != nil {
			return err
		}
		return f.print(rep, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "period %s to %s\n", rep.From.Local().Format(time.RFC3339), rep.To.Local().Format(time.RFC3339))
			row(w, "RESOURCE", "KIND", "TYPE", "QUANTITY", "UNIT", "UNIT PRICE", "COST")
			for _, l := range rep.Lines {
				row(w, l.ResourceID, l.Kind, orDash(l.Type), fmt.Sprintf("%.6g", l.Quantity), l.Unit,
					fmt.Sprintf("%.6g", l.UnitPrice), fmt.Sprintf("%.4f %s", l.Cost, rep.Currency))
			}
			row(w, "total", "", "", "", "", "", fmt.Sprintf("%.4f %s", rep.Total, rep.Currency))
		})
	}
	return cmd
}
