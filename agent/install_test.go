package agent_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/agent"
	"github.com/rackcloud/rackcloud/hostconfig"
	"github.com/rackcloud/rackcloud/imagefmt"
)

const (
	testMAC   = "52:54:00:aa:01:01"
	testToken = "boot-token"
)

// diskImage is a 24 MiB disk with an MBR, random data and a config
// partition (the last MiB).
func diskImage() []byte {
	b := make([]byte, 24<<20)
	r := rand.New(rand.NewPCG(3, 4))
	for i := 1 << 20; i < 12<<20; i++ {
		b[i] = byte(r.Uint32())
	}
	e := b[446+16:]
	e[4] = hostconfig.PartitionType
	binary.LittleEndian.PutUint32(e[8:], (23<<20)/512)
	binary.LittleEndian.PutUint32(e[12:], (1<<20)/512)
	b[510], b[511] = 0x55, 0xaa
	return b
}

type bootService struct {
	t       *testing.T
	srv     *httptest.Server
	image   []byte // what /image serves
	plan    agent.InstallPlan
	cutOnce atomic.Bool // the first download is cut in the middle
	mu      sync.Mutex
	reports []rackcloud.InstallReport
	ranges  []string
}

func newBootService(t *testing.T, format string, raw []byte) *bootService {
	b := &bootService{t: t}
	b.image = raw
	if format == string(rackcloud.FormatRawZstd) {
		var z bytes.Buffer
		if _, _, err := imagefmt.Compress(&z, bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		b.image = z.Bytes()
	}
	sum := sha256.Sum256(raw)
	b.plan.HostID = "0b7e8a52-1b43-4c1e-9a53-9a1b7d8f3c21"
	b.plan.Image.Name, b.plan.Image.Format, b.plan.Image.Size = "test", format, int64(len(raw))
	b.plan.Image.Checksum = "sha256:" + hex.EncodeToString(sum[:])
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot/{mac}/install", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			http.Error(w, "bad token", http.StatusForbidden)
			return
		}
		_ = json.NewEncoder(w).Encode(b.plan)
	})
	mux.HandleFunc("POST /boot/{mac}/install", func(w http.ResponseWriter, r *http.Request) {
		var rep rackcloud.InstallReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			t.Errorf("install report: %v", err)
		}
		b.mu.Lock()
		b.reports = append(b.reports, rep)
		b.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /image", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.ranges = append(b.ranges, r.Header.Get("Range"))
		b.mu.Unlock()
		if r.Header.Get("Range") == "" && b.cutOnce.CompareAndSwap(true, false) {
			// Promise the whole image, send 40% of it, hang up.
			w.Header().Set("Content-Length", strconv.Itoa(len(b.image)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(b.image[:len(b.image)*2/5])
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		http.ServeContent(w, r, "image", time.Time{}, bytes.NewReader(b.image))
	})
	b.srv = httptest.NewServer(mux)
	t.Cleanup(b.srv.Close)
	b.plan.Image.URL = b.srv.URL + "/image"
	b.plan.Config = hostconfig.Config{Version: 1, HostID: b.plan.HostID, Hostname: "node1", Role: rackcloud.RoleBareMetal,
		MAC: testMAC, BootURL: b.srv.URL, Token: "host-token"}
	return b
}

func (b *bootService) phases() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.reports {
		if len(out) == 0 || out[len(out)-1] != r.Phase {
			out = append(out, r.Phase)
		}
	}
	return out
}

func (b *bootService) last() rackcloud.InstallReport {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reports[len(b.reports)-1]
}

// disk makes DevDir/vda of size bytes holding an old GPT-like marker at
// its end.
func disk(t *testing.T, size int64) (string, []rackcloud.InventoryDisk) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "vda"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("EFI PART"), size-512); err != nil {
		t.Fatal(err)
	}
	return dir, []rackcloud.InventoryDisk{{Name: "vda", SizeBytes: size}, {Name: "vdb", SizeBytes: 1 << 20}}
}

func install(b *bootService, dir string, disks []rackcloud.InventoryDisk) error {
	in := &agent.Install{Base: b.srv.URL, MAC: testMAC, Token: testToken, DevDir: dir, Disks: disks,
		ProgressEvery: time.Nanosecond, Report: agent.Config{RetryFor: 5 * time.Second, RetryMin: 10 * time.Millisecond}}
	return in.Run(b.t.Context())
}

// The download is cut in the middle: the installer resumes with Range
// (at the frame for raw+zstd), the disk holds the image (read back), the
// host config is in its partition, the old GPT backup is gone, and the
// reports go started -> progress -> written.
func TestInstallResumesAndWritesConfig(t *testing.T) {
	for _, format := range []string{"raw", "raw+zstd"} {
		t.Run(format, func(t *testing.T) {
			raw := diskImage()
			b := newBootService(t, format, raw)
			b.cutOnce.Store(true)
			dir, disks := disk(t, 64<<20)
			if err := install(b, dir, disks); err != nil {
				t.Fatal(err)
			}
			if got := b.phases(); strings.Join(got, ",") != "started,progress,written" {
				t.Fatalf("phases %v", got)
			}
			last := b.last()
			if last.SHA256 != b.plan.Image.Checksum || last.Resumes != 1 || last.Disk != "/dev/vda" {
				t.Fatalf("written report %+v", last)
			}
			b.mu.Lock()
			ranges := b.ranges
			b.mu.Unlock()
			if len(ranges) != 2 || !strings.HasPrefix(ranges[1], "bytes=") || ranges[1] == "bytes=0-" {
				t.Fatalf("requests' ranges %q: want a whole request, then one resumed where it stopped", ranges)
			}
			f, err := os.Open(filepath.Join(dir, "vda"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got := make([]byte, 23<<20) // up to the config partition
			if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, raw[:23<<20]) {
				t.Fatalf("disk differs from the image: %v", err)
			}
			cfg, err := hostconfig.Read(f)
			if err != nil || cfg != b.plan.Config {
				t.Fatalf("host config on the disk: %+v, %v", cfg, err)
			}
			tail := make([]byte, 8)
			_, _ = f.ReadAt(tail, 64<<20-512)
			if string(tail) == "EFI PART" {
				t.Fatal("the old GPT backup header is still at the disk's end")
			}
		})
	}
}

// Faults end in a failed report with the typed reason, and an error.
func TestInstallFailures(t *testing.T) {
	cases := []struct {
		name   string
		change func(b *bootService)
		size   int64
		want   rackcloud.FailureReason
	}{
		{"checksum", func(b *bootService) { b.plan.Image.Checksum = "sha256:" + strings.Repeat("0", 64) }, 64 << 20, rackcloud.FailChecksumMismatch},
		{"short image", func(b *bootService) { b.plan.Image.Size += 4096 }, 64 << 20, rackcloud.FailChecksumMismatch},
		{"missing image", func(b *bootService) { b.plan.Image.URL += "-gone" }, 64 << 20, rackcloud.FailDownload},
		{"small disk", func(*bootService) {}, 16 << 20, rackcloud.FailDiskTooSmall},
		{"not zstd", func(b *bootService) { b.plan.Image.Format = "raw+zstd" }, 64 << 20, rackcloud.FailDownload},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBootService(t, "raw", diskImage())
			c.change(b)
			dir, disks := disk(t, c.size)
			err := install(b, dir, disks)
			var ie *agent.InstallError
			if !errors.As(err, &ie) || ie.Reason != c.want {
				t.Fatalf("err %v, want reason %s", err, c.want)
			}
			if last := b.last(); last.Phase != rackcloud.InstallFailed || last.Reason != c.want || last.Error == "" {
				t.Fatalf("last report %+v", last)
			}
		})
	}
}

func TestTargetDisk(t *testing.T) {
	disks := []rackcloud.InventoryDisk{{Name: "sda", SizeBytes: 100 << 30}, {Name: "nvme0n1", SizeBytes: 20 << 30}, {Name: "sdb", SizeBytes: 1 << 30}}
	d, err := agent.TargetDisk(disks, 4<<30)
	if err != nil || d.Name != "nvme0n1" {
		t.Fatalf("TargetDisk = %v, %v; want the smallest that fits", d, err)
	}
	_, err = agent.TargetDisk(nil, 1)
	if !strings.HasPrefix(fmt.Sprint(err), "no_disk") {
		t.Fatalf("no disks: %v", err)
	}
}
