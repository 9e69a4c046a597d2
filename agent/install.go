package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostconfig"
	"github.com/rackcloud/rackcloud/imagefmt"
)

// StateProvisioning is the state in which the agent installs.
const StateProvisioning = "provisioning"

// InstallPlan is the boot service's GET /boot/{mac}/install answer (the
// API's InstallPlan).
type InstallPlan struct {
	HostID string `json:"host_id"`
	TaskID string `json:"task_id"`
	Image  struct {
		Name     string `json:"name"`
		URL      string `json:"url"`
		Checksum string `json:"checksum"`
		Size     int64  `json:"size"`
		Format   string `json:"format"`
	} `json:"image"`
	Config hostconfig.Config `json:"config"`
}

// Install configures Install.
type Install struct {
	// Base is the boot service's URL (scheme and host).
	Base       string
	MAC, Token string
	// DevDir holds the disks' device nodes (/dev).
	DevDir string
	// Disks are the machine's disks (Collect), the target chosen among
	// them.
	Disks []rackcloud.InventoryDisk
	// Client downloads (no overall timeout: an image takes minutes).
	Client *http.Client
	// ProgressEvery is how often progress is reported (default 5 s).
	ProgressEvery time.Duration
	// MaxResumes bounds resumed downloads (default 30).
	MaxResumes int
	// Report configures the delivery of reports (retries, log).
	Report Config
}

// InstallError is an install that failed, with its typed reason.
type InstallError struct {
	Reason rackcloud.FailureReason
	Err    error
}

func (e *InstallError) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *InstallError) Unwrap() error { return e.Err }

func failed(r rackcloud.FailureReason, format string, a ...any) error {
	return &InstallError{Reason: r, Err: fmt.Errorf(format, a...)}
}

// Run installs: it fetches the plan, chooses the disk, streams the image
// onto it (resuming dropped downloads with Range), reads it back against
// the image's checksum, writes the host's configuration into the image's
// configuration partition and reports each phase. A failure is reported
// with its reason before it is returned.
func (in *Install) Run(ctx context.Context) error {
	plan, err := in.plan(ctx)
	if err != nil {
		return err
	}
	return in.RunPlan(ctx, plan)
}

// RunPlan installs plan (Run, with the plan fetched).
func (in *Install) RunPlan(ctx context.Context, plan InstallPlan) error {
	in.Report.Token = in.Token
	logw := in.Report.Log
	if logw == nil {
		logw = io.Discard
	}
	fmt.Fprintf(logw, "rackcloud-agent: installing %s (%s, %d bytes) for host %s\n", plan.Image.Name, plan.Image.Format,
		plan.Image.Size, plan.HostID)
	rep := rackcloud.InstallReport{Total: plan.Image.Size}
	err := in.install(ctx, plan, &rep)
	if err != nil {
		var ie *InstallError
		if !errors.As(err, &ie) {
			ie = &InstallError{Reason: rackcloud.FailDiskWrite, Err: err}
			err = ie
		}
		rep.Phase, rep.Reason, rep.Error = rackcloud.InstallFailed, ie.Reason, oneLine(ie.Err.Error())
		fmt.Fprintf(logw, "rackcloud-agent: install failed: %v\n", err)
		if rerr := in.send(ctx, rep); rerr != nil {
			fmt.Fprintf(logw, "rackcloud-agent: failure not reported: %v\n", rerr)
		}
		return err
	}
	rep.Phase = rackcloud.InstallWritten
	fmt.Fprintf(logw, "rackcloud-agent: %s written to %s and read back (%s), %.1f MB/s, %d resumes\n", plan.Image.Name,
		rep.Disk, rep.SHA256, rep.MBps, rep.Resumes)
	return in.send(ctx, rep)
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

func (in *Install) url(what string) string {
	return strings.TrimSuffix(in.Base, "/") + "/boot/" + in.MAC + "/" + what
}

func (in *Install) send(ctx context.Context, rep rackcloud.InstallReport) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	return deliver(ctx, in.Report, in.url("install"), "install report", b)
}

// plan fetches the install plan, trying again while the boot service or
// the control plane does not answer.
func (in *Install) plan(ctx context.Context) (InstallPlan, error) {
	ctx, cancel := context.WithTimeout(ctx, orDefault(in.Report.RetryFor, DefaultRetryFor))
	defer cancel()
	wait := orDefault(in.Report.RetryMin, DefaultRetryMin)
	for {
		plan, err := in.fetchPlan(ctx)
		var refused *RefusedError
		if err == nil || errors.As(err, &refused) {
			return plan, err
		}
		select {
		case <-ctx.Done():
			return plan, fmt.Errorf("install plan not fetched: %w", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, orDefault(in.Report.RetryMax, DefaultRetryMax))
	}
}

// fetchPlan asks for the install plan once: a 4xx answer is a
// *RefusedError (404: no plan, the host is not provisioning).
func (in *Install) fetchPlan(ctx context.Context) (InstallPlan, error) {
	var plan InstallPlan
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url("install"), nil)
	if err != nil {
		return plan, err
	}
	req.Header.Set("Authorization", "Bearer "+in.Token)
	resp, err := (&http.Client{Timeout: DefaultTimeout}).Do(req)
	if err != nil {
		return plan, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	switch {
	case err != nil:
		return plan, err
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(body, &plan); err != nil {
			return plan, fmt.Errorf("install plan: %w", err)
		}
		return plan, plan.check()
	case resp.StatusCode < 500:
		return plan, &RefusedError{What: "install plan", URL: req.URL.String(), Status: resp.StatusCode, Detail: oneLine(string(body))}
	}
	return plan, fmt.Errorf("install plan: %s", resp.Status)
}

// Standby asks for an install plan every poll until d has passed, and
// installs when one comes (fast track: a host provisioned while its
// inspection boot is still up installs from it). It returns nil when d
// passed without a plan, and stops at once when the boot service refuses
// this boot's token (the host booted again).
func (in *Install) Standby(ctx context.Context, d, poll time.Duration) error {
	if poll <= 0 {
		poll = 3 * time.Second
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		plan, err := in.fetchPlan(ctx)
		var refused *RefusedError
		switch {
		case err == nil:
			return in.RunPlan(ctx, plan)
		case errors.As(err, &refused) && refused.Status == http.StatusForbidden:
			return fmt.Errorf("standby ends: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
	return nil
}

func (p InstallPlan) check() error {
	switch {
	case p.Image.URL == "":
		return errors.New("install plan: no image URL")
	case p.Image.Size <= 0:
		return errors.New("install plan: the image's size is unknown")
	case !strings.HasPrefix(p.Image.Checksum, "sha256:"):
		return fmt.Errorf("install plan: checksum %q is not sha256:<hex>", p.Image.Checksum)
	case p.Image.Format != string(rackcloud.FormatRaw) && p.Image.Format != string(rackcloud.FormatRawZstd):
		return fmt.Errorf("install plan: format %q: the installer writes raw and raw+zstd images", p.Image.Format)
	}
	return p.Config.Validate()
}

// TargetDisk is the disk to install an image of size bytes on: the
// smallest one that holds it. No disk is no_disk; none large enough is
// disk_too_small.
func TargetDisk(disks []rackcloud.InventoryDisk, size int64) (rackcloud.InventoryDisk, error) {
	if len(disks) == 0 {
		return rackcloud.InventoryDisk{}, failed(rackcloud.FailNoDisk, "the machine has no disk")
	}
	fit := slices.DeleteFunc(slices.Clone(disks), func(d rackcloud.InventoryDisk) bool { return d.SizeBytes < size })
	if len(fit) == 0 {
		largest := slices.MaxFunc(disks, func(a, b rackcloud.InventoryDisk) int { return int(a.SizeBytes>>20 - b.SizeBytes>>20) })
		return rackcloud.InventoryDisk{}, failed(rackcloud.FailDiskTooSmall, "the image needs %d bytes; the largest disk, %s, has %d",
			size, largest.Name, largest.SizeBytes)
	}
	return slices.MinFunc(fit, func(a, b rackcloud.InventoryDisk) int { return int(a.SizeBytes>>20 - b.SizeBytes>>20) }), nil
}

func (in *Install) install(ctx context.Context, plan InstallPlan, rep *rackcloud.InstallReport) error {
	disk, err := TargetDisk(in.Disks, plan.Image.Size)
	if err != nil {
		return err
	}
	dev := filepath.Join(in.DevDir, disk.Name)
	rep.Disk = "/dev/" + disk.Name
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return failed(rackcloud.FailDiskWrite, "open %s: %v", dev, err)
	}
	defer f.Close()
	rep.Phase = rackcloud.InstallStarted
	if err := in.send(ctx, *rep); err != nil {
		return err
	}
	start := time.Now()
	w := &progressWriter{in: in, f: f, rep: rep, start: start, every: orDefault(in.ProgressEvery, 5*time.Second), ctx: ctx}
	if err := in.download(ctx, plan, w); err != nil {
		return err
	}
	if w.off != plan.Image.Size {
		return failed(rackcloud.FailChecksumMismatch, "the image holds %d bytes, not the %d its record says", w.off, plan.Image.Size)
	}
	if err := f.Sync(); err != nil {
		return failed(rackcloud.FailDiskWrite, "sync %s: %v", dev, err)
	}
	rep.MBps = float64(w.off) / 1e6 / max(time.Since(start).Seconds(), 0.001)
	// Read back what is on the disk, not what was sent.
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, plan.Image.Size)); err != nil {
		return failed(rackcloud.FailDiskWrite, "read back %s: %v", dev, err)
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	rep.SHA256 = got
	if got != plan.Image.Checksum {
		return failed(rackcloud.FailChecksumMismatch, "read back %s from %s, the image's checksum is %s", got, rep.Disk, plan.Image.Checksum)
	}
	// A GPT left by an earlier OS keeps its backup header in the last
	// sectors: beyond the image, zero them.
	if disk.SizeBytes-plan.Image.Size >= 1<<20 {
		if _, err := f.WriteAt(make([]byte, 1<<20), disk.SizeBytes-1<<20); err != nil {
			return failed(rackcloud.FailDiskWrite, "zero the end of %s: %v", dev, err)
		}
	}
	if err := hostconfig.Write(f, f, plan.Config); err != nil {
		return failed(rackcloud.FailDiskWrite, "host config on %s: %v", dev, err)
	}
	if err := f.Sync(); err != nil {
		return failed(rackcloud.FailDiskWrite, "sync %s: %v", dev, err)
	}
	return nil
}

// progressWriter writes the disk at its offset and reports progress.
type progressWriter struct {
	in    *Install
	ctx   context.Context
	f     *os.File
	off   int64
	rep   *rackcloud.InstallReport
	start time.Time
	last  time.Time
	every time.Duration
}

func (w *progressWriter) writeAt(b []byte) error {
	if _, err := w.f.WriteAt(b, w.off); err != nil {
		return failed(rackcloud.FailDiskWrite, "write %s at %d: %v", w.rep.Disk, w.off, err)
	}
	w.off += int64(len(b))
	if now := time.Now(); now.Sub(w.last) >= w.every {
		w.last = now
		w.rep.Phase, w.rep.Bytes = rackcloud.InstallProgress, w.off
		w.rep.MBps = float64(w.off) / 1e6 / max(now.Sub(w.start).Seconds(), 0.001)
		b, _ := json.Marshal(w.rep)
		// Progress is best effort: one try, short.
		ctx, cancel := context.WithTimeout(w.ctx, 3*time.Second)
		_ = post(ctx, &http.Client{}, w.in.url("install"), w.in.Token, b)
		cancel()
	}
	return nil
}

// download streams the image into w, resuming with Range where a dropped
// connection left it: raw images at the byte, raw+zstd at the frame.
func (in *Install) download(ctx context.Context, plan InstallPlan, w *progressWriter) error {
	client := in.Client
	if client == nil {
		client = &http.Client{}
	}
	maxResumes := in.MaxResumes
	if maxResumes == 0 {
		maxResumes = 30
	}
	zstdImage := plan.Image.Format == string(rackcloud.FormatRawZstd)
	var dec *zstd.Decoder
	if zstdImage {
		var err error
		if dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return err
		}
		defer dec.Close()
	}
	var src int64 // offset in the image file of the next byte to fetch
	var frame, raw []byte
	for attempt := 0; ; attempt++ {
		body, restarted, err := in.get(ctx, client, plan.Image.URL, src)
		if err != nil {
			var ie *InstallError
			if errors.As(err, &ie) || attempt >= maxResumes || ctx.Err() != nil {
				return err
			}
			in.pause(ctx, attempt)
			w.rep.Resumes++
			continue
		}
		if restarted { // the server ignored Range: start over
			src, w.off = 0, 0
		}
		if !zstdImage {
			n, err := copyAt(w, body)
			src += n
			body.Close()
			if err == nil {
				return nil
			}
			var ie *InstallError
			if errors.As(err, &ie) || attempt >= maxResumes {
				return err
			}
		} else {
			fr := imagefmt.NewFrames(body)
			for {
				frame, err = fr.Next(frame)
				if errors.Is(err, io.EOF) {
					body.Close()
					return nil
				}
				if err != nil {
					break
				}
				raw, err = dec.DecodeAll(frame, raw[:0])
				if err != nil {
					body.Close()
					return failed(rackcloud.FailDownload, "image %s: frame at %d: %v", plan.Image.Name, src, err)
				}
				if err := w.writeAt(raw); err != nil {
					body.Close()
					return err
				}
				src += int64(len(frame))
			}
			body.Close()
			if errors.Is(err, imagefmt.ErrFormat) {
				return failed(rackcloud.FailDownload, "image %s at %d: %v", plan.Image.Name, src, err)
			}
			if attempt >= maxResumes {
				return failed(rackcloud.FailDownload, "image %s: gave up after %d resumed downloads: %v", plan.Image.Name, attempt, err)
			}
		}
		w.rep.Resumes++
		if in.Report.Log != nil {
			fmt.Fprintf(in.Report.Log, "rackcloud-agent: download of %s dropped at %d: resuming\n", plan.Image.Name, src)
		}
	}
}

func (in *Install) pause(ctx context.Context, attempt int) {
	d := time.Duration(float64(min(time.Duration(1<<min(attempt, 4))*500*time.Millisecond, 8*time.Second)) * (0.8 + 0.4*rand.Float64()))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// copyAt copies a raw image's bytes onto the disk; an error other than
// the body's clean end (net/http says io.EOF only once Content-Length
// bytes came) leaves the rest to a resumed download.
func copyAt(w *progressWriter, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if werr := w.writeAt(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// get requests the image from offset off. restarted says the server
// answered the whole image (200) to a ranged request. 4xx answers are
// download_failed at once; 5xx and transport errors may be retried.
func (in *Install) get(ctx context.Context, client *http.Client, u string, off int64) (io.ReadCloser, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, failed(rackcloud.FailDownload, "image URL %q: %v", u, err)
	}
	q := req.URL.Query()
	q.Set("mac", in.MAC)
	req.URL.RawQuery = q.Encode()
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, false, err
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return resp.Body, off > 0, nil
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		return resp.Body, false, nil
	}
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return nil, false, fmt.Errorf("image %s: %s", u, resp.Status)
	}
	return nil, false, failed(rackcloud.FailDownload, "image %s: %s: %s", u, resp.Status, oneLine(string(detail)))
}
