package qstat

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"gw/lib/queue"
)

// DefaultRoot is where instances live unless --root says otherwise.
const DefaultRoot = "/var/gw"

// ErrUsage marks a selection that contradicts itself: bad usage, not
// trouble with the queue.
var ErrUsage = errors.New("usage")

// Selection is which queues to read, as gw's common flags say it.
type Selection struct {
	Queue    string // --queue: one queue directory
	Root     string // --root; "" means DefaultRoot
	Instance string // --instance: one instance under Root
	All      bool   // --all: every instance under Root
	EnvQueue string // $GW_QUEUE: the default for Queue when no flag is given
}

// Source is one queue to read.
type Source struct {
	Instance string // "" when chosen by directory (--queue, $GW_QUEUE)
	Dir      string
}

// Label names the source in metrics and warnings: its instance, or for a
// bare directory <name>/queue the name, as an instance's queue is laid
// out, else the directory itself.
func (s Source) Label() string {
	if s.Instance != "" {
		return s.Instance
	}
	clean := filepath.Clean(s.Dir)
	if filepath.Base(clean) == "queue" {
		if parent := filepath.Base(filepath.Dir(clean)); parent != "/" && parent != "." {
			return parent
		}
	}
	return clean
}

// Sources resolves the selection into queue directories. --queue excludes
// the instance flags; --instance and --all exclude each other; with no flag
// at all $GW_QUEUE is the queue if set, else every instance under the root.
func (sel Selection) Sources() ([]Source, error) {
	switch {
	case sel.Queue != "" && (sel.Root != "" || sel.Instance != "" || sel.All):
		return nil, fmt.Errorf("%w: --queue excludes --root, --instance and --all", ErrUsage)
	case sel.Instance != "" && sel.All:
		return nil, fmt.Errorf("%w: --instance and --all exclude each other", ErrUsage)
	case sel.Queue != "":
		return []Source{{Dir: sel.Queue}}, nil
	case sel.Root == "" && sel.Instance == "" && !sel.All && sel.EnvQueue != "":
		return []Source{{Dir: sel.EnvQueue}}, nil
	}
	root := sel.RootDir()
	if sel.Instance != "" {
		if !validInstance(sel.Instance) {
			return nil, fmt.Errorf("%w: bad instance name %q", ErrUsage, sel.Instance)
		}
		return []Source{{Instance: sel.Instance, Dir: filepath.Join(root, sel.Instance, "queue")}}, nil
	}
	return Instances(root)
}

// RootDir returns the root the selection names, or DefaultRoot.
func (sel Selection) RootDir() string {
	if sel.Root == "" {
		return DefaultRoot
	}
	return sel.Root
}

// validInstance refuses names that would lead out of the root.
func validInstance(name string) bool {
	return name != "." && name != ".." && filepath.Base(name) == name
}

// Instances lists the instances under root: the directories that hold a
// queue/format file, or whose queue this user may not search (its
// reading then fails, loudly), in name order.
func Instances(root string) ([]Source, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("unable to list instances: %w", err)
	}
	var srcs []Source
	for _, e := range ents {
		dir := filepath.Join(root, e.Name(), "queue")
		// A queue this user may not search is an instance all the
		// same: left out, it would read as no messages, and a monitor
		// run as the wrong user would say all is well.
		if _, err := os.Stat(filepath.Join(dir, "format")); err == nil ||
			!errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			srcs = append(srcs, Source{Instance: e.Name(), Dir: dir})
		}
	}
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].Instance < srcs[j].Instance })
	return srcs, nil
}

// Report is what one lock-free pass over a source found.
type Report struct {
	Source
	*queue.Snapshot
	// Err is why the source could not be read at all; the Snapshot is
	// then empty and the formats leave the source out where a zero would
	// read as a count. It stays in the list so that output made for
	// several instances keeps its shape when one of them is broken.
	Err error
}

// Load reads every source, one report each. A source that cannot be read
// at all gets a report with Err set, so that one broken instance does not
// hide the rest; the caller reports it and exits 111.
func Load(srcs []Source) []Report {
	reps := make([]Report, 0, len(srcs))
	for _, s := range srcs {
		snap, err := load(s.Dir)
		if err != nil {
			snap = &queue.Snapshot{}
		}
		reps = append(reps, Report{s, snap, err})
	}
	return reps
}

func load(dir string) (*queue.Snapshot, error) {
	q, err := queue.OpenReadOnly(dir)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	snap, err := q.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return snap, nil
}

// Problems lists, one line each, the files of the reports that a reader
// could not wholly use: torn or foreign segments and journals, and files
// the runner set aside in bad/. gw-qstat prints them as warnings.
func Problems(reps []Report) []string {
	var out []string
	for _, r := range reps {
		for _, p := range r.Problems {
			what := "corrupt"
			if !p.Corrupt {
				what = "incomplete"
			}
			line := fmt.Sprintf("%s: %s: %s", r.Dir, p.File, p.Reason)
			if p.Offset > 0 {
				line = fmt.Sprintf("%s: %s: %s at offset %d: %s", r.Dir, p.File, what, p.Offset, p.Reason)
			}
			out = append(out, safe(line))
		}
		for _, name := range r.SetAside {
			out = append(out, safe(fmt.Sprintf("%s: bad/%s: set aside by the runner", r.Dir, name)))
		}
	}
	return out
}
