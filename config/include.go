package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// includeTables are the top-level tables that an included file may add
// entries to. Everything else applies to the whole runner and stays in
// the main file.
var includeTables = []string{"alerts", "jobs", "listeners"}

const includeExample = `["conf.d/*.toml"]`

// source is one loaded config file with the line of every key in it.
type source struct {
	file string
	// order is the file's position among the loaded files, the main file
	// first, so problems sort by file in load order.
	order int
	data  []byte
	// headers gives the line of each [table] header, which is all a
	// valid file needs: the line of each job, listener and alert.
	headers map[string]int
	// keys indexes every key, for problem messages. It is built on first
	// use, because for a file of 10,000 jobs it allocates about 17 MB.
	keys *keyLines
}

func newSource(file string, order int, data []byte) *source {
	return &source{file: file, order: order, data: data, headers: indexHeaders(data)}
}

// line returns the line of path in the file, or of its nearest written
// parent, or 0 when neither is written.
func (src *source) line(path keyPath) int {
	if line, ok := src.headers[pathID(path)]; ok {
		return line
	}
	if src.keys == nil {
		src.keys = indexKeyLines(src.data)
	}
	return src.keys.line(path)
}

// sourceSet is the main config file and the files it includes. It finds
// the file and line of a key path: an [alerts.NAME], [jobs.NAME] or
// [listeners.NAME] table and everything in it belongs to the file that
// defines it, and every other key to the main file.
type sourceSet struct {
	files []*source
	// owners maps the pathID of each table that an included file defines
	// to that file.
	owners map[string]*source
}

func newSourceSet(file string, data []byte) *sourceSet {
	main := newSource(file, 0, data)
	return &sourceSet{files: []*source{main}, owners: map[string]*source{}}
}

// add records an included file.
func (s *sourceSet) add(file string, data []byte) *source {
	src := newSource(file, len(s.files), data)
	s.files = append(s.files, src)
	return src
}

// only returns a set in which every key belongs to src, for reporting
// problems in an included file's own top level.
func (src *source) only() *sourceSet {
	return &sourceSet{files: []*source{src}, owners: map[string]*source{}}
}

// locate returns the file that path is written in.
func (s *sourceSet) locate(path keyPath) *source {
	if len(path) >= 2 {
		if src, ok := s.owners[pathID(path[:2])]; ok {
			return src
		}
	}
	return s.files[0]
}

// line returns the line of path in the file that it is written in.
func (s *sourceSet) line(path keyPath) int {
	return s.locate(path).line(path)
}

// where formats the position of path for a message about the key at
// from: "on line N" in the same file, else "in FILE on line N".
func (s *sourceSet) where(path, from keyPath) string {
	src := s.locate(path)
	if src == s.locate(from) {
		return fmt.Sprintf("on line %d", src.line(path))
	}
	return fmt.Sprintf("in %s on line %d", src.file, src.line(path))
}

// names returns the paths of the loaded files, the main file first.
func (s *sourceSet) names() []string {
	names := make([]string, len(s.files))
	for i, src := range s.files {
		names[i] = src.file
	}
	return names
}

// hashFiles returns the SHA-256 in hex that identifies the content of every
// file in set. A config without includes hashes to the SHA-256 of its
// file alone, as sha256sum prints it.
func hashFiles(set []*source) string {
	if len(set) == 1 {
		sum := sha256.Sum256(set[0].data)
		return hex.EncodeToString(sum[:])
	}
	h := sha256.New()
	for _, src := range set {
		// The name and length frame each file, so moving a table from one
		// file to another changes the hash.
		fmt.Fprintf(h, "%s\x00%d\x00", src.file, len(src.data))
		h.Write(src.data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Fingerprint returns the hash that Load would give the config at path
// and the files it includes now, without validating them. The watcher
// compares it with the loaded Config.Hash to notice an edited, added or
// removed file.
func Fingerprint(path string) (string, error) {
	file, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolve config path: %w", err)
	}
	data, err := readConfigFile(file)
	if err != nil {
		return "", fmt.Errorf("read config: %w", err)
	}
	set := []*source{{file: file, data: data}}
	var head struct {
		Include []string `toml:"include"`
	}
	// include is a top-level key, so only the lines before the first
	// table header are decoded: go-toml checks each table header against
	// every earlier one of its parent, which for thousands of jobs would
	// cost watch = true most of a second at each check. A head that does
	// not decode cannot load either, so the main file's own bytes are
	// then enough to tell whether it changed.
	if toml.Unmarshal(documentHead(data), &head) != nil {
		return hashFiles(set), nil
	}
	matches, _, folders := includedFiles(file, head.Include)
	for _, folder := range folders {
		// The error replaces the files that the folder hides, so
		// that a folder that becomes unreadable counts as a change.
		set = append(set, &source{file: folder.dir, data: []byte("unreadable folder: " + folder.err.Error())})
	}
	for _, match := range matches {
		data, err := readConfigFile(match.file)
		if err != nil {
			// The error replaces the content, so that a new file the
			// loader will reject, such as a FIFO, still counts as a change.
			data = []byte("unreadable: " + err.Error())
		}
		set = append(set, &source{file: match.file, data: data})
	}
	return hashFiles(set), nil
}

// documentHead returns the part of a TOML document before its first
// table header: the top-level keys. It returns the whole document when
// it has no header, or a syntax error comes first.
func documentHead(data []byte) []byte {
	var parser unstable.Parser
	parser.Reset(data)
	for parser.NextExpression() {
		expr := parser.Expression()
		if expr.Kind != unstable.Table && expr.Kind != unstable.ArrayTable {
			continue
		}
		key := expr.Key()
		if !key.Next() {
			break
		}
		// A header sits on a line of its own, so the document up to
		// that line's start holds only complete expressions.
		offset := int(key.Node().Raw.Offset)
		return data[:bytes.LastIndexByte(data[:offset], '\n')+1]
	}
	return data
}

// includeMatch is a file that an include pattern matches.
type includeMatch struct {
	file string
	// entry is the index of the pattern in the include array.
	entry int
}

// folderError is a folder that an include pattern has to list but that
// cannot be read.
type folderError struct {
	// entry is the index of the pattern in the include array.
	entry int
	dir   string
	err   error
}

// includedFiles expands the include patterns of the main file: each
// pattern relative to the main file's folder, its matches in lexical
// order, patterns in the order written. A file matched twice, the main
// file, folders, hidden files and editor backups are left out. It returns
// the index of each pattern that filepath.Glob rejects, and the folders
// that a pattern has to list but cannot read.
func includedFiles(mainFile string, patterns []string) ([]includeMatch, []int, []folderError) {
	dir := filepath.Dir(mainFile)
	seen := map[string]bool{mainFile: true}
	var matches []includeMatch
	var bad []int
	var folders []folderError
	for i, pattern := range patterns {
		if pattern == "" {
			continue
		}
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(dir, pattern)
		}
		files, err := filepath.Glob(pattern)
		if err != nil {
			bad = append(bad, i)
			continue
		}
		if folder, err := unreadableFolder(pattern); err != nil {
			folders = append(folders, folderError{entry: i, dir: folder, err: err})
		}
		slices.Sort(files)
		for _, file := range files {
			if seen[file] || hiddenFromPattern(filepath.Base(pattern), filepath.Base(file)) {
				continue
			}
			seen[file] = true
			if info, err := os.Stat(file); err == nil && info.IsDir() {
				continue
			}
			matches = append(matches, includeMatch{file: file, entry: i})
		}
	}
	return matches, bad, folders
}

// unreadableFolder returns a folder that filepath.Glob has to read for
// pattern but cannot, with the error. Glob skips such a folder as if it
// were empty, so a conf.d that lost its read permission would silently
// drop every job in it. A folder that does not exist is no error, since
// a pattern may match nothing.
func unreadableFolder(pattern string) (string, error) {
	if !hasGlobMeta(pattern) {
		// Glob only checks that the file exists.
		_, err := os.Lstat(pattern)
		return pattern, missingIsNil(err)
	}
	dir := filepath.Dir(pattern)
	folders := []string{dir}
	if hasGlobMeta(dir) {
		if folder, err := unreadableFolder(dir); err != nil {
			return folder, err
		}
		folders, _ = filepath.Glob(dir)
	}
	for _, folder := range folders {
		if err := openFolder(folder); err != nil {
			return folder, err
		}
	}
	return "", nil
}

// openFolder opens folder as filepath.Glob does to list it, and returns
// the error Glob ignores. A path that is missing or no folder returns nil,
// because Glob then rightly matches nothing in it.
func openFolder(folder string) error {
	info, err := os.Stat(folder)
	if err != nil {
		return missingIsNil(err)
	}
	if !info.IsDir() {
		return nil
	}
	file, err := os.Open(folder)
	if err != nil {
		return err
	}
	return file.Close()
}

// missingIsNil returns err unless err reports that the path does not exist.
func missingIsNil(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	return err
}

// hasGlobMeta reports whether path contains a character that
// filepath.Match treats specially on Unix.
func hasGlobMeta(path string) bool {
	return strings.ContainsAny(path, `*?[\`)
}

// hiddenFromPattern reports whether name, the last element of a match,
// is a file that the pattern's last element did not ask for by name. Like
// a shell glob, and unlike filepath.Glob, a wildcard does not match a
// leading dot, so Emacs lock links (.#x.toml) and hidden copies stay out
// unless the pattern starts with a dot. Backups ending in "~" stay out
// unless the pattern ends with "~".
func hiddenFromPattern(pattern, name string) bool {
	if strings.HasPrefix(name, ".") && !strings.HasPrefix(pattern, ".") {
		return true
	}
	return strings.HasSuffix(name, "~") && !strings.HasSuffix(pattern, "~")
}

// include reads the files that the include key of the main file names
// and merges their tables into root, the decoded main file. It returns
// an *Error when an included file is not valid TOML, since the tables
// of that file are then unknown.
func (l *loader) include(root map[string]any) error {
	t := table{values: root}
	patterns, ok := l.stringList(t, "include", includeExample)
	if !ok {
		return nil
	}
	key := t.key("include")
	for i, pattern := range patterns {
		if pattern == "" {
			l.reportEntry(key, i, "entry %d is empty: write a glob pattern such as %q or remove the entry",
				i+1, "conf.d/*.toml")
		}
	}
	matches, bad, folders := includedFiles(l.file, patterns)
	for _, i := range bad {
		l.reportEntry(key, i, "invalid glob pattern %q: %v: write a pattern such as %q",
			patterns[i], filepath.ErrBadPattern, "conf.d/*.toml")
	}
	for _, folder := range folders {
		l.reportEntry(key, folder.entry, "read included folder: %v: make it readable for the runner or change the pattern",
			unwrapPathError(folder.err))
	}
	var syntax []Problem
	for _, match := range matches {
		data, err := readConfigFile(match.file)
		if err != nil {
			l.reportEntry(key, match.entry, "read included file: %v: %s", unwrapPathError(err), includeReadFix(err))
			continue
		}
		values, err := decodeDocument(data)
		if err != nil {
			syntax = append(syntax, l.includeSyntaxError(match.file, data, err)...)
			continue
		}
		l.merge(root, l.lines.add(match.file, data), values)
	}
	if len(syntax) > 0 {
		return &Error{Problems: UniqueProblems(append(l.problems, syntax...))}
	}
	return nil
}

// includeReadFix returns the fix for an included file that cannot be read.
func includeReadFix(err error) string {
	switch {
	case errors.Is(err, errNotRegular):
		return "remove it from the folder or change the pattern, because an included file must be a regular file"
	case errors.Is(err, errTooLarge):
		return "split it into smaller files"
	default:
		return "make it readable for the runner or change the pattern"
	}
}

// unwrapPathError keeps the path and reason of a *fs.PathError without
// the operation, which reads as "open" for a failed read.
func unwrapPathError(err error) error {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return fmt.Errorf("%s: %w", pathErr.Path, pathErr.Err)
	}
	return err
}

// includeSyntaxError returns the problems of an included file that go-toml
// cannot decode, ordered after the main file's.
func (l *loader) includeSyntaxError(file string, data []byte, err error) []Problem {
	order := len(l.lines.files)
	decodeErr := decodeError(file, data, err)
	fileErr, ok := decodeErr.(*Error)
	if !ok {
		return []Problem{{File: file, Message: decodeErr.Error(), order: order}}
	}
	for i := range fileErr.Problems {
		fileErr.Problems[i].order = order
	}
	return fileErr.Problems
}

// merge checks the top level of an included file and adds its alerts,
// jobs and listeners to root. A name that an earlier file defines is
// reported and the later table is left out.
func (l *loader) merge(root map[string]any, src *source, values map[string]any) {
	checks := reporter{lines: src.only()}
	top := table{values: values}
	checks.checkKeys(top, "in an included file", includeTables, l.mainOnlyKeys())
	for _, name := range includeTables {
		added, ok := checks.subTable(top, name, "["+name+".NAME]")
		if !ok {
			continue
		}
		into, ok := root[name].(map[string]any)
		if _, set := root[name]; set && !ok {
			// The main file's own value is not a table, which decoding
			// reports.
			continue
		}
		if into == nil {
			into = map[string]any{}
			root[name] = into
		}
		for _, entry := range added.names() {
			l.mergeEntry(&checks, into, src, added.key(entry), added.values[entry])
		}
	}
	l.problems = append(l.problems, checks.problems...)
}

func (l *loader) mergeEntry(checks *reporter, into map[string]any, src *source, path keyPath, value any) {
	name := path[1]
	if _, defined := into[name]; defined {
		first := l.lines.locate(path)
		checks.report(path, "%s %q is already defined in %s on line %d: rename one of them or remove one",
			entryKind(path[0]), name, first.file, first.line(path))
		return
	}
	into[name] = value
	l.lines.owners[pathID(path)] = src
}

func entryKind(table string) string {
	switch table {
	case "jobs":
		return "job"
	case "listeners":
		return "listener"
	default:
		return "alert sink"
	}
}

// mainOnlyKeys explains, for each top-level key that only the main file
// may set, why an included file must not.
func (l *loader) mainOnlyKeys() map[string]string {
	reasons := map[string]string{}
	for _, key := range topLevelKeys {
		if slices.Contains(includeTables, key) {
			continue
		}
		reasons[key] = fmt.Sprintf(
			"[%s] applies to the whole runner, so only the main config file %s may set it: move it there", key, l.file)
	}
	reasons["defaults"] = fmt.Sprintf(
		"[defaults] applies to the jobs of every file, so only the main config file %s may set it: move it there", l.file)
	reasons["include"] = fmt.Sprintf(
		"an included file cannot include more files: add the pattern to include in the main config file %s", l.file)
	return reasons
}
