package daemon

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

func twitchListener() *config.Listener {
	token := config.NewSecret("oauth:s3cret", "file /run/keys/twitch")
	return &config.Listener{
		Name: "chat", Kind: config.KindTwitch, Enabled: true, Line: 10,
		Twitch:   &config.Twitch{Server: "127.0.0.1:6667", Channels: []string{"chan"}, Username: "bot", Token: &token},
		Commands: []config.ChatCommand{{Trigger: "!hi", Reply: "hello", Cooldown: 10 * time.Second}},
		OnEvent:  []string{"hook"}, HookTimeout: 30 * time.Second, HookConcurrency: 2, HookQueue: 100,
		LogTo: "/var/log/chat.jsonl", LogMaxBytes: 64 << 20,
		WorkingDir: "/srv", Env: map[string]config.Secret{"API_KEY": config.NewSecret("first-api-key", "env API_KEY")},
	}
}

func execListener() *config.Listener {
	return &config.Listener{
		Name: "svc", Kind: config.KindExec, Enabled: true,
		Exec:       &config.Exec{Command: []string{"server"}},
		OnEvent:    []string{"hook"},
		WorkingDir: "/srv", Env: map[string]config.Secret{"PORT": config.NewSecret("8080", "inline")},
	}
}

func TestClassifyListener(t *testing.T) {
	cases := []struct {
		name string
		base func() *config.Listener
		edit func(*config.Listener)
		want listenerUpdate
	}{
		{"moved in the file", twitchListener, func(lc *config.Listener) { lc.Line = 20 }, listenerUnchanged},
		{"command reply", twitchListener, func(lc *config.Listener) { lc.Commands[0].Reply = "hi there" }, listenerInPlace},
		{"command added", twitchListener, func(lc *config.Listener) {
			lc.Commands = append(lc.Commands, config.ChatCommand{Trigger: "!bye", Reply: "bye"})
		}, listenerInPlace},
		{"command cooldown", twitchListener, func(lc *config.Listener) { lc.Commands[0].Cooldown = time.Minute }, listenerInPlace},
		{"hook command", twitchListener, func(lc *config.Listener) { lc.OnEvent = []string{"other-hook"} }, listenerInPlace},
		{"hook removed", twitchListener, func(lc *config.Listener) { lc.OnEvent = nil }, listenerInPlace},
		{"hook timeout", twitchListener, func(lc *config.Listener) { lc.HookTimeout = time.Minute }, listenerInPlace},
		{"hook concurrency", twitchListener, func(lc *config.Listener) { lc.HookConcurrency = 4 }, listenerInPlace},
		{"hook queue", twitchListener, func(lc *config.Listener) { lc.HookQueue = 10 }, listenerInPlace},
		{"log_to", twitchListener, func(lc *config.Listener) { lc.LogTo = "/var/log/other.jsonl" }, listenerInPlace},
		{"log_max_bytes", twitchListener, func(lc *config.Listener) { lc.LogMaxBytes = 1 << 20 }, listenerInPlace},
		{"stale_after", twitchListener, func(lc *config.Listener) { lc.StaleAfter = time.Hour }, listenerInPlace},
		{"description", twitchListener, func(lc *config.Listener) { lc.Description = "the bot" }, listenerInPlace},
		{"chat hook env", twitchListener, func(lc *config.Listener) {
			lc.Env = map[string]config.Secret{"API_KEY": config.NewSecret("k2", "env API_KEY")}
		}, listenerInPlace},
		{"chat hook working_dir", twitchListener, func(lc *config.Listener) { lc.WorkingDir = "/tmp" }, listenerInPlace},
		{"chat hook inherit_env", twitchListener, func(lc *config.Listener) { lc.InheritEnv = []string{"HOME"} }, listenerInPlace},
		{"channel", twitchListener, func(lc *config.Listener) { lc.Twitch.Channels = []string{"other"} }, listenerRestart},
		{"server", twitchListener, func(lc *config.Listener) { lc.Twitch.Server = "127.0.0.1:6697" }, listenerRestart},
		{"tls", twitchListener, func(lc *config.Listener) { lc.Twitch.TLS = true }, listenerRestart},
		{"nick", twitchListener, func(lc *config.Listener) { lc.Twitch.Username = "otherbot" }, listenerRestart},
		{"token value", twitchListener, func(lc *config.Listener) {
			token := config.NewSecret("oauth:n3w", "file /run/keys/twitch")
			lc.Twitch.Token = &token
		}, listenerRestart},
		{"disabled", twitchListener, func(lc *config.Listener) {
			lc.Enabled, lc.DisabledReason = false, "enabled = false in the config"
		}, listenerRestart},
		{"problem", twitchListener, func(lc *config.Listener) { lc.Problem = errors.New("hook not found") }, listenerRestart},
		{"exec hook", execListener, func(lc *config.Listener) { lc.OnEvent = []string{"other-hook"} }, listenerInPlace},
		{"exec env", execListener, func(lc *config.Listener) {
			lc.Env = map[string]config.Secret{"PORT": config.NewSecret("9090", "inline")}
		}, listenerRestart},
		{"exec working_dir", execListener, func(lc *config.Listener) { lc.WorkingDir = "/tmp" }, listenerRestart},
		{"exec command", execListener, func(lc *config.Listener) { lc.Exec.Command = []string{"server", "-v"} }, listenerRestart},
		{"discord channels", func() *config.Listener {
			return &config.Listener{Name: "d", Kind: config.KindDiscord, Enabled: true, Discord: &config.Discord{Channels: []string{"1"}}}
		}, func(lc *config.Listener) { lc.Discord.Channels = []string{"2"} }, listenerRestart},
		{"bluesky reasons", func() *config.Listener {
			return &config.Listener{Name: "b", Kind: config.KindBluesky, Enabled: true, Bluesky: &config.Bluesky{Handle: "bot.example.com"}}
		}, func(lc *config.Listener) { lc.Bluesky.Reasons = []string{"mention"} }, listenerRestart},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old, next := c.base(), c.base()
			c.edit(next)
			if got := classifyListener(old, next); got != c.want {
				t.Errorf("classifyListener = %d, want %d", got, c.want)
			}
		})
	}
}

func TestListenerChangesNamesListeners(t *testing.T) {
	changes := listenerChanges{added: 1, restarted: []string{"chat"}, inPlace: []string{"bot", "mentions"}}
	want := "listeners: 1 added, 0 removed, 1 restarted (chat), 2 updated in place (bot, mentions)"
	if got := changes.String(); got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got, want := (listenerChanges{}).String(), "listeners: 0 added, 0 removed, 0 restarted, 0 updated in place"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestListenerSecretsKeepEarlierValues(t *testing.T) {
	var secrets listenerSecrets
	first := twitchListener()
	secrets.add(first)
	next := twitchListener()
	next.Env = map[string]config.Secret{"API_KEY": config.NewSecret("k2-new-key", "env API_KEY")}
	secrets.add(next)
	got := secrets.Redact("token oauth:s3cret, old key first-api-key, new key k2-new-key")
	for _, secret := range []string{"s3cret", "first-api-key", "k2-new-key"} {
		if strings.Contains(got, secret) {
			t.Errorf("Redact left %q in %q", secret, got)
		}
	}
}

// An inline env value is redacted from the listener's log by its name,
// whatever words its text contains.
func TestListenerSecretsInlineByName(t *testing.T) {
	var secrets listenerSecrets
	lc := twitchListener()
	lc.Env = map[string]config.Secret{
		"BOT_TOKEN": config.NewSecret("inline-bot-token", "inline"),
		"GREETING":  config.NewSecret("say_api_token_hi", "inline"),
	}
	secrets.add(lc)
	got := secrets.Redact("inline-bot-token say_api_token_hi")
	if want := "[redacted] say_api_token_hi"; got != want {
		t.Errorf("Redact = %q, want %q", got, want)
	}
}
