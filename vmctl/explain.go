package vmctl

import "fmt"

// LastFilter names the filter that removed the last candidates of a
// refusal ("none" when no host was considered at all).
func (e Explanation) LastFilter() string {
	for i := len(e.Filters) - 1; i >= 0; i-- {
		if e.Filters[i].Removed > 0 {
			return e.Filters[i].Name
		}
	}
	return "none"
}

// Explain is the decision in one line, as the guest records it.
func (d Decision) Explain() string {
	s := fmt.Sprintf("host %s of %d that fit (%s)", d.HostID, d.Feasible, d.Explanation.Summary)
	for _, soft := range d.Soft {
		s += "; " + soft
	}
	return s
}
