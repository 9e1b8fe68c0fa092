package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// loadListeners loads testdata/valid/listeners.toml with the discord
// token's variable set.
func loadListeners(t *testing.T) (*Config, string) {
	t.Helper()
	t.Setenv("CONFIG_TEST_DISCORD_TOKEN", "discord-s3cret")
	return loadValid(t, "listeners.toml")
}

func mustListener(t *testing.T, config *Config, name string) *Listener {
	t.Helper()
	listener := config.Listener(name)
	if listener == nil {
		t.Fatalf("listener %q not found", name)
	}
	return listener
}

// checkSecret checks a token or password's value and source.
func checkSecret(t *testing.T, field string, secret *Secret, value, source string) {
	t.Helper()
	if secret == nil {
		t.Errorf("%s: got nil, want a secret from %s", field, source)
		return
	}
	if got := secret.Reveal(); got != value {
		t.Errorf("%s: got value %q, want %q", field, got, value)
	}
	if secret.Source != source {
		t.Errorf("%s: got source %q, want %q", field, secret.Source, source)
	}
}

func TestLoadListenersSorted(t *testing.T) {
	config, _ := loadListeners(t)
	var names []string
	for _, listener := range config.Listeners {
		names = append(names, listener.Name)
	}
	want := []string{"bsky", "bsky-off", "chat", "discord", "discord-off", "lurker", "paused", "server", "worker"}
	if !slices.Equal(names, want) {
		t.Errorf("listener names: got %q, want %q", names, want)
	}
	if config.Listener("digest") != nil {
		t.Errorf("Listener(%q): got a listener, want nil for a job's name", "digest")
	}
	if config.Job("digest") == nil {
		t.Errorf("Job(%q): got nil, want the job", "digest")
	}
}

func TestLoadListenerTwitch(t *testing.T) {
	config, dir := loadListeners(t)
	listener := mustListener(t, config, "chat")
	if listener.Kind != KindTwitch {
		t.Errorf("Kind: got %q, want %q", listener.Kind, KindTwitch)
	}
	if listener.Description != "Answer chat commands" {
		t.Errorf("Description: got %q, want %q", listener.Description, "Answer chat commands")
	}
	if !listener.Enabled {
		t.Errorf("Enabled: got false, want true, because [defaults] enabled does not apply to listeners")
	}
	if listener.DisabledReason != "" {
		t.Errorf("DisabledReason: got %q, want empty", listener.DisabledReason)
	}
	if listener.Line != 19 {
		t.Errorf("Line: got %d, want 19", listener.Line)
	}
	if listener.Discord != nil || listener.Bluesky != nil || listener.Exec != nil {
		t.Errorf("got settings of another kind: %+v", listener)
	}

	twitch := listener.Twitch
	if twitch == nil {
		t.Fatalf("Twitch: got nil")
	}
	if twitch.Server != "irc.example.net:6697" {
		t.Errorf("Server: got %q, want %q", twitch.Server, "irc.example.net:6697")
	}
	if !twitch.TLS {
		t.Errorf("TLS: got false, want true")
	}
	if want := []string{"mychannel", "other_channel"}; !slices.Equal(twitch.Channels, want) {
		t.Errorf("Channels: got %q, want %q", twitch.Channels, want)
	}
	if twitch.Username != "mybot" {
		t.Errorf("Username: got %q, want %q", twitch.Username, "mybot")
	}
	checkSecret(t, "Token", twitch.Token, "oauth:twitch-s3cret", "file "+filepath.Join(dir, "secrets", "twitch-token"))
}

func TestLoadListenerHooks(t *testing.T) {
	config, dir := loadListeners(t)
	listener := mustListener(t, config, "chat")
	if want := []string{"./collect.sh", "--event"}; !slices.Equal(listener.OnEvent, want) {
		t.Errorf("OnEvent: got %q, want %q", listener.OnEvent, want)
	}
	if listener.HookTimeout != 45*time.Second {
		t.Errorf("HookTimeout: got %v, want 45s", listener.HookTimeout)
	}
	if listener.HookConcurrency != 4 {
		t.Errorf("HookConcurrency: got %d, want 4", listener.HookConcurrency)
	}
	if listener.HookQueue != 500 {
		t.Errorf("HookQueue: got %d, want 500", listener.HookQueue)
	}
	if got, want := listener.LogTo, filepath.Join(dir, "var", "chat.jsonl"); got != want {
		t.Errorf("LogTo: got %q, want %q", got, want)
	}
	if listener.LogMaxBytes != 1<<20 {
		t.Errorf("LogMaxBytes: got %d, want %d", listener.LogMaxBytes, 1<<20)
	}

	if got, want := listener.WorkingDir, filepath.Join(dir, "scripts"); got != want {
		t.Errorf("WorkingDir: got %q, want %q from [defaults]", got, want)
	}
	if got, want := listener.EnvFile, filepath.Join(dir, "job.env"); got != want {
		t.Errorf("EnvFile: got %q, want %q", got, want)
	}
	if listener.InheritEnv == nil || len(listener.InheritEnv) != 0 {
		t.Errorf("InheritEnv: got %#v, want the listener's empty list", listener.InheritEnv)
	}
	if got := len(listener.Env); got != 2 {
		t.Errorf("Env: got %d variables, want 2", got)
	}
	if got := listener.Env["LEVEL"].Reveal(); got != "debug" {
		t.Errorf("Env LEVEL: got %q, want the listener's %q", got, "debug")
	}
	if got := listener.Env["LANG"].Reveal(); got != "C.UTF-8" {
		t.Errorf("Env LANG: got %q, want %q from [defaults]", got, "C.UTF-8")
	}
}

func TestLoadListenerChatCommands(t *testing.T) {
	config, _ := loadListeners(t)
	want := []ChatCommand{
		{Trigger: "!echo", Reply: "{args}", Cooldown: 10 * time.Second},
		{Trigger: "!uptime", Reply: "{user}: up for {uptime} in {channel}", Cooldown: 30 * time.Second},
	}
	if got := mustListener(t, config, "chat").Commands; !slices.Equal(got, want) {
		t.Errorf("chat Commands: got %+v, want %+v", got, want)
	}
	wantDiscord := []ChatCommand{{Trigger: "!ping", Reply: "pong, {user}", Cooldown: 10 * time.Second}}
	if got := mustListener(t, config, "discord").Commands; !slices.Equal(got, wantDiscord) {
		t.Errorf("discord Commands: got %+v, want %+v", got, wantDiscord)
	}
}

func TestLoadListenerDiscord(t *testing.T) {
	config, _ := loadListeners(t)
	listener := mustListener(t, config, "discord")
	if listener.Kind != KindDiscord {
		t.Errorf("Kind: got %q, want %q", listener.Kind, KindDiscord)
	}
	if !listener.Enabled {
		t.Errorf("Enabled: got false (%s), want true", listener.DisabledReason)
	}
	if listener.WorkingDir != "/" {
		t.Errorf("WorkingDir: got %q, want %q", listener.WorkingDir, "/")
	}

	discord := listener.Discord
	if discord == nil {
		t.Fatalf("Discord: got nil")
	}
	checkSecret(t, "Token", discord.Token, "discord-s3cret", "env CONFIG_TEST_DISCORD_TOKEN")
	if want := []string{"123456789012345678", "987654321098765432"}; !slices.Equal(discord.Channels, want) {
		t.Errorf("Channels: got %q, want %q", discord.Channels, want)
	}
	if discord.APIURL != "http://127.0.0.1:8081/api/v10/" {
		t.Errorf("APIURL: got %q, want a trailing slash added", discord.APIURL)
	}
	if discord.GatewayURL != "ws://127.0.0.1:8081/gateway" {
		t.Errorf("GatewayURL: got %q, want %q", discord.GatewayURL, "ws://127.0.0.1:8081/gateway")
	}
}

func TestLoadListenerBluesky(t *testing.T) {
	config, dir := loadListeners(t)
	listener := mustListener(t, config, "bsky")
	if listener.Kind != KindBluesky {
		t.Errorf("Kind: got %q, want %q", listener.Kind, KindBluesky)
	}
	if !listener.Enabled {
		t.Errorf("Enabled: got false (%s), want true", listener.DisabledReason)
	}

	bluesky := listener.Bluesky
	if bluesky == nil {
		t.Fatalf("Bluesky: got nil")
	}
	if bluesky.Handle != "bot.example.com" {
		t.Errorf("Handle: got %q, want %q", bluesky.Handle, "bot.example.com")
	}
	checkSecret(t, "Password", bluesky.Password, "bsky-s3cret-pass", "credential bsky-app-password")
	if bluesky.Host != "https://pds.example.com" {
		t.Errorf("Host: got %q, want the trailing slash removed", bluesky.Host)
	}
	if bluesky.Poll != 5*time.Second {
		t.Errorf("Poll: got %v, want 5s", bluesky.Poll)
	}
	if want := []string{"mention", "like"}; !slices.Equal(bluesky.Reasons, want) {
		t.Errorf("Reasons: got %q, want %q", bluesky.Reasons, want)
	}

	if listener.Commands != nil {
		t.Errorf("Commands: got %+v, want nil", listener.Commands)
	}
	if got, want := listener.WorkingDir, filepath.Join(dir, "scripts"); got != want {
		t.Errorf("WorkingDir: got %q, want %q", got, want)
	}
}

func TestLoadListenerExecHTTPProbe(t *testing.T) {
	config, _ := loadListeners(t)
	listener := mustListener(t, config, "server")
	if listener.Kind != KindExec {
		t.Errorf("Kind: got %q, want %q", listener.Kind, KindExec)
	}
	exec := listener.Exec
	if exec == nil {
		t.Fatalf("Exec: got nil")
	}
	if want := []string{"./collect.sh", "--serve"}; !slices.Equal(exec.Command, want) {
		t.Errorf("Command: got %q, want %q", exec.Command, want)
	}
	if exec.StopGrace != 20*time.Second {
		t.Errorf("StopGrace: got %v, want 20s", exec.StopGrace)
	}
	want := Probe{HTTP: "http://127.0.0.1:8080/health", Interval: 10 * time.Second, Grace: time.Minute}
	if exec.Probe == nil || *exec.Probe != want {
		t.Errorf("Probe: got %+v, want %+v", exec.Probe, want)
	}
}

func TestLoadListenerExecHeartbeatProbe(t *testing.T) {
	config, dir := loadListeners(t)
	exec := mustListener(t, config, "worker").Exec
	if exec == nil {
		t.Fatalf("Exec: got nil")
	}
	if exec.StopGrace != 7*time.Second {
		t.Errorf("StopGrace: got %v, want the runner's kill_grace of 7s", exec.StopGrace)
	}
	want := Probe{
		Heartbeat: filepath.Join(dir, "var", "heartbeat"),
		MaxAge:    2 * time.Minute,
		Interval:  30 * time.Second,
		Grace:     30 * time.Second,
	}
	if exec.Probe == nil || *exec.Probe != want {
		t.Errorf("Probe: got %+v, want %+v", exec.Probe, want)
	}
}

// TestLoadListenerDefaults checks a Twitch listener that sets only kind
// and channels, which connects anonymously.
func TestLoadListenerDefaults(t *testing.T) {
	config, dir := loadListeners(t)
	listener := mustListener(t, config, "lurker")
	if !listener.Enabled {
		t.Errorf("Enabled: got false (%s), want true for anonymous access", listener.DisabledReason)
	}
	if listener.Description != "" {
		t.Errorf("Description: got %q, want empty", listener.Description)
	}
	if listener.OnEvent != nil {
		t.Errorf("OnEvent: got %q, want nil", listener.OnEvent)
	}
	if listener.HookTimeout != 30*time.Second {
		t.Errorf("HookTimeout: got %v, want 30s", listener.HookTimeout)
	}
	if listener.HookConcurrency != 2 {
		t.Errorf("HookConcurrency: got %d, want 2", listener.HookConcurrency)
	}
	if listener.HookQueue != 100 {
		t.Errorf("HookQueue: got %d, want 100", listener.HookQueue)
	}
	if listener.LogTo != "" {
		t.Errorf("LogTo: got %q, want empty", listener.LogTo)
	}
	if listener.LogMaxBytes != 64<<20 {
		t.Errorf("LogMaxBytes: got %d, want %d", listener.LogMaxBytes, 64<<20)
	}

	if want := []string{"HOME"}; !slices.Equal(listener.InheritEnv, want) {
		t.Errorf("InheritEnv: got %q, want %q from [defaults]", listener.InheritEnv, want)
	}
	if listener.EnvFile != "" {
		t.Errorf("EnvFile: got %q, want empty", listener.EnvFile)
	}
	if got, want := listener.WorkingDir, filepath.Join(dir, "scripts"); got != want {
		t.Errorf("WorkingDir: got %q, want %q from [defaults]", got, want)
	}
	if got := len(listener.Env); got != 2 {
		t.Errorf("Env: got %d variables, want the 2 of [defaults]", got)
	}
	if listener.Commands != nil {
		t.Errorf("Commands: got %+v, want nil", listener.Commands)
	}

	twitch := listener.Twitch
	if twitch == nil {
		t.Fatalf("Twitch: got nil")
	}
	if twitch.Server != "irc.chat.twitch.tv:6697" {
		t.Errorf("Server: got %q, want %q", twitch.Server, "irc.chat.twitch.tv:6697")
	}
	if !twitch.TLS {
		t.Errorf("TLS: got false, want true")
	}
	if twitch.Username != "" {
		t.Errorf("Username: got %q, want empty", twitch.Username)
	}
	if twitch.Token != nil {
		t.Errorf("Token: got %v, want nil", twitch.Token)
	}
}

func TestLoadListenerKindDefaults(t *testing.T) {
	config, _ := loadListeners(t)
	discord := mustListener(t, config, "discord-off").Discord
	if discord == nil {
		t.Fatalf("Discord: got nil")
	}
	if discord.APIURL != "https://discord.com/api/v10/" {
		t.Errorf("APIURL: got %q, want %q", discord.APIURL, "https://discord.com/api/v10/")
	}
	if discord.GatewayURL != "wss://gateway.discord.gg" {
		t.Errorf("GatewayURL: got %q, want %q", discord.GatewayURL, "wss://gateway.discord.gg")
	}
	if discord.Channels != nil {
		t.Errorf("Channels: got %q, want nil", discord.Channels)
	}
	if discord.Token != nil {
		t.Errorf("Token: got %v, want nil", discord.Token)
	}

	bluesky := mustListener(t, config, "bsky-off").Bluesky
	if bluesky == nil {
		t.Fatalf("Bluesky: got nil")
	}
	if bluesky.Host != "https://bsky.social" {
		t.Errorf("Host: got %q, want %q", bluesky.Host, "https://bsky.social")
	}
	if bluesky.Poll != 30*time.Second {
		t.Errorf("Poll: got %v, want 30s", bluesky.Poll)
	}
	if want := []string{"mention", "reply", "quote", "follow"}; !slices.Equal(bluesky.Reasons, want) {
		t.Errorf("Reasons: got %q, want %q", bluesky.Reasons, want)
	}
	if bluesky.Handle != "" || bluesky.Password != nil {
		t.Errorf("credentials: got handle %q and password %v, want none", bluesky.Handle, bluesky.Password)
	}
}

func TestLoadListenerDisabled(t *testing.T) {
	config, _ := loadListeners(t)
	tests := []struct {
		name, reason string
	}{
		{"discord-off", "no token configured"},
		{"bsky-off", "no handle or app password configured"},
		{"paused", "enabled = false in the config"},
	}
	for _, test := range tests {
		listener := mustListener(t, config, test.name)
		if listener.Enabled {
			t.Errorf("%s: Enabled: got true, want false", test.name)
		}
		if listener.DisabledReason != test.reason {
			t.Errorf("%s: DisabledReason: got %q, want %q", test.name, listener.DisabledReason, test.reason)
		}
		if listener.Problem != nil {
			t.Errorf("%s: Problem: got %v, want nil", test.name, listener.Problem)
		}
	}
}

// TestLoadListenerTwitchPlainServer checks that tls = false changes the
// default port to Twitch's plain-text IRC port.
func TestLoadListenerTwitchPlainServer(t *testing.T) {
	config, err := Load(writeConfig(t, "[listeners.chat]\nkind = \"twitch\"\nchannels = [\"a\"]\ntls = false\n"))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	twitch := mustListener(t, config, "chat").Twitch
	if twitch.TLS {
		t.Errorf("TLS: got true, want false")
	}
	if twitch.Server != "irc.chat.twitch.tv:6667" {
		t.Errorf("Server: got %q, want %q", twitch.Server, "irc.chat.twitch.tv:6667")
	}
}

// TestListenerSecretsRedacted checks that no formatting of a loaded
// listener shows a token or password.
func TestListenerSecretsRedacted(t *testing.T) {
	config, _ := loadListeners(t)
	secrets := []string{"twitch-s3cret", "discord-s3cret", "bsky-s3cret-pass"}
	values := map[string]any{"config": config}
	for _, name := range []string{"chat", "discord", "bsky"} {
		listener := mustListener(t, config, name)
		values[name] = listener
		values["*"+name] = *listener
	}
	values["twitch"] = *mustListener(t, config, "chat").Twitch
	values["discord settings"] = *mustListener(t, config, "discord").Discord
	values["bluesky"] = *mustListener(t, config, "bsky").Bluesky

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
		for _, secret := range secrets {
			if strings.Contains(output, secret) {
				t.Errorf("output contains %q: %s", secret, output)
			}
		}
	}

	twitch := fmt.Sprintf("%+v", *mustListener(t, config, "chat").Twitch)
	if !strings.Contains(twitch, "redacted file ") {
		t.Errorf("got %s, want the token redacted with its source", twitch)
	}
}

func TestCheckReply(t *testing.T) {
	tests := []struct {
		reply, wantErr string
	}{
		{"plain text", ""},
		{"{user} {channel} {text} {args} {uptime} {listener}", ""},
		{"{user}{user}", ""},
		{"{uptme}", "unknown placeholder {uptme}"},
		{"{}", "unknown placeholder {}"},
		{"{User}", "unknown placeholder {User}"},
		{"a } b", `a "}" without a matching "{"`},
		{"{user", `a "{" without a matching "}"`},
		{"{us{er}", `a "{" without a matching "}"`},
		{"{user}}", `a "}" without a matching "{"`},
	}
	for _, test := range tests {
		err := checkReply(test.reply)
		switch {
		case test.wantErr == "" && err != nil:
			t.Errorf("%q: got error %v, want none", test.reply, err)
		case test.wantErr != "" && (err == nil || !strings.Contains(err.Error(), test.wantErr)):
			t.Errorf("%q: got error %v, want one containing %q", test.reply, err, test.wantErr)
		case err != nil && !strings.Contains(err.Error(), "{listener}"):
			t.Errorf("%q: got error %v, want it to list the placeholders", test.reply, err)
		}
	}
}
