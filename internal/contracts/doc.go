// Package contracts holds the tests of Millrace's contract governance gate,
// scripts/proto-gate.sh: lint and format of proto/, drift of the generated gen/,
// breaking changes against the released baseline proto/baseline/millrace.binpb,
// and the rule that the baseline only moves with an entry in proto/CHANGELOG.md.
//
// The tests run the real script and the real buf against temporary copies of the
// contracts, so a change to the script or to buf's rules is caught here. They skip
// when buf is not installed, unless MILLRACE_REQUIRE_BUF=1 (as in make test).
package contracts
