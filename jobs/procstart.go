package jobs

import (
	"bytes"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of process start times in /proc, which Linux fixes
// at 100 per second for user space (USER_HZ) on every architecture Go
// supports.
const userHZ = 100

// processAge returns how long ago this process started, which the
// catch-up spread counts from. Tests replace it.
var processAge = readProcessAge

// readProcessAge reads the start time of this process from
// /proc/self/stat, in clock ticks since boot, and subtracts it from
// CLOCK_BOOTTIME. It returns 0 when either cannot be read. The result is
// exact to one tick, 10 ms.
func readProcessAge() time.Duration {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The command name in parentheses may contain spaces, so the fields
	// are counted from its closing parenthesis: starttime is the 20th.
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return 0
	}
	fields := bytes.Fields(data[end+1:])
	if len(fields) < 20 {
		return 0
	}
	ticks, err := strconv.ParseInt(string(fields[19]), 10, 64)
	if err != nil {
		return 0
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &now); err != nil {
		return 0
	}
	started := time.Duration(ticks) * time.Second / userHZ
	return max(time.Duration(now.Nano())-started, 0)
}
