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
