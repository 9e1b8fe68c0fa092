package config

import (
	"slices"
	"time"
)

// Alert is one [alerts.NAME] sink: where failures and recoveries are sent.
type Alert struct {
	Name string
	// Kind is discord_webhook or exec.
	Kind string
	// URL is the webhook URL of a discord_webhook sink; it holds a token,
	// so it is only accepted as a secret reference.
	URL *Secret
	// Command is the argv of an exec sink, which gets each alert as JSON
	// on stdin.
	Command []string
	// Events limits the events sent; empty means all.
	Events []string
	// Cooldown suppresses repeats of one event for one job or listener;
	// default 15m.
	Cooldown time.Duration
	// IncludeOutput adds the tail of a job's output; off by default.
	IncludeOutput bool
	// Timeout bounds one delivery attempt; default 10s.
	Timeout time.Duration
	Line    int
	// Problem is set when the sink is valid TOML but cannot work on this
	// machine, such as an unreadable URL secret.
	Problem error
}

// Alert sink kinds.
const (
	AlertDiscordWebhook = "discord_webhook"
	AlertExec           = "exec"
)

var (
	alertKeys   = []string{"command", "cooldown", "events", "include_output", "kind", "timeout", "url"}
	alertEvents = []string{"crash-looping", "failed", "panic", "recovered", "reload-failed", "stale", "timeout"}
)

// alertPlan keeps what the machine checks of a sink need.
type alertPlan struct {
	alert *Alert
	path  keyPath
	url   envValue
}

func (l *loader) decodeAlerts(root table) []*Alert {
	sinks, _ := l.subTable(root, "alerts", "[alerts.NAME]")
	var list []*Alert
	for _, name := range sinks.names() {
		t, ok := l.subTable(sinks, name, "[alerts.NAME]")
		if !ok {
			continue
		}
		if !jobNamePattern.MatchString(name) {
			l.report(t.path, `invalid alert name %q: use lowercase letters, digits, "_" and "-", such as %q`, name, suggestName(name, "alert"))
		}
		list = append(list, l.decodeAlert(t, name))
	}
	return list
}

func (l *loader) decodeAlert(t table, name string) *Alert {
	l.checkKeys(t, "in ["+t.path.String()+"]", alertKeys, nil)
	alert := &Alert{Name: name, Line: l.lines.line(t.path), Cooldown: 15 * time.Minute, Timeout: 10 * time.Second}
	plan := alertPlan{alert: alert, path: t.path}
	alert.Kind, _ = l.stringValue(t, "kind", `"discord_webhook"`)
	switch alert.Kind {
	case AlertDiscordWebhook:
		value, _ := l.decodeSecretKey(t, "url", `{ file = "secrets/discord-webhook" }`)
		if _, present := t.values["url"]; !present {
			l.report(t.path, `missing url: add url = { file = "secrets/discord-webhook" } with the webhook URL in that file`)
		}
		plan.url = value
	case AlertExec:
		alert.Command = l.argvValue(t, "command", `["./notify.sh"]`)
		if alert.Command == nil {
			l.report(t.path, `missing command: add command = ["./notify.sh"], which gets each alert as JSON on stdin`)
		}
	default:
		l.report(t.key("kind"), `invalid kind %q: use "discord_webhook" or "exec"`, alert.Kind)
	}
	if events, ok := l.stringList(t, "events", `["failed", "recovered"]`); ok {
		for _, event := range events {
			if !slices.Contains(alertEvents, event) {
				l.report(t.key("events"), "unknown event %q: the events are %v", event, alertEvents)
			}
		}
		alert.Events = events
	}
	if d, ok := l.durationValue(t, "cooldown", 0); ok {
		alert.Cooldown = d
	}
	if d, ok := l.durationValue(t, "timeout", time.Second); ok {
		alert.Timeout = d
	}
	if b, ok := l.boolValue(t, "include_output"); ok {
		alert.IncludeOutput = b
	}
	l.alerts = append(l.alerts, plan)
	return alert
}

// checkAlerts reads each webhook sink's URL secret and looks up each exec
// sink's program, so that check reports a sink the daemon would leave out.
// An exec sink runs in the config's folder on runnerPath, as the daemon
// starts it.
func (l *loader) checkAlerts(runnerPath []string) {
	for _, plan := range l.alerts {
		checks := l.checks()
		alert := plan.alert
		switch {
		case alert.Kind == AlertDiscordWebhook && plan.url.key != nil:
			var url *Secret
			resolveSecrets(&checks, []secretPlan{{value: plan.url, target: &url}})
			alert.URL = url
		case alert.Kind == AlertExec && len(alert.Command) > 0 && alert.Command[0] != "":
			checkProgram(&checks, l.stats, program{
				name:       alert.Command[0],
				key:        plan.path.child("command"),
				dir:        l.dir,
				runnerPath: runnerPath,
				owner:      "alert sink",
			}, true)
		}
		alert.Problem = checks.err()
	}
}
