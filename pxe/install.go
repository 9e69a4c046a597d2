package pxe

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/rackcloud/rackcloud"
)

// InstallsPath is where the API serves a provisioning host's install plan
// (GET, boot role): the image and the host's configuration.
const InstallsPath = "/v1/boot/installs/" // + {mac}

// maxInstallReport bounds an installer's progress report.
const maxInstallReport = 16 << 10

// maxHeartbeat bounds an installed host's heartbeat.
const maxHeartbeat = 16 << 10

// tokenNoHost is why a heartbeat is refused when the host has no host
// token (it is not installed by this control plane, or unknown).
const tokenNoHost = "no_host_token"

// InstallSource is the optional capability of a ProfileSource to hand out
// install plans (the API's /v1/boot/installs/{mac}).
type InstallSource interface {
	// Install returns mac's install plan (JSON), an error wrapping
	// rackcloud.ErrNotFound when it has none, ErrUnavailable when the
	// control plane cannot be asked.
	Install(ctx context.Context, mac string) ([]byte, error)
}

// handleInstallPlan serves GET /boot/{mac}/install to the installer of the
// current boot (its boot token): the plan comes from the control plane,
// never from a cache, because it holds the host's secrets.
func (s *Service) handleInstallPlan(w http.ResponseWriter, r *http.Request) {
	mac, ok := s.checkBootToken(w, r, "install plan")
	if !ok {
		return
	}
	src, ok := s.profiles.(InstallSource)
	if !ok {
		httpError(w, http.StatusNotFound, "this boot service hands out no install plans")
		return
	}
	plan, err := src.Install(r.Context(), mac)
	switch {
	case errors.Is(err, rackcloud.ErrNotFound):
		httpError(w, http.StatusNotFound, "no install plan for %s: %v", mac, err)
		return
	case err != nil:
		s.log.Warn("install plan not fetched", "mac", mac, "err", err)
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "install plan: the control plane did not answer")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(plan)
}

// handleInstallReport records POST /boot/{mac}/install, the installer's
// progress (a rackcloud.InstallReport), as an install event.
func (s *Service) handleInstallReport(w http.ResponseWriter, r *http.Request) {
	s.handleReport(w, r, EventInstall, maxInstallReport, true, http.StatusAccepted)
}

// checkBootToken checks the current boot's token of the request's MAC,
// answering 400 or 403 itself when it does not pass.
func (s *Service) checkBootToken(w http.ResponseWriter, r *http.Request, what string) (string, bool) {
	mac, err := rackcloud.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return "", false
	}
	if reason := s.tokens.check(mac, bearer(r.Header.Get("Authorization"))); reason != "" {
		s.refused(r, mac, what, reason)
		httpError(w, http.StatusForbidden, "%s refused: %s boot token", what, reason)
		return "", false
	}
	return mac, true
}

func (s *Service) refused(r *http.Request, mac, what, reason string) {
	s.m.callbacksRefused.WithLabelValues(reason).Inc()
	if s.refusedLog.Allow() {
		s.log.Warn(what+" refused", "mac", mac, "peer", remoteIP(r), "token", reason)
	}
}

// handleHeartbeat records POST /boot/{mac}/heartbeat from an installed
// host's agent, which must present the host's token (the hash of which
// comes with the host's profile): a missing or wrong token is refused
// with 403 and counted.
func (s *Service) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	mac, err := rackcloud.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	token := bearer(r.Header.Get("Authorization"))
	reason := tokenMissing
	if token != "" {
		reason = tokenNoHost
		if s.profiles != nil {
			p, err := s.profiles.Profile(r.Context(), mac)
			if err != nil && !errors.Is(err, rackcloud.ErrNotFound) {
				w.Header().Set("Retry-After", "5")
				httpError(w, http.StatusServiceUnavailable, "heartbeat: the host's profile is unavailable")
				return
			}
			if want, herr := hex.DecodeString(p.HostTokenSHA256); err == nil && herr == nil && len(want) > 0 {
				got, _ := hex.DecodeString(tokenSum(token))
				reason = tokenWrong
				if subtle.ConstantTimeCompare(got, want) == 1 {
					reason = ""
				}
			}
		}
	}
	if reason != "" {
		s.refused(r, mac, "heartbeat", reason)
		httpError(w, http.StatusForbidden, "heartbeat refused: %s host token", reason)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHeartbeat))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "heartbeat body: %v", err)
		return
	}
	if !isJSONObject(body) {
		httpError(w, http.StatusBadRequest, "heartbeat body is not a JSON object")
		return
	}
	s.record(Event{MAC: mac, Kind: EventHeartbeat, IP: remoteIP(r).String(), Data: cleanJSON(body)})
	w.WriteHeader(http.StatusAccepted)
}

// Install fetches mac's install plan from the API (never cached: it holds
// the host's secrets).
func (c *APIClient) Install(ctx context.Context, mac string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+InstallsPath+url.PathEscape(mac), nil)
	if err != nil {
		return nil, err
	}
	c.auth(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("install plan %s: %w: %w", mac, err, ErrUnavailable)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case err != nil:
		return nil, fmt.Errorf("install plan %s: %w: %w", mac, err, ErrUnavailable)
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("install plan %s: %s: %w", mac, cleanText(string(body), maxPeerText), rackcloud.ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("install plan %s: API status %s: %w", mac, resp.Status, ErrUnavailable)
	}
	return body, nil
}
