package rack

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// NodeInfo describes a node for people and tools (JSON).
type NodeInfo struct {
	Name       string `json:"name"`
	MAC        string `json:"mac"`
	Serial     string `json:"serial"`
	CPUs       int    `json:"cpus"`
	MemoryMiB  int    `json:"memory_mib"`
	DisksMiB   []int  `json:"disks_mib"`
	Firmware   string `json:"firmware"`
	Power      string `json:"power"`
	IPMI       string `json:"ipmi,omitempty"`
	RedfishURL string `json:"redfish_url,omitempty"`
	User       string `json:"user"`
	// Password is the lab BMCs' password: a throwaway, printed on purpose
	// so that the servers can be onboarded by hand.
	Password string `json:"password"`
}

// Describe lists the rack's nodes.
func (r *Rack) Describe() []NodeInfo {
	out := make([]NodeInfo, 0, len(r.Nodes))
	for _, n := range r.Nodes {
		i := NodeInfo{
			Name: n.Name, MAC: n.MAC.String(), Serial: n.Serial,
			CPUs: n.Size.CPUs, MemoryMiB: n.Size.MemoryMiB, DisksMiB: n.Size.DisksMiB,
			Firmware: string(n.Firmware), Power: string(n.Power()),
			RedfishURL: n.RedfishURL, User: n.User, Password: n.Password,
		}
		if n.IPMI.IsValid() {
			i.IPMI = n.IPMI.String()
		}
		out = append(out, i)
	}
	return out
}

// Print writes a table of the nodes and their BMC addresses.
func (r *Rack) Print(w io.Writer) {
	nodes := r.Describe()
	fmt.Fprintf(w, "simulated rack %q: %d servers waiting to be onboarded (BMC user %q, password %q)\n",
		r.cfg.Name, len(nodes), r.cfg.User, r.cfg.Password)
	if r.cfg.Net != nil {
		fmt.Fprintf(w, "provisioning network: namespace %s, bridge %s, %s\n", r.cfg.Net.Name, r.cfg.Net.Bridge, r.cfg.Net.Gateway)
	}
	if ca := r.CAFile(); ca != "" {
		fmt.Fprintf(w, "Redfish CA certificate: %s\n", ca)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMAC\tCPUS\tMEMORY\tDISKS\tFIRMWARE\tPOWER\tIPMI (lanplus -C 3)\tREDFISH")
	for _, n := range nodes {
		disks := make([]string, len(n.DisksMiB))
		for i, d := range n.DisksMiB {
			disks[i] = fmt.Sprintf("%dM", d)
		}
		ipmi, rf := n.IPMI, n.RedfishURL
		if ipmi == "" {
			ipmi = "-"
		}
		if rf == "" {
			rf = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%dM\t%s\t%s\t%s\t%s\t%s\n",
			n.Name, n.MAC, n.CPUs, n.MemoryMiB, strings.Join(disks, ","), n.Firmware, n.Power, ipmi, rf)
	}
	_ = tw.Flush()
}
