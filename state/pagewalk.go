package state

import (
	"encoding/binary"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

// The parts of bbolt's file format that walkPages reads, as bbolt v1.5.0
// lays them out (internal/common): a page starts with a 16-byte header,
// and every element of a branch or leaf page is 16 bytes long.
const (
	pageHeaderSize   = 16
	pageElementSize  = 16
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	bucketLeafFlag   = 0x01
	bucketHeaderSize = 16
	// maxTreeDepth is far deeper than any real tree: bbolt keeps at
	// least two keys on a page, so a depth of 64 would take 2^64 pages.
	maxTreeDepth = 64
)

// walkPages follows every page reference of the transaction's tree,
// reading the file itself, and returns ErrCorrupt for a reference that
// bbolt's cursors and tx.Check would follow without end. Take a damaged
// branch page that points back up the tree. A cursor descends from it
// forever, growing its stack until the kernel kills the process for want
// of memory. tx.Check recurses on it until the goroutine's stack
// overflows, which no recover catches. walkPages visits each page once,
// so it ends on any file.
func walkPages(db *bolt.DB, tx *bolt.Tx) error {
	f, err := os.Open(db.Path())
	if err != nil {
		return fmt.Errorf("check file: %w", err)
	}
	defer f.Close()
	w := &pageWalker{file: f, pageSize: db.Info().PageSize, seen: make(map[uint64]bool)}
	root, err := w.meta(uint64(tx.ID()))
	if err != nil {
		return err
	}
	return w.page(root, 0)
}

type pageWalker struct {
	file     *os.File
	pageSize int
	// highWater is the first page number past the tree's pages.
	highWater uint64
	seen      map[uint64]bool
	// bufs holds a page buffer per depth, which the pages at that depth
	// share, since a page's buffer is in use only until its children
	// are walked.
	bufs [][]byte
}

// buffer returns the buffer of depth, of size bytes.
func (w *pageWalker) buffer(depth, size int) []byte {
	for len(w.bufs) <= depth {
		w.bufs = append(w.bufs, nil)
	}
	if cap(w.bufs[depth]) < size {
		w.bufs[depth] = make([]byte, size)
	}
	return w.bufs[depth][:size]
}

// meta reads the meta page of transaction txid and returns the root
// bucket's page.
func (w *pageWalker) meta(txid uint64) (uint64, error) {
	buf := make([]byte, w.pageSize)
	for id := range int64(2) {
		if _, err := w.file.ReadAt(buf, id*int64(w.pageSize)); err != nil {
			return 0, fmt.Errorf("%w: read meta page %d: %w", ErrCorrupt, id, err)
		}
		m := buf[pageHeaderSize:]
		if binary.LittleEndian.Uint64(m[48:]) != txid {
			continue
		}
		w.highWater = binary.LittleEndian.Uint64(m[40:])
		return binary.LittleEndian.Uint64(m[16:]), nil
	}
	return 0, fmt.Errorf("%w: no meta page has transaction %d", ErrCorrupt, txid)
}

// page checks page id and every page below it.
func (w *pageWalker) page(id uint64, depth int) error {
	if id < 2 || id >= w.highWater {
		return fmt.Errorf("%w: page %d is out of bounds (%d pages)", ErrCorrupt, id, w.highWater)
	}
	if w.seen[id] {
		return fmt.Errorf("%w: page %d has more than one reference", ErrCorrupt, id)
	}
	if depth > maxTreeDepth {
		return fmt.Errorf("%w: page %d is deeper than %d levels", ErrCorrupt, id, maxTreeDepth)
	}
	w.seen[id] = true
	buf := w.buffer(depth, w.pageSize)
	if _, err := w.file.ReadAt(buf, int64(id)*int64(w.pageSize)); err != nil {
		return fmt.Errorf("%w: read page %d: %w", ErrCorrupt, id, err)
	}
	if got := binary.LittleEndian.Uint64(buf); got != id {
		return fmt.Errorf("%w: page %d has the header of page %d", ErrCorrupt, id, got)
	}
	overflow := binary.LittleEndian.Uint32(buf[12:])
	if uint64(overflow) >= w.highWater-id {
		return fmt.Errorf("%w: page %d overflows past the last page", ErrCorrupt, id)
	}
	if overflow > 0 {
		buf = w.buffer(depth, int(overflow+1)*w.pageSize)
		if _, err := w.file.ReadAt(buf, int64(id)*int64(w.pageSize)); err != nil {
			return fmt.Errorf("%w: read page %d: %w", ErrCorrupt, id, err)
		}
	}
	return w.elements(id, buf, depth)
}

// elements follows the references of the page in buf: a branch page's
// children, and the root pages of a leaf page's buckets, also those of
// buckets stored inline.
func (w *pageWalker) elements(id uint64, buf []byte, depth int) error {
	flags := binary.LittleEndian.Uint16(buf[8:])
	count := int(binary.LittleEndian.Uint16(buf[10:]))
	if flags&(branchPageFlag|leafPageFlag) == 0 {
		return nil
	}
	if pageHeaderSize+count*pageElementSize > len(buf) {
		return fmt.Errorf("%w: page %d has more elements than fit", ErrCorrupt, id)
	}
	for i := range count {
		at := pageHeaderSize + i*pageElementSize
		elem := buf[at : at+pageElementSize]
		if flags&branchPageFlag != 0 {
			if err := w.page(binary.LittleEndian.Uint64(elem[8:]), depth+1); err != nil {
				return err
			}
			continue
		}
		if binary.LittleEndian.Uint32(elem)&bucketLeafFlag == 0 {
			continue
		}
		pos := uint64(at) + uint64(binary.LittleEndian.Uint32(elem[4:]))
		start := pos + uint64(binary.LittleEndian.Uint32(elem[8:]))
		end := start + uint64(binary.LittleEndian.Uint32(elem[12:]))
		if end > uint64(len(buf)) || end-start < bucketHeaderSize {
			return fmt.Errorf("%w: a bucket on page %d lies outside it", ErrCorrupt, id)
		}
		value := buf[start:end]
		if root := binary.LittleEndian.Uint64(value); root != 0 {
			if err := w.page(root, depth+1); err != nil {
				return err
			}
			continue
		}
		inline := value[bucketHeaderSize:]
		if len(inline) < pageHeaderSize {
			return fmt.Errorf("%w: an inline bucket on page %d is cut short", ErrCorrupt, id)
		}
		if depth > maxTreeDepth {
			return fmt.Errorf("%w: page %d nests buckets deeper than %d levels", ErrCorrupt, id, maxTreeDepth)
		}
		if err := w.elements(id, inline, depth+1); err != nil {
			return err
		}
	}
	return nil
}
