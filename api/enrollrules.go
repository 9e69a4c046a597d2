package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// EnrollMatch is what a host must be for an enroll rule to match it; an
// absent field matches anything. Its fields are rackcloud.EnrollMatch's.
type EnrollMatch struct {
	MACPrefix    string `json:"mac_prefix,omitempty" maxLength:"17" doc:"One to six octets, lower-case colon form: matches when any of the host's MACs starts with it." example:"52:54:00:aa"`
	Vendor       string `json:"vendor,omitempty" maxLength:"255" doc:"Glob (Go path.Match: * ? [a-z] \\x, case-sensitive) over the inventory's DMI vendor." example:"Dell*"`
	Product      string `json:"product,omitempty" maxLength:"255" doc:"Glob over the inventory's DMI product." example:"PowerEdge R6?0"`
	Serial       string `json:"serial,omitempty" maxLength:"255" doc:"Glob over the inventory's DMI serial." example:"CZ*"`
	MinCPUs      int    `json:"min_cpus,omitempty" minimum:"0" maximum:"100000" doc:"At least this many CPUs (hardware threads)." example:"16"`
	MinMemoryMiB int64  `json:"min_memory_mib,omitempty" minimum:"0" doc:"At least this much memory, in MiB." example:"65536"`
	MinDisks     int    `json:"min_disks,omitempty" minimum:"0" maximum:"1000" doc:"At least this many disks." example:"2"`
	MinDiskBytes int64  `json:"min_disk_bytes,omitempty" minimum:"0" doc:"The largest disk has at least this many bytes." example:"480000000000"`
	Firmware     string `json:"firmware,omitempty" enum:"bios,uefi" doc:"The firmware the host boots with."`
	RackID       string `json:"rack_id,omitempty" format:"uuid" doc:"The rack the host is registered in."`
}

// EnrollSet is what a matching rule makes of a host; absent fields leave
// the host's as they are. Its fields are rackcloud.EnrollSet's.
type EnrollSet struct {
	Role    rackcloud.HostRole `json:"role,omitempty" enum:"bm,kvm,docker" doc:"The role to install the host as."`
	ImageID string             `json:"image_id,omitempty" format:"uuid" doc:"The image to install; it must serve the role."`
	Labels  rackcloud.Labels   `json:"labels,omitempty" doc:"Labels added to the host's." example:"{\"pool\":\"general\"}"`
	RackID  string             `json:"rack_id,omitempty" format:"uuid" doc:"The rack to record the host in."`
}

// EnrollRule decides what a freshly inspected host becomes.
type EnrollRule struct {
	Meta
	Priority  int         `json:"priority" doc:"Rules are tried lowest first; the first that matches wins." example:"100"`
	Match     EnrollMatch `json:"match" doc:"What the host must be."`
	Set       EnrollSet   `json:"set" doc:"What the host becomes."`
	Provision bool        `json:"provision" doc:"Install the host (host.provision) once the rule applies."`
}

func enrollRuleOut(r rackcloud.EnrollRule) EnrollRule {
	return EnrollRule{Meta: meta(r.Meta), Priority: r.Priority, Match: EnrollMatch(r.Match), Set: EnrollSet(r.Set), Provision: r.Provision}
}

// EnrollRuleBody creates an enroll rule.
type EnrollRuleBody struct {
	Name      string            `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Unique name." example:"dell-kvm"`
	Priority  int               `json:"priority" minimum:"0" maximum:"1000000" doc:"Unique; rules are tried lowest first." example:"100"`
	Match     EnrollMatch       `json:"match,omitempty" doc:"What the host must be; absent matches every host."`
	Set       EnrollSet         `json:"set,omitempty" doc:"What the host becomes."`
	Provision bool              `json:"provision,omitempty" doc:"Install the host once the rule applies (needs set.role and set.image_id)."`
	Labels    map[string]string `json:"labels,omitempty" doc:"The rule's own labels."`
}

// EnrollRuleUpdateBody changes an enroll rule; match and set replace the
// whole of theirs when present.
type EnrollRuleUpdateBody struct {
	Priority  *int              `json:"priority,omitempty" minimum:"0" maximum:"1000000" doc:"Unique; rules are tried lowest first."`
	Match     *EnrollMatch      `json:"match,omitempty" doc:"Replaces the whole match."`
	Set       *EnrollSet        `json:"set,omitempty" doc:"Replaces the whole set."`
	Provision *bool             `json:"provision,omitempty" doc:"Install the host once the rule applies."`
	Labels    map[string]string `json:"labels,omitempty" doc:"Replaces the rule's labels when present."`
}

// RuleVerdict is why one rule did or did not match a host.
type RuleVerdict struct {
	RuleID   string `json:"rule_id" format:"uuid" doc:"The rule."`
	RuleName string `json:"rule_name" doc:"The rule's name." example:"dell-kvm"`
	Matched  bool   `json:"matched" doc:"Whether the rule matched."`
	Reason   string `json:"reason" doc:"Why, plainly: matches, or every condition that failed." example:"memory 512 MiB < 1024"`
}

func verdictsOut(vs []rackcloud.RuleVerdict) []RuleVerdict {
	out := make([]RuleVerdict, 0, len(vs))
	for _, v := range vs {
		out = append(out, RuleVerdict(v))
	}
	return out
}

// HostEnrollMatch is which enroll rule a host matched and why the others
// did not.
type HostEnrollMatch struct {
	EnrolledByRule   string        `json:"enrolled_by_rule,omitempty" format:"uuid" doc:"The rule that enrolled the host, when one did (absent if none did, or it was deleted since)."`
	EnrollVerdicts   []RuleVerdict `json:"enroll_verdicts" doc:"The verdicts recorded when the host was enrolled (empty if none were)."`
	MatchingRule     string        `json:"matching_rule,omitempty" format:"uuid" doc:"The rule that matches the host now, if any."`
	MatchingVerdicts []RuleVerdict `json:"matching_verdicts" doc:"The verdicts of evaluating the rules against the host now, in priority order, up to the first match."`
}

func registerEnrollRules(a *API) {
	const tag = "Enroll rules"
	a.huma.OpenAPI().Tags = append(a.huma.OpenAPI().Tags, &huma.Tag{Name: tag,
		Description: "Rules that decide what a freshly inspected host becomes (role, image, labels, rack), tried in priority order (operators write, everyone reads)."})
	c := &crud[rackcloud.EnrollRule, EnrollRule]{a: a, tag: tag, path: "/v1/enroll-rules", kind: "enroll-rule",
		opName: "EnrollRule", plural: "EnrollRules", read: anyRole, write: staffOnly, get: store.GetEnrollRule,
		list: store.ListEnrollRules, del: store.DeleteEnrollRule, cursor: store.EnrollRuleCursor,
		meta: func(r rackcloud.EnrollRule) rackcloud.Meta { return r.Meta }, out: enrollRuleOut,
		delDoc: "Deletes the rule; hosts it enrolled forget it. Send If-Match with the ETag you read to get 412 instead of deleting a newer version."}
	c.registerAll("Lists enroll rules in priority order (the order they are tried in), keyset-paginated.")

	register(a, huma.Operation{
		OperationID: "createEnrollRule", Method: http.MethodPost, Path: c.path, Summary: "Create an enroll rule",
		Description: "Creates a rule; a name or a priority another rule has is 409.",
		Tags:        []string{tag}, DefaultStatus: http.StatusCreated, Errors: []int{http.StatusConflict},
	}, staffOnly, func(ctx context.Context, in *struct{ Body EnrollRuleBody }) (*itemOutput[EnrollRule], error) {
		b := in.Body
		if err := checkLabels("body.labels", b.Labels); err != nil {
			return nil, err
		}
		r := rackcloud.EnrollRule{Meta: rackcloud.Meta{Name: b.Name, Labels: b.Labels}, Priority: b.Priority,
			Match: rackcloud.EnrollMatch(b.Match), Set: rackcloud.EnrollSet(b.Set), Provision: b.Provision}
		return c.created(ctx, a.newChange(ctx, "createEnrollRule", "enroll-rule/"+b.Name), func(tx pgx.Tx) (rackcloud.EnrollRule, error) {
			if err := checkEnrollRule(ctx, tx, r); err != nil {
				return r, err
			}
			return store.CreateEnrollRule(ctx, tx, r)
		})
	})

	register(a, huma.Operation{
		OperationID: "updateEnrollRule", Method: http.MethodPatch, Path: c.path + "/{id}", Summary: "Update an enroll rule",
		Tags: []string{tag}, Errors: []int{http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed},
	}, staffOnly, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body EnrollRuleUpdateBody
	}) (*itemOutput[EnrollRule], error) {
		b := in.Body
		if err := checkLabels("body.labels", b.Labels); err != nil {
			return nil, err
		}
		return c.patch(ctx, "updateEnrollRule", in.ID, in.IfMatch, func(tx pgx.Tx, r *rackcloud.EnrollRule) error {
			if b.Priority != nil {
				r.Priority = *b.Priority
			}
			if b.Match != nil {
				r.Match = rackcloud.EnrollMatch(*b.Match)
			}
			if b.Set != nil {
				r.Set = rackcloud.EnrollSet(*b.Set)
			}
			if b.Provision != nil {
				r.Provision = *b.Provision
			}
			if b.Labels != nil {
				r.Labels = b.Labels
			}
			return checkEnrollRule(ctx, tx, *r)
		}, store.UpdateEnrollRule)
	})

	register(a, huma.Operation{
		OperationID: "getHostEnrollMatch", Method: http.MethodGet, Path: "/v1/hosts/{id}/enroll-match", Summary: "Which enroll rule a host matches",
		Description: "The rule that enrolled the host and the verdicts recorded then, and the verdicts of evaluating the rules against the host now: which rule matches and why the ones before it do not.",
		Tags:        []string{"Hosts"}, Errors: []int{http.StatusNotFound},
	}, staffOnly, func(ctx context.Context, in *IDParam) (*struct{ Body HostEnrollMatch }, error) {
		out := &struct{ Body HostEnrollMatch }{}
		err := pgx.BeginTxFunc(ctx, a.deps.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			rule, recorded, err := store.HostEnrollMatch(ctx, tx, in.ID)
			if err != nil {
				return notFound(err, "host", in.ID)
			}
			matched, now, err := store.EnrollRuleMatch(ctx, tx, in.ID)
			if err != nil {
				return notFound(err, "host", in.ID)
			}
			out.Body = HostEnrollMatch{EnrolledByRule: rule, EnrollVerdicts: verdictsOut(recorded), MatchingVerdicts: verdictsOut(now)}
			if matched != nil {
				out.Body.MatchingRule = matched.ID
			}
			return nil
		})
		if err != nil {
			return nil, a.problem(err)
		}
		return out, nil
	})
}

// checkEnrollRule validates a rule as it will be stored: its own fields
// (rackcloud.EnrollRule.Validate), then what it refers to: the racks and
// the image exist, and the image serves the role.
func checkEnrollRule(ctx context.Context, q store.Querier, r rackcloud.EnrollRule) error {
	if err := checkLabels("body.set.labels", r.Set.Labels); err != nil {
		return err
	}
	var fe *rackcloud.FieldError
	if err := r.Validate(); errors.As(err, &fe) {
		return huma.Error422UnprocessableEntity("invalid enroll rule: "+fe.Error(),
			&huma.ErrorDetail{Location: "body." + fe.Field, Message: fe.Message, Value: fe.Value})
	} else if err != nil {
		return err
	}
	for _, ref := range []struct{ loc, id string }{{"body.match.rack_id", r.Match.RackID}, {"body.set.rack_id", r.Set.RackID}} {
		if ref.id == "" {
			continue
		}
		if _, err := store.GetRack(ctx, q, ref.id); err != nil {
			return notFoundField(err, ref.loc, ref.id)
		}
	}
	if r.Set.ImageID == "" {
		return nil
	}
	im, err := store.GetImage(ctx, q, r.Set.ImageID)
	if err != nil {
		return notFoundField(err, "body.set.image_id", r.Set.ImageID)
	}
	if len(im.Roles) == 0 {
		return huma.Error422UnprocessableEntity("image "+im.Name+" is not a host image",
			&huma.ErrorDetail{Location: "body.set.image_id", Message: "the image serves no host role (a guest image)", Value: r.Set.ImageID})
	}
	if r.Set.Role != "" && !slices.Contains(im.Roles, r.Set.Role) {
		return huma.Error422UnprocessableEntity("image "+im.Name+" does not serve role "+string(r.Set.Role),
			&huma.ErrorDetail{Location: "body.set.role", Message: "the image's roles are " + strings.Join(roleNames(im.Roles), ", "), Value: string(r.Set.Role)})
	}
	return nil
}
