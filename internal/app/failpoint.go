package app

import (
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/millrace/millrace/services/order"
)

// failpointEnv arms a crash failpoint for recovery drills:
// MILLRACE_FAILPOINT=order.reserve.done makes the process kill itself
// (SIGKILL, no shutdown of any kind) the first time an order saga reaches
// that point, exactly as a power cut or the OOM killer would. Started again
// without it, the process resumes the saga from what it had persisted. It is
// read from the environment only, never from a flag, so that it cannot be
// left in a unit file's command line by accident, and a value that names no
// failpoint stops the start.
const failpointEnv = "MILLRACE_FAILPOINT"

// failpoints are the values failpointEnv accepts: the order saga's steps
// (before each runs) and, with ".done", the moment after its remote call
// answered and before its outcome is stored.
var failpoints = func() []string {
	var fps []string
	for _, s := range []string{order.StepPrice, order.StepReserve, order.StepCredit, order.StepAccept} {
		fps = append(fps, "order."+s, "order."+s+".done")
	}
	return slices.DeleteFunc(fps, func(s string) bool { return s == "order."+order.StepAccept+".done" })
}()

// checkFailpoint validates a failpointEnv value for the service a process
// runs: it must name a failpoint, and that failpoint's service must run here.
func checkFailpoint(fp, service string) error {
	if fp == "" {
		return nil
	}
	if !slices.Contains(failpoints, fp) {
		return usagef("invalid %s=%q: want one of %s", failpointEnv, fp, strings.Join(failpoints, ", "))
	}
	if service != "all" && service != "order" {
		return usagef("%s=%s is in the order service, which --service %s does not run", failpointEnv, fp, service)
	}
	return nil
}

// orderFailpoint returns the order saga's failpoint hook for fp (nil when
// fp is empty): reaching fp logs one line and kills the process.
func orderFailpoint(fp string, log *slog.Logger) func(step string) error {
	step, ok := strings.CutPrefix(fp, "order.")
	if !ok {
		return nil
	}
	return func(s string) error {
		if s != step {
			return nil
		}
		log.Error("failpoint reached: killing the process", "failpoint", fp)
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			_ = p.Kill()
		}
		// SIGKILL to oneself lands before the call returns; should it not,
		// the saga stops here all the same.
		time.Sleep(time.Second)
		return errors.New("failpoint " + fp + ": the process did not die")
	}
}
