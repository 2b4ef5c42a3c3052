package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// quitGrace is how long stop waits for the goroutine dump SIGQUIT asks for before it kills.
const quitGrace = 5 * time.Second

// proc is a process a harness runs (drfs mount, serve or daemon) and may run again: its
// output goes to a log file, and it runs in a process group of its own so that a kill ends
// whatever it started too. The harness types embed it; its zero value with a name is ready
// for start.
type proc struct {
	name string // what messages call it: "daemon", "drfs serve"

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited and its log is closed
	waitErr error
	logPath string
}

// start runs cmd with stdout and stderr to a new file at logPath. When ready is not empty,
// stdout is also scanned, and the channel returned is closed at the first line that contains
// ready (a readiness line such as "serving"); otherwise the channel is nil.
func (p *proc) start(cmd *exec.Cmd, logPath, ready string) (<-chan struct{}, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	var pr *io.PipeReader
	var pw *io.PipeWriter
	if ready != "" {
		pr, pw = io.Pipe()
		cmd.Stdout = io.MultiWriter(logf, pw)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s %s: %v", cmd.Path, strings.Join(cmd.Args[1:], " "), err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.waitErr, p.logPath = cmd, done, nil, logPath
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		if pw != nil {
			pw.Close()
		}
		logf.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()
	if ready == "" {
		return nil, nil
	}
	seen := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), ready) {
				close(seen)
				break
			}
		}
		io.Copy(io.Discard, pr) // the process must never block on its stdout
	}()
	return seen, nil
}

// current is the last process started; cmd is nil before the first start.
func (p *proc) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// exited is closed once the last process started has exited (nil before the first start).
func (p *proc) exited() <-chan struct{} {
	_, done := p.current()
	return done
}

// Running reports whether the process is alive.
func (p *proc) Running() bool {
	done := p.exited()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// exitErr is how the last process ended: nil for exit status 0, or while it runs.
func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Pid is the pid of the last process started.
func (p *proc) Pid() int {
	cmd, _ := p.current()
	return cmd.Process.Pid
}

// Signal sends sig to the process (not to its group).
func (p *proc) Signal(sig os.Signal) error {
	if !p.Running() {
		return fmt.Errorf("%s not running (exit: %v)", p.name, p.exitErr())
	}
	cmd, _ := p.current()
	return cmd.Process.Signal(sig)
}

// Log is the tail of the last process's log.
func (p *proc) Log() string {
	p.mu.Lock()
	path := p.logPath
	p.mu.Unlock()
	return logTail(path)
}

// exit waits up to timeout for the process to end and returns its exit error.
func (p *proc) exit(timeout time.Duration) error {
	select {
	case <-p.exited():
		return p.exitErr()
	case <-time.After(timeout):
		return fmt.Errorf("%s still running %v later", p.name, timeout)
	}
}

// kill SIGKILLs the process group (a crash) and waits up to timeout for the process to end.
func (p *proc) kill(timeout time.Duration) error {
	cmd, done := p.current()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s pid %d did not die within %v of SIGKILL", p.name, cmd.Process.Pid, timeout)
	}
}

// stop sends SIGTERM and waits up to timeout for exit status 0. A process still running
// then is asked for a goroutine dump (SIGQUIT; the Go runtime prints it to the log and
// exits), given quitGrace for it, and its process group is killed; the log is copied outside
// the scratch directory, which cleanup removes, and the error names the copy.
func (p *proc) stop(timeout time.Duration) error {
	if !p.Running() {
		return fmt.Errorf("%s not running (exit: %v)", p.name, p.exitErr())
	}
	cmd, done := p.current()
	pid := cmd.Process.Pid
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if err := p.exitErr(); err != nil {
			return fmt.Errorf("%s exit after SIGTERM: %v (want status 0)", p.name, err)
		}
		return nil
	case <-time.After(timeout):
	}
	cmd.Process.Signal(syscall.SIGQUIT)
	how := "it exited"
	select {
	case <-done:
	case <-time.After(quitGrace):
		how = fmt.Sprintf("it did not exit within %v of that", quitGrace)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-done
	p.mu.Lock()
	logPath := p.logPath
	p.mu.Unlock()
	kept := filepath.Join(os.TempDir(), fmt.Sprintf("drfs-e2e-stuck-%d-%s", pid, filepath.Base(logPath)))
	where := "log kept in " + kept
	b, err := os.ReadFile(logPath)
	if err == nil {
		err = os.WriteFile(kept, b, 0o644)
	}
	if err != nil {
		where = fmt.Sprintf("no copy of the log: %v", err)
	}
	return fmt.Errorf("%s did not exit within %v of SIGTERM: sent SIGQUIT for a goroutine dump, %s; killed its process group (exit: %v; %s)",
		p.name, timeout, how, p.exitErr(), where)
}
