package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Unix(1_000_000, 0)} }
func countLines(s string) int            { return strings.Count(s, "\n") }
func lastRedraw(s string) string         { return s[strings.LastIndex(s, "\r\033[K")+len("\r\033[K"):] }
func (c *fakeClock) run(b *progressBar, n int, step time.Duration, perStep int64) {
	for i := 1; i <= n; i++ {
		c.add(step)
		b.update(int64(i)*perStep, int64(i))
	}
}

// TestProgressPlainLines: without a terminal, a line every
// progressLineEvery at most, whatever the update rate, and no control
// characters.
func TestProgressPlainLines(t *testing.T) {
	clk := newFakeClock()
	var errw, out bytes.Buffer
	b := newProgressBarTo("fsck", &errw, &out, false, clk.now)
	b.setTotal(1000*1024*1024, 1000)
	// 1000 updates over 100 seconds.
	clk.run(b, 1000, 100*time.Millisecond, 1024*1024)
	b.done()
	if n := countLines(errw.String()); n != int(100*time.Second/progressLineEvery) {
		t.Errorf("%d progress lines in 100 s, want one per %v:\n%s", n, progressLineEvery, errw.String())
	}
	if strings.ContainsAny(errw.String(), "\r\033") {
		t.Errorf("control characters without a terminal: %q", errw.String())
	}
	first := strings.SplitN(errw.String(), "\n", 2)[0]
	if first != "fsck: 10%, 100.0 MiB / 1000.0 MiB, 100/1000 entries, 10.0 MiB/s, ETA 1m30s" {
		t.Errorf("first line: %q", first)
	}
}

// TestProgressTerminal: on a terminal the bar is redrawn in place at most
// every progressRedraw, with bytes, entries, rate and ETA, and a line
// printed through it is followed by the bar again.
func TestProgressTerminal(t *testing.T) {
	clk := newFakeClock()
	var errw, out bytes.Buffer
	b := newProgressBarTo("migrate", &errw, &out, true, clk.now)
	b.setTotal(100*1024*1024, 100)
	b.update(0, 0)
	clk.run(b, 50, 20*time.Millisecond, 1024*1024) // 1 s, 50 MiB
	if n := strings.Count(errw.String(), "\r\033[K"); n > 1+int(time.Second/progressRedraw) {
		t.Errorf("%d redraws in 1 s, want at most one per %v", n, progressRedraw)
	}
	want := "migrate [##########          ]  50%  50.0 MiB / 100.0 MiB  50/100 entries  50.0 MiB/s  ETA 1s"
	if got := lastRedraw(errw.String()); got != want {
		t.Errorf("bar:\n got %q\nwant %q", got, want)
	}
	b.println("stored encrypted: /a")
	if out.String() != "stored encrypted: /a\n" {
		t.Errorf("stdout: %q", out.String())
	}
	if !strings.HasSuffix(errw.String(), "\r\033[K\r\033[K"+want) {
		t.Errorf("the bar is not erased and redrawn around a printed line: %q", errw.String()[len(errw.String())-200:])
	}
	b.done()
	if !strings.HasSuffix(errw.String(), want+"\r\033[K") {
		t.Errorf("done does not erase the bar")
	}
	if countLines(errw.String()) != 0 {
		t.Errorf("newlines on the terminal line: %q", errw.String())
	}
}
