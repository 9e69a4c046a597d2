package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// The boot service's side of the wire format is documented in package
// pxe ("Control plane wire format"): it reads a host's profile by MAC and
// reports what every network boot did. These operations serve it.

// MaxBootEventsBatch caps the events of one POST /v1/boot/events (the boot
// service sends at most 500).
const MaxBootEventsBatch = 1000

// MaxBootEventsBodyBytes caps the body of POST /v1/boot/events: a full
// batch with long file names and callback bodies is larger than
// DefaultMaxBodyBytes.
const MaxBootEventsBodyBytes = 8 << 20

// plainDHCPClient is the client kind of a DHCP client that is not network
// booting (pxe.ClientDHCP): its MAC is not discovered as a host.
const plainDHCPClient = "dhcp"

// NetbootProfile is what the boot service needs to know about one host,
// the body of GET /v1/boot/profiles/{mac}. Its JSON is pxe.Profile's.
type NetbootProfile struct {
	MAC         string      `json:"mac" doc:"The MAC asked for, lower-case colon form." example:"52:54:00:aa:01:01"`
	HostID      string      `json:"host_id,omitempty" format:"uuid" doc:"The host's ID."`
	Hostname    string      `json:"hostname,omitempty" doc:"The host's name, handed out in DHCP option 12." example:"r1-node07"`
	State       string      `json:"state" enum:"discovered,inspecting,available,provisioning,ready,draining,maintenance,deprovisioning,failed" doc:"Lifecycle state; it selects what the host boots."`
	StateReason string      `json:"state_reason,omitempty" doc:"Why the host failed, shown on its console."`
	IPv4        string      `json:"ipv4,omitempty" format:"ipv4" doc:"The host's fixed provisioning address: full DHCP reserves it for the host's MACs." example:"10.77.0.21"`
	Action      string      `json:"action" enum:"netboot,local" doc:"What the boot script does: netboot a kernel, or leave for the local disk (BootFor decides; the boot service renders it)."`
	Purpose     string      `json:"purpose" enum:"inspection,install,local" doc:"Why: the inspection image, the image's installer, or the disk."`
	Boot        BootProfile `json:"boot" doc:"The installer's boot profile (purpose install only); empty otherwise: the boot service boots its inspection image."`
	Version     int64       `json:"version" doc:"The host's version; a cache keeps the newest it has seen." example:"3"`
	// HostTokenSHA256 lets the boot service check installed hosts'
	// heartbeats without holding their tokens.
	HostTokenSHA256 string `json:"host_token_sha256,omitempty" pattern:"^[0-9a-f]{64}$" doc:"Hex SHA-256 of the installed host's token: its heartbeats must carry the token."`
}

// BootEventIn is one step of a network boot as the boot service reports
// it (pxe.Event). Fields a newer boot service adds are accepted and
// ignored, so that its batches are not refused.
type BootEventIn struct {
	_        struct{}  `json:"-" additionalProperties:"true"`
	Time     time.Time `json:"time" doc:"When the boot service saw the step." example:"2026-01-02T03:04:05.678Z"`
	MAC      string    `json:"mac" maxLength:"32" doc:"The client's MAC; empty when the boot service could not tell it (a TFTP read from an address it never leased)." example:"52:54:00:aa:01:01"`
	Kind     string    `json:"kind" enum:"dhcp.discover,dhcp.offer,dhcp.request,dhcp.ack,dhcp.nak,dhcp.inform,dhcp.decline,dhcp.release,tftp.start,tftp.done,tftp.error,http.script,http.kernel,http.initrd,http.file,callback,inventory,install,heartbeat" doc:"The step (inventory: the booted image's agent reported the hardware; install: the installer's progress; heartbeat: an installed host called in)."`
	Client   string    `json:"client,omitempty" maxLength:"32" doc:"The boot client as classified from DHCP: bios, uefi, uefi-http, ipxe, dhcp (not network booting) or unsupported." example:"ipxe"`
	IP       string    `json:"ip,omitempty" maxLength:"64" doc:"The client's address." example:"10.88.0.21"`
	File     string    `json:"file,omitempty" maxLength:"4096" doc:"The boot file, TFTP path or URL involved." example:"undionly.kpxe"`
	Bytes    int64     `json:"bytes,omitempty" minimum:"0" doc:"Bytes sent by a finished transfer."`
	Duration int64     `json:"duration,omitempty" minimum:"0" doc:"How long a finished transfer took, in nanoseconds."`
	State    string    `json:"state,omitempty" maxLength:"32" doc:"The lifecycle state the boot script was rendered for." example:"provisioning"`
	Cached   bool      `json:"cached,omitempty" doc:"The profile came from the boot service's cache: the API did not answer."`
	Detail   string    `json:"detail,omitempty" maxLength:"4096" doc:"More about the step."`
	Error    string    `json:"error,omitempty" maxLength:"4096" doc:"Why the step failed."`
	Data     any       `json:"data,omitempty" doc:"The JSON body the booted image called back with (callback events)."`
	// BootTokenSHA256 is kept as the host's current boot token: its
	// agent's reports must present the token.
	BootTokenSHA256 string `json:"boot_token_sha256,omitempty" pattern:"^[0-9a-f]{64}$" doc:"On an http.script event of a netboot: the SHA-256 (hex) of the per-boot token the script gave the host; the token itself never leaves the boot service."`
}

// BootEventsAccepted counts what POST /v1/boot/events did.
type BootEventsAccepted struct {
	Accepted        int `json:"accepted" doc:"Events stored."`
	Duplicates      int `json:"duplicates" doc:"Events already stored (same MAC, kind and time): a batch sent again."`
	DiscoveredHosts int `json:"discovered_hosts" doc:"Hosts created in state discovered for MACs no host had."`
}

// BootEvent is a stored step of a network boot.
type BootEvent struct {
	ID         int64     `json:"id" doc:"Increases with every stored event." example:"42"`
	Time       time.Time `json:"time" doc:"When the boot service saw the step."`
	MAC        string    `json:"mac,omitempty" doc:"The client's MAC, lower-case colon form." example:"52:54:00:aa:01:01"`
	HostID     string    `json:"host_id,omitempty" format:"uuid" doc:"The host that owns the MAC."`
	Kind       string    `json:"kind" doc:"The step." example:"dhcp.ack"`
	Client     string    `json:"client,omitempty" doc:"The boot client." example:"ipxe"`
	IP         string    `json:"ip,omitempty" doc:"The client's address." example:"10.88.0.21"`
	File       string    `json:"file,omitempty" doc:"The boot file, TFTP path or URL involved."`
	Bytes      int64     `json:"bytes,omitempty" doc:"Bytes sent by a finished transfer."`
	Duration   int64     `json:"duration,omitempty" doc:"How long a finished transfer took, in nanoseconds."`
	State      string    `json:"state,omitempty" doc:"The lifecycle state the boot script was rendered for."`
	Cached     bool      `json:"cached,omitempty" doc:"The boot service answered from its cache."`
	Detail     string    `json:"detail,omitempty" doc:"More about the step."`
	Error      string    `json:"error,omitempty" doc:"Why the step failed."`
	Data       any       `json:"data,omitempty" doc:"The JSON body the booted image called back with."`
	ReceivedAt time.Time `json:"received_at" doc:"When the API stored the event."`
}

func bootEventOut(e store.BootEvent) BootEvent {
	out := BootEvent{ID: e.ID, Time: e.At, MAC: e.MAC, HostID: e.HostID, Kind: e.Kind, Client: e.Client, IP: e.IP,
		File: e.File, Bytes: e.Bytes, Duration: int64(e.Duration), State: e.State, Cached: e.Cached, Detail: e.Detail,
		Error: e.Error, ReceivedAt: e.ReceivedAt}
	if len(e.Data) > 0 {
		out.Data = json.RawMessage(e.Data)
	}
	return out
}

type bootProfileInput struct {
	MAC string `path:"mac" maxLength:"32" doc:"The MAC, lower-case colon form." example:"52:54:00:aa:01:01"`
}

type bootEventsInput struct {
	Body []BootEventIn `maxItems:"1000" doc:"Boot events, in the order the boot service saw them."`
}

type bootEventsOutput struct {
	Body BootEventsAccepted
}

// BootListParams are the keyset pagination of boot event lists.
type BootListParams struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size."`
	Cursor string `query:"cursor" maxLength:"32" pattern:"^[0-9]*$" doc:"Opaque cursor from the previous page's next_cursor or Link header."`
}

type hostBootEventsInput struct {
	IDParam
	BootListParams
}

type bootEventsListInput struct {
	BootListParams
	MAC string `query:"mac" maxLength:"32" doc:"Only the events of this MAC." example:"52:54:00:aa:01:01"`
}

func registerBoot(a *API) {
	a.huma.OpenAPI().Tags = append(a.huma.OpenAPI().Tags, &huma.Tag{Name: "Boot",
		Description: "The control plane side of the boot service (package pxe): host profiles by MAC and boot events (operators, and boot services with a boot token)."})

	register(a, huma.Operation{
		OperationID: "getBootProfile", Method: http.MethodGet, Path: "/v1/boot/profiles/{mac}", Summary: "Get a host's boot profile",
		Description: "Tells the boot service how to boot the host that owns the MAC: its state and its image's boot profile. 404 means no host has the MAC (the boot service then boots the discovery image).",
		Tags:        []string{"Boot"}, Errors: []int{http.StatusNotFound, http.StatusUnprocessableEntity},
	}, bootService, func(ctx context.Context, in *bootProfileInput) (*struct{ Body NetbootProfile }, error) {
		mac, h, err := a.hostByMAC(ctx, in.MAC)
		if err != nil {
			return nil, err
		}
		var im *rackcloud.Image
		if h.ImageID != "" {
			got, err := store.GetImage(ctx, a.deps.Pool, h.ImageID)
			if err != nil {
				return nil, a.problem(fmt.Errorf("host %s image %s: %w", h.ID, h.ImageID, err))
			}
			im = &got
		}
		d := BootFor(h, im)
		p := NetbootProfile{MAC: mac, HostID: h.ID, Hostname: h.Name, State: string(h.State), StateReason: h.StateReason,
			IPv4: h.ProvisioningIPv4, Version: h.Version, Action: d.Action, Purpose: d.Purpose, Boot: BootProfile(d.Boot)}
		sum, err := store.HostTokenSHA256(ctx, a.deps.Pool, h.ID)
		if err != nil {
			return nil, a.problem(err)
		}
		p.HostTokenSHA256 = hex.EncodeToString(sum)
		return &struct{ Body NetbootProfile }{Body: p}, nil
	})

	registerWithBodyLimit(a, huma.Operation{
		OperationID: "recordBootEvents", Method: http.MethodPost, Path: "/v1/boot/events", Summary: "Record boot events",
		Description: "Stores the boot service's events. A MAC no host has becomes a host in state discovered, named after the MAC, " +
			"unless its events come only from a DHCP client that is not network booting. Events already stored (same MAC, kind and time) " +
			"are counted as duplicates, so a batch may be sent again safely. A batch with an invalid event is refused whole (422) and nothing is stored.",
		Tags: []string{"Boot"}, DefaultStatus: http.StatusAccepted,
	}, bootService, MaxBootEventsBodyBytes, a.recordBootEvents)

	register(a, huma.Operation{
		OperationID: "listHostBootEvents", Method: http.MethodGet, Path: "/v1/hosts/{id}/boot-events", Summary: "List a host's boot events",
		Description: "The host's network boot timeline, oldest first, keyset-paginated.",
		Tags:        []string{"Hosts"}, Errors: []int{http.StatusNotFound, http.StatusUnprocessableEntity},
	}, staffOnly, func(ctx context.Context, in *hostBootEventsInput) (*listOutput[BootEvent], error) {
		if _, err := store.GetHost(ctx, a.deps.Pool, in.ID); err != nil {
			return nil, a.problem(notFound(err, "host", in.ID))
		}
		return a.bootEventsPage(ctx, "/v1/hosts/"+in.ID+"/boot-events", in.BootListParams, store.BootEventFilter{HostID: in.ID}, nil)
	})

	register(a, huma.Operation{
		OperationID: "listBootEvents", Method: http.MethodGet, Path: "/v1/boot/events", Summary: "List boot events",
		Description: "Boot events of every MAC (also those no host has), oldest first, keyset-paginated, optionally of one MAC.",
		Tags:        []string{"Boot"}, Errors: []int{http.StatusUnprocessableEntity},
	}, staffOnly, func(ctx context.Context, in *bootEventsListInput) (*listOutput[BootEvent], error) {
		f := store.BootEventFilter{}
		extra := url.Values{}
		if in.MAC != "" {
			mac, err := bootMAC("query.mac", in.MAC)
			if err != nil {
				return nil, err
			}
			f.MAC = mac
			extra.Set("mac", mac)
		}
		return a.bootEventsPage(ctx, "/v1/boot/events", in.BootListParams, f, extra)
	})
}

func bootMAC(loc, s string) (string, error) {
	mac, err := rackcloud.NormalizeMAC(s)
	if err != nil {
		return "", huma.Error422UnprocessableEntity("bad MAC address",
			&huma.ErrorDetail{Location: loc, Message: "want a 48-bit MAC such as 52:54:00:aa:01:01", Value: s})
	}
	return mac, nil
}

func (a *API) bootEventsPage(ctx context.Context, path string, p BootListParams, f store.BootEventFilter, extra url.Values) (*listOutput[BootEvent], error) {
	if p.Cursor != "" {
		n, err := strconv.ParseInt(p.Cursor, 10, 64)
		if err != nil || n <= 0 {
			return nil, huma.Error422UnprocessableEntity("malformed cursor",
				&huma.ErrorDetail{Location: "query.cursor", Message: "not a cursor from this API", Value: p.Cursor})
		}
		f.After = n
	}
	f.Limit = p.Limit + 1
	rows, err := store.ListBootEvents(ctx, a.deps.Pool, f)
	if err != nil {
		return nil, a.problem(err)
	}
	out := &listOutput[BootEvent]{}
	if len(rows) > p.Limit {
		rows = rows[:p.Limit]
		out.Body.NextCursor = strconv.FormatInt(rows[len(rows)-1].ID, 10)
		q := url.Values{}
		for k, v := range extra {
			q[k] = v
		}
		q.Set("limit", strconv.Itoa(p.Limit))
		q.Set("cursor", out.Body.NextCursor)
		out.Link = "<" + path + "?" + q.Encode() + `>; rel="next"`
	}
	out.Body.Items = make([]BootEvent, 0, len(rows))
	for _, e := range rows {
		out.Body.Items = append(out.Body.Items, bootEventOut(e))
	}
	return out, nil
}

// recordBootEvents validates the whole batch, then in one transaction
// finds or discovers the host of every MAC and stores the events.
func (a *API) recordBootEvents(ctx context.Context, in *bootEventsInput) (*bootEventsOutput, error) {
	evs := make([]store.BootEvent, len(in.Body))
	booting := map[string]string{} // MAC -> the first event's kind of a MAC that network-boots
	var macs []string
	for i, e := range in.Body {
		loc := "body[" + strconv.Itoa(i) + "]"
		var mac string
		if e.MAC != "" {
			var err error
			if mac, err = bootMAC(loc+".mac", e.MAC); err != nil {
				return nil, err
			}
			if !slices.Contains(macs, mac) {
				macs = append(macs, mac)
			}
			if _, ok := booting[mac]; !ok && e.Client != plainDHCPClient {
				booting[mac] = e.Kind + " (" + e.Client + ")"
			}
		}
		if e.Time.Year() < 2000 {
			return nil, huma.Error422UnprocessableEntity("bad event time",
				&huma.ErrorDetail{Location: loc + ".time", Message: "want when the boot service saw the step (RFC 3339)", Value: e.Time})
		}
		if e.State != "" && !slices.Contains(rackcloud.HostStates(), rackcloud.HostState(e.State)) {
			return nil, huma.Error422UnprocessableEntity("bad host state",
				&huma.ErrorDetail{Location: loc + ".state", Message: "want a host lifecycle state", Value: e.State})
		}
		ev := store.BootEvent{MAC: mac, Kind: e.Kind, Client: e.Client, IP: e.IP, File: e.File, Bytes: e.Bytes,
			Duration: time.Duration(e.Duration), State: e.State, Cached: e.Cached, Detail: e.Detail, Error: e.Error, At: e.Time}
		if e.Data != nil {
			b, err := json.Marshal(e.Data)
			if err != nil {
				return nil, huma.Error422UnprocessableEntity("bad event data", &huma.ErrorDetail{Location: loc + ".data", Message: err.Error()})
			}
			ev.Data = b
		}
		evs[i] = ev
	}
	// Lock discoveries in MAC order: two batches never wait for each other.
	slices.Sort(macs)
	p := principalFrom(ctx)
	var out BootEventsAccepted
	err := retrySerialization(ctx, func() error {
		out = BootEventsAccepted{}
		return store.InTx(ctx, a.deps.Pool, func(tx pgx.Tx) error {
			hostOf := map[string]string{}
			for _, mac := range macs {
				first, discover := booting[mac]
				var h rackcloud.Host
				var created bool
				var err error
				if discover {
					h, created, err = store.DiscoverHost(ctx, tx, mac, "discovered-"+strings.ReplaceAll(mac, ":", ""))
				} else {
					h, err = store.GetHostByMAC(ctx, tx, mac)
					if isNotFound(err) {
						continue
					}
				}
				if err != nil {
					return err
				}
				hostOf[mac] = h.ID
				if created {
					out.DiscoveredHosts++
					ch := &change{p: p, action: "discoverHost", target: "host/" + h.ID}
					if err := store.WriteAudit(ctx, tx, ch.record(ctx, store.OutcomeSuccess,
						"MAC "+mac+" seen booting ("+first+"): host "+h.Name+" discovered")); err != nil {
						return err
					}
				}
			}
			for i := range evs {
				evs[i].HostID = hostOf[evs[i].MAC]
			}
			body, kept, thinned, err := a.thinHeartbeats(ctx, tx, in.Body, evs)
			if err != nil {
				return err
			}
			n, err := store.InsertBootEvents(ctx, tx, kept)
			out.Accepted, out.Duplicates = n+thinned, len(kept)-n
			if err != nil {
				return err
			}
			return a.afterBootEvents(ctx, tx, body, kept)
		})
	})
	if err != nil {
		return nil, a.problem(err)
	}
	return &bootEventsOutput{Body: out}, nil
}

// afterBootEvents keeps each host's newest boot token hash and wakes the
// host's task that waits for the machine when the booted image called
// back or its agent reported, in the transaction that stores the events.
// A discovered host whose agent reports, with no task of its own, is
// inspected (host.enroll of a host that booted by itself): racked and
// powered on, it becomes available with no hand work.
func (a *API) afterBootEvents(ctx context.Context, tx pgx.Tx, in []BootEventIn, evs []store.BootEvent) error {
	woken := map[string]bool{}
	inspected := map[string]bool{}
	for i, e := range evs {
		if e.HostID == "" {
			continue
		}
		if sum := in[i].BootTokenSHA256; e.Kind == string(rackcloud.BootEventHTTPScript) && sum != "" {
			b, err := hex.DecodeString(sum)
			if err != nil {
				return huma.Error422UnprocessableEntity("bad boot token hash",
					&huma.ErrorDetail{Location: "body[" + strconv.Itoa(i) + "].boot_token_sha256", Message: "want 64 hex digits"})
			}
			if _, err := store.RecordBootToken(ctx, tx, e.HostID, b, e.At); err != nil {
				return err
			}
		}
		if a.deps.Tasks == nil {
			continue
		}
		if wakes(e.Kind) && !woken[e.HostID] {
			woken[e.HostID] = true
			n, err := a.deps.Tasks.Wake(ctx, tx, "host/"+e.HostID)
			if err != nil {
				return err
			}
			if n > 0 {
				inspected[e.HostID] = true // its task takes the report
			}
		}
		if e.Kind == string(rackcloud.BootEventInventory) && !inspected[e.HostID] {
			inspected[e.HostID] = true
			if err := a.inspectDiscovered(ctx, tx, e.HostID); err != nil {
				return err
			}
		}
	}
	return nil
}

// heartbeatKeep is how often an installed host's heartbeats are kept on
// its timeline while it stays up: the first of each boot is always kept,
// the others only this far apart (every one still updates the host's
// last_heartbeat).
const heartbeatKeep = 10 * time.Minute

// thinHeartbeats records every heartbeat on its host and leaves out of the
// stored events those that say nothing new: same boot as the host's last
// stored heartbeat, less than heartbeatKeep after it. It returns the kept
// events with their inputs, and how many it left out.
func (a *API) thinHeartbeats(ctx context.Context, tx pgx.Tx, in []BootEventIn, evs []store.BootEvent) ([]BootEventIn, []store.BootEvent, int, error) {
	keptIn, kept := in[:0:0], evs[:0:0]
	last := map[string]store.BootEvent{}
	for i, e := range evs {
		if e.Kind != string(rackcloud.BootEventHeartbeat) || e.HostID == "" {
			keptIn, kept = append(keptIn, in[i]), append(kept, e)
			continue
		}
		if err := store.RecordHeartbeat(ctx, tx, e.HostID, e.At); err != nil {
			return nil, nil, 0, err
		}
		prev, ok := last[e.HostID]
		if !ok {
			var err error
			prev, err = store.LatestBootEvent(ctx, tx, e.HostID, e.Kind, e.At.Add(-heartbeatKeep))
			if err != nil && !isNotFound(err) {
				return nil, nil, 0, err
			}
			ok = err == nil
		}
		if ok && sameBoot(prev.Data, e.Data) && e.At.Sub(prev.At) < heartbeatKeep && e.At.After(prev.At) {
			continue
		}
		last[e.HostID] = e
		keptIn, kept = append(keptIn, in[i]), append(kept, e)
	}
	return keptIn, kept, len(evs) - len(kept), nil
}

// sameBoot reports whether two heartbeats' data name the same boot.
func sameBoot(a, b json.RawMessage) bool {
	var x, y rackcloud.Heartbeat
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return x.BootID != "" && x.BootID == y.BootID
}

// hostByMAC reads the MAC of a boot path (path.mac) and its host: 422 for
// a bad MAC, 404 for one no host has.
func (a *API) hostByMAC(ctx context.Context, raw string) (string, rackcloud.Host, error) {
	mac, err := bootMAC("path.mac", raw)
	if err != nil {
		return "", rackcloud.Host{}, err
	}
	h, err := store.GetHostByMAC(ctx, a.deps.Pool, mac)
	if err != nil {
		if isNotFound(err) {
			return mac, h, huma.Error404NotFound(fmt.Sprintf("host with MAC %q not found", mac))
		}
		return mac, h, a.problem(err)
	}
	return mac, h, nil
}

// wakes reports whether a boot event of kind wakes the host's task: what
// the machine says of itself (callback, agent reports, heartbeats).
func wakes(kind string) bool {
	switch rackcloud.BootEventKind(kind) {
	case rackcloud.BootEventCallback, rackcloud.BootEventInventory, rackcloud.BootEventInstall, rackcloud.BootEventHeartbeat:
		return true
	}
	return false
}

// inspectDiscovered starts host.enroll for a discovered host that booted
// the inspection image by itself, unless a task already has the host.
func (a *API) inspectDiscovered(ctx context.Context, tx pgx.Tx, hostID string) error {
	h, err := store.GetHost(ctx, tx, hostID)
	if err != nil || h.State != rackcloud.HostDiscovered {
		return err
	}
	info, err := a.deps.Tasks.Submit(ctx, tx, tasks.Submission{Kind: rackcloud.KindHostEnroll, Target: "host/" + hostID,
		Params: map[string]any{"host_id": hostID, "booted": true}})
	switch {
	case errors.Is(err, rackcloud.ErrConflict), errors.Is(err, tasks.ErrUnknownKind):
		return nil // a task has the host, or no provisioner runs here
	case err != nil:
		return err
	}
	p := principalFrom(ctx)
	if err := store.SetTaskOwner(ctx, tx, info.ID, "", p.actor()); err != nil {
		return err
	}
	ch := &change{p: p, action: "enrollHost", target: "host/" + hostID}
	return store.WriteAudit(ctx, tx, ch.record(ctx, store.OutcomeSuccess,
		"host "+h.Name+" reported its inventory from the inspection image: task "+info.ID+" inspects it"))
}

// retrySerialization runs fn again (up to 3 times) when Postgres aborted
// it for a deadlock or a serialization failure: batches that share
// events may insert them in different orders.
func retrySerialization(ctx context.Context, fn func() error) error {
	var err error
	for range 3 {
		err = fn()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "40P01" && pe.Code != "40001") || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// registerWithBodyLimit is register with another body limit than
// DefaultMaxBodyBytes.
func registerWithBodyLimit[I, O any](a *API, op huma.Operation, allow access, limit int64, h func(context.Context, *I) (*O, error)) {
	a.access[op.OperationID] = allow
	op.Description += "\n\nAllowed roles: " + allow.String() + "."
	op.Errors = append(op.Errors, http.StatusUnauthorized, http.StatusForbidden, http.StatusUnprocessableEntity)
	if _, hasBody := reflect.TypeFor[I]().FieldByName("Body"); hasBody {
		op.Errors = append(op.Errors, http.StatusRequestEntityTooLarge)
	}
	slices.Sort(op.Errors)
	op.Errors = slices.Compact(op.Errors)
	op.MaxBodyBytes = limit
	huma.Register(a.huma, op, h)
}
