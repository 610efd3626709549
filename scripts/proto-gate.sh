#!/usr/bin/env bash
# Millrace contract gate: what CI enforces on proto/ (see DESIGN.md, "Contracts and
# governance", and proto/CHANGELOG.md for the policy).
#
#   scripts/proto-gate.sh generate   regenerate gen/ from proto/ (clean: stale files go)
#   scripts/proto-gate.sh lint       buf lint + buf format check of proto/
#   scripts/proto-gate.sh drift      fail when the committed gen/ differs from a fresh generate
#   scripts/proto-gate.sh breaking   fail on a breaking change against the released baseline
#                                    proto/baseline/millrace.binpb, or when that baseline
#                                    moved without an entry in proto/CHANGELOG.md
#   scripts/proto-gate.sh baseline   DELIBERATE: rebuild the baseline from the current
#                                    contracts and print the line to record in the changelog
#   scripts/proto-gate.sh all        lint, drift, breaking
#
# Runs in the repository root (the parent of scripts/) or in $GATE_ROOT. Uses $BUF, or
# `buf` on PATH; the pinned tools in .tools/bin (make tools) are put first on PATH.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT="${GATE_ROOT:-$(dirname "$(dirname "$SELF")")}"
cd "$ROOT"
ROOT="$(pwd -P)"
if [[ -d "$ROOT/.tools/bin" ]]; then
  PATH="$ROOT/.tools/bin:$PATH"
fi

BASELINE=proto/baseline/millrace.binpb
CHANGELOG=proto/CHANGELOG.md
GEN_DIRS=(gen/go gen/openapi)
PLUGINS=(protoc-gen-go protoc-gen-go-grpc protoc-gen-go-vtproto protoc-gen-grpc-gateway protoc-gen-openapiv2 protoc-gen-go-json protoc-gen-go-validate)

say() { printf 'contracts: %s\n' "$*"; }
die() {
  printf 'contracts: %s\n' "$*" >&2
  exit 1
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/proto-gate.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
new_tmp() { mktemp -d "$WORK/t.XXXXXX"; }

find_buf() {
  if [[ -n "${BUF:-}" ]]; then
    [[ -x "$BUF" ]] || command -v "$BUF" >/dev/null 2>&1 || die "BUF=$BUF is not an executable: run make tools"
  elif command -v buf >/dev/null 2>&1; then
    BUF="$(command -v buf)"
  else
    die "buf not found: run make tools (installs the pinned buf into .tools/bin) or set BUF"
  fi
}

need_plugins() {
  local p
  for p in "${PLUGINS[@]}"; do
    command -v "$p" >/dev/null 2>&1 || die "$p not found on PATH: run make tools"
  done
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    openssl dgst -sha256 -r "$1" | cut -d' ' -f1
  fi
}

# render_annotations turns buf's --error-format=json lines (stdin) into
# "RULE_ID: path:line:col: message" lines, so the failing rule is always named.
# Lines that are not annotations are passed through.
render_annotations() {
  local line rule path loc msg
  local re_type='"type":"([^"]*)"'
  local re_path='"path":"(([^"\\]|\\.)*)"'
  local re_line='"start_line":([0-9]+)'
  local re_col='"start_column":([0-9]+)'
  local re_msg='"message":"(([^"\\]|\\.)*)"'
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ ! "$line" =~ $re_type ]]; then
      printf '  %s\n' "$line"
      continue
    fi
    rule="${BASH_REMATCH[1]}"
    loc=""
    if [[ "$line" =~ $re_path ]]; then
      path="${BASH_REMATCH[1]}"
      loc="$path"
      if [[ "$line" =~ $re_line ]]; then
        loc+=":${BASH_REMATCH[1]}"
        if [[ "$line" =~ $re_col ]]; then loc+=":${BASH_REMATCH[1]}"; fi
      fi
      loc+=": "
    fi
    msg=""
    if [[ "$line" =~ $re_msg ]]; then msg="${BASH_REMATCH[1]}"; fi
    msg="${msg//\\\"/\"}"
    msg="${msg//\\u003c/<}"
    msg="${msg//\\u003e/>}"
    msg="${msg//\\u0026/&}"
    msg="${msg//\\n/ }"
    msg="${msg//\\t/ }"
    msg="${msg//\\\\/\\}"
    printf '  %s: %s%s\n' "$rule" "$loc" "$msg"
  done
}

# run_buf_json CMD... runs a buf check with --error-format=json, prints its findings
# with rule ids, and returns buf's exit code (100 = violations found).
run_buf_json() {
  local tmp rc=0
  tmp="$(new_tmp)"
  "$BUF" "$@" --error-format=json >"$tmp/out" 2>"$tmp/err" || rc=$?
  render_annotations <"$tmp/out" >&2
  if [[ -s "$tmp/err" ]]; then sed 's/^/  /' "$tmp/err" >&2; fi
  return "$rc"
}

cmd_generate() {
  find_buf
  need_plugins
  rm -rf "${GEN_DIRS[@]}"
  "$BUF" generate
  say "generate ok (gen/go, gen/openapi)"
}

cmd_lint() {
  find_buf
  local rc=0
  run_buf_json lint || rc=$?
  if ((rc != 0)); then
    die "buf lint failed (rules named above): fix proto/ (see https://buf.build/docs/lint/rules/)"
  fi
  rc=0
  "$BUF" format proto --diff --exit-code || rc=$?
  if ((rc != 0)); then
    die "proto/ is not formatted (diff above): run buf format -w proto"
  fi
  say "lint ok"
}

cmd_drift() {
  find_buf
  need_plugins
  local tmp d rc=0 line diffs=()
  tmp="$(new_tmp)"
  "$BUF" generate -o "$tmp"
  for d in "${GEN_DIRS[@]}"; do
    if [[ ! -d "$d" ]]; then
      diffs+=("$d/ (missing)")
      continue
    fi
    if [[ ! -d "$tmp/$d" ]]; then
      diffs+=("$d/ (no longer generated)")
      continue
    fi
    while IFS= read -r line; do
      case "$line" in
        "Files $d/"*" and $tmp/"*" differ")
          line="${line#Files }"
          diffs+=("${line%% and *} (differs)")
          ;;
        "Only in $tmp/"*)
          line="${line#Only in "$tmp"/}"
          diffs+=("${line%%: *}/${line#*: } (missing from gen/)")
          ;;
        "Only in "*)
          line="${line#Only in }"
          diffs+=("${line%%: *}/${line#*: } (stale: not generated any more)")
          ;;
        *) diffs+=("$line") ;;
      esac
    done < <(diff -rq "$d" "$tmp/$d" || true)
  done
  if ((${#diffs[@]})); then
    printf 'contracts: gen/ is stale: run make generate (then commit gen/). Differing files:\n' >&2
    printf '  %s\n' "${diffs[@]}" >&2
    exit 1
  fi
  say "drift ok (gen/ matches proto/)"
}

cmd_breaking() {
  find_buf
  [[ -f "$BASELINE" ]] || die "$BASELINE is missing: build it with scripts/proto-gate.sh baseline and record its sha256 in $CHANGELOG"
  local rc=0 sum
  run_buf_json breaking proto --against "$BASELINE" --exclude-imports || rc=$?
  if ((rc == 100)); then
    die "breaking change against the released contract baseline $BASELINE (rules named above).
  Keep v1 compatible: add fields with new numbers, add RPCs, deprecate instead of deleting.
  A breaking change needs a new package version (millrace.<domain>.v2 beside v1), or a
  deliberate baseline move: scripts/proto-gate.sh baseline, recorded in $CHANGELOG."
  elif ((rc != 0)); then
    die "buf breaking could not run (exit $rc, output above)"
  fi
  say "breaking ok (no breaking change against $BASELINE)"

  # The baseline may only move together with a changelog entry naming it.
  sum="$(sha256_of "$BASELINE")"
  if [[ ! -f "$CHANGELOG" ]] || ! grep -qF "$sum" "$CHANGELOG"; then
    die "the contract baseline changed but $CHANGELOG does not record sha256 $sum: add an entry describing the breaking change, with the line
  - baseline sha256: $sum"
  fi

  # With history: every commit that touched the baseline must also touch the changelog.
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1 &&
    [[ "$(cd "$(git rev-parse --show-toplevel)" && pwd -P)" == "$ROOT" ]] &&
    git rev-parse --verify -q HEAD >/dev/null; then
    local c bad=()
    while IFS= read -r c; do
      [[ -n "$c" ]] || continue
      if git diff-tree --root --no-commit-id --name-only -r "$c" -- "$CHANGELOG" | grep -q .; then
        continue
      fi
      grep -qF "$c" "$CHANGELOG" && continue # acknowledged after the fact
      bad+=("$c")
    done < <(git log --no-merges --format=%H -- proto/baseline/)
    if ((${#bad[@]})); then
      for c in "${bad[@]}"; do
        printf 'contracts: commit %s changed proto/baseline/ without changing %s\n' \
          "$(git log -1 --format='%h (%s)' "$c")" "$CHANGELOG" >&2
      done
      die "every baseline move must be recorded in $CHANGELOG in the same commit: amend the commit(s) to add the entry;
  if a commit is already published, add an entry to $CHANGELOG naming its full hash and the change it made"
    fi
    say "baseline history ok (every baseline move is recorded in $CHANGELOG)"
  fi
  say "baseline recorded in $CHANGELOG (sha256 $sum)"
}

cmd_baseline() {
  find_buf
  local tmp new sum rc=0
  tmp="$(new_tmp)"
  new="$tmp/millrace.binpb"
  "$BUF" build proto -o "$new"
  mkdir -p "$(dirname "$BASELINE")"
  if [[ -f "$BASELINE" ]]; then
    if cmp -s "$new" "$BASELINE"; then
      sum="$(sha256_of "$BASELINE")"
      say "baseline unchanged: $BASELINE already matches proto/ (sha256 $sum)"
      return 0
    fi
    say "changes against the previous baseline (describe them in $CHANGELOG):"
    run_buf_json breaking proto --against "$BASELINE" --exclude-imports || rc=$?
    if ((rc == 0)); then printf '  (none breaking: additive changes only)\n'; fi
  fi
  cp "$new" "$BASELINE"
  sum="$(sha256_of "$BASELINE")"
  say "baseline rebuilt: $BASELINE"
  cat <<EOF
Record it in $CHANGELOG in the same commit, as a new entry at the top describing
what changed and why, with this line:

- baseline sha256: $sum
EOF
}

cmd_all() {
  local step failed=()
  for step in lint drift breaking; do
    bash "$SELF" "$step" || failed+=("$step")
  done
  if ((${#failed[@]})); then
    die "gate failed: ${failed[*]}"
  fi
  say "all ok"
}

usage() {
  sed -n '2,16p' "$SELF" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  generate) cmd_generate ;;
  lint) cmd_lint ;;
  drift) cmd_drift ;;
  breaking) cmd_breaking ;;
  baseline) cmd_baseline ;;
  all) cmd_all ;;
  *) usage ;;
esac
