package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// The Nix checks need nix-instantiate (Debian package nix-bin) and no
// nixpkgs: nix/eval-test.nix evaluates the module against the stand-ins in
// nix/stubs.nix. Building the package and starting the unit need a NixOS
// machine, as nix/README.md explains.

// requireNixInstantiate returns the path of nix-instantiate. Without it the
// test is skipped, except under CI=true, where it fails.
func requireNixInstantiate(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("nix-instantiate")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("nix-instantiate not found on PATH, and CI=true requires the Nix checks: install Debian's nix-bin package in .ci/run (%v)", err)
	}
	t.Skipf("nix-instantiate not found on PATH: install Debian's nix-bin package to run the Nix checks (%v)", err)
	return ""
}

// runNix runs nix-instantiate with args and returns its standard output.
// The dummy store keeps it from writing to /nix or starting a daemon, and
// the empty build-users-group silences Debian's warning about the missing
// nixbld group, which only matters for builds.
func runNix(t *testing.T, nix string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nix, append([]string{"--store", "dummy://"}, args...)...)
	cmd.Env = append(os.Environ(), "NIX_CONFIG=build-users-group =")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("nix-instantiate %s failed: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

func TestNixFilesParse(t *testing.T) {
	nix := requireNixInstantiate(t)
	files, err := filepath.Glob("nix/*.nix")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "default.nix")
	for _, want := range []string{"default.nix", "nix/eval-test.nix", "nix/module.nix", "nix/package.nix", "nix/stubs.nix"} {
		if !slices.Contains(files, want) {
			t.Errorf("%s not found among the Nix files %v", want, files)
		}
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			runNix(t, nix, "--parse", file)
		})
	}
}

// nixEvalResult is what nix/eval-test.nix prints: the names of the checks
// that passed, and the config file and unit lines of its "full" case.
type nixEvalResult struct {
	Checks []string `json:"checks"`
	Config string   `json:"config"`
	Unit   string   `json:"unit"`
}

func TestNixModuleEvaluates(t *testing.T) {
	nix := requireNixInstantiate(t)
	output := runNix(t, nix, "--eval", "--strict", "--json", "nix/eval-test.nix")
	var result nixEvalResult
	if err := json.Unmarshal(output, &result); err != nil {
		t.Fatalf("nix/eval-test.nix printed invalid JSON: %v\n%s", err, output)
	}
	if len(result.Checks) == 0 {
		t.Fatal("nix/eval-test.nix ran no checks")
	}
	t.Logf("nix/eval-test.nix passed %d checks", len(result.Checks))

	t.Run("config loads", func(t *testing.T) {
		checkNixConfigLoads(t, result.Config)
	})
	t.Run("unit matches contrib", func(t *testing.T) {
		checkNixUnitMatchesContrib(t, result.Unit)
	})
}

// checkNixConfigLoads loads the config.toml that the module rendered with
// the real config loader, which rejects unknown keys and wrong types.
func checkNixConfigLoads(t *testing.T, text string) {
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("the rendered config does not load: %v\n%s", err, text)
	}

	if got, want := cfg.Runner.StateDir, "/var/lib/agent-runner"; got != want {
		t.Errorf("state_dir = %q, want %q", got, want)
	}
	if got, want := cfg.Runner.Socket, "/run/agent-runner/control.sock"; got != want {
		t.Errorf("socket = %q, want %q", got, want)
	}
	if got, want := cfg.Runner.ShutdownTimeout, 60*time.Second; got != want {
		t.Errorf("shutdown_timeout = %v, want %v", got, want)
	}

	wantTail := []string{"/run/wrappers/bin", "/run/current-system/sw/bin"}
	if len(cfg.Runner.Path) != 4 || !slices.Equal(cfg.Runner.Path[2:], wantTail) {
		t.Errorf("path = %q, want two extraPath bin folders, then %q", cfg.Runner.Path, wantTail)
	}
	for _, folder := range cfg.Runner.Path[:min(2, len(cfg.Runner.Path))] {
		if !strings.HasPrefix(folder, "/nix/store/") || !strings.HasSuffix(folder, "/bin") {
			t.Errorf("path entry %q is not a package's bin folder", folder)
		}
	}

	if cfg.Job("digest") == nil {
		t.Errorf("job digest is missing from the rendered config")
	}
	if cfg.Listener("bot") == nil {
		t.Errorf("listener bot is missing from the rendered config")
	}
}

// checkNixUnitMatchesContrib compares the module's unit with the unit
// that agent-runner install-unit writes. Every [Unit] and [Service] line
// of contrib/agent-runner.service must appear unchanged, except the keys
// whose values the module sets differently on purpose.
func checkNixUnitMatchesContrib(t *testing.T, unit string) {
	differentOnPurpose := map[string]string{
		"ExecStart":        "the binary is a store path",
		"ExecReload":       "kill comes from the coreutils store path",
		"Environment":      "NixOS writes the value in quotes",
		"WorkingDirectory": "the module uses the state folder",
		"ReadWritePaths":   "StateDirectory= makes the state folder writable, and the test adds two folders",
		"TimeoutStopSec":   "the test sets shutdownTimeout = 60",
	}
	data, err := os.ReadFile("contrib/agent-runner.service")
	if err != nil {
		t.Fatal(err)
	}
	unitLines := strings.Split(unit, "\n")
	section := ""
	scanner := bufio.NewScanner(bytes.NewReader(data))
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "["):
			section = line
			continue
		case section == "[Install]":
			continue // NixOS links the unit into its targets instead.
		}
		key, _, _ := strings.Cut(line, "=")
		if _, ok := differentOnPurpose[key]; ok {
			continue
		}
		if !slices.Contains(unitLines, line) {
			t.Errorf("the module's unit lacks %s line %q of contrib/agent-runner.service", section, line)
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	for key, reason := range differentOnPurpose {
		if !slices.ContainsFunc(unitLines, func(line string) bool { return strings.HasPrefix(line, key+"=") }) {
			t.Errorf("the module's unit has no %s= line (its value differs from contrib because %s)", key, reason)
		}
	}
}
