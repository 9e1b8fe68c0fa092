package config

import (
	"bytes"
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
//
// The paths form a tree with one node per distinct path. Each node stores
// only its last part, so the index grows linearly with the document: a
// table header with 50,000 dotted parts is 50,000 nodes, not the 1.25
// billion parts of all its prefixes.
type keyLines struct {
	// nodes[0] is the root, the empty path.
	nodes    []keyNode
	children map[keyEdge]int
	// written lists every table header and key in document order, with
	// repeats, so that a key defined twice can be found by its line.
	written []writtenKey
	// lineStarts holds the byte offset at which each line begins.
	lineStarts []int
}

// keyNode is one key path in keyLines.
type keyNode struct {
	parent int
	part   string
	depth  int
	// line is the line the path is written on, or 0 when none is recorded.
	line int
	// header marks a line from a [table] header, which wins over the
	// line of a dotted key that only implied the table.
	header bool
	// first is the line of the first written key that starts with the
	// path, or 0 for an array entry that no key reaches.
	first int
}

// keyEdge leads from the node parent to its child named part.
type keyEdge struct {
	parent int
	part   string
}

type writtenKey struct {
	node int
	line int
}

// indexKeyLines parses data and records the line of every key. It stops
// silently at a syntax error, because the decoder reports those.
func indexKeyLines(data []byte) *keyLines {
	index := &keyLines{
		nodes:      []keyNode{{}},
		children:   map[keyEdge]int{},
		lineStarts: lineStarts(data),
	}
	var parser unstable.Parser
	parser.Reset(data)
	table := 0
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

// indexHeaders returns the line of every [table] and [[array]] header,
// by the pathID of its key, the first one where a key has several. It
// counts lines as it goes, so it keeps no table of line starts. It stops
// silently at a syntax error, because the decoder reports those.
func indexHeaders(data []byte) map[string]int {
	headers := map[string]int{}
	var parser unstable.Parser
	parser.Reset(data)
	line, counted := 1, 0
	for parser.NextExpression() {
		expr := parser.Expression()
		if expr.Kind != unstable.Table && expr.Kind != unstable.ArrayTable {
			continue
		}
		var parts []string
		key := expr.Key()
		for key.Next() {
			node := key.Node()
			if parts == nil {
				offset := int(node.Raw.Offset)
				line += bytes.Count(data[counted:offset], []byte{'\n'})
				counted = offset
			}
			parts = append(parts, string(node.Data))
		}
		id := pathID(parts)
		if _, ok := headers[id]; !ok {
			headers[id] = line
		}
	}
	return headers
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
	line, node := 0, 0
	for _, part := range path {
		child, ok := k.children[keyEdge{node, part}]
		if !ok {
			break
		}
		node = child
		if k.nodes[node].line > 0 {
			line = k.nodes[node].line
		}
	}
	return line
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

// child returns the node of part below parent, adding it with first as
// the line of its first key when it is new.
func (k *keyLines) child(parent int, part string, first int) int {
	edge := keyEdge{parent, part}
	if node, ok := k.children[edge]; ok {
		return node
	}
	k.nodes = append(k.nodes, keyNode{parent: parent, part: part, depth: k.nodes[parent].depth + 1, first: first})
	node := len(k.nodes) - 1
	k.children[edge] = node
	return node
}

// addPath adds the parts below the node from and records line for each
// node on the way that has no line yet, the last one included. It returns
// the last node.
func (k *keyLines) addPath(from int, parts []string, line int) int {
	node := from
	for _, part := range parts {
		node = k.child(node, part, line)
		if k.nodes[node].line == 0 {
			k.nodes[node].line = line
		}
	}
	return node
}

func (k *keyLines) addHeader(expr *unstable.Node) int {
	parts, line := k.keyParts(expr.Key())
	node := k.addPath(0, parts, line)
	k.written = append(k.written, writtenKey{node, line})
	if !k.nodes[node].header {
		k.nodes[node].line = line
		k.nodes[node].header = true
	}
	return node
}

func (k *keyLines) addKeyValue(table int, kv *unstable.Node) {
	parts, line := k.keyParts(kv.Key())
	node := k.addPath(table, parts, line)
	k.written = append(k.written, writtenKey{node, line})
	k.addValue(node, kv.Value())
}

// addValue records the keys of inline tables and the entries of arrays.
func (k *keyLines) addValue(node int, value *unstable.Node) {
	switch value.Kind {
	case unstable.InlineTable:
		children := value.Children()
		for children.Next() {
			if child := children.Node(); child.Kind == unstable.KeyValue {
				k.addKeyValue(node, child)
			}
		}
	case unstable.Array:
		elements := value.Children()
		for i := 0; elements.Next(); i++ {
			element := elements.Node()
			entry := k.child(node, "["+strconv.Itoa(i)+"]", 0)
			// Nested arrays have no position of their own, so they take
			// the line of the key.
			if element.Raw.Length > 0 && k.nodes[entry].line == 0 {
				k.nodes[entry].line = k.lineAt(element.Raw.Offset)
			}
			k.addValue(entry, element)
		}
	}
}

// keyParts returns the parts of a dotted key and the line of its first
// part.
func (k *keyLines) keyParts(key unstable.Iterator) ([]string, int) {
	var parts []string
	line := 0
	for key.Next() {
		node := key.Node()
		if line == 0 {
			line = k.lineAt(node.Raw.Offset)
		}
		parts = append(parts, string(node.Data))
	}
	return parts, line
}

// path returns the key path of node.
func (k *keyLines) path(node int) keyPath {
	path := make(keyPath, k.nodes[node].depth)
	for i := len(path) - 1; i >= 0; i-- {
		path[i] = k.nodes[node].part
		node = k.nodes[node].parent
	}
	return path
}

// endsWith reports whether the path of node ends with suffix.
func (k *keyLines) endsWith(node int, suffix keyPath) bool {
	if k.nodes[node].depth < len(suffix) {
		return false
	}
	for i := len(suffix) - 1; i >= 0; i-- {
		if k.nodes[node].part != suffix[i] {
			return false
		}
		node = k.nodes[node].parent
	}
	return true
}

// fullPath returns the path of the key written on line that ends with
// suffix. go-toml reports a key defined twice by its parts below the
// current table, and the full path is needed to find the first definition.
func (k *keyLines) fullPath(suffix keyPath, line int) keyPath {
	for _, written := range k.written {
		if written.line == line && k.endsWith(written.node, suffix) {
			return k.path(written.node)
		}
	}
	return suffix
}

// firstLine returns the line where path is first written, either by itself
// or as the start of a longer dotted key, or 0 when it is not written.
func (k *keyLines) firstLine(path keyPath) int {
	node := 0
	for _, part := range path {
		child, ok := k.children[keyEdge{node, part}]
		if !ok {
			return 0
		}
		node = child
	}
	if node == 0 {
		return 0
	}
	return k.nodes[node].first
}
