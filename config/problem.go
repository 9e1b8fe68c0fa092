package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one mistake in a config file, located precisely enough for an
// editor to jump to it.
type Problem struct {
	// File is the absolute path of the config file.
	File string
	// Line is the 1-based line of the offending key, or of the table header
	// when a key is missing. It is 0 when nothing in the file causes the
	// problem, such as a default socket path that is too long.
	Line int
	// Column is the 1-based column of a TOML syntax error, and 0 otherwise.
	Column int
	// Key is the dotted key path, such as "jobs.digest.timeout", or "" for
	// a syntax error.
	Key string
	// Message states what is wrong and how to fix it.
	Message string
	// order is the position of File among the loaded files, the main
	// file first, so that problems sort by file in load order.
	order int
}

// String renders the problem as FILE:LINE: KEY: MESSAGE, the form compilers
// use, leaving out the parts that are unset.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	if p.Column > 0 {
		fmt.Fprintf(&b, ":%d", p.Column)
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error is the list of problems found in a config file and the files it
// includes, or in one job that cannot run on this machine.
type Error struct {
	Problems []Problem
}

// Error renders one problem per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sortProblems orders problems as they appear in the files, so the list
// reads from top to bottom whatever order the checks ran in.
func sortProblems(problems []Problem) {
	slices.SortStableFunc(problems, func(a, b Problem) int {
		return cmp.Or(
			cmp.Compare(a.order, b.order),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
			cmp.Compare(a.Key, b.Key),
			cmp.Compare(a.Message, b.Message),
		)
	})
}

// reporter collects problems in the config files.
type reporter struct {
	// lines finds the file and line that a key path is written at.
	lines    *sourceSet
	problems []Problem
}

// report adds a problem at the line where path is written.
func (r *reporter) report(path keyPath, format string, args ...any) {
	src := r.lines.locate(path)
	r.add(src, src.line(path), path, format, args...)
}

// reportEntry adds a problem about entry i of the array at path, on the
// line of that entry.
func (r *reporter) reportEntry(path keyPath, i int, format string, args ...any) {
	src := r.lines.locate(path)
	r.add(src, src.line(path.entry(i)), path, format, args...)
}

func (r *reporter) add(src *source, line int, path keyPath, format string, args ...any) {
	r.problems = append(r.problems, Problem{
		File:    src.file,
		Line:    line,
		Key:     path.String(),
		Message: fmt.Sprintf(format, args...),
		order:   src.order,
	})
}

// checks returns a new reporter for the machine checks of one job,
// listener or alert sink, which locates keys like r.
func (r *reporter) checks() reporter {
	return reporter{lines: r.lines}
}

// err returns the collected problems as an *Error, or nil when there are
// none.
func (r *reporter) err() error {
	if len(r.problems) == 0 {
		return nil
	}
	sortProblems(r.problems)
	return &Error{Problems: r.problems}
}
