package config

import (
	"bytes"
	"fmt"
	"log/slog"
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
