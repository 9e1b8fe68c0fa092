package config

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// A capability, from capabilities(7), that a limit key needs when the
// child's setting goes beyond what an unprivileged process may do.
type capability struct {
	bit  uint
	name string
}

var (
	capSetgid      = capability{6, "CAP_SETGID"}
	capSetuid      = capability{7, "CAP_SETUID"}
	capSysNice     = capability{23, "CAP_SYS_NICE"}
	capSysResource = capability{24, "CAP_SYS_RESOURCE"}
)

// capabilities is the runner's effective capability set. Root in a
// container or under a unit's CapabilityBoundingSet= may lack some, so
// uid 0 alone does not show what the runner may do.
type capabilities uint64

func (c capabilities) has(want capability) bool {
	return uint64(c)&(1<<want.bit) != 0
}

// runnerCapabilities returns the effective capabilities of the running
// process. When /proc cannot tell, root counts as having all of them and
// any other user as having none, which is how the kernel treats a process
// without capability changes. agent-runner never changes its own set, so
// the file is read once, not once per job.
var runnerCapabilities = sync.OnceValue(func() capabilities {
	if set, err := readEffectiveCapabilities("/proc/self/status"); err == nil {
		return set
	}
	if os.Geteuid() == 0 {
		return ^capabilities(0)
	}
	return 0
})

// readEffectiveCapabilities parses the CapEff line of a /proc status file.
func readEffectiveCapabilities(path string) (capabilities, error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		value, ok := strings.CutPrefix(scanner.Text(), "CapEff:")
		if !ok {
			continue
		}
		set, err := strconv.ParseUint(strings.TrimSpace(value), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("parse CapEff in %s: %w", path, err)
		}
		return capabilities(set), nil
	}
	if err := scanner.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no CapEff line in " + path)
}

// grantHint returns the fix that gives a daemon that runs as root a
// capability that its unit or its container took away.
func grantHint(c capability) string {
	short := strings.TrimPrefix(c.name, "CAP_")
	return fmt.Sprintf("add %s to the unit's CapabilityBoundingSet= (or the container's capabilities, such as docker run --cap-add %s)", c.name, short)
}
