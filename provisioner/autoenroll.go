package provisioner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// DefaultAutoEnrollInterval is how often available hosts are checked
// against the enroll rules.
const DefaultAutoEnrollInterval = 5 * time.Second

// autoEnrollActor is the audit actor of what the enroll rules do.
const autoEnrollActor = "system:enroll-rules"

// RunAutoEnroll applies the enroll rules until ctx ends, every interval:
// see AutoEnroll. Every replica may run it; a host is taken by one.
func (p *Provisioner) RunAutoEnroll(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultAutoEnrollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	// soon is the quick re-looks after a wake-up: the host's enroll task
	// ends just after its last step woke this loop.
	var soon <-chan time.Time
	quick := 0
	for {
		if _, err := p.AutoEnroll(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("auto-enroll", "err", err)
		}
		if quick > 0 {
			quick--
			soon = time.After(200 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-soon:
		case <-p.enrolled:
			quick = 10
		}
	}
}

// wakeAutoEnroll tells the auto-enroll loop a host just became available.
func (p *Provisioner) wakeAutoEnroll() {
	select {
	case p.enrolled <- struct{}{}:
	default:
	}
}

// AutoEnroll applies the enroll rules to the available hosts that wait for
// them (store.HostsToEnroll): the first matching rule sets the host's
// role, image, labels and rack and, with provision, submits
// host.provision; the verdicts are recorded on the host either way, so
// that `host match` says which rule matched and why others did not. A
// host deprovisioned later is available again but keeps its verdicts: it
// is not provisioned again by itself. It returns the hosts provisioned.
func (p *Provisioner) AutoEnroll(ctx context.Context) (int, error) {
	ids, err := store.HostsToEnroll(ctx, p.cfg.Pool, 100)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, id := range ids {
		provisioned, err := p.autoEnroll(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", id, err))
		}
		if provisioned {
			n++
		}
	}
	return n, errors.Join(errs...)
}

func (p *Provisioner) autoEnroll(ctx context.Context, hostID string) (bool, error) {
	provisioned := false
	err := store.InTx(ctx, p.cfg.Pool, func(tx pgx.Tx) error {
		provisioned = false
		ok, err := store.LockHostToEnroll(ctx, tx, hostID)
		if err != nil || !ok {
			return err
		}
		rule, verdicts, err := store.EnrollRuleMatch(ctx, tx, hostID)
		if err != nil {
			return err
		}
		ruleID := ""
		if rule != nil {
			ruleID = rule.ID
		}
		if err := store.RecordEnrollMatch(ctx, tx, hostID, ruleID, verdicts); err != nil {
			return err
		}
		if rule == nil {
			return nil
		}
		h, err := store.GetHost(ctx, tx, hostID)
		if err != nil {
			return err
		}
		if len(rule.Set.Labels) > 0 || rule.Set.RackID != "" {
			labels := maps.Clone(h.Labels)
			if labels == nil {
				labels = rackcloud.Labels{}
			}
			maps.Copy(labels, rule.Set.Labels)
			h.Labels = labels
			if rule.Set.RackID != "" {
				h.RackID = rule.Set.RackID
			}
			if h, err = store.UpdateHost(ctx, tx, h); err != nil {
				return err
			}
		}
		role, image := h.Role, h.ImageID
		if rule.Set.Role != "" {
			role = rule.Set.Role
		}
		if rule.Set.ImageID != "" {
			image = rule.Set.ImageID
		}
		if err := store.SetHostRole(ctx, tx, hostID, role, image); err != nil {
			return err
		}
		detail := fmt.Sprintf("rule %s matched host %s: role %s", rule.Name, h.Name, orNone(string(role)))
		if rule.Provision {
			info, err := p.engine.Submit(ctx, tx, tasks.Submission{Kind: rackcloud.KindHostProvision, Target: "host/" + hostID,
				Params: rackcloud.HostProvisionParams{HostID: hostID, Role: role, ImageID: image}})
			if err != nil {
				return err
			}
			provisioned = true
			detail += ", provisioning (task " + info.ID + ")"
		}
		p.log.Info("enroll rule applied", "host", h.Name, "rule", rule.Name, "role", role, "provision", rule.Provision)
		return store.WriteAudit(ctx, tx, store.AuditRecord{AuditEvent: rackcloud.AuditEvent{Actor: autoEnrollActor,
			Action: "applyEnrollRule", Target: "host/" + hostID, Outcome: store.OutcomeSuccess}, Detail: detail})
	})
	return provisioned, err
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
