package daemon

import (
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// postJobs returns a config with a post job and a job with a heartbeat,
// each with pointer fields of its own, as every load allocates them.
func postJobs(text string) *config.Config {
	post := &config.Job{Name: "announce", Every: time.Minute, Location: time.UTC, Enabled: true,
		Post: &config.Post{Via: "chat", To: "channel", Text: text}}
	beat := &config.Job{Name: "backup", Command: []string{"backup.sh"}, Every: time.Hour, Location: time.UTC, Enabled: true,
		Heartbeat: &config.Heartbeat{File: "/srv/backup.beat", MaxAge: time.Hour}}
	return &config.Config{Jobs: []*config.Job{post, beat}}
}

func TestJobChangesSamePostJob(t *testing.T) {
	if got, want := jobChanges(postJobs("hello"), postJobs("hello")), "jobs: 0 added, 0 removed, 0 changed"; got != want {
		t.Errorf("jobChanges of an unchanged config = %q, want %q", got, want)
	}
}

func TestJobChangesChangedPostText(t *testing.T) {
	if got, want := jobChanges(postJobs("hello"), postJobs("good morning")), "jobs: 0 added, 0 removed, 1 changed"; got != want {
		t.Errorf("jobChanges after a post text change = %q, want %q", got, want)
	}
}
