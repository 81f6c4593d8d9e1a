package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

const (
	// progressRedraw is how often the bar on a terminal is redrawn at most.
	progressRedraw = 200 * time.Millisecond
	// progressTick redraws the bar on a terminal while nothing is
	// reported (a long step), so elapsed time and ETA keep moving.
	progressTick = time.Second
	// progressLineEvery is how often a plain progress line is printed
	// when stderr is not a terminal.
	progressLineEvery = 10 * time.Second
	// progressBarWidth is the number of cells of the drawn bar.
	progressBarWidth = 20
)

// progressBar shows how far a long command is, on stderr. On a terminal it
// is one line, redrawn in place:
//
//	fsck [########            ]  42%  1.2 GiB / 2.9 GiB  1200/3400 entries  85.3 MiB/s  ETA 20s
//
// Elsewhere it prints a plain line (no carriage returns, no escapes) every
// progressLineEvery at most:
//
//	fsck: 42%, 1.2 GiB / 2.9 GiB, 1200/3400 entries, 85.3 MiB/s, ETA 20s
//
// Report lines go through println, to stdout: on a terminal the bar is
// erased first and drawn again after. A zero total means unknown. It is safe
// for concurrent use.
type progressBar struct {
	mu    sync.Mutex
	err   io.Writer // where the bar goes (stderr)
	out   io.Writer // where println goes (stdout)
	tty   bool
	width int // terminal columns, 0 if unknown
	label string
	now   func() time.Time

	bytes, totalBytes     int64
	entries, totalEntries int64
	start, last           time.Time
	shown                 bool // a bar is on the terminal line
	stop                  chan struct{}
}

// newProgressBar returns a bar labelled label on os.Stderr, drawn in place
// when stderr is a terminal. done must be called when the work ends.
func newProgressBar(label string) *progressBar {
	fd := int(os.Stderr.Fd())
	b := newProgressBarTo(label, os.Stderr, os.Stdout, term.IsTerminal(fd), time.Now)
	if b.tty {
		if w, _, err := term.GetSize(fd); err == nil {
			b.width = w
		}
		b.stop = make(chan struct{})
		go b.tick()
	}
	return b
}

func newProgressBarTo(label string, errw, out io.Writer, tty bool, now func() time.Time) *progressBar {
	return &progressBar{err: errw, out: out, tty: tty, label: label, now: now, start: now()}
}

// setTotal sets the amount of work, in bytes and entries (0 = unknown).
func (b *progressBar) setTotal(bytes, entries int64) {
	b.mu.Lock()
	b.totalBytes, b.totalEntries = bytes, entries
	b.mu.Unlock()
}

// update records the work done so far and shows it when it is time to.
func (b *progressBar) update(bytes, entries int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bytes, b.entries = bytes, entries
	now := b.now()
	if b.tty {
		if b.last.IsZero() || now.Sub(b.last) >= progressRedraw {
			b.draw(now)
		}
		return
	}
	if now.Sub(b.start) >= progressLineEvery && (b.last.IsZero() || now.Sub(b.last) >= progressLineEvery) {
		b.last = now
		fmt.Fprintf(b.err, "%s: %s\n", b.label, strings.Join(b.fields(now), ", "))
	}
}

// println prints a report line on stdout without breaking the bar.
func (b *progressBar) println(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	wasShown := b.shown
	b.erase()
	fmt.Fprintln(b.out, line)
	if wasShown {
		b.draw(b.now())
	}
}

// done erases the bar; the command prints its summary next.
func (b *progressBar) done() {
	if b.stop != nil {
		close(b.stop)
		b.stop = nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.erase()
}

func (b *progressBar) tick() {
	t := time.NewTicker(progressTick)
	defer t.Stop()
	stop := b.stop
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			b.mu.Lock()
			if b.shown {
				b.draw(b.now())
			}
			b.mu.Unlock()
		}
	}
}

// draw redraws the bar on the terminal line. b.mu is held.
func (b *progressBar) draw(now time.Time) {
	b.last = now
	frac, known := b.fraction()
	cells := make([]byte, progressBarWidth)
	for i := range cells {
		cells[i] = ' '
		if known && i < int(frac*progressBarWidth) {
			cells[i] = '#'
		}
	}
	line := fmt.Sprintf("%s [%s] %s", b.label, cells, strings.Join(b.fields(now), "  "))
	if b.width > 1 && len(line) > b.width-1 {
		// A wrapped line cannot be redrawn in place.
		line = line[:b.width-1]
	}
	fmt.Fprintf(b.err, "\r\033[K%s", line)
	b.shown = true
}

// erase clears the terminal line of a drawn bar. b.mu is held.
func (b *progressBar) erase() {
	if b.shown {
		fmt.Fprint(b.err, "\r\033[K")
		b.shown = false
	}
}

// fraction returns the part done, by bytes where their total is known,
// else by entries.
func (b *progressBar) fraction() (float64, bool) {
	var f float64
	switch {
	case b.totalBytes > 0:
		f = float64(b.bytes) / float64(b.totalBytes)
	case b.totalEntries > 0:
		f = float64(b.entries) / float64(b.totalEntries)
	default:
		return 0, false
	}
	return min(max(f, 0), 1), true
}

// fields returns the parts of a progress line: percent, bytes, entries,
// rate, ETA.
func (b *progressBar) fields(now time.Time) []string {
	var out []string
	frac, known := b.fraction()
	if known && b.tty {
		out = append(out, fmt.Sprintf("%3.0f%%", frac*100)) // the bar does not shift
	} else if known {
		out = append(out, fmt.Sprintf("%.0f%%", frac*100))
	}
	bytes := humanBytes(b.bytes)
	if b.totalBytes > 0 {
		bytes += " / " + humanBytes(b.totalBytes)
	}
	out = append(out, bytes)
	entries := fmt.Sprint(b.entries)
	if b.totalEntries > 0 {
		entries += fmt.Sprintf("/%d", b.totalEntries)
	}
	out = append(out, entries+" entries")
	elapsed := now.Sub(b.start)
	if elapsed >= time.Second && b.bytes > 0 {
		out = append(out, humanBytes(int64(float64(b.bytes)/elapsed.Seconds()))+"/s")
	}
	eta := "ETA --"
	if known && frac > 0 && frac < 1 && elapsed >= time.Second {
		eta = "ETA " + shortDuration(time.Duration(float64(elapsed)*(1-frac)/frac))
	} else if known && frac >= 1 {
		eta = "ETA 0s"
	}
	return append(out, eta)
}

// shortDuration words d as "1h02m", "3m05s" or "12s".
func shortDuration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s >= 3600:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	case s >= 60:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%ds", s)
}
