package rackcloud

import "testing"

func TestBootEventKindsDistinct(t *testing.T) {
	seen := map[BootEventKind]bool{}
	for _, k := range BootEventKinds() {
		if k == "" || seen[k] {
			t.Fatalf("kind %q empty or listed twice", k)
		}
		seen[k] = true
	}
	if !seen[BootEventInventory] || !seen[BootEventCallback] {
		t.Fatal("callback and inventory must be listed")
	}
}
