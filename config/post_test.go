package config

import "testing"

const postListeners = `
[listeners.chat]
kind = "twitch"
channels = ["#MyChannel"]

[listeners.mentions]
kind = "bluesky"
`

func TestPostTargetDefaults(t *testing.T) {
	config, err := Load(writeConfig(t, postListeners+`
[jobs.chat-post]
post = { via = "chat", text = "hello chat" }
every = "1h"

[jobs.kind-post]
post = { via = "twitch", text = "hello chat" }
every = "1h"

[jobs.explicit]
post = { via = "chat", to = "other", text = "hello" }
every = "1h"

[jobs.bluesky-post]
post = { via = "mentions", text = "hello sky" }
every = "1h"
`))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	for job, want := range map[string]string{
		"chat-post":    "mychannel",
		"kind-post":    "mychannel",
		"explicit":     "other",
		"bluesky-post": "",
	} {
		if got := mustJob(t, config, job).Post.To; got != want {
			t.Errorf("job %s: post.to = %q, want %q", job, got, want)
		}
	}
}

func TestListenerDefaultTarget(t *testing.T) {
	tests := []struct {
		name     string
		listener Listener
		target   string
		ok       bool
	}{
		{"twitch one channel", Listener{Kind: KindTwitch, Twitch: &Twitch{Channels: []string{"a"}}}, "a", true},
		{"twitch two channels", Listener{Kind: KindTwitch, Twitch: &Twitch{Channels: []string{"a", "b"}}}, "", false},
		{"discord", Listener{Kind: KindDiscord, Discord: &Discord{Channels: []string{"1"}}}, "", false},
		{"bluesky", Listener{Kind: KindBluesky, Bluesky: &Bluesky{}}, "", true},
	}
	for _, tt := range tests {
		target, ok := tt.listener.DefaultTarget()
		if target != tt.target || ok != tt.ok {
			t.Errorf("%s: DefaultTarget() = %q, %v, want %q, %v", tt.name, target, ok, tt.target, tt.ok)
		}
	}
}

func TestListenerForNameOrKind(t *testing.T) {
	chat := &Listener{Name: "chat", Kind: KindTwitch, Enabled: true}
	other := &Listener{Name: "other", Kind: KindTwitch, Enabled: true}
	off := &Listener{Name: "off", Kind: KindDiscord}
	config := &Config{Listeners: []*Listener{chat, off}}
	if got := config.ListenerFor("chat"); got != chat {
		t.Errorf("ListenerFor(chat) = %v, want the listener named chat", got)
	}
	if got := config.ListenerFor("twitch"); got != chat {
		t.Errorf("ListenerFor(twitch) = %v, want the only twitch listener", got)
	}
	if got := config.ListenerFor("off"); got != off {
		t.Errorf("ListenerFor(off) = %v, want the disabled listener named off", got)
	}
	if got := config.ListenerFor("discord"); got != nil {
		t.Errorf("ListenerFor(discord) = %v, want nil because its only listener is disabled", got)
	}
	config.Listeners = append(config.Listeners, other)
	if got := config.ListenerFor("twitch"); got != nil {
		t.Errorf("ListenerFor(twitch) = %v, want nil because two listeners match", got)
	}
}
