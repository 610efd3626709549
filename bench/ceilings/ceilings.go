// Package ceilings measures what the bare building blocks of Millrace can do
// on this machine, in the same run as the scenarios judged against them: gRPC
// unary calls, JSON over HTTP and bbolt commits with nothing of Millrace on
// top. A scenario's throughput as a share of its ceiling says what Millrace's
// own layers cost, and survives the noise of a shared machine far better than
// an absolute number would.
//
// Servers and clients run in this one process over loopback, so they share the
// machine's cores just as the scenarios' servers and clients will.
package ceilings

// Names of the ceilings, for scenarios.Scenario.Ceiling and the report.
const (
	GRPCEchoName         = "grpc-echo"
	HTTPJSONEchoName     = "http-json-echo"
	BoltSingleCommitName = "bolt-single-commit"
	BoltBatch64Name      = "bolt-batch64"
	BoltGroup64Name      = "bolt-group64"
)

// payloadSize is the size of the echoed RPC payload: about what a small
// Millrace request (an ID, a few fields, a token) weighs on the wire.
const payloadSize = 100
