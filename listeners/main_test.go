package listeners

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// sharedReaper's reaper runs for the whole test binary, because the
	// subreaper mark belongs to the process.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/agent-runner/agent-runner/process.(*Reaper).loop"))
}
