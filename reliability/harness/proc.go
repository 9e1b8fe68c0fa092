package harness

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcSample is one reading of a process's resources from /proc.
type ProcSample struct {
	At time.Time
	// RSSKiB and HWMKiB are VmRSS and VmHWM (peak RSS) in KiB.
	RSSKiB  int
	HWMKiB  int
	Threads int
	FDs     int
	// Goroutines comes from go_goroutines on /metrics, or -1 without an
	// HTTP address.
	Goroutines int
}

// SampleProc reads VmRSS, VmHWM, Threads and the open descriptors of pid.
func SampleProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now(), Goroutines: -1}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.Atoi(fields[0])
		switch name {
		case "VmRSS":
			s.RSSKiB = n
		case "VmHWM":
			s.HWMKiB = n
		case "Threads":
			s.Threads = n
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.FDs = len(fds)
	return s, nil
}

// Goroutines reads go_goroutines from a Prometheus text page at url.
func Goroutines(url string) (int, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return -1, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if value, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				return -1, fmt.Errorf("parse go_goroutines %q: %w", value, err)
			}
			return int(f), nil
		}
	}
	return -1, fmt.Errorf("%s has no go_goroutines line", url)
}

// StartTime returns field 22 of /proc/PID/stat, the process's start time
// in clock ticks since boot, which distinguishes a process from a later
// one that reuses its pid.
func StartTime(pid int) (string, bool) {
	fields := statFields(pid)
	if len(fields) < 20 {
		return "", false
	}
	// fields starts at field 3 (state), so field 22 is index 19.
	return fields[19], true
}

// ProcState returns the one-letter state of pid (R, S, D, Z, ...), or ""
// when it does not exist.
func ProcState(pid int) string {
	fields := statFields(pid)
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

// Alive reports whether pid exists, is not a zombie, and started at
// startTime when that is not empty.
func Alive(pid int, startTime string) bool {
	fields := statFields(pid)
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return false
	}
	return startTime == "" || fields[19] == startTime
}

// statFields returns the fields of /proc/PID/stat after the command name,
// starting with the state.
func statFields(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	text := string(data)
	end := strings.LastIndexByte(text, ')')
	if end < 0 {
		return nil
	}
	return strings.Fields(text[end+1:])
}

// PidRecord is one line that a test job appends to a pid file:
// "PARENT PID STARTTIME", where PARENT is the daemon that started the job.
type PidRecord struct {
	Parent    int
	Pid       int
	StartTime string
}

// ReadPidRecords parses every pid file line of path; malformed lines,
// such as one cut short by a kill, are skipped.
func ReadPidRecords(path string) []PidRecord {
	var records []PidRecord
	for _, line := range Lines(path) {
		fields := strings.Fields(line)
		if len(fields) != 3 {
			continue
		}
		parent, err1 := strconv.Atoi(fields[0])
		pid, err2 := strconv.Atoi(fields[1])
		if err1 != nil || err2 != nil {
			continue
		}
		records = append(records, PidRecord{Parent: parent, Pid: pid, StartTime: fields[2]})
	}
	return records
}

// PidLine is a shell fragment that appends the PidRecord of the process
// whose pid the shell expression pidExpr gives ("$$" or "$!") to file.
// $PPID is the daemon for a job's own shell.
func PidLine(pidExpr, file string) string {
	return fmt.Sprintf(`echo "$PPID %[1]s $(cut -d' ' -f22 /proc/%[1]s/stat)" >> %[2]s`, pidExpr, file)
}
