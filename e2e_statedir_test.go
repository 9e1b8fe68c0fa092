package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// A state folder that another user may change fails the daemon's start
// and a run-job without a daemon, before either writes anything there.
func TestStateDirOpenToOthersRejected(t *testing.T) {
	cases := []struct {
		name  string
		setup func(dir string) error
		want  string
	}{
		{"group and others write", func(dir string) error { return os.Chmod(dir, 0o777) }, "writable by other users"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases, []struct {
			name  string
			setup func(dir string) error
			want  string
		}{
			{"other owner", func(dir string) error { return os.Chown(dir, 65534, 65534) }, "such as with sudo -u "},
			{"another group writes", func(dir string) error {
				if err := os.Chown(dir, 0, 65534); err != nil {
					return err
				}
				return os.Chmod(dir, 0o770)
			}, "writable by other users"},
		}...)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
			dir := p.path("state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := c.setup(dir); err != nil {
				t.Fatal(err)
			}

			d := p.startProcess()
			select {
			case <-d.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("daemon still runs on a state folder open to others:\n%s", d.log())
			}
			if !strings.Contains(d.log(), c.want) {
				t.Errorf("daemon log lacks %q:\n%s", c.want, d.log())
			}

			res := p.run("run-job", "fine")
			if res.code != 125 {
				t.Errorf("run-job exit = %d, want 125", res.code)
			}
			if !strings.Contains(res.stderr, c.want) {
				t.Errorf("run-job stderr lacks %q:\n%s", c.want, res.stderr)
			}
			if _, err := os.Stat(p.path("state/state.db")); err == nil {
				t.Error("state.db created in a state folder open to others")
			}
		})
	}
}
