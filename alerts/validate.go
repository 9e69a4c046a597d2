package alerts

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/rackcloud/rackcloud"
)

// InvalidError says which field of an alert rule is wrong and where: Field
// is the API location (body.expr), Pos the parser's position in it (line:col,
// empty when the error is not a parse error). It wraps rackcloud.ErrInvalid.
type InvalidError struct {
	Field string
	Pos   string
	Msg   string
}

func (e *InvalidError) Error() string {
	if e.Pos != "" {
		return fmt.Sprintf("%s: %s: %s", e.Field, e.Pos, e.Msg)
	}
	return e.Field + ": " + e.Msg
}

func (e *InvalidError) Unwrap() error { return rackcloud.ErrInvalid }

var promql = parser.NewParser(parser.Options{})

// Validate checks r the way Prometheus will: its expression through the
// PromQL parser, then the rule rendered as a one-rule group through rulefmt
// (names, labels, durations). It returns nil or an *InvalidError.
func Validate(r rackcloud.AlertRule) error {
	if _, err := promql.ParseExpr(r.Expr); err != nil {
		ie := &InvalidError{Field: "body.expr", Msg: err.Error()}
		var pe parser.ParseErrors
		if errors.As(err, &pe) && len(pe) > 0 {
			ie.Pos = pe[0].PositionRange.StartPosInput(r.Expr, 0)
			ie.Msg = pe[0].Err.Error()
		}
		return ie
	}
	g := rulefmt.RuleGroups{Groups: []rulefmt.RuleGroup{{Name: "check", Rules: []rulefmt.Rule{ruleOf(r)}}}}
	if err := checkGroups(g); err != nil {
		return &InvalidError{Field: "body", Msg: err.Error()}
	}
	return nil
}

// checkGroups marshals g and parses it back through rulefmt, as Prometheus
// loads a rule file.
func checkGroups(g rulefmt.RuleGroups) error {
	b, err := yaml.Marshal(g)
	if err != nil {
		return err
	}
	if _, errs := rulefmt.Parse(b, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler)); len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// ruleOf renders one API rule as a Prometheus alerting rule: the expression
// compared with the threshold, scoped by label matchers.
func ruleOf(r rackcloud.AlertRule) rulefmt.Rule {
	labels := map[string]string{"severity": r.Severity, "rackcloud_rule": r.Name}
	for k, v := range r.Labels {
		labels[k] = v
	}
	return rulefmt.Rule{
		Alert:  r.Name,
		Expr:   "(" + scoped(r) + ") " + r.Op + " " + strconv.FormatFloat(r.Threshold, 'g', -1, 64),
		For:    model.Duration(r.For.Round(time.Second)),
		Labels: labels,
		Annotations: map[string]string{
			"summary": fmt.Sprintf("%s %s %g", r.Name, r.Op, r.Threshold),
		},
	}
}

// scoped returns r's expression with every series selector narrowed to
// r's scope: a matcher on the zone, rack, host or project label, which the
// monitor's service discovery puts on series. A fleet rule is unchanged. An
// expression that does not parse is returned as it is (Validate reports it).
func scoped(r rackcloud.AlertRule) string {
	if r.Scope == rackcloud.AlertFleet || r.Scope == "" || r.ScopeID == "" {
		return r.Expr
	}
	e, err := promql.ParseExpr(r.Expr)
	if err != nil {
		return r.Expr
	}
	m := &labels.Matcher{Type: labels.MatchEqual, Name: string(r.Scope), Value: r.ScopeID}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			vs.LabelMatchers = append(vs.LabelMatchers, m)
		}
		return nil
	})
	return e.String()
}
