// Package rack runs a simulated rack for the lab, the end-to-end tests and
// `make run`: N servers, each a QEMU (TCG) machine on a tap in the
// provisioning network namespace, each with two BMCs that drive the same
// machine:
//
//   - an IPMI BMC: OpenIPMI's ipmi_sim on its own 127.0.0.1 UDP port, whose
//     chassis_control program is a small generated bash script that asks this
//     harness (over a loopback TCP socket) to power the machine on or off and
//     to set its next boot device; ipmi_sim also serves temperature, fan and
//     power sensors that follow the machine's power state;
//   - a Redfish BMC: a small Redfish service written here (service root,
//     sessions and basic auth, Systems with PowerState, boot override and the
//     Reset action, Chassis Thermal and Power, Managers) over TLS with a
//     certificate generated for the rack.
//
// The harness is the parent of every process it starts (ipmi_sim, QEMU), so
// it reaps them: no zombies. Stop stops them all by PID. Faults (a slow BMC,
// a BMC that lies about power) can be injected per node for tests.
package rack

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/pki"
	"github.com/rackcloud/rackcloud/lab/qemu"
)

// Defaults for Config.
const (
	DefaultName  = "rack"
	DefaultUser  = "admin"
	DefaultNodes = 3
)

// Size is the hardware of one simulated server.
type Size struct {
	CPUs      int
	MemoryMiB int
	// DisksMiB are the sizes of the server's raw disks (created sparse).
	DisksMiB []int
}

// DefaultSizes are given to nodes in turn, so that inventory and placement
// have different machines to tell apart.
var DefaultSizes = []Size{
	{CPUs: 1, MemoryMiB: 512, DisksMiB: []int{2048}},
	{CPUs: 2, MemoryMiB: 768, DisksMiB: []int{4096, 1024}},
	{CPUs: 4, MemoryMiB: 1024, DisksMiB: []int{8192}},
}

// Config describes a rack.
type Config struct {
	// Name prefixes node names ("<name>-node<i>"); DefaultName when empty.
	Name string
	// Nodes is the number of servers; DefaultNodes when zero.
	Nodes int
	// Dir holds one directory per node (disks, console, BMC state) and the
	// rack's TLS CA certificate. Required.
	Dir string
	// Net is the provisioning network: each node gets a tap on its bridge.
	// Nil means the nodes have no NIC.
	Net *netns.Net
	// Sizes are handed out to nodes in turn; DefaultSizes when empty.
	Sizes []Size
	// Firmware is handed out to nodes in turn; BIOS when empty.
	Firmware []qemu.Firmware
	// User and Password log in to every BMC of the rack; DefaultUser and a
	// random password when empty.
	User     string
	Password string
	// Redfish starts a Redfish BMC per node beside the IPMI one.
	Redfish bool
	// IPMIPort and RedfishPort, when set, are node 1's BMC ports on
	// 127.0.0.1; node i gets port+i-1. Zero picks free ports.
	IPMIPort    int
	RedfishPort int
	// NoIPMI skips the ipmi_sim BMCs (Redfish-only racks).
	NoIPMI bool
	// Virtual keeps QEMU out: powering a node on only flips its state. For
	// benchmarks and tests of the BMC path alone.
	Virtual bool
	// Logger receives the harness's events; discarded when nil.
	Logger *slog.Logger
}

// Rack is a running simulated rack.
type Rack struct {
	cfg   Config
	log   *slog.Logger
	Nodes []*Node

	ctl    *control
	tls    *pki.PKI
	mu     sync.Mutex
	closed bool
}

// Start creates the nodes' directories, the rack's TLS certificate, the
// chassis control server and every node's BMCs. Nodes start powered off,
// waiting to be onboarded. On error everything already started is stopped.
func Start(ctx context.Context, cfg Config) (*Rack, error) {
	if cfg.Dir == "" {
		return nil, errors.New("rack: Config.Dir is empty")
	}
	if cfg.NoIPMI && !cfg.Redfish {
		return nil, errors.New("rack: no BMC: NoIPMI without Redfish")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Nodes <= 0 {
		cfg.Nodes = DefaultNodes
	}
	if len(cfg.Sizes) == 0 {
		cfg.Sizes = DefaultSizes
	}
	if len(cfg.Firmware) == 0 {
		cfg.Firmware = []qemu.Firmware{qemu.BIOS}
	}
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("rack: %w", err)
	}
	id, err := loadIdentity(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if cfg.Password == "" {
		cfg.Password = id.Password
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("rack: %w", err)
	}
	cfg.Dir = dir
	r := &Rack{cfg: cfg, log: cfg.Logger}
	ok := false
	defer func() {
		if !ok {
			_ = r.Stop()
		}
	}()
	if cfg.Redfish {
		if r.tls, err = pki.New(dir, "rackcloud lab BMC"); err != nil {
			return nil, fmt.Errorf("rack: tls: %w", err)
		}
	}
	if r.ctl, err = startControl(r); err != nil {
		return nil, err
	}
	for i := 1; i <= cfg.Nodes; i++ {
		n, err := newNode(r, i, id)
		if err != nil {
			return nil, err
		}
		r.Nodes = append(r.Nodes, n)
	}
	for _, n := range r.Nodes {
		if err := n.start(ctx); err != nil {
			return nil, err
		}
	}
	ok = true
	return r, nil
}

// Node returns the node called name, or nil.
func (r *Rack) Node(name string) *Node {
	for _, n := range r.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// User is the BMC user name of every node.
func (r *Rack) User() string { return r.cfg.User }

// Password is the BMC password of every node.
func (r *Rack) Password() string { return r.cfg.Password }

// CAFile is the PEM file of the CA that signed the Redfish BMCs'
// certificate ("" without Redfish).
func (r *Rack) CAFile() string {
	if r.tls == nil {
		return ""
	}
	return r.tls.CAFile
}

// CertPool holds the CA that signed the Redfish BMCs' certificate (nil
// without Redfish).
func (r *Rack) CertPool() *x509.CertPool {
	if r.tls == nil {
		return nil
	}
	return r.tls.Pool
}

// Stop powers every node off, stops every BMC and the control server, and
// reaps every process. Safe to call twice.
func (r *Rack) Stop() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	if r.ctl != nil {
		r.ctl.close() // no more chassis requests; waits for those in flight
	}
	var (
		errs []error
		emu  sync.Mutex
		wg   sync.WaitGroup
	)
	for _, n := range r.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.stop(); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// identity is what makes a rack the same rack across restarts of the lab:
// the nodes' MACs, serials and UUIDs derive from ID and Seed, and the BMC
// password is kept, so that hosts and BMC credentials recorded in the
// control plane still match after a restart. It lives in Config.Dir.
type identity struct {
	ID       string `json:"id"`       // 2 bytes, hex: MAC bytes 4-5
	Seed     string `json:"seed"`     // 5 bytes, hex: node UUIDs
	Password string `json:"password"` // the BMC password unless Config sets one
	// kept is true when the identity was read back: the same rack again,
	// whose nodes keep their disks and UEFI variables.
	kept bool
}

func loadIdentity(dir string) (identity, error) {
	path := filepath.Join(dir, "identity.json")
	var id identity
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &id); err != nil {
			return id, fmt.Errorf("rack: %s is corrupt (delete it for a new rack): %w", path, err)
		}
		if raw, err := hex.DecodeString(id.ID); err != nil || len(raw) != 2 {
			return id, fmt.Errorf("rack: %s: id %q is not 2 hex bytes", path, id.ID)
		}
		if raw, err := hex.DecodeString(id.Seed); err != nil || len(raw) != 5 {
			return id, fmt.Errorf("rack: %s: seed %q is not 5 hex bytes", path, id.Seed)
		}
		if id.Password == "" {
			return id, fmt.Errorf("rack: %s: empty password", path)
		}
		id.kept = true
		return id, nil
	case !errors.Is(err, os.ErrNotExist):
		return id, fmt.Errorf("rack: %w", err)
	}
	id = identity{ID: randomHex(2), Seed: randomHex(5), Password: randomHex(6)}
	b, err = json.MarshalIndent(id, "", "  ")
	if err != nil {
		return id, err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return id, fmt.Errorf("rack: %w", err)
	}
	return id, nil
}
