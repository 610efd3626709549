package contracts

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const (
	baselinePath  = "proto/baseline/millrace.binpb"
	changelogPath = "proto/CHANGELOG.md"
	typesProto    = "proto/millrace/type/v1/types.proto"
	customerProto = "proto/millrace/customer/v1/customer.proto"
)

// repoRoot is the repository root, two levels above this file.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// requireTool skips the test when a tool is missing, or fails it when
// MILLRACE_REQUIRE_BUF=1 says the gate must be exercised (CI, make test).
func requireTool(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("MILLRACE_REQUIRE_BUF") == "1" {
		t.Fatalf(format+" (MILLRACE_REQUIRE_BUF=1; run make tools)", args...)
	}
	t.Skipf(format+" (set MILLRACE_REQUIRE_BUF=1 to make this a failure)", args...)
}

// findBuf returns the buf binary: $BUF, else the pinned .tools/bin/buf, else buf on PATH.
func findBuf(t *testing.T, root string) string {
	t.Helper()
	if b := os.Getenv("BUF"); b != "" {
		if p, err := exec.LookPath(b); err == nil {
			return p
		}
	}
	pinned := filepath.Join(root, ".tools", "bin", "buf")
	if fi, err := os.Stat(pinned); err == nil && !fi.IsDir() {
		return pinned
	}
	if p, err := exec.LookPath("buf"); err == nil {
		return p
	}
	requireTool(t, "buf not found ($BUF, %s or PATH)", pinned)
	return ""
}

// gate is a temporary copy of the contracts with the gate script, ready to mutate.
type gate struct {
	t    *testing.T
	dir  string
	buf  string
	bash string
	env  []string
}

// newGate copies buf.yaml, buf.gen.yaml, proto/ (with the baseline and the
// changelog), third_party/ and scripts/ into a fresh temporary directory.
func newGate(t *testing.T) *gate {
	t.Helper()
	root := repoRoot(t)
	buf := findBuf(t, root)
	bash, err := exec.LookPath("bash")
	if err != nil {
		requireTool(t, "bash not found")
	}
	dir := t.TempDir()
	for _, name := range []string{"buf.yaml", "buf.gen.yaml", "proto", "third_party", "scripts"} {
		copyTree(t, filepath.Join(root, name), filepath.Join(dir, name))
	}
	env := append(os.Environ(),
		"GATE_ROOT="+dir,
		"BUF="+buf,
		// Keep git from finding a repository above the temporary directory and
		// from reading the developer's configuration.
		"GIT_CEILING_DIRECTORIES="+filepath.Dir(dir),
		"GIT_CONFIG_GLOBAL="+os.DevNull,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=gate test", "GIT_AUTHOR_EMAIL=gate@test.invalid",
		"GIT_COMMITTER_NAME=gate test", "GIT_COMMITTER_EMAIL=gate@test.invalid",
	)
	return &gate{t: t, dir: dir, buf: buf, bash: bash, env: env}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// run runs scripts/proto-gate.sh with the given subcommand in the copy and
// returns its combined output and whether it exited 0.
func (g *gate) run(subcommand string) (string, bool) {
	g.t.Helper()
	cmd := exec.Command(g.bash, filepath.Join(g.dir, "scripts", "proto-gate.sh"), subcommand)
	cmd.Dir = g.dir
	cmd.Env = g.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			g.t.Fatalf("run proto-gate.sh %s: %v", subcommand, err)
		}
	}
	return string(out), err == nil
}

// git runs git in the copy and fails the test on error.
func (g *gate) git(args ...string) string {
	g.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = g.dir
	cmd.Env = g.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (g *gate) read(rel string) string {
	g.t.Helper()
	data, err := os.ReadFile(filepath.Join(g.dir, rel))
	if err != nil {
		g.t.Fatal(err)
	}
	return string(data)
}

func (g *gate) write(rel, content string) {
	g.t.Helper()
	if err := os.WriteFile(filepath.Join(g.dir, rel), []byte(content), 0o644); err != nil {
		g.t.Fatal(err)
	}
}

// replace applies a string mutation to a file of the copy. It fails when old is
// not found exactly once, so a test never passes because its mutation silently
// stopped applying after the contracts changed.
func (g *gate) replace(rel, old, new string) {
	g.t.Helper()
	content := g.read(rel)
	if n := strings.Count(content, old); n != 1 {
		g.t.Fatalf("mutation of %s: %q found %d times, want 1: update the test to the current contract", rel, old, n)
	}
	g.write(rel, strings.Replace(content, old, new, 1))
}

func (g *gate) appendTo(rel, text string) {
	g.t.Helper()
	g.write(rel, g.read(rel)+text)
}

// sha256 returns the hex sha256 of a file of the copy.
func (g *gate) sha256(rel string) string {
	g.t.Helper()
	sum := sha256.Sum256([]byte(g.read(rel)))
	return hex.EncodeToString(sum[:])
}

// wantOutput checks the outcome and the presence and absence of output fragments.
func wantOutput(t *testing.T, out string, ok, wantOK bool, want, notWant []string) {
	t.Helper()
	if ok != wantOK {
		t.Errorf("gate passed = %v, want %v", ok, wantOK)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	for _, w := range notWant {
		if strings.Contains(out, w) {
			t.Errorf("output unexpectedly contains %q", w)
		}
	}
	if t.Failed() {
		t.Logf("gate output:\n%s", out)
	}
}
