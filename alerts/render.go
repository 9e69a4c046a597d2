package alerts

import (
	_ "embed"
	"fmt"
	"sort"

	"github.com/prometheus/prometheus/model/rulefmt"
	"go.yaml.in/yaml/v3"

	"github.com/rackcloud/rackcloud"
)

// DefaultRules are the alerting rules rackcloud ships, as a rule file
// (group "rackcloud-defaults"); testdata/defaults_test.yml holds their
// promtool test cases.
//
//go:embed defaults.yml
var DefaultRules []byte

// Render returns one Prometheus rule file: the shipped defaults and a group
// "rackcloud-api" with rules, in name order. The result is checked through
// rulefmt as Prometheus would load it.
func Render(rules []rackcloud.AlertRule) ([]byte, error) {
	var g rulefmt.RuleGroups
	if err := yaml.Unmarshal(DefaultRules, &g); err != nil {
		return nil, fmt.Errorf("default rules: %w", err)
	}
	sorted := append([]rackcloud.AlertRule(nil), rules...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	api := rulefmt.RuleGroup{Name: "rackcloud-api", Rules: []rulefmt.Rule{}}
	for _, r := range sorted {
		api.Rules = append(api.Rules, ruleOf(r))
	}
	g.Groups = append(g.Groups, api)
	if err := checkGroups(g); err != nil {
		return nil, fmt.Errorf("render rules: %w", err)
	}
	return yaml.Marshal(g)
}
