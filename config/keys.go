package config

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyPath is a TOML key split into its parts, such as jobs, digest,
// timeout. A part of the form "[2]" selects an array entry.
type keyPath []string

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// String renders the path as a dotted TOML key, quoting the parts that are
// not bare keys and leaving out array entries.
func (k keyPath) String() string {
	parts := make([]string, 0, len(k))
	for _, part := range k {
		switch {
		case isEntry(part):
			continue
		case bareKey.MatchString(part):
			parts = append(parts, part)
		default:
			parts = append(parts, strconv.Quote(part))
		}
	}
	return strings.Join(parts, ".")
}

// child returns a new path one level below k.
func (k keyPath) child(part string) keyPath {
	return append(slices.Clip(k), part)
}

// entry returns the path of entry i of the array at k.
func (k keyPath) entry(i int) keyPath {
	return k.child("[" + strconv.Itoa(i) + "]")
}

func isEntry(part string) bool {
	return strings.HasPrefix(part, "[")
}

// keyLines maps every key path of a document to the line where it is first
// written. go-toml's decoder into a map keeps no positions, so the loader
// walks the document again with go-toml's unstable parser to find them.
type keyLines struct {
	lines map[string]int
	// headers marks paths whose line comes from a [table] header, which
	// wins over the line of a dotted key that only implied the table.
	headers map[string]bool
	// written lists every table header and key in document order, with
	// repeats, so that a key defined twice can be found by its line.
	written []writtenKey
	// lineStarts holds the byte offset at which each line begins.
	lineStarts []int
}

type writtenKey struct {
	path keyPath
	line int
}

// indexKeyLines parses data and records the line of every key. It stops
// silently at a syntax error, because the decoder reports those.
func indexKeyLines(data []byte) *keyLines {
	index := &keyLines{
		lines:      map[string]int{},
		headers:    map[string]bool{},
		lineStarts: lineStarts(data),
	}
	var parser unstable.Parser
	parser.Reset(data)
	var table keyPath
	for parser.NextExpression() {
		expr := parser.Expression()
		switch expr.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = index.addHeader(expr)
		case unstable.KeyValue:
			index.addKeyValue(table, expr)
		}
	}
	return index
}

func lineStarts(data []byte) []int {
	starts := []int{0}
	for i, c := range data {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// line returns the line of path, or of its nearest recorded parent, or 0
// when neither is written in the document.
func (k *keyLines) line(path keyPath) int {
	for n := len(path); n > 0; n-- {
		if line, ok := k.lines[pathID(path[:n])]; ok {
			return line
		}
	}
	return 0
}

func pathID(path keyPath) string {
	return strings.Join(path, "\x00")
}

// lineAt returns the 1-based line of a byte offset.
func (k *keyLines) lineAt(offset uint32) int {
	i, found := slices.BinarySearch(k.lineStarts, int(offset))
	if found {
		return i + 1
	}
	return i
}

func (k *keyLines) addHeader(expr *unstable.Node) keyPath {
	path, line := k.keyParts(expr.Key())
	k.written = append(k.written, writtenKey{path, line})
	k.addParents(path, line)
	id := pathID(path)
	if !k.headers[id] {
		k.lines[id] = line
		k.headers[id] = true
	}
	return path
}

func (k *keyLines) addKeyValue(table keyPath, kv *unstable.Node) {
	parts, line := k.keyParts(kv.Key())
	path := append(slices.Clip(table), parts...)
	k.written = append(k.written, writtenKey{path, line})
	k.addParents(path, line)
	k.addLine(path, line)
	k.addValue(path, kv.Value())
}

// addParents records line for the tables that path implies but that have
// no line yet.
func (k *keyLines) addParents(path keyPath, line int) {
	for n := 1; n < len(path); n++ {
		k.addLine(path[:n], line)
	}
}

func (k *keyLines) addLine(path keyPath, line int) {
	id := pathID(path)
	if _, ok := k.lines[id]; !ok {
		k.lines[id] = line
	}
}

// addValue records the keys of inline tables and the entries of arrays.
func (k *keyLines) addValue(path keyPath, value *unstable.Node) {
	switch value.Kind {
	case unstable.InlineTable:
		children := value.Children()
		for children.Next() {
			if child := children.Node(); child.Kind == unstable.KeyValue {
				k.addKeyValue(path, child)
			}
		}
	case unstable.Array:
		elements := value.Children()
		for i := 0; elements.Next(); i++ {
			element := elements.Node()
			entry := path.entry(i)
			// Nested arrays have no position of their own, so they take
			// the line of the key.
			if element.Raw.Length > 0 {
				k.addLine(entry, k.lineAt(element.Raw.Offset))
			}
			k.addValue(entry, element)
		}
	}
}

// keyParts returns the parts of a dotted key and the line of its first
// part.
func (k *keyLines) keyParts(key unstable.Iterator) (keyPath, int) {
	var path keyPath
	line := 0
	for key.Next() {
		node := key.Node()
		if line == 0 {
			line = k.lineAt(node.Raw.Offset)
		}
		path = append(path, string(node.Data))
	}
	return path, line
}

// fullPath returns the path of the key written on line that ends with
// suffix. go-toml reports a key defined twice by its parts below the
// current table, and the full path is needed to find the first definition.
func (k *keyLines) fullPath(suffix keyPath, line int) keyPath {
	for _, written := range k.written {
		n := len(written.path) - len(suffix)
		if written.line == line && n >= 0 && slices.Equal(written.path[n:], suffix) {
			return written.path
		}
	}
	return suffix
}

// firstLine returns the line where path is first written, either by itself
// or as the start of a longer dotted key, or 0 when it is not written.
func (k *keyLines) firstLine(path keyPath) int {
	for _, written := range k.written {
		if len(written.path) >= len(path) && slices.Equal(written.path[:len(path)], path) {
			return written.line
		}
	}
	return 0
}
