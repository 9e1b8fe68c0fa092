package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
)

func cmdSend(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("send", stdout, stderr)
	target := fs.String("to", "", "where to post: a Twitch channel, by default the listener's only channel, or a Discord channel ID; Bluesky ignores it")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() < 2 {
		fmt.Fprintln(stderr, "agent-runner: send takes a listener (a name or a kind) and the text, or - to read it from stdin")
		fs.Usage()
		return exitUsage
	}
	if err := configMissing(*configPath); err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitFailure
	}
	cfg, ok := loadConfig(*configPath, stderr)
	text, err := messageText(fs.Args()[1:])
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitUsage
	}
	to, socket := *target, ""
	if ok {
		socket = cfg.Runner.Socket
		to, err = sendTarget(cfg, fs.Arg(0), *target)
		if err != nil {
			fmt.Fprintf(stderr, "agent-runner: %v\n", err)
			return exitUsage
		}
	} else {
		// The daemon keeps running its last valid config, and it fills in
		// the listener's default target when to is empty.
		socket, err = config.LocateSocket(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "agent-runner: %v\n", err)
			return exitFailure
		}
		fmt.Fprintln(stderr, "agent-runner: the config has problems; sending through the running daemon, which keeps its last valid config")
	}
	name, err := control.Send(socket, fs.Arg(0), to, text)
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v%s\n", err, noDaemonHint(err))
		return exitFailure
	}
	fmt.Fprintf(stdout, "sent through %s\n", name)
	return exitOK
}

// sendTarget returns to, or the default target of the listener when to is
// empty. It rejects a missing --to that the listener needs here, because
// the daemon could only fail the send. A listener that the config does not
// define or has disabled is left to the daemon, which reports why it fails.
func sendTarget(cfg *config.Config, listener, to string) (string, error) {
	lc := cfg.ListenerFor(listener)
	if to != "" || lc == nil || !lc.Enabled {
		return to, nil
	}
	if target, ok := lc.DefaultTarget(); ok {
		return target, nil
	}
	if lc.Kind == config.KindTwitch {
		return "", fmt.Errorf("send through %s: missing --to: the listener joins %d channels, so pass --to CHANNEL with the one to post in", lc.Name, len(lc.Twitch.Channels))
	}
	return "", fmt.Errorf("send through %s: missing --to: pass --to CHANNEL_ID with the ID of the Discord channel to post in", lc.Name)
}

// maxSendBytes bounds text read from stdin; every platform's limit is far
// below it.
const maxSendBytes = 64 << 10

// messageText joins the arguments, or reads stdin for a lone "-".
func messageText(args []string) (string, error) {
	if len(args) == 1 && args[0] == "-" {
		data, err := io.ReadAll(io.LimitReader(os.Stdin, maxSendBytes+1))
		if err != nil {
			return "", fmt.Errorf("read text from stdin: %w", err)
		}
		if len(data) > maxSendBytes {
			return "", fmt.Errorf("text on stdin is longer than %d bytes", maxSendBytes)
		}
		args = []string{string(data)}
	}
	text := strings.TrimSpace(strings.Join(args, " "))
	if text == "" {
		return "", fmt.Errorf("the text to send is empty")
	}
	return text, nil
}
