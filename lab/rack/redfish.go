package rack

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rackcloud/rackcloud"
)

// The Redfish BMC simulator. It implements the part of DSP0266/DSP8010 that
// provisioning and monitoring use, enough for bmclib (gofish), sushy and
// redfishtool:
//
//	GET  /redfish                                   versions
//	GET  /redfish/v1/                               service root (no auth)
//	GET  /redfish/v1/SessionService[/Sessions[/id]]
//	POST /redfish/v1/SessionService/Sessions        login (no auth)
//	DELETE /redfish/v1/SessionService/Sessions/{id} logout
//	GET  /redfish/v1/Systems[/1]  PATCH /redfish/v1/Systems/1 (Boot)
//	POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset
//	GET  /redfish/v1/Systems/1/EthernetInterfaces[/1]  the node's NIC
//	GET  /redfish/v1/Chassis[/1[/Thermal|/Power]]
//	GET  /redfish/v1/Managers[/1]
//
// Everything but the versions, the service root and login needs HTTP basic
// auth or an X-Auth-Token from a session.

const (
	rfRoot      = "/redfish/v1"
	rfSessions  = rfRoot + "/SessionService/Sessions"
	rfSystem    = rfRoot + "/Systems/1"
	rfChassis   = rfRoot + "/Chassis/1"
	rfManager   = rfRoot + "/Managers/1"
	rfResetPath = rfSystem + "/Actions/ComputerSystem.Reset"
	rfEthernet  = rfSystem + "/EthernetInterfaces"
	rfNIC       = rfEthernet + "/1"
	maxSessions = 64
)

var resetTypes = []string{"On", "ForceOn", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle", "PushPowerButton"}

var bootTargets = map[string]BootDevice{
	"None":      BootNone,
	"Pxe":       BootPXE,
	"Hdd":       BootDisk,
	"Cd":        BootCD,
	"BiosSetup": BootBIOS,
}

func bootTarget(d BootDevice) string {
	for k, v := range bootTargets {
		if v == d {
			return k
		}
	}
	return "None"
}

type redfishServer struct {
	n    *Node
	addr netip.AddrPort
	srv  *http.Server
	done chan struct{}
	once sync.Once

	mu       sync.Mutex
	sessions map[string]string // token -> session ID
	order    []string          // tokens, oldest first
	nextID   int
}

func startRedfish(n *Node) (*redfishServer, error) {
	port := 0
	if base := n.rack.cfg.RedfishPort; base > 0 {
		port = base + n.Index - 1
	}
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	s := &redfishServer{
		n:        n,
		addr:     ln.Addr().(*net.TCPAddr).AddrPort(),
		done:     make(chan struct{}),
		sessions: map[string]string{},
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // clients that distrust the CA
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{n.rack.tls.Cert},
			MinVersion:   tls.VersionTLS12,
		},
	}
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	n.log.Info("redfish up", "addr", s.addr)
	return s, nil
}

func (s *redfishServer) close() {
	s.once.Do(func() {
		close(s.done)
		_ = s.srv.Close()
	})
}

type rfError struct {
	status  int
	code    string
	message string
}

func (s *redfishServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.n
	if d := n.currentFault().Delay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-s.done:
			t.Stop()
			return
		}
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	public := path == "/redfish" || path == rfRoot || (path == rfSessions && r.Method == http.MethodPost)
	if !public && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="rackcloud-lab"`)
		s.fail(w, rfError{http.StatusUnauthorized, "Base.1.0.NoValidSession", "authentication required"})
		return
	}
	var body any
	var err *rfError
	switch {
	case path == "/redfish" && r.Method == http.MethodGet:
		body = map[string]any{"v1": rfRoot + "/"}
	case path == rfRoot && r.Method == http.MethodGet:
		body = s.root()
	case path == rfRoot+"/SessionService" && r.Method == http.MethodGet:
		body = map[string]any{
			"@odata.id": rfRoot + "/SessionService", "@odata.type": "#SessionService.v1_1_8.SessionService",
			"Id": "SessionService", "Name": "Session Service", "ServiceEnabled": true, "SessionTimeout": 1800,
			"Sessions": link(rfSessions),
		}
	case path == rfSessions && r.Method == http.MethodGet:
		s.mu.Lock()
		var ids []string
		for _, tok := range s.order {
			ids = append(ids, rfSessions+"/"+s.sessions[tok])
		}
		s.mu.Unlock()
		body = collection(rfSessions, "#SessionCollection.SessionCollection", "Sessions", ids...)
	case path == rfSessions && r.Method == http.MethodPost:
		s.login(w, r)
		return
	case strings.HasPrefix(path, rfSessions+"/"):
		id := strings.TrimPrefix(path, rfSessions+"/")
		body, err = s.session(r, id)
		if err == nil && body == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	case path == rfRoot+"/Systems" && r.Method == http.MethodGet:
		body = collection(path, "#ComputerSystemCollection.ComputerSystemCollection", "Computer System Collection", rfSystem)
	case path == rfSystem && r.Method == http.MethodGet:
		sys := s.system()
		w.Header().Set("ETag", etag(sys))
		body = sys
	case path == rfSystem && r.Method == http.MethodPatch:
		err = s.patchSystem(r)
		if err == nil {
			sys := s.system()
			w.Header().Set("ETag", etag(sys))
			body = sys
		}
	case path == rfResetPath && r.Method == http.MethodPost:
		if err = s.reset(r); err == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	case path == rfEthernet && r.Method == http.MethodGet:
		body = collection(path, "#EthernetInterfaceCollection.EthernetInterfaceCollection", "Ethernet Interface Collection", rfNIC)
	case path == rfNIC && r.Method == http.MethodGet:
		body = s.nic()
	case path == rfRoot+"/Chassis" && r.Method == http.MethodGet:
		body = collection(path, "#ChassisCollection.ChassisCollection", "Chassis Collection", rfChassis)
	case path == rfChassis && r.Method == http.MethodGet:
		body = s.chassis()
	case path == rfChassis+"/Thermal" && r.Method == http.MethodGet:
		body = s.thermal()
	case path == rfChassis+"/Power" && r.Method == http.MethodGet:
		body = s.power()
	case path == rfRoot+"/Managers" && r.Method == http.MethodGet:
		body = collection(path, "#ManagerCollection.ManagerCollection", "Manager Collection", rfManager)
	case path == rfManager && r.Method == http.MethodGet:
		body = s.manager()
	default:
		if known(path) {
			err = &rfError{http.StatusMethodNotAllowed, "Base.1.0.OperationNotAllowed", r.Method + " not allowed on " + path}
		} else {
			err = &rfError{http.StatusNotFound, "Base.1.0.ResourceMissingAtURI", path + " not found"}
		}
	}
	if err != nil {
		s.fail(w, *err)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func known(path string) bool {
	switch path {
	case "/redfish", rfRoot, rfRoot + "/SessionService", rfSessions, rfRoot + "/Systems", rfSystem, rfResetPath, rfEthernet, rfNIC,
		rfRoot + "/Chassis", rfChassis, rfChassis + "/Thermal", rfChassis + "/Power", rfRoot + "/Managers", rfManager:
		return true
	}
	return false
}

func (s *redfishServer) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.sessions[tok]
		return ok
	}
	u, p, ok := r.BasicAuth()
	return ok && s.credentialsOK(u, p)
}

func (s *redfishServer) credentialsOK(u, p string) bool {
	uo := subtle.ConstantTimeCompare([]byte(u), []byte(s.n.User))
	po := subtle.ConstantTimeCompare([]byte(p), []byte(s.n.Password))
	return uo&po == 1
}

func (s *redfishServer) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UserName string
		Password string
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		s.fail(w, rfError{http.StatusBadRequest, "Base.1.0.MalformedJSON", "login body: " + err.Error()})
		return
	}
	if !s.credentialsOK(req.UserName, req.Password) {
		s.fail(w, rfError{http.StatusUnauthorized, "Base.1.0.NoValidSession", "invalid user name or password"})
		return
	}
	tok := randomHex(16)
	s.mu.Lock()
	s.nextID++
	id := strconv.Itoa(s.nextID)
	s.sessions[tok] = id
	s.order = append(s.order, tok)
	if len(s.order) > maxSessions {
		delete(s.sessions, s.order[0])
		s.order = s.order[1:]
	}
	s.mu.Unlock()
	w.Header().Set("X-Auth-Token", tok)
	w.Header().Set("Location", rfSessions+"/"+id)
	writeJSON(w, http.StatusCreated, sessionBody(id, req.UserName))
}

func sessionBody(id, user string) map[string]any {
	return map[string]any{
		"@odata.id": rfSessions + "/" + id, "@odata.type": "#Session.v1_3_0.Session",
		"Id": id, "Name": "User Session " + id, "UserName": user,
	}
}

func (s *redfishServer) session(r *http.Request, id string) (any, *rfError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, tok := range s.order {
		if s.sessions[tok] != id {
			continue
		}
		switch r.Method {
		case http.MethodGet:
			return sessionBody(id, s.n.User), nil
		case http.MethodDelete:
			delete(s.sessions, tok)
			s.order = append(s.order[:i], s.order[i+1:]...)
			return nil, nil
		}
		return nil, &rfError{http.StatusMethodNotAllowed, "Base.1.0.OperationNotAllowed", r.Method + " not allowed on a session"}
	}
	return nil, &rfError{http.StatusNotFound, "Base.1.0.ResourceMissingAtURI", "no session " + id}
}

func (s *redfishServer) root() map[string]any {
	return map[string]any{
		"@odata.id":      rfRoot + "/",
		"@odata.type":    "#ServiceRoot.v1_5_0.ServiceRoot",
		"@odata.context": "/redfish/v1/$metadata#ServiceRoot.ServiceRoot",
		"Id":             "RootService",
		"Name":           "rackcloud lab Redfish service",
		"RedfishVersion": "1.6.0",
		"UUID":           s.n.uuid,
		"Product":        "rackcloud lab BMC",
		"Vendor":         "rackcloud-lab",
		"Systems":        link(rfRoot + "/Systems"),
		"Chassis":        link(rfRoot + "/Chassis"),
		"Managers":       link(rfRoot + "/Managers"),
		"SessionService": link(rfRoot + "/SessionService"),
		"Links":          map[string]any{"Sessions": link(rfSessions)},
	}
}

// reportedPowerState is the PowerState the BMC reports, faults included.
func (s *redfishServer) reportedPowerState() string {
	if f := s.n.currentFault(); f.RedfishPowerState != "" {
		return f.RedfishPowerState
	}
	if s.n.reportedPower() {
		return "On"
	}
	return "Off"
}

func (s *redfishServer) system() map[string]any {
	n := s.n
	b := n.BootOverride()
	enabled := "Disabled"
	if b.Device != BootNone {
		enabled = "Once"
		if b.Persistent {
			enabled = "Continuous"
		}
	}
	mode := "Legacy"
	if b.UEFI || (b.Device == BootNone && n.Firmware == "uefi") {
		mode = "UEFI"
	}
	targets := []string{"None", "Pxe", "Hdd", "Cd", "BiosSetup"}
	return map[string]any{
		"@odata.id":    rfSystem,
		"@odata.type":  "#ComputerSystem.v1_10_0.ComputerSystem",
		"Id":           "1",
		"Name":         n.Name,
		"SystemType":   "Physical",
		"Manufacturer": "rackcloud-lab",
		"Model":        fmt.Sprintf("sim-%dc", n.Size.CPUs),
		"SerialNumber": n.Serial,
		"UUID":         n.uuid,
		"PowerState":   s.reportedPowerState(),
		"Status":       map[string]any{"State": "Enabled", "Health": "OK"},
		"ProcessorSummary": map[string]any{
			"Count": n.Size.CPUs, "Model": "QEMU TCG CPU",
		},
		"MemorySummary": map[string]any{
			"TotalSystemMemoryGiB": float64(n.Size.MemoryMiB) / 1024,
		},
		"Boot": map[string]any{
			"BootSourceOverrideEnabled":                         enabled,
			"BootSourceOverrideTarget":                          bootTarget(b.Device),
			"BootSourceOverrideMode":                            mode,
			"BootSourceOverrideTarget@Redfish.AllowableValues":  targets,
			"BootSourceOverrideEnabled@Redfish.AllowableValues": []string{"Disabled", "Once", "Continuous"},
			"BootSourceOverrideMode@Redfish.AllowableValues":    []string{"Legacy", "UEFI"},
		},
		"EthernetInterfaces": link(rfEthernet),
		"Actions": map[string]any{
			"#ComputerSystem.Reset": map[string]any{
				"target":                            rfResetPath,
				"ResetType@Redfish.AllowableValues": resetTypes,
			},
		},
		"Links": map[string]any{
			"Chassis":   []any{link(rfChassis)},
			"ManagedBy": []any{link(rfManager)},
		},
	}
}

func (s *redfishServer) patchSystem(r *http.Request) *rfError {
	if err := s.ifMatch(r); err != nil {
		return err
	}
	var req map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		return &rfError{http.StatusBadRequest, "Base.1.0.MalformedJSON", "PATCH body: " + err.Error()}
	}
	raw, ok := req["Boot"]
	if !ok {
		return &rfError{http.StatusBadRequest, "Base.1.0.PropertyMissing", "only Boot can be changed"}
	}
	var boot struct {
		BootSourceOverrideEnabled string
		BootSourceOverrideTarget  string
		BootSourceOverrideMode    string
	}
	if err := json.Unmarshal(raw, &boot); err != nil {
		return &rfError{http.StatusBadRequest, "Base.1.0.PropertyValueTypeError", "Boot: " + err.Error()}
	}
	b := s.n.BootOverride()
	if t := boot.BootSourceOverrideTarget; t != "" {
		d, ok := bootTargets[t]
		if !ok {
			return &rfError{http.StatusBadRequest, "Base.1.0.PropertyValueNotInList", "BootSourceOverrideTarget " + strconv.Quote(t) + " not supported"}
		}
		b.Device = d
	}
	switch e := boot.BootSourceOverrideEnabled; e {
	case "":
	case "Disabled":
		b.Device = BootNone
		b.Persistent = false
	case "Once":
		b.Persistent = false
	case "Continuous":
		b.Persistent = true
	default:
		return &rfError{http.StatusBadRequest, "Base.1.0.PropertyValueNotInList", "BootSourceOverrideEnabled " + strconv.Quote(e) + " not supported"}
	}
	switch m := boot.BootSourceOverrideMode; m {
	case "":
	case "Legacy":
		b.UEFI = false
	case "UEFI":
		b.UEFI = true
	default:
		return &rfError{http.StatusBadRequest, "Base.1.0.PropertyValueNotInList", "BootSourceOverrideMode " + strconv.Quote(m) + " not supported"}
	}
	s.n.SetBoot(b)
	return nil
}

// ifMatch enforces If-Match on the system resource when the client sends
// one (gofish and redfishtool do).
func (s *redfishServer) ifMatch(r *http.Request) *rfError {
	im := r.Header.Get("If-Match")
	if im == "" || im == "*" {
		return nil
	}
	cur := etag(s.system())
	for _, t := range strings.Split(im, ",") {
		t = strings.TrimSpace(t)
		if t == cur || strings.Trim(t, `"`) == strings.Trim(strings.TrimPrefix(cur, "W/"), `"`) {
			return nil
		}
	}
	return &rfError{http.StatusPreconditionFailed, "Base.1.0.PreconditionFailed", "ETag does not match: the system changed"}
}

func (s *redfishServer) reset(r *http.Request) *rfError {
	var req struct{ ResetType string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		return &rfError{http.StatusBadRequest, "Base.1.0.MalformedJSON", "Reset body: " + err.Error()}
	}
	n := s.n
	var err error
	switch req.ResetType {
	case "On", "ForceOn":
		err = n.PowerOn()
	case "ForceOff", "GracefulShutdown":
		n.PowerOff()
	case "ForceRestart", "GracefulRestart", "PowerCycle":
		if n.Power() == rackcloud.PowerOn {
			err = n.Reset()
		} else {
			err = n.PowerOn()
		}
	case "PushPowerButton":
		if n.Power() == rackcloud.PowerOn {
			n.PowerOff()
		} else {
			err = n.PowerOn()
		}
	default:
		return &rfError{http.StatusBadRequest, "Base.1.0.ActionParameterNotSupported", "ResetType " + strconv.Quote(req.ResetType) + " not supported"}
	}
	if err != nil {
		return &rfError{http.StatusInternalServerError, "Base.1.0.InternalError", err.Error()}
	}
	return nil
}

// nic is the node's one NIC, the one QEMU gives the machine, with its MAC
// in upper case as many BMCs write it; its link is up while the machine
// runs.
func (s *redfishServer) nic() map[string]any {
	n := s.n
	mac := strings.ToUpper(n.MAC.String())
	if f := n.currentFault(); f.RedfishMAC != "" {
		mac = f.RedfishMAC
	}
	status := "LinkDown"
	if n.reportedPower() {
		status = "LinkUp"
	}
	return map[string]any{
		"@odata.id": rfNIC, "@odata.type": "#EthernetInterface.v1_6_0.EthernetInterface",
		"Id": "1", "Name": "NIC 1", "Description": "virtio-net-pci on the provisioning network",
		"MACAddress": mac, "PermanentMACAddress": mac,
		"SpeedMbps": 1000, "FullDuplex": true, "AutoNeg": true, "MTUSize": 1500,
		"InterfaceEnabled": true, "LinkStatus": status,
		"Status": map[string]any{"State": "Enabled", "Health": "OK"},
		"Links":  map[string]any{"Chassis": link(rfChassis)},
	}
}

func (s *redfishServer) chassis() map[string]any {
	return map[string]any{
		"@odata.id": rfChassis, "@odata.type": "#Chassis.v1_10_0.Chassis",
		"Id": "1", "Name": s.n.Name + " chassis", "ChassisType": "RackMount",
		"Manufacturer": "rackcloud-lab", "SerialNumber": s.n.Serial,
		"PowerState": s.reportedPowerState(),
		"Status":     map[string]any{"State": "Enabled", "Health": "OK"},
		"Thermal":    link(rfChassis + "/Thermal"),
		"Power":      link(rfChassis + "/Power"),
		"Links": map[string]any{
			"ComputerSystems": []any{link(rfSystem)},
			"ManagedBy":       []any{link(rfManager)},
		},
	}
}

func (s *redfishServer) thermal() map[string]any {
	v := s.n.Sensors()
	ok := map[string]any{"State": "Enabled", "Health": "OK"}
	return map[string]any{
		"@odata.id": rfChassis + "/Thermal", "@odata.type": "#Thermal.v1_5_0.Thermal",
		"Id": "Thermal", "Name": "Thermal",
		"Temperatures": []any{map[string]any{
			"@odata.id": rfChassis + "/Thermal#/Temperatures/0", "MemberId": "0",
			"Name": "CPU Temp", "ReadingCelsius": v.TemperatureC, "PhysicalContext": "CPU", "Status": ok,
		}},
		"Fans": []any{map[string]any{
			"@odata.id": rfChassis + "/Thermal#/Fans/0", "MemberId": "0",
			"Name": "Fan1", "Reading": v.FanRPM, "ReadingUnits": "RPM", "Status": ok,
		}},
	}
}

func (s *redfishServer) power() map[string]any {
	v := s.n.Sensors()
	return map[string]any{
		"@odata.id": rfChassis + "/Power", "@odata.type": "#Power.v1_5_0.Power",
		"Id": "Power", "Name": "Power",
		"PowerControl": []any{map[string]any{
			"@odata.id": rfChassis + "/Power#/PowerControl/0", "MemberId": "0",
			"Name": "System Power", "PowerConsumedWatts": v.PowerWatts,
			"Status": map[string]any{"State": "Enabled", "Health": "OK"},
		}},
		"PowerSupplies": []any{map[string]any{
			"@odata.id": rfChassis + "/Power#/PowerSupplies/0", "MemberId": "0",
			"Name": "PSU1", "PowerCapacityWatts": 800, "LastPowerOutputWatts": v.PowerWatts,
			"Status": map[string]any{"State": "Enabled", "Health": "OK"},
		}},
	}
}

func (s *redfishServer) manager() map[string]any {
	return map[string]any{
		"@odata.id": rfManager, "@odata.type": "#Manager.v1_5_0.Manager",
		"Id": "1", "Name": s.n.Name + " BMC", "ManagerType": "BMC",
		"Manufacturer": "rackcloud-lab", "Model": "rackcloud lab Redfish BMC",
		"FirmwareVersion": "1.0.0", "UUID": s.n.uuid,
		"Status": map[string]any{"State": "Enabled", "Health": "OK"},
		"Links":  map[string]any{"ManagerForServers": []any{link(rfSystem)}},
	}
}

func (s *redfishServer) fail(w http.ResponseWriter, e rfError) {
	writeJSON(w, e.status, map[string]any{"error": map[string]any{
		"code": e.code, "message": e.message,
		"@Message.ExtendedInfo": []any{map[string]any{"MessageId": e.code, "Message": e.message}},
	}})
}

func link(p string) map[string]any { return map[string]any{"@odata.id": p} }

func collection(id, typ, name string, members ...string) map[string]any {
	m := make([]any, 0, len(members))
	for _, p := range members {
		m = append(m, link(p))
	}
	return map[string]any{
		"@odata.id": id, "@odata.type": typ, "Name": name,
		"Members": m, "Members@odata.count": len(m),
	}
}

func etag(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return `W/"` + hex.EncodeToString(h[:8]) + `"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
