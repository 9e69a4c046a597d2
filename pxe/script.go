package pxe

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"text/template"

	"github.com/rackcloud/rackcloud"
)

// BootAction is what a host's boot script does.
type BootAction string

// Boot actions.
const (
	// ActionNetboot loads a kernel and initrd over HTTP and boots them.
	ActionNetboot BootAction = "netboot"
	// ActionLocal leaves iPXE so that the firmware boots the next device
	// (the local disk).
	ActionLocal BootAction = "local"
)

// ScriptData is what boot script templates see.
type ScriptData struct {
	MAC         string
	State       rackcloud.HostState
	StateReason string
	Hostname    string
	// Known is false for an unknown MAC booting the discovery image;
	// Cached says the profile came from the cache (control plane down).
	Known  bool
	Cached bool
	Action BootAction
	// KernelURL and InitrdURL are absolute; Cmdline is complete (initrd=
	// name, rackcloud.mac, rackcloud.callback, rackcloud.state and
	// rackcloud.token included).
	KernelURL   string
	InitrdURL   string
	InitrdName  string
	Cmdline     string
	ScriptURL   string
	CallbackURL string
	// Token is this boot's callback token (also in Cmdline as
	// ParamToken): the booted image presents it as "Authorization:
	// Bearer" on the callback. Empty for a local boot.
	Token string
}

// Kernel command-line parameters every netboot script adds (they match
// lab/bootimg's /init).
const (
	ParamMAC      = "rackcloud.mac"
	ParamCallback = "rackcloud.callback"
	ParamState    = "rackcloud.state"
	// ParamToken is the per-host, per-boot token a callback must carry
	// (a new one for every netboot script rendered).
	ParamToken = "rackcloud.token"
)

// DefaultInitrdName is the name the initrd is registered under in iPXE; the
// kernel command line names it (initrd=), which iPXE 2019 under UEFI needs
// for the kernel to find its initramfs (LAB.md).
const DefaultInitrdName = "initrd.img"

// ActionFor maps a lifecycle state to what the host boots (DESIGN.md
// section 3): discovered, inspecting and available hosts (and unknown ones)
// boot the inspection image, provisioning and deprovisioning hosts the
// profile's installer, ready, draining and maintenance hosts their local
// disk; a failed host boots its disk too, with its reason on the console.
func ActionFor(state rackcloud.HostState) BootAction {
	switch state {
	case rackcloud.HostReady, rackcloud.HostDraining, rackcloud.HostMaintenance, rackcloud.HostFailed:
		return ActionLocal
	}
	return ActionNetboot
}

// defaultScript is the iPXE template used unless a profile brings its own.
// A failed download retries the whole script after a pause instead of
// dropping to the next boot device.
const defaultScript = `#!ipxe
echo rackcloud: {{.MAC}} {{if .Known}}is {{.State}}{{else}}is unknown: discovery{{end}}{{if .Cached}} (control plane unreachable, cached profile){{end}}
{{- if eq .Action "local"}}
{{- if .StateReason}}
echo rackcloud: {{.StateReason}}
{{- end}}
echo rackcloud: booting from the local disk
iseq ${platform} efi && exit 1 ||
exit 0
{{- else}}
kernel --name vmlinuz {{.KernelURL}} {{.Cmdline}} || goto retry
initrd --name {{.InitrdName}} {{.InitrdURL}} || goto retry
boot || goto retry
:retry
echo rackcloud: boot failed, retrying in 5 seconds
sleep 5
chain --replace --autofree {{.ScriptURL}}
{{- end}}
`

var defaultTemplate = template.Must(template.New("ipxe").Parse(defaultScript))

// RenderScript renders the boot script for d, with tmpl when not empty
// (a profile's own iPXE template) or the default one.
func RenderScript(tmpl string, d ScriptData) ([]byte, error) {
	t := defaultTemplate
	if tmpl != "" {
		var err error
		if t, err = template.New("profile").Option("missingkey=error").Parse(tmpl); err != nil {
			return nil, fmt.Errorf("profile script template: %w: %w", rackcloud.ErrInvalid, err)
		}
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("render boot script: %w", err)
	}
	if !bytes.HasPrefix(b.Bytes(), []byte("#!ipxe")) {
		return nil, fmt.Errorf("boot script for %s does not start with #!ipxe: %w", d.MAC, rackcloud.ErrInvalid)
	}
	return b.Bytes(), nil
}

// scriptData builds the script inputs for mac from its profile (known) or
// the discovery image.
func (s *Service) scriptData(mac string, p Profile, known bool) ScriptData {
	d := ScriptData{
		MAC: mac, Known: known, Cached: p.Cached,
		State: rackcloud.HostDiscovered, InitrdName: DefaultInitrdName,
		ScriptURL: s.scriptURL(mac), CallbackURL: s.baseURL() + "/boot/" + mac + "/callback",
	}
	boot := s.cfg.Discovery
	if known {
		d.State, d.StateReason, d.Hostname = p.State, p.StateReason, p.Hostname
		if p.Boot.Kernel != "" {
			boot = p.Boot
		}
	}
	d.Action = ActionFor(d.State)
	if known && p.Action != "" {
		d.Action = p.Action
	}
	d.KernelURL = s.fileURL(boot.Kernel, mac, "kernel")
	d.InitrdURL = s.fileURL(boot.Initrd, mac, "initrd")
	args := []string{"initrd=" + d.InitrdName}
	if boot.Cmdline != "" {
		args = append(args, boot.Cmdline)
	}
	args = append(args, ParamMAC+"="+mac, ParamCallback+"="+d.CallbackURL, ParamState+"="+string(d.State))
	d.Cmdline = strings.Join(args, " ")
	return d
}

// setToken gives a netboot its callback token, on the kernel command line.
func (d *ScriptData) setToken(token string) {
	d.Token = token
	d.Cmdline += " " + ParamToken + "=" + token
}

// fileURL makes a profile's kernel or initrd reference absolute: http(s)
// URLs stay as they are, other values are paths under /files/ here, tagged
// with the MAC and role so that the download is recorded on its timeline.
func (s *Service) fileURL(ref, mac, role string) string {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		return ref
	}
	p := strings.TrimPrefix(ref, "/")
	p = strings.TrimPrefix(p, "files/")
	u := url.URL{Path: "/files/" + p}
	q := url.Values{"mac": {mac}, "role": {role}}
	return s.baseURL() + u.EscapedPath() + "?" + q.Encode()
}

func (s *Service) baseURL() string { return "http://" + s.httpAddr().String() }

func (s *Service) scriptURL(mac string) string { return s.baseURL() + "/boot/" + mac + ".ipxe" }

func (s *Service) ipxeURL(file string) string {
	return s.baseURL() + "/ipxe/" + (&url.URL{Path: file}).EscapedPath()
}
