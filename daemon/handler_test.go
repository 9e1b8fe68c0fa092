package daemon

import (
	"log/slog"
	"slices"
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

// alertConfig returns a config with one exec alert sink and one webhook
// sink whose URL secret has a pointer of its own, as every load
// allocates one.
func alertConfig(cooldown time.Duration, line int) *config.Config {
	url := config.NewSecret("http://127.0.0.1:9/hook", "file secrets/hook")
	return &config.Config{Alerts: []*config.Alert{
		{Name: "hook", Kind: "discord_webhook", URL: &url, Cooldown: cooldown, Line: line},
		{Name: "ops", Kind: "exec", Command: []string{"./notify.sh"}, Events: []string{"failed"}, Cooldown: cooldown, Line: line + 5},
	}}
}

func TestKeepRestartOnlyAlerts(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	if got := keepRestartOnly(alertConfig(time.Minute, 10), alertConfig(time.Minute, 20), log); len(got) != 0 {
		t.Errorf("keepRestartOnly of unchanged alerts moved down the file = %v, want none", got)
	}
	next := alertConfig(time.Hour, 10)
	got := keepRestartOnly(alertConfig(time.Minute, 10), next, log)
	if !slices.Equal(got, []string{"alerts"}) {
		t.Errorf("keepRestartOnly after an alert cooldown change = %v, want [alerts]", got)
	}
	if cooldown := next.Alerts[0].Cooldown; cooldown != time.Minute {
		t.Errorf("alert cooldown after the reload = %v, want the running 1m0s, so the next reload warns again", cooldown)
	}
	fewer := alertConfig(time.Minute, 10)
	fewer.Alerts = fewer.Alerts[:1]
	if got := keepRestartOnly(alertConfig(time.Minute, 10), fewer, log); !slices.Equal(got, []string{"alerts"}) {
		t.Errorf("keepRestartOnly after removing a sink = %v, want [alerts]", got)
	}
}
