package app

import (
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

// TestAlertRulesNameServedMetrics reads deploy/prometheus/millrace-alerts.yml
// and checks it against the /metrics of a running node with the demo
// loaded: every millrace_ series a rule names is served (a histogram's
// _bucket, _sum and _count by its family), every label a rule matches on
// or groups by is a label of that family, and every rule has a severity of
// warning or critical and a summary. A renamed metric or label fails here
// instead of leaving an alert that can never fire.
func TestAlertRulesNameServedMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "prometheus", "millrace-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("the rule file is not YAML: %v", err)
	}

	inst := startTestNode(t, "--demo", "--rate-limit", "0")
	base := "http://" + inst.HTTPAddr
	// A webhook acknowledged, so that the webhook series a rule names have
	// samples: a labelled series appears once something was counted in it.
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer crm.Close()
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
	call("POST", "/v1/subscriptions", `{"url":"`+crm.URL+`/hooks","description":"alert rule check"}`)
	call("POST", "/v1/customers", `{"displayName":"Alert Check GmbH","region":"eu","currencyCode":"EUR"}`)
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
	// families: name → the label names seen on its samples.
	families := map[string][]string{}
	typeLine := regexp.MustCompile(`(?m)^# TYPE (\w+) (\w+)$`)
	for _, m := range typeLine.FindAllStringSubmatch(string(body), -1) {
		families[m[1]] = nil
	}
	sample := regexp.MustCompile(`(?m)^(\w+)\{([^}]*)\}`)
	labelName := regexp.MustCompile(`(\w+)="`)
	for _, m := range sample.FindAllStringSubmatch(string(body), -1) {
		name := familyOf(m[1], families)
		for _, l := range labelName.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(families[name], l[1]) {
				families[name] = append(families[name], l[1])
			}
		}
	}

	series := regexp.MustCompile(`\b(millrace_\w+)(\{[^}]*\})?`)
	grouping := regexp.MustCompile(`\bby \(([^)]*)\)`)
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
			var names []string
			for _, m := range series.FindAllStringSubmatch(r.Expr, -1) {
				name := familyOf(m[1], families)
				if _, ok := families[name]; !ok {
					t.Errorf("%s: %s is not served on /metrics", r.Alert, m[1])
					continue
				}
				names = append(names, name)
				for _, l := range labelName.FindAllStringSubmatch(m[2], -1) {
					if !hasLabel(families, name, l[1]) {
						t.Errorf("%s: %s has no label %s (it has %v)", r.Alert, name, l[1], families[name])
					}
				}
				for _, l := range regexp.MustCompile(`(\w+)=~"`).FindAllStringSubmatch(m[2], -1) {
					if !hasLabel(families, name, l[1]) {
						t.Errorf("%s: %s has no label %s (it has %v)", r.Alert, name, l[1], families[name])
					}
				}
			}
			for _, m := range grouping.FindAllStringSubmatch(r.Expr, -1) {
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
						t.Errorf("%s: groups by %s, a label none of %v has", r.Alert, l, names)
					}
				}
			}
		}
	}
	if n < 5 {
		t.Fatalf("read %d rules from the file; the test reads it wrong", n)
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
