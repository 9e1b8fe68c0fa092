package jobs

import (
	"fmt"
	"os"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/state"
)

// statModTime returns the modification time of path, or the zero time
// when path is "" or cannot be read.
func statModTime(path string) time.Time {
	if path == "" {
		return time.Time{}
	}
	info, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return info.ModTime()
}

// checkFileUpdated turns a successful run into a failed one when the job
// sets expect_file_updated and the run left that file alone, because
// many scripts exit 0 after failing. before is the file's modification
// time when the run started.
//
// The file counts as updated when its modification time is after start
// or differs from before. The second test matters because the kernel
// stamps files with a coarse clock that can lag start by a few
// milliseconds.
func checkFileUpdated(job *config.Job, start, before time.Time, out execOutcome) execOutcome {
	if job.ExpectFileUpdated == "" || out.result != state.ResultOK {
		return out
	}
	after := statModTime(job.ExpectFileUpdated)
	if !after.IsZero() && (after.After(start) || !after.Equal(before)) {
		return out
	}
	out.result = state.ResultFailed
	out.err = fmt.Errorf("exited 0 but did not update %s", job.ExpectFileUpdated)
	return out
}
