package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// DefaultPath returns $AGENT_RUNNER_CONFIG when set, else "config.toml" in
// the current directory.
func DefaultPath() string {
	if path := os.Getenv("AGENT_RUNNER_CONFIG"); path != "" {
		return path
	}
	return "config.toml"
}

// Load reads, decodes and validates the config file at path and the
// files that its include patterns match.
//
// When the file has mistakes, Load returns an *Error that lists every
// problem it found, not just the first. A TOML syntax error stops decoding,
// so it is reported alone, or with the other syntax errors and the include
// problems when it is in an included file. Errors that are not about the
// file's content, such as a missing file, are returned wrapped instead.
//
// A valid file yields a Config even when some of its jobs or listeners
// cannot run on this machine. Those have Job.Problem or Listener.Problem
// set, and Config.Problems collects them.
func Load(path string) (*Config, error) {
	file, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve config path: %w", err)
	}
	data, err := readConfigFile(file)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	// go-toml's strict mode reports only unknown fields and stops at the
	// first type mismatch, so the file is decoded into plain maps and the
	// loader checks keys and types itself to report every problem at once.
	values, err := decodeDocument(data)
	if err != nil {
		return nil, decodeError(file, data, err)
	}
	lines := newSourceSet(file, data)
	l := &loader{
		reporter: reporter{lines: lines},
		file:     file,
		dir:      filepath.Dir(file),
		stats:    statCache{},
		warnings: reporter{lines: lines},
	}
	if err := l.include(values); err != nil {
		return nil, err
	}
	config := l.decode(values)
	config.Files = l.lines.names()
	config.Hash = hashFiles(l.lines.files)
	if err := l.err(); err != nil {
		// Report what would stop the decoded jobs on this machine too, so
		// one check lists every problem.
		l.checkJobs()
		return nil, withJobProblems(err, config.Jobs)
	}
	l.checkJobs()
	l.checkListeners()
	l.checkPostListeners(config.Listeners)
	l.checkAlerts(config.Runner.Path)
	// Jobs that share a [defaults] secret share its warning.
	config.Warnings = UniqueProblems(l.warnings.problems)
	return config, nil
}

// withJobProblems adds the machine problems of jobs to err, leaving out
// lines it already has, such as a [defaults] key that every job shares.
func withJobProblems(err error, jobs []*Job) error {
	var fileErr *Error
	if !errors.As(err, &fileErr) {
		return err
	}
	problems := fileErr.Problems
	for _, job := range jobs {
		var jobErr *Error
		if errors.As(job.Problem, &jobErr) {
			problems = append(problems, jobErr.Problems...)
		}
	}
	return &Error{Problems: UniqueProblems(problems)}
}

// UniqueProblems sorts problems by position and drops repeats, which
// arise when several jobs inherit one bad [defaults] value.
func UniqueProblems(problems []Problem) []Problem {
	seen := make(map[string]bool, len(problems))
	var out []Problem
	for _, p := range problems {
		if !seen[p.String()] {
			seen[p.String()] = true
			out = append(out, p)
		}
	}
	sortProblems(out)
	return out
}

// loader decodes a config file and the files it includes, and collects
// their problems.
type loader struct {
	reporter
	// file is the absolute path of the main config file.
	file string
	// dir is the folder of the main config file.
	dir string
	// jobs and listeners keep each decoded job and listener with its
	// settings for the checks that run once the whole file is valid.
	jobs      []jobPlan
	listeners []*listenerPlan
	alerts    []alertPlan
	stats     statCache
	// warnings collects the findings that check and doctor report
	// without failing.
	warnings reporter
}

var topLevelKeys = []string{"alerts", "cluster", "defaults", "include", "jobs", "listeners", "runner"}

func (l *loader) decode(values map[string]any) *Config {
	root := table{values: values}
	l.checkKeys(root, "at the top level", topLevelKeys, nil)
	config := &Config{Path: l.file, Dir: l.dir}
	config.Runner = l.decodeRunner(root)
	defaults := l.decodeDefaults(root)
	config.Jobs = l.decodeJobs(root, defaults, config.Runner)
	config.Listeners = l.decodeListeners(root, defaults, config.Runner, config.Jobs)
	config.Alerts = l.decodeAlerts(root)
	config.Cluster = l.decodeCluster(root)
	l.checkPostTargets(config.Jobs, config.Listeners)
	l.checkChains(config.Jobs)
	return config
}

// decodeError turns a go-toml error into an *Error with one problem. It
// rewrites go-toml's messages about keys and tables defined twice so that
// they name the line of the first definition.
func decodeError(file string, data []byte, err error) error {
	var decodeErr *toml.DecodeError
	if !errors.As(err, &decodeErr) {
		return fmt.Errorf("decode config %s: %w", file, err)
	}
	line, column := decodeErr.Position()
	problem := Problem{File: file, Line: line}
	message := strings.TrimPrefix(decodeErr.Error(), "toml: ")
	index := indexKeyLines(data)
	key := duplicateKey(index.fullPath(keyPath(decodeErr.Key()), line), message)
	first := index.firstLine(key)
	switch {
	case len(key) > 0 && strings.HasPrefix(message, "table ") && strings.Contains(message, "already exists"):
		problem.Key = key.String()
		problem.Message = fmt.Sprintf("duplicate table: [%s] is already defined %s, so merge the two into one table", key, earlier(first, line))
	case len(key) > 0 && (strings.Contains(message, "already") || strings.Contains(message, "should be")):
		problem.Key = key.String()
		problem.Message = fmt.Sprintf("duplicate key: it is already set %s, so remove one of them", earlier(first, line))
	default:
		problem.Column = column
		problem.Message = "TOML syntax error: " + message
		if fix := syntaxFix(message); fix != "" {
			problem.Message += ": " + fix
		}
	}
	return &Error{Problems: []Problem{problem}}
}

// syntaxFixes pairs the start of go-toml's syntax messages with what to
// write instead. go-toml's text is not an API, so a message that a new
// release words differently loses its fix, not its line and column.
var syntaxFixes = []struct{ prefix, fix string }{
	{"strings must be quoted", `put the value in double quotes, such as every = "15m"`},
	{"unexpected character", `put a text value in double quotes, such as name = "text"; numbers, true, false, [arrays] and {tables} go without`},
	{"basic strings cannot have new lines", `close the string on the same line, or write text of several lines between """ and """`},
	{"literal strings cannot have new lines", `close the string on the same line, or write text of several lines between ''' and '''`},
	{"multiline basic string not terminated", `end the text with """`},
	{"multiline literal string not terminated", `end the text with '''`},
	{"invalid escape character", `write a backslash in a "..." string as \\, or use a '...' string, which keeps backslashes as they are`},
	{"expected ']' to close table name", `end the table name with ], such as [jobs.digest]`},
	{"expected ',' or ']' after array value", `separate the items with commas and close the array with ], such as command = ["echo", "hi"]`},
	{"inline table is incomplete", `close the table with } on the same line, such as env = { NAME = "value" }`},
	{"expected newline but got", `put each key = value on a line of its own; a comment starts with #`},
	{"invalid character at start of key", `start the line with a key, such as name = "value"`},
	{"expected '=' after key", `give the key a value, such as name = "value"`},
	{"expected keyword", `write true or false in lower case, or put text in double quotes, such as name = "text"`},
}

// syntaxFix returns what to write instead for a go-toml syntax message,
// or "".
func syntaxFix(message string) string {
	for _, f := range syntaxFixes {
		if strings.HasPrefix(message, f.prefix) {
			return f.fix
		}
	}
	return ""
}

// duplicateKey cuts key after the part that go-toml names in message. For
// "x = 1" followed by "x.y = 2", go-toml reports the key x.y but the
// message "key x is already defined", and x is the key defined twice.
func duplicateKey(key keyPath, message string) keyPath {
	for n := len(key); n > 0; n-- {
		if strings.Contains(message, " "+key[n-1]+" ") {
			return key[:n]
		}
	}
	return key
}

// earlier describes where a key was first defined, relative to line.
func earlier(first, line int) string {
	if first > 0 && first < line {
		return fmt.Sprintf("on line %d", first)
	}
	return "earlier"
}
