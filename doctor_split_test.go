package main

import (
	"errors"
	"testing"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/listeners"
)

// TestSplitProblemsListenerFailedInDaemon checks that a listener problem
// stays a problem when the daemon cannot run that listener either, even
// though the daemon's message differs, as a credential's does between a
// shell without $CREDENTIALS_DIRECTORY and the daemon's unit.
func TestSplitProblemsListenerFailedInDaemon(t *testing.T) {
	shellProblem := errors.New(`listener chat: credential "twitch" cannot be read because $CREDENTIALS_DIRECTORY is not set`)
	cfg := &config.Config{Listeners: []*config.Listener{{Name: "chat", Kind: config.KindTwitch, Enabled: true, Problem: shellProblem}}}
	status := &control.Status{Listeners: []listeners.Health{{
		Name: "chat", Kind: config.KindTwitch, State: listeners.StateFailed,
		LastError: `listener chat: credential "twitch" not found in $CREDENTIALS_DIRECTORY /run/credentials/agent-runner.service`,
	}}}

	problems, shellOnly := splitProblems(cfg, status)
	if len(problems) != 1 {
		t.Errorf("problems = %v, want the listener's problem", problems)
	}
	if len(shellOnly) != 0 {
		t.Errorf("shell-only problems = %v, want none for a listener that fails in the daemon", shellOnly)
	}
}

// TestSplitProblemsListenerRunsInDaemon checks that a listener problem
// that the running daemon does not have is a shell-only note.
func TestSplitProblemsListenerRunsInDaemon(t *testing.T) {
	shellProblem := errors.New(`listener chat: secret env TWITCH_TOKEN is not set`)
	cfg := &config.Config{Listeners: []*config.Listener{{Name: "chat", Kind: config.KindTwitch, Enabled: true, Problem: shellProblem}}}
	status := &control.Status{Listeners: []listeners.Health{{Name: "chat", Kind: config.KindTwitch, State: listeners.StateRunning}}}

	problems, shellOnly := splitProblems(cfg, status)
	if len(problems) != 0 {
		t.Errorf("problems = %v, want none for a listener that runs in the daemon", problems)
	}
	if len(shellOnly) != 1 {
		t.Errorf("shell-only problems = %v, want the listener's problem", shellOnly)
	}
}
