package config

import (
	"bytes"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// sectionBatch is how many table sections one call of go-toml decodes
// when a document is decoded in parts.
const sectionBatch = 256

// decodeDocument decodes a TOML document into plain maps, as
// toml.Unmarshal into a map does, with the same errors.
//
// go-toml v2.4.3 checks each table header against every earlier child
// of its parent, so a document with thousands of [jobs.NAME] tables
// decodes in time that grows with the square of the jobs: 72% of loading
// 10,000 jobs. A document with more headers than two batches is decoded
// a batch of sections at a time, and the parts are merged where the
// paths that the headers and keys name prove that TOML allows it.
// Anything else, including every error, falls back to one decode of the
// whole document, so go-toml itself decides those.
func decodeDocument(data []byte) (map[string]any, error) {
	return decodeSections(data, sectionBatch)
}

func decodeSections(data []byte, batch int) (map[string]any, error) {
	if doc := scanDocument(data); len(doc.headers) > 2*batch {
		if values, ok := doc.decodeInParts(batch); ok {
			return values, nil
		}
	}
	var values map[string]any
	err := toml.Unmarshal(data, &values)
	return values, err
}

// Paths are compared by an FNV-1a hash of their parts, so the scan keeps
// no strings. Two paths with the same hash can only make a merge look
// unsafe, which sends the document to the whole decode.
const (
	rootHash  uint64 = 14695981039346656037
	hashPrime uint64 = 1099511628211
)

// childHash returns the hash of the path of hash extended by part.
func childHash[T string | []byte](hash uint64, part T) uint64 {
	for i := 0; i < len(part); i++ {
		hash = (hash ^ uint64(part[i])) * hashPrime
	}
	// The length ends the part, so that a.bc and ab.c differ.
	return (hash ^ uint64(len(part)) ^ 0xff00) * hashPrime
}

// How a part of a document names a path.
const (
	// pathOpened: a header's path or a prefix of it.
	pathOpened uint8 = 1 << iota
	// pathTable and pathArray: a [table] or an [[array]] header's path.
	pathTable
	pathArray
	// pathDefined: the path of a key, or a table along a dotted key.
	pathDefined
)

// document is a TOML document with the paths that its headers and keys
// name, in the order written.
type document struct {
	data    []byte
	headers []header
	// paths holds the hash and kind of each path that a section names,
	// the section before the first header first, then each header's.
	paths []namedPath
	// rootPaths is how many of paths belong to the section before the
	// first header.
	rootPaths int
}

// header is a [table] or [[array]] header.
type header struct {
	// start is the offset of the line that holds the header.
	start int
	// pathsEnd is the index in document.paths after the last path of the
	// header and its section. Those paths start at the previous pathsEnd.
	pathsEnd int
}

type namedPath struct {
	hash uint64
	kind uint8
}

// scanDocument finds the headers of data and the paths that each section
// names. It returns no headers when data has a syntax error.
func scanDocument(data []byte) document {
	doc := document{data: data}
	var parser unstable.Parser
	parser.Reset(data)
	table := rootHash
	for parser.NextExpression() {
		expr := parser.Expression()
		switch expr.Kind {
		case unstable.Table, unstable.ArrayTable:
			doc.close(len(doc.paths))
			h, hash := header{start: -1}, rootHash
			key := expr.Key()
			for key.Next() {
				node := key.Node()
				if h.start < 0 {
					// A header sits on a line of its own, so the
					// document up to that line's start holds only
					// whole expressions.
					h.start = bytes.LastIndexByte(data[:node.Raw.Offset], '\n') + 1
				}
				hash = childHash(hash, node.Data)
				doc.paths = append(doc.paths, namedPath{hash, pathOpened})
			}
			last := &doc.paths[len(doc.paths)-1]
			if expr.Kind == unstable.ArrayTable {
				last.kind |= pathArray
			} else {
				last.kind |= pathTable
			}
			doc.headers = append(doc.headers, h)
			table = hash
		case unstable.KeyValue:
			hash := table
			key := expr.Key()
			for key.Next() {
				hash = childHash(hash, key.Node().Data)
				doc.paths = append(doc.paths, namedPath{hash, pathDefined})
			}
		}
	}
	if parser.Error() != nil {
		return document{data: data}
	}
	doc.close(len(doc.paths))
	return doc
}

// close ends the section of the last header, or the one before the
// first header, at end in paths.
func (d *document) close(end int) {
	if len(d.headers) == 0 {
		d.rootPaths = end
		return
	}
	d.headers[len(d.headers)-1].pathsEnd = end
}

// decodeInParts decodes the document a batch of headers at a time and
// merges the parts. It reports false when a part does not decode on its
// own or a merge is not proven to match the decode of the whole
// document.
func (d document) decodeInParts(batch int) (map[string]any, bool) {
	var root map[string]any
	earlier := make(map[uint64]uint8, len(d.paths))
	current := make(map[uint64]uint8)
	addPaths(earlier, d.paths[:d.rootPaths])
	for first := 0; first < len(d.headers); first += batch {
		last := min(first+batch, len(d.headers))
		start, end := d.headers[first].start, len(d.data)
		pathsStart := d.rootPaths
		if first == 0 {
			start = 0
		} else {
			pathsStart = d.headers[first-1].pathsEnd
		}
		if last < len(d.headers) {
			end = d.headers[last].start
		}
		var values map[string]any
		if toml.Unmarshal(d.data[start:end], &values) != nil {
			return nil, false
		}
		clear(current)
		addPaths(current, d.paths[pathsStart:d.headers[last-1].pathsEnd])
		if root == nil {
			root = values
		} else {
			m := partMerge{earlier: earlier, current: current}
			if m.conflicts() || !m.merge(root, values, rootHash, false) {
				return nil, false
			}
		}
		for hash, kind := range current {
			earlier[hash] |= kind
		}
	}
	return root, true
}

func addPaths(to map[uint64]uint8, paths []namedPath) {
	for _, p := range paths {
		to[p.hash] |= p.kind
	}
}

// partMerge merges the part of a document that the current headers
// open into the parts before it. Both map a path's hash to how the
// parts name it.
type partMerge struct {
	earlier, current map[uint64]uint8
}

// conflicts reports whether the current part touches what TOML might
// forbid it to touch. That is a table that an earlier part defined with a
// header or a key, a header inside a table or value that an earlier key
// defined, or a key inside a table that an earlier part opened or
// defined. Some of these are valid TOML, such as a header below a table
// of dotted keys; the whole decode decides them too.
func (m partMerge) conflicts() bool {
	for hash, kind := range m.current {
		before := m.earlier[hash]
		switch {
		case kind&pathTable != 0 && before&(pathTable|pathArray) != 0,
			kind&pathArray != 0 && before&pathTable != 0,
			kind&pathOpened != 0 && before&pathDefined != 0,
			kind&pathDefined != 0 && before != 0:
			return true
		}
	}
	return false
}

// merge adds src, the current part's table at the path of hash, to dst,
// the same table of the earlier parts. Once conflicts found none, a key
// in both is a table that headers of both parts opened, or an array of
// tables that both extend. Within an element of an array of tables, any
// key in both is refused, because the paths do not tell the elements
// apart.
func (m partMerge) merge(dst, src map[string]any, hash uint64, inArray bool) bool {
	for key, value := range src {
		old, ok := dst[key]
		if !ok {
			dst[key] = value
			continue
		}
		if inArray || !m.mergeValue(dst, key, old, value, childHash(hash, key)) {
			return false
		}
	}
	return true
}

func (m partMerge) mergeValue(dst map[string]any, key string, old, value any, hash uint64) bool {
	before, now := m.earlier[hash], m.current[hash]
	if before&pathOpened == 0 || now&pathOpened == 0 {
		return false
	}
	switch old := old.(type) {
	case map[string]any:
		table, ok := value.(map[string]any)
		return ok && m.merge(old, table, hash, false)
	case []any:
		if before&pathArray == 0 || len(old) == 0 {
			return false
		}
		switch value := value.(type) {
		case []any:
			if now&pathArray == 0 {
				return false
			}
			dst[key] = append(old, value...)
			return true
		case map[string]any:
			// A header below an array of tables adds to its last element.
			last, ok := old[len(old)-1].(map[string]any)
			return ok && m.merge(last, value, hash, true)
		}
	}
	return false
}
