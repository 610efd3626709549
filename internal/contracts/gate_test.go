package contracts

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mutation is an edit of one proto file in the temporary copy.
type mutation struct {
	file, old, new string
}

// The mutations, written against the current v1 contracts. If a contract
// changes so that one no longer applies, gate.replace fails the test loudly.
var (
	moneyAmountToInt64 = mutation{typesProto,
		"  string amount = 2 [",
		"  int64 amount = 2 ["}
	addressCityRemoved = mutation{typesProto,
		"  // City or locality.\n  string city = 2 [(buf.validate.field).string.max_len = 100];\n",
		""}
	getCustomerRenamed = mutation{customerProto,
		"rpc GetCustomer(GetCustomerRequest)",
		"rpc FetchCustomer(GetCustomerRequest)"}
	moneyNewOptionalField = mutation{typesProto,
		"message Money {\n",
		"message Money {\n  // Display is the amount formatted for people (a number far from the used ones).\n  optional string display = 900;\n"}
	customerNewRPC = mutation{customerProto,
		"service CustomerService {\n",
		"service CustomerService {\n  // PingCustomer is new.\n  rpc PingCustomer(GetCustomerRequest) returns (GetCustomerResponse);\n"}
)

func (g *gate) apply(ms ...mutation) {
	g.t.Helper()
	for _, m := range ms {
		g.replace(m.file, m.old, m.new)
	}
}

const breakingAdvice = "A breaking change needs a new package version"

// TestBreakingGate runs `proto-gate.sh breaking` against the committed baseline
// after each mutation: breaking changes fail and name buf's rule, additive ones pass.
func TestBreakingGate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		mutations []mutation
		wantOK    bool
		want      []string
	}{
		{
			name:      "field type changed",
			mutations: []mutation{moneyAmountToInt64},
			want: []string{
				"FIELD_SAME_TYPE: " + typesProto,
				`Field "2" with name "amount" on message "Money" changed type from "string" to "int64".`,
				breakingAdvice,
			},
		},
		{
			name:      "field removed",
			mutations: []mutation{addressCityRemoved},
			want: []string{
				"FIELD_NO_DELETE: " + typesProto,
				`Previously present field "2" with name "city" on message "Address" was deleted.`,
				breakingAdvice,
			},
		},
		{
			name:      "rpc renamed",
			mutations: []mutation{getCustomerRenamed},
			want: []string{
				"RPC_NO_DELETE: " + customerProto,
				`Previously present RPC "GetCustomer" on service "CustomerService" was deleted.`,
				breakingAdvice,
			},
		},
		{
			name:      "additive field and rpc",
			mutations: []mutation{moneyNewOptionalField, customerNewRPC},
			wantOK:    true,
			want:      []string{"contracts: breaking ok", "contracts: baseline recorded in " + changelogPath},
		},
		{
			name:   "unmodified",
			wantOK: true,
			want:   []string{"contracts: breaking ok", "contracts: baseline recorded in " + changelogPath},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate(t)
			g.apply(tc.mutations...)
			out, ok := g.run("breaking")
			var notWant []string
			if tc.wantOK {
				notWant = []string{"_NO_DELETE", "_SAME_", breakingAdvice}
			} else {
				notWant = []string{"contracts: breaking ok"}
			}
			wantOutput(t, out, ok, tc.wantOK, tc.want, notWant)
		})
	}
}

// TestBaselineMoveNeedsChangelog moves the baseline deliberately to a breaking
// contract: the gate fails until proto/CHANGELOG.md records the new sha256.
func TestBaselineMoveNeedsChangelog(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	oldSum := g.sha256(baselinePath)
	g.apply(moneyAmountToInt64)

	out, ok := g.run("baseline")
	newSum := g.sha256(baselinePath)
	if newSum == oldSum {
		t.Fatalf("baseline did not change after a breaking change:\n%s", out)
	}
	line := "- baseline sha256: " + newSum
	// baseline lists what breaks against the previous baseline and prints the line to record.
	wantOutput(t, out, ok, true, []string{"FIELD_SAME_TYPE: ", line}, nil)

	out, ok = g.run("breaking")
	wantOutput(t, out, ok, false, []string{
		"contracts: breaking ok", // the contract matches its new baseline
		"the contract baseline changed but proto/CHANGELOG.md does not record sha256 " + newSum +
			": add an entry describing the breaking change",
	}, []string{"contracts: baseline recorded"})

	g.appendTo(changelogPath, "\n### v1.1 — Money.amount becomes int64 (test)\n\n"+line+"\n")
	out, ok = g.run("breaking")
	wantOutput(t, out, ok, true, []string{"contracts: baseline recorded in " + changelogPath + " (sha256 " + newSum + ")"}, nil)
}

// TestBaselineHistoryNeedsChangelog checks the history rule: a commit that moves the
// baseline without touching the changelog fails, even if a later edit records it.
func TestBaselineHistoryNeedsChangelog(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		requireTool(t, "git not found")
	}
	g := newGate(t)
	g.git("-c", "init.defaultBranch=main", "init", "-q")
	g.git("add", "-A")
	g.git("commit", "-q", "-m", "v1 contracts with baseline and changelog")
	out, ok := g.run("breaking")
	wantOutput(t, out, ok, true, []string{"contracts: baseline history ok"}, nil)

	g.apply(moneyAmountToInt64)
	if out, ok := g.run("baseline"); !ok {
		t.Fatalf("baseline failed:\n%s", out)
	}
	newSum := g.sha256(baselinePath)
	g.appendTo(changelogPath, "\n### v1.1 — Money.amount becomes int64 (test)\n\n- baseline sha256: "+newSum+"\n")
	g.git("add", "proto/millrace", "proto/baseline") // the changelog is left out of the commit
	g.git("commit", "-q", "-m", "move the baseline without the changelog")
	out, ok = g.run("breaking")
	wantOutput(t, out, ok, false, []string{
		"move the baseline without the changelog) changed proto/baseline/ without changing proto/CHANGELOG.md",
		"amend the commit",
	}, []string{"contracts: baseline history ok"})

	g.git("add", changelogPath)
	g.git("commit", "-q", "--amend", "--no-edit")
	out, ok = g.run("breaking")
	wantOutput(t, out, ok, true, []string{"contracts: baseline history ok"}, nil)
}

// TestBaselineIsReproducible rebuilds the baseline twice from the same contracts:
// the bytes must be identical, or the sha256 recorded in the changelog means nothing.
func TestBaselineIsReproducible(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	build := func() []byte {
		t.Helper()
		path := filepath.Join(g.dir, baselinePath)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if out, ok := g.run("baseline"); !ok {
			t.Fatalf("baseline failed:\n%s", out)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	first, second := build(), build()
	if len(first) == 0 || !bytes.Equal(first, second) {
		t.Fatalf("two baseline builds differ (%d and %d bytes)", len(first), len(second))
	}
}
