package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The intake log is how an Enqueue becomes durable with one fsync per
// batch. bbolt syncs twice per commit (its pages, then its meta page), so
// the queue writes each accepted job first to an append-only file beside
// the state file (<file>.intake), one write and one fdatasync for every
// Enqueue waiting, and answers; the jobs then go into the state file in a
// commit of their own (or one shared with claims and dones), off the
// caller's path, and the state file records how far into the log it has
// them, in that same commit. Open puts whatever the state file lacks into
// it before anything else runs, so a job whose Enqueue returned is never
// lost: a crash can only cut the log's last, unanswered batch short, and
// its records carry a checksum, so a cut one is dropped.
//
// The payload is written once, to the log: the state file keeps, for each
// job not done, a reference to its record (refs bucket: the log's id and
// the record's offset), and Claim reads the payload from there, checking
// the record's checksum and job id. So a log is kept while a job it holds
// is not done: when the log is replaced, one that still holds such a job
// is renamed <file>.intake-<id, 16 hex digits> (a segment) and kept open;
// the Done of its last such job removes it, and Open removes a segment that
// holds none (a crash came between that Done and the removal).
//
// The file is a header (intakeMagic, then the log's id, 8 random bytes)
// and records: the length of the body and its CRC-32C (4 bytes each,
// big-endian), then the body: the job's ID, Event and Key (each a uvarint
// length and the bytes), Received (Unix nanoseconds, 8 bytes), Payload (a
// uvarint length and the bytes). Once everything in it is in the state
// file and it is past intakeRotate bytes, it is replaced by an empty log
// with another id; the state file's mark (meta bucket, intakeKey: id and
// offset) names the log it counts in; a log past intakeRotate whose jobs
// are not all done lives on as a segment until they are.
const (
	intakeMagic  = "nestbot-intake-1"
	intakeHeader = len(intakeMagic) + 8
	intakeRotate = 64 << 20
	maxLogBatch  = 64 << 20 // payload bytes in one write of the log

	// The applier puts the log's jobs into the state file once this many
	// wait, or applyDelay after the first of them, or at once when a
	// Claim or Depth needs them (flush), the log is due to be replaced,
	// or the file is closing: one commit for many batches, where a commit
	// per batch cost as much again as the batches' own writes.
	applyAfter = 1024
	applyDelay = 50 * time.Millisecond
)

var (
	intakeKey  = []byte("intake") // in the meta bucket: log id, then the offset the state file has it up to
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

type intakeLog struct {
	db       *DB
	path     string
	rotateAt int64         // intakeRotate; tests lower it
	delay    time.Duration // applyDelay; tests change it, holding mu

	// Tests' crash points, nil otherwise: wrote is called with a batch's
	// size once it is written and before it is synced; applyHook before
	// the applier puts batches into the state file.
	wrote     func(jobs int)
	applyHook func()

	mu      sync.Mutex
	f       *os.File
	id      uint64
	size    int64           // the log's length: everything up to here is synced
	pending map[string]bool // ids in the log that the state file does not have yet
	waiting []*logWrite
	writing bool
	closed  bool
	broken  error // a failed write the log could not be cut back from

	// refs counts, by log id, the jobs in the state file not done whose
	// payload that log holds; segs are the replaced logs that hold some.
	refs map[uint64]int
	segs map[uint64]*os.File

	// The applier: batches durable in the log, waiting for the state file.
	batches  []logBatch
	applying bool
	applied  int64          // offset in the log id up to which the state file has the records
	advanced chan struct{}  // closed (and replaced) whenever applied moves
	applyErr error          // the applier's last failure, cleared by its next success
	waitJobs int            // jobs in batches
	waitKeys map[string]int // jobs in batches, by Key
	waitOld  time.Time      // the oldest Received of a job in batches
	timer    *time.Timer    // starts the applier applyDelay after a batch, when nothing else has
	idle     sync.WaitGroup
}

type logWrite struct {
	job  Job
	err  error
	done chan struct{}
}

type logBatch struct {
	id   uint64
	end  int64
	jobs []Job
	offs []int64 // where each job's record begins in the log
}

// payloadRef is where a job's payload is: the record at off in log log.
type payloadRef struct {
	log uint64
	off int64
}

func (r payloadRef) bytes() []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), r.log), uint64(r.off))
}

func decodeRef(v []byte) (payloadRef, bool) {
	if len(v) != 16 {
		return payloadRef{}, false
	}
	return payloadRef{binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:]))}, true
}

// openIntake opens the log at path (making it when there is none) and puts
// into the state file what it has and the state file lacks.
func openIntake(db *DB, path string) (*intakeLog, error) {
	l := &intakeLog{db: db, path: path, rotateAt: intakeRotate, delay: applyDelay, pending: map[string]bool{}, advanced: make(chan struct{}),
		refs: map[uint64]int{}, segs: map[uint64]*os.File{}, waitKeys: map[string]int{}}
	if err := l.openCurrent(); err != nil {
		return nil, err
	}
	if err := l.openSegments(); err != nil {
		l.f.Close()
		return nil, fmt.Errorf("intake log %s: %w", path, err)
	}
	return l, nil
}

// openCurrent opens the log itself and recovers what the state file lacks.
func (l *intakeLog) openCurrent() error {
	f, err := os.OpenFile(l.path, os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return l.replace()
	case err != nil:
		return err
	}
	l.f = f
	header := make([]byte, intakeHeader)
	if n, err := io.ReadFull(f, header); err != nil {
		// A log cut short before its header was synced holds no job.
		if (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) && bytes.HasPrefix([]byte(intakeMagic), header[:min(n, len(intakeMagic))]) {
			f.Close()
			l.f = nil
			return l.replace()
		}
		f.Close()
		return fmt.Errorf("intake log %s: %w", l.path, err)
	}
	if string(header[:len(intakeMagic)]) != intakeMagic {
		f.Close()
		return fmt.Errorf("intake log %s is not one (it begins %q): move it away", l.path, header[:len(intakeMagic)])
	}
	l.id = binary.BigEndian.Uint64(header[len(intakeMagic):])
	if err := l.recover(); err != nil {
		f.Close()
		return fmt.Errorf("intake log %s: %w", l.path, err)
	}
	return nil
}

// openSegments counts the state file's refs by log, opens the segments
// that refs name and removes those that none does.
func (l *intakeLog) openSegments() error {
	if err := l.db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(queueBucket).Bucket(refsBucket).ForEach(func(_, v []byte) error {
			if ref, ok := decodeRef(v); ok {
				l.refs[ref.log]++
			}
			return nil
		})
	}); err != nil {
		return err
	}
	names, err := filepath.Glob(l.path + "-*")
	if err != nil {
		return err
	}
	for _, name := range names {
		var id uint64
		hex := strings.TrimPrefix(name, l.path+"-")
		if _, err := fmt.Sscanf(hex, "%016x", &id); err != nil || len(hex) != 16 || fmt.Sprintf("%016x", id) != hex {
			continue // not a segment's name
		}
		if l.refs[id] == 0 || id == l.id {
			if err := os.Remove(name); err != nil {
				return err
			}
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		l.segs[id] = f
	}
	return nil
}

func (l *intakeLog) segmentPath(id uint64) string { return fmt.Sprintf("%s-%016x", l.path, id) }

// recover reads the records past the state file's mark, puts them into
// the state file, and cuts off a torn tail.
func (l *intakeLog) recover() error {
	start := int64(intakeHeader)
	if err := l.db.bolt.View(func(tx *bolt.Tx) error {
		if id, off, ok := intakeMark(tx); ok && id == l.id {
			start = off
		}
		return nil
	}); err != nil {
		return err
	}
	data, err := io.ReadAll(io.NewSectionReader(l.f, start, 1<<62))
	if err != nil {
		return err
	}
	var jobs []Job
	var offs []int64
	end := start
	for rest := data; len(rest) > 0; {
		j, n, ok := decodeRecord(rest)
		if !ok {
			break // a batch the crash cut short: never answered
		}
		j.Payload = nil // it stays in the log
		jobs, offs = append(jobs, j), append(offs, end)
		rest, end = rest[n:], end+int64(n)
	}
	if end < start+int64(len(data)) {
		if err := l.f.Truncate(end); err != nil {
			return err
		}
		if err := l.f.Sync(); err != nil {
			return err
		}
	}
	l.size, l.applied = end, end
	if len(jobs) == 0 {
		return nil
	}
	q := boltQueue{l.db}
	return l.db.bolt.Update(func(tx *bolt.Tx) error {
		for i, j := range jobs {
			if err := q.enqueueTx(tx, j, payloadRef{l.id, offs[i]}); err != nil && !errors.As(err, new(domainError)) {
				return err
			}
		}
		return putIntakeMark(tx, l.id, end)
	})
}

// replace puts an empty log with a new id in place of the log (or of none).
func (l *intakeLog) replace() error {
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(l.path), "."+filepath.Base(l.path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append([]byte(intakeMagic), idb[:]...))
	if err == nil {
		err = tmp.Sync()
	}
	keep := l.f != nil && l.refs[l.id] > 0
	if err == nil && keep {
		err = os.Rename(l.path, l.segmentPath(l.id))
	}
	if err == nil {
		err = os.Rename(tmp.Name(), l.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(l.path))
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("intake log %s: %w", l.path, err)
	}
	switch {
	case keep:
		l.segs[l.id] = l.f
	case l.f != nil:
		l.f.Close()
	}
	l.f, l.id = tmp, binary.BigEndian.Uint64(idb[:])
	l.size, l.applied = int64(intakeHeader), int64(intakeHeader)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// reserve claims id for an Enqueue: false when another Enqueue of it is in
// the log and not yet in the state file, or on its way there.
func (l *intakeLog) reserve(id string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return false, errors.New("the state file is closed")
	case l.broken != nil:
		return false, l.broken
	case l.pending[id]:
		return false, nil
	}
	l.pending[id] = true
	return true, nil
}

func (l *intakeLog) unreserve(id string) {
	l.mu.Lock()
	delete(l.pending, id)
	l.mu.Unlock()
}

// append writes j to the log with whatever else is waiting, and returns
// once that write is synced. j's id must be reserved.
func (l *intakeLog) append(j Job) error {
	w := &logWrite{job: j, done: make(chan struct{})}
	l.mu.Lock()
	l.waiting = append(l.waiting, w)
	l.start(&l.writing, l.write)
	l.mu.Unlock()
	<-w.done
	return w.err
}

// start runs loop in a goroutine of its own unless *running says one is;
// l.mu is held.
func (l *intakeLog) start(running *bool, loop func()) {
	if !*running {
		*running = true
		l.idle.Add(1)
		go loop()
	}
}

// write writes what is waiting, a batch at a time, each with one write
// and one fdatasync, and hands each synced batch to the applier.
func (l *intakeLog) write() {
	defer l.idle.Done()
	var buf []byte
	var offs []int64
	for {
		l.mu.Lock()
		n, size := 0, 0
		for n < len(l.waiting) && (n == 0 || size+len(l.waiting[n].job.Payload) <= maxLogBatch) {
			size += len(l.waiting[n].job.Payload)
			n++
		}
		if n == 0 {
			l.waiting, l.writing = nil, false
			l.mu.Unlock()
			return
		}
		group := l.waiting[:n:n]
		l.waiting = l.waiting[n:]
		if l.size >= l.rotateAt && l.applied == l.size && len(l.batches) == 0 && !l.applying {
			if err := l.replace(); err != nil {
				l.db.logf("store: %v (the log grows on)", err)
			}
		}
		f, off, broken := l.f, l.size, l.broken
		l.mu.Unlock()

		err := broken
		if err == nil {
			// One allocation for the batch, not one per doubling of a
			// buffer the payloads are copied into again and again.
			need := 0
			for _, w := range group {
				need += recordSize(w.job)
			}
			buf = slices.Grow(buf[:0], need)
			offs = offs[:0]
			for _, w := range group {
				offs = append(offs, off+int64(len(buf)))
				buf = appendRecord(buf, w.job)
			}
			if _, err = f.WriteAt(buf, off); err == nil {
				if l.wrote != nil {
					l.wrote(len(group))
				}
				err = fdatasync(f)
			}
		}
		l.mu.Lock()
		if err != nil {
			for _, w := range group {
				delete(l.pending, w.job.ID)
			}
			if broken == nil {
				// Cut back what may have reached the file, so the next
				// batch follows the last good one.
				if terr := f.Truncate(off); terr != nil {
					l.broken = fmt.Errorf("intake log %s: a write failed (%v) and could not be cut back (%v): restart nestbot", l.path, err, terr)
				}
			}
		} else {
			l.size = off + int64(len(buf))
			b := logBatch{id: l.id, end: l.size, jobs: make([]Job, len(group)), offs: slices.Clone(offs)}
			for i, w := range group {
				b.jobs[i] = w.job
				b.jobs[i].Payload = nil // it stays in the log
			}
			l.batches = append(l.batches, b)
			l.waitJobs += len(b.jobs)
			for _, j := range b.jobs {
				l.waitKeys[j.Key]++
				if l.waitOld.IsZero() || j.Received.Before(l.waitOld) {
					l.waitOld = j.Received
				}
			}
			switch {
			case l.waitJobs >= applyAfter || l.size >= l.rotateAt || l.closed:
				l.start(&l.applying, l.apply)
			case l.timer == nil && !l.applying:
				l.timer = time.AfterFunc(l.delay, l.kick)
			}
		}
		l.mu.Unlock()
		for _, w := range group {
			if err != nil {
				w.err = fmt.Errorf("intake log: %w", err)
			}
			close(w.done)
		}
	}
}

// apply puts the synced batches into the state file, all that wait in one
// commit, with the mark of how far into the log it has them. A failed
// commit is tried again: the jobs are safe in the log meanwhile.
func (l *intakeLog) apply() {
	defer l.idle.Done()
	backoff := 10 * time.Millisecond
	for {
		if l.applyHook != nil {
			l.applyHook()
		}
		l.mu.Lock()
		if l.timer != nil {
			l.timer.Stop()
			l.timer = nil
		}
		batches := l.batches
		if len(batches) == 0 {
			l.applying = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		last := batches[len(batches)-1]
		q := boltQueue{l.db}
		var stored map[uint64]int // jobs put in, by log
		err := l.db.group.do(0, func(tx *bolt.Tx) error {
			stored = map[uint64]int{} // a retried group runs this again
			for _, b := range batches {
				for i, j := range b.jobs {
					err := q.enqueueTx(tx, j, payloadRef{b.id, b.offs[i]})
					if err != nil && !errors.As(err, new(domainError)) {
						return err
					}
					if err == nil {
						stored[b.id]++
					}
				}
			}
			return putIntakeMark(tx, last.id, last.end)
		})
		l.mu.Lock()
		if err != nil {
			l.applyErr = fmt.Errorf("store: put accepted jobs into %s: %w", l.db.path, err)
			if l.closed {
				// The next Open puts them in from the log.
				l.applying = false
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
			l.db.logf("%v (trying again; they are safe in %s)", l.applyErr, l.path)
			time.Sleep(backoff)
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		for id, n := range stored {
			l.refs[id] += n
		}
		for _, b := range batches {
			l.waitJobs -= len(b.jobs)
			for _, j := range b.jobs {
				if l.waitKeys[j.Key]--; l.waitKeys[j.Key] <= 0 {
					delete(l.waitKeys, j.Key)
				}
			}
		}
		l.batches = l.batches[len(batches):]
		l.waitOld = time.Time{}
		for _, b := range l.batches {
			for _, j := range b.jobs {
				if l.waitOld.IsZero() || j.Received.Before(l.waitOld) {
					l.waitOld = j.Received
				}
			}
		}
		for _, b := range batches {
			for _, j := range b.jobs {
				delete(l.pending, j.ID)
			}
		}
		if last.id == l.id {
			l.applied = last.end
		}
		l.applyErr = nil
		close(l.advanced)
		l.advanced = make(chan struct{})
		l.mu.Unlock()
	}
}

// flush returns once the state file has every job whose Enqueue returned.
func (l *intakeLog) flush(ctx context.Context) error {
	l.mu.Lock()
	id, target := l.id, l.size
	if len(l.batches) > 0 && !l.closed {
		l.start(&l.applying, l.apply)
	}
	l.mu.Unlock()
	for {
		l.mu.Lock()
		done := l.id != id || l.applied >= target
		ch, err := l.advanced, l.applyErr
		l.mu.Unlock()
		if done {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close lets the writes and the applier finish, and closes the log.
func (l *intakeLog) close() error {
	l.mu.Lock()
	l.closed = true
	if len(l.batches) > 0 {
		l.start(&l.applying, l.apply)
	}
	l.mu.Unlock()
	l.idle.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, f := range l.segs {
		f.Close()
		delete(l.segs, id)
	}
	return l.f.Close()
}

// kick starts the applier, applyDelay after a batch that did not.
func (l *intakeLog) kick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	if len(l.batches) > 0 && !l.closed {
		l.start(&l.applying, l.apply)
	}
}

// unapplied describes the jobs in the log not yet in the state file: their
// Keys, at most max of them (all is false when there are more), and the
// oldest Received among them (zero when there are none).
func (l *intakeLog) unapplied(max int) (keys []string, all bool, oldest time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.waitKeys) > max {
		return nil, false, l.waitOld
	}
	for k := range l.waitKeys {
		keys = append(keys, k)
	}
	return keys, true, l.waitOld
}

// payload reads the payload of job id from the record ref names, checked
// against the record's checksum and id.
func (l *intakeLog) payload(ref payloadRef, id string) ([]byte, error) {
	l.mu.Lock()
	f := l.segs[ref.log]
	if ref.log == l.id {
		f = l.f
	}
	l.mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("intake log %016x, which holds the payload of job %s, is gone from beside %s", ref.log, id, l.path)
	}
	var head [8]byte
	if _, err := f.ReadAt(head[:], ref.off); err != nil {
		return nil, fmt.Errorf("intake log %016x: read job %s: %w", ref.log, id, err)
	}
	n := int64(binary.BigEndian.Uint32(head[:4]))
	if n > 1<<30 { // no payload is that big: a ref into the wrong place
		return nil, fmt.Errorf("intake log %016x: the record at %d is not job %s's, or is corrupt", ref.log, ref.off, id)
	}
	rec := make([]byte, 8+n)
	if _, err := f.ReadAt(rec, ref.off); err != nil {
		return nil, fmt.Errorf("intake log %016x: read job %s: %w", ref.log, id, err)
	}
	j, _, ok := decodeRecord(rec)
	if !ok || j.ID != id {
		return nil, fmt.Errorf("intake log %016x: the record at %d is not job %s's, or is corrupt", ref.log, ref.off, id)
	}
	return j.Payload, nil
}

// release tells the log that the Done of a job whose payload log holds
// is committed; the Done of a segment's last such job removes it.
func (l *intakeLog) release(log uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refs[log]--
	f, ok := l.segs[log]
	if !ok || l.refs[log] > 0 {
		return
	}
	delete(l.refs, log)
	delete(l.segs, log)
	f.Close()
	if err := os.Remove(l.segmentPath(log)); err != nil {
		l.db.logf("store: remove intake log %s, whose jobs are all done: %v (the next Open tries again)", l.segmentPath(log), err)
	}
}

// recordSize is the most bytes appendRecord appends for j.
func recordSize(j Job) int {
	return 8 + 4*binary.MaxVarintLen64 + len(j.ID) + len(j.Event) + len(j.Key) + 8 + len(j.Payload)
}

func appendRecord(buf []byte, j Job) []byte {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0)
	for _, s := range []string{j.ID, j.Event, j.Key} {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	buf = binary.BigEndian.AppendUint64(buf, uint64(j.Received.UnixNano()))
	buf = binary.AppendUvarint(buf, uint64(len(j.Payload)))
	buf = append(buf, j.Payload...)
	body := buf[start+8:]
	binary.BigEndian.PutUint32(buf[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(buf[start+4:], crc32.Checksum(body, castagnoli))
	return buf
}

// decodeRecord reads the record at the start of data: its job and length,
// ok false when it is cut short or does not match its checksum.
func decodeRecord(data []byte) (Job, int, bool) {
	if len(data) < 8 {
		return Job{}, 0, false
	}
	n := int(binary.BigEndian.Uint32(data))
	if n > len(data)-8 || crc32.Checksum(data[8:8+n], castagnoli) != binary.BigEndian.Uint32(data[4:]) {
		return Job{}, 0, false
	}
	body := data[8 : 8+n]
	next := func() ([]byte, bool) {
		l, k := binary.Uvarint(body)
		if k <= 0 || l > uint64(len(body)-k) {
			return nil, false
		}
		v := body[k : k+int(l)]
		body = body[k+int(l):]
		return v, true
	}
	var j Job
	id, ok1 := next()
	event, ok2 := next()
	key, ok3 := next()
	if !ok1 || !ok2 || !ok3 || len(body) < 8 {
		return Job{}, 0, false
	}
	j.ID, j.Event, j.Key = string(id), string(event), string(key)
	j.Received = time.Unix(0, int64(binary.BigEndian.Uint64(body))).UTC()
	body = body[8:]
	payload, ok := next()
	if !ok || len(body) != 0 {
		return Job{}, 0, false
	}
	j.Payload = bytes.Clone(payload)
	return j, 8 + n, true
}

func intakeMark(tx *bolt.Tx) (id uint64, off int64, ok bool) {
	v := tx.Bucket(metaBucket).Get(intakeKey)
	if len(v) != 16 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:])), true
}

func putIntakeMark(tx *bolt.Tx, id uint64, off int64) error {
	return tx.Bucket(metaBucket).Put(intakeKey, binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, id), uint64(off)))
}
