package api

import "time"

// BillingReport answers `gureum billing`: usage and cost per resource over
// a period. Costs are in the price file's currency; default prices are
// illustrative, not a quote.
type BillingReport struct {
	From     time.Time     `json:"from"`
	To       time.Time     `json:"to"`
	Currency string        `json:"currency"`
	Lines    []BillingLine `json:"lines"`
	Total    float64       `json:"total"`
}

// BillingLine is one resource's usage in the period.
type BillingLine struct {
	ResourceID string `json:"resource_id"`
	// Kind is instance, volume, snapshot or cpu-credits.
	Kind string `json:"kind"`
	// Type is the priced variant: instance type, volume type ...
	Type string `json:"type,omitempty"`
	// Quantity in Unit: seconds for instances, GB-month for storage,
	// vCPU-hours for surplus CPU credits.
	Quantity  float64 `json:"quantity"`
	Unit      string  `json:"unit"`
	UnitPrice float64 `json:"unit_price"`
	Cost      float64 `json:"cost"`
}
