package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// alertRules is the shape of a Prometheus rule file, as far as the test
// reads it.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestDeployFilesNameServedMetrics reads the alerting rules
// (deploy/prometheus/millrace-alerts.yml) and the dashboard
// (deploy/grafana/millrace-sync-health.json) and checks their expressions
// against the /metrics of a running node with the demo loaded and a webhook
// acknowledged: every millrace_ series they name is served (a histogram's
// _bucket, _sum and _count by its family), and every label they match on or
// group by is a label of that family. Every rule has a severity of warning
// or critical and a summary. A renamed metric or label fails here instead
// of leaving an alert that never fires or a panel that stays empty.
func TestDeployFilesNameServedMetrics(t *testing.T) {
	families := servedFamilies(t)

	t.Run("alerting rules", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "prometheus", "millrace-alerts.yml"))
		if err != nil {
			t.Fatal(err)
		}
		var rules alertRules
		if err := yaml.Unmarshal(raw, &rules); err != nil {
			t.Fatalf("the rule file is not YAML: %v", err)
		}
		n := 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				n++
				if r.Alert == "" || r.Expr == "" {
					t.Errorf("group %s: a rule without alert or expr: %+v", g.Name, r)
					continue
				}
				if s := r.Labels["severity"]; s != "warning" && s != "critical" {
					t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
				}
				if r.Annotations["summary"] == "" {
					t.Errorf("%s: no summary", r.Alert)
				}
				checkExpr(t, r.Alert, r.Expr, families)
			}
		}
		if n < 5 {
			t.Fatalf("read %d rules from the file; the test reads it wrong", n)
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "millrace-sync-health.json"))
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &dash); err != nil {
			t.Fatalf("the dashboard is not JSON: %v", err)
		}
		n := 0
		for _, p := range dash.Panels {
			for _, tg := range p.Targets {
				n++
				checkExpr(t, "panel "+p.Title, tg.Expr, families)
			}
		}
		if n < 10 {
			t.Fatalf("read %d panel queries; the test reads the dashboard wrong", n)
		}
	})
}

// servedFamilies starts a node with the demo, has one webhook acknowledged
// (a labelled series appears once something was counted in it), and
// returns the metric families its /metrics serves, each with the label
// names seen on its samples.
func servedFamilies(t *testing.T) map[string][]string {
	t.Helper()
	inst := startTestNode(t, "--demo", "--rate-limit", "0")
	base := "http://" + inst.HTTPAddr
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(crm.Close)
	call := func(method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+inst.AdminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: HTTP %d", method, path, resp.StatusCode)
		}
	}
	call("POST", "/v1/subscriptions", `{"url":"`+crm.URL+`/hooks","description":"metrics check"}`)
	call("POST", "/v1/customers", `{"displayName":"Metrics Check GmbH","region":"eu","currencyCode":"EUR"}`)
	var body []byte
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "millrace_webhook_event_ack_seconds_bucket{") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no webhook acknowledged within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	families := map[string][]string{}
	typeLine := regexp.MustCompile(`(?m)^# TYPE (\w+) (\w+)$`)
	for _, m := range typeLine.FindAllStringSubmatch(string(body), -1) {
		families[m[1]] = nil
	}
	sample := regexp.MustCompile(`(?m)^(\w+)\{([^}]*)\}`)
	for _, m := range sample.FindAllStringSubmatch(string(body), -1) {
		name := familyOf(m[1], families)
		for _, l := range labelName.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(families[name], l[1]) {
				families[name] = append(families[name], l[1])
			}
		}
	}
	return families
}

var (
	seriesRef = regexp.MustCompile(`\b(millrace_\w+)(\{[^}]*\})?`)
	labelName = regexp.MustCompile(`(\w+)=~?"`)
	grouping  = regexp.MustCompile(`\bby \(([^)]*)\)`)
)

// checkExpr checks the series and labels a PromQL expression names against
// the served families.
func checkExpr(t *testing.T, where, expr string, families map[string][]string) {
	t.Helper()
	var names []string
	for _, m := range seriesRef.FindAllStringSubmatch(expr, -1) {
		name := familyOf(m[1], families)
		if _, ok := families[name]; !ok {
			t.Errorf("%s: %s is not served on /metrics", where, m[1])
			continue
		}
		names = append(names, name)
		for _, l := range labelName.FindAllStringSubmatch(m[2], -1) {
			if !hasLabel(families, name, l[1]) {
				t.Errorf("%s: %s has no label %s (it has %v)", where, name, l[1], families[name])
			}
		}
	}
	if len(names) == 0 {
		t.Errorf("%s: %q names no millrace_ series", where, expr)
	}
	for _, m := range grouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			l = strings.TrimSpace(l)
			if l == "le" {
				continue
			}
			found := false
			for _, name := range names {
				found = found || hasLabel(families, name, l)
			}
			if !found {
				t.Errorf("%s: groups by %s, a label none of %v has", where, l, names)
			}
		}
	}
}

// familyOf maps a histogram's series name to its family.
func familyOf(name string, families map[string][]string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if _, known := families[base]; known {
				return base
			}
		}
	}
	return name
}

// hasLabel reports whether a family has a label. A family served without
// samples yet (a counter vector nobody has counted on) cannot say, and is
// given the benefit of the doubt only when it has no labelled sample at
// all.
func hasLabel(families map[string][]string, name, label string) bool {
	labels := families[name]
	return len(labels) == 0 || slices.Contains(labels, label)
}
