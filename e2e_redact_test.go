package main

import (
	"os"
	"strings"
	"testing"
)

// A PEM-like key and a token file that ends in two newlines, both from
// { file = } secrets, printed by a real child: neither reaches run-job's
// output or the run's stored log.
func TestMultiLineSecretRedacted(t *testing.T) {
	p := newProject(t, `[jobs.pem]
command = ["sh", "-c", "echo \"$KEY\"; echo \"tok=[$TOK]\""]
schedule = "0 0 1 1 *"
env = { KEY = { file = "pem" }, TOK = { file = "tok" } }
`)
	keyLines := []string{"MIIEsecretline1AAAA", "MIIEsecretline2BBBB"}
	pem := "-----BEGIN KEY-----\n" + strings.Join(keyLines, "\n") + "\n-----END KEY-----\n"
	if err := os.WriteFile(p.path("pem"), []byte(pem), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.path("tok"), []byte("TOKENVALUE123\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := p.run("run-job", "pem")
	if res.code != 0 {
		t.Fatalf("run-job pem exit = %d: %s", res.code, res.stderr)
	}
	logs := p.run("logs", "pem")
	if logs.code != 0 {
		t.Fatalf("logs pem exit = %d: %s", logs.code, logs.stderr)
	}
	for name, text := range map[string]string{"run-job output": res.stdout + res.stderr, "stored log": logs.stdout} {
		for _, secret := range append(keyLines, "TOKENVALUE123") {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains %q: %q", name, secret, text)
			}
		}
		if !strings.Contains(text, "tok=[[redacted]") {
			t.Errorf("%s = %q, want the token redacted", name, text)
		}
	}
	if want := "[redacted]\n[redacted]\n"; !strings.Contains(res.stdout, want) {
		t.Errorf("run-job stdout = %q, want each key line redacted", res.stdout)
	}
}

// A secret under the minimum length is named by check and doctor, since
// it would reach the output in clear.
func TestShortSecretWarning(t *testing.T) {
	p := newProject(t, `[jobs.short]
command = ["true"]
schedule = "0 0 1 1 *"
env = { PIN = { file = "pin" } }
`)
	if err := os.WriteFile(p.path("pin"), []byte("123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := p.run("doctor")
	want := "config.toml:8: jobs.short.env.PIN: secret is too short to be redacted"
	if !strings.Contains(res.stdout, want) {
		t.Errorf("doctor output = %q, want a note about PIN", res.stdout)
	}
	res = p.run("check")
	if res.code != 0 {
		t.Errorf("check exit = %d, want 0 for a warning: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "warning: "+p.config+":8: jobs.short.env.PIN: secret is too short to be redacted") {
		t.Errorf("check stderr = %q, want a warning about PIN", res.stderr)
	}
}

// Values from an env_file and inherit_env under secret names are printed
// by a real job, an exec listener and a scheduled run that alerts with
// its output. They reach neither run-job's output, the stored runs, the
// daemon's log nor the alert, through the daemon or without it. The env
// file is read again for each run, and the value it has then is the one
// redacted. A value under a plain name stays visible.
func TestEnvFileAndInheritedSecretsRedacted(t *testing.T) {
	t.Setenv("INHERITED_SECRET", "inherited-secret-value-77")
	p := newProject(t, `[defaults]
env_file = "job.env"
inherit_env = ["INHERITED_SECRET"]

[jobs.leak]
command = ["sh", "-c", "echo \"token=$API_TOKEN plain=$PLAIN_VALUE\"; echo \"inherited=$INHERITED_SECRET\" >&2"]
schedule = "0 0 1 1 *"

[jobs.alerting]
command = ["sh", "-c", "echo \"failing with $API_TOKEN\"; exit 1"]
every = "1s"

[listeners.watcher]
kind = "exec"
command = ["sh", "-c", "echo \"listener=$API_TOKEN\"; exec sleep 300"]

[alerts.sink]
kind = "exec"
command = ["sh", "-c", "cat >> alerts.jsonl"]
include_output = true
`)
	writeEnv := func(token string) {
		t.Helper()
		text := "API_TOKEN=" + token + "\nPLAIN_VALUE=plain-value-visible\n"
		if err := os.WriteFile(p.path("job.env"), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	first, second, third := "first-env-file-token-1", "second-env-file-token-2", "third-env-file-token-3"
	secrets := []string{first, second, third, "inherited-secret-value-77"}
	writeEnv(first)

	d := p.startDaemon()
	d.waitLog("listener=")
	waitFor(t, "an alert of the failing job", func() bool {
		data, _ := os.ReadFile(p.path("alerts.jsonl"))
		return strings.Contains(string(data), "failing with")
	})
	viaDaemon := p.run("run-job", "leak")
	writeEnv(second)
	edited := p.run("run-job", "leak")
	d.stop()
	writeEnv(third)
	offline := p.run("run-job", "leak")

	outputs := map[string]string{
		"run-job through the daemon": viaDaemon.stdout + viaDaemon.stderr,
		"run-job after the edit":     edited.stdout + edited.stderr,
		"run-job without a daemon":   offline.stdout + offline.stderr,
		"daemon log":                 d.log(),
		"logs leak":                  p.run("logs", "leak").stdout,
		"logs alerting":              p.run("logs", "alerting").stdout,
		"runs leak":                  p.run("runs", "--json", "leak").stdout,
		"status":                     p.run("status", "--json").stdout,
	}
	alerts, err := os.ReadFile(p.path("alerts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	outputs["alert"] = string(alerts)
	for _, name := range []string{"state/state.db", "state/state.db-claimlog"} {
		data, _ := os.ReadFile(p.path(name))
		outputs[name] = string(data)
	}
	for name, text := range outputs {
		for _, secret := range secrets {
			if at := strings.Index(text, secret); at >= 0 {
				t.Errorf("%s contains %q: %q", name, secret, text[max(0, at-60):at+len(secret)])
			}
		}
	}
	for _, res := range []result{viaDaemon, edited, offline} {
		if res.code != 0 {
			t.Errorf("run-job leak exit = %d: %s", res.code, res.stderr)
		}
		if want := "token=[redacted] plain=plain-value-visible"; !strings.Contains(res.stdout, want) {
			t.Errorf("run-job stdout = %q, want %q", res.stdout, want)
		}
		if !strings.Contains(res.stderr, "inherited=[redacted]") {
			t.Errorf("run-job stderr = %q, want the inherited secret redacted", res.stderr)
		}
	}
	if !strings.Contains(d.log(), `line="listener=[redacted]"`) {
		t.Errorf("daemon log lacks the listener's redacted line")
	}
	if !strings.Contains(outputs["alert"], "failing with [redacted]") {
		t.Errorf("alert = %q, want the output with the token redacted", outputs["alert"])
	}
}

// A value from an env file that is a secret by its name but too short to
// redact is named by check and doctor, as a short { file = ... } secret is.
func TestShortEnvFileSecretWarning(t *testing.T) {
	p := newProject(t, `[jobs.short]
command = ["true"]
schedule = "0 0 1 1 *"
env_file = "job.env"
`)
	if err := os.WriteFile(p.path("job.env"), []byte("DB_PASSWORD=abc\nCOUNT=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "config.toml:8: jobs.short.env_file: DB_PASSWORD counts as a secret by its name, but its value in the env file is too short to be redacted"
	res := p.run("check")
	if res.code != 0 {
		t.Errorf("check exit = %d, want 0 for a warning: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "warning: ") || !strings.Contains(res.stderr, want) {
		t.Errorf("check stderr = %q, want a warning about DB_PASSWORD", res.stderr)
	}
	if res := p.run("doctor"); !strings.Contains(res.stdout, want) {
		t.Errorf("doctor output = %q, want a note about DB_PASSWORD", res.stdout)
	}
}
