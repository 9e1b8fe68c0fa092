package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSecretRedacted checks that no formatting of a loaded config, job or
// secret shows a secret's value.
func TestSecretRedacted(t *testing.T) {
	config, _ := loadValid(t, "full.toml")
	job := mustJob(t, config, "digest")
	token := job.Env["TOKEN"]
	if token.Reveal() != "s3cret-token" {
		t.Fatalf("got token %q, want %q", token.Reveal(), "s3cret-token")
	}
	values := map[string]any{"config": config, "job": job, "*job": *job, "env": job.Env, "token": token}
	var outputs []string
	for name, value := range values {
		for _, verb := range []string{"%v", "%+v", "%s", "%#v"} {
			outputs = append(outputs, name+" "+verb+": "+fmt.Sprintf(verb, value))
		}
		for handler, buffer := range slogOutputs(name, value) {
			outputs = append(outputs, name+" "+handler+": "+buffer)
		}
	}
	for _, output := range outputs {
		for _, secret := range []string{"s3cret-token", "api-key-value", "homeassistant.local"} {
			if strings.Contains(output, secret) {
				t.Errorf("output contains %q: %s", secret, output)
			}
		}
	}
	if got := fmt.Sprint(token); !strings.Contains(got, "redacted file ") {
		t.Errorf("got %q, want the redacted form naming the source", got)
	}
}

// slogOutputs logs value with the text and the JSON handler.
func slogOutputs(name string, value any) map[string]string {
	outputs := map[string]string{}
	for _, kind := range []string{"text", "json"} {
		var buffer bytes.Buffer
		var handler slog.Handler = slog.NewTextHandler(&buffer, nil)
		if kind == "json" {
			handler = slog.NewJSONHandler(&buffer, nil)
		}
		slog.New(handler).Info("loaded", name, value)
		outputs["slog "+kind] = buffer.String()
	}
	return outputs
}

// TestPastedSecretNotEchoed checks that a secret written where the name of
// a variable or credential belongs stays out of the problems.
func TestPastedSecretNotEchoed(t *testing.T) {
	const discordToken = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.FAKEsecretDISCORDtoken"
	const twitchToken = "oauth:abcdefFAKE1234"
	problems := loadProblems(t, `
[listeners.bot]
kind = "discord"
token = { env = "`+discordToken+`" }

[listeners.chat]
kind = "twitch"
channels = ["mychannel"]
username = "mybot"
token = { credential = "`+twitchToken+`" }

[jobs.digest]
command = ["true"]
every = "1h"
inherit_env = ["`+discordToken+`"]
env = { TOKEN = { credential = "`+twitchToken+`" } }
`)
	if len(problems) != 4 {
		t.Errorf("got %d problems, want 4: %v", len(problems), problems)
	}
	for _, problem := range problems {
		for _, secret := range []string{discordToken, twitchToken, "FAKE"} {
			if strings.Contains(problem.String(), secret) {
				t.Errorf("problem %q contains the pasted secret %q", problem, secret)
			}
		}
	}
}

func TestSecretNeedlesSkipShortValues(t *testing.T) {
	tests := []struct {
		name, value string
		want        []string
	}{
		{"short", "abc\n", nil},
		{"short lines", "abc\ndefg\n", nil},
		{"empty", "\n", nil},
		{"four bytes", "abcd", []string{"abcd"}},
		{"pem", "}\nMIIEline1AAAA\n", []string{"MIIEline1AAAA"}},
	}
	for _, tt := range tests {
		got := NewSecret(tt.value, "file x").Needles()
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: Needles = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestShortDefaultsSecretWarnedOnce(t *testing.T) {
	path := writeConfig(t, `[defaults]
env = { PIN = { file = "pin" } }

[jobs.a]
command = ["true"]
every = "1h"

[jobs.b]
command = ["true"]
every = "1h"
`)
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "pin"), []byte("123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 {
		t.Fatalf("got %d warnings, want 1 for the shared secret: %v", len(cfg.Warnings), cfg.Warnings)
	}
	if got := cfg.Warnings[0]; got.Line != 2 || got.Key != "defaults.env.PIN" {
		t.Errorf("warning at line %d key %q, want line 2 key defaults.env.PIN", got.Line, got.Key)
	}
}

// Values that are secrets by their names, inline, in an env file or
// inherited, are warned about when too short to redact. A value env
// overrides, or under a plain name, is not.
func TestShortNamedSecretsWarned(t *testing.T) {
	t.Setenv("SHORT_TOKEN", "ab")
	t.Setenv("LONG_TOKEN", "long-enough-value")
	t.Setenv("SHADOWED_TOKEN", "xy")
	path := writeConfig(t, `[jobs.a]
command = ["true"]
every = "1h"
env_file = "a.env"
inherit_env = ["SHORT_TOKEN", "LONG_TOKEN", "SHADOWED_TOKEN"]
env = { API_KEY = "k1", GREETING = "hi", OVERRIDDEN_SECRET = "long-enough-value" }

[listeners.hook]
kind = "exec"
command = ["true"]
env_file = "a.env"
`)
	env := "DB_PASS=pw\nSHADOWED_TOKEN=long-enough-value\nOVERRIDDEN_SECRET=s\nCOUNT=1\nEMPTY_TOKEN=\n"
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "a.env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, warning := range cfg.Warnings {
		got = append(got, warning.Key+": "+strings.SplitN(warning.Message, ",", 2)[0])
	}
	want := []string{
		"jobs.a.env_file: DB_PASS counts as a secret by its name",
		"jobs.a.inherit_env: SHORT_TOKEN counts as a secret by its name",
		"jobs.a.env.API_KEY: secret is too short to be redacted from output (under 4 bytes",
		"listeners.hook.env_file: DB_PASS counts as a secret by its name",
		// The listener's env does not override it, unlike the job's.
		"listeners.hook.env_file: OVERRIDDEN_SECRET counts as a secret by its name",
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, warning := range cfg.Warnings {
		for _, value := range []string{"ab", "pw", "k1"} {
			if strings.Contains(warning.Message, " "+value+" ") {
				t.Errorf("warning %q shows the value %q", warning.Message, value)
			}
		}
	}
}
