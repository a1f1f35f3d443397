package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Build compiles the patchd command into dir and returns the binary's
// path.
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "patchd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/patchd/patchd") // #nosec G204 -- fixed arguments
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// Server is one patchd process. Start it again after it exits to restart
// it on the same database.
type Server struct {
	// Bin is the patchd binary and DB its database file.
	Bin, DB string
	// Args are extra command-line flags.
	Args []string
	// Wrap, when not empty, is a command that runs the binary: its name
	// and arguments, before the binary's path (prlimit, say). It must
	// exec the binary, so that signals reach it.
	Wrap []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	addr   string
	done   chan struct{} // closed when the process has exited
	err    error         // its exit error, once done is closed
	log    bytes.Buffer  // everything it wrote to stderr, every run
	starts int
}

// ErrNotRunning is returned by the signal methods when no process runs.
var ErrNotRunning = errors.New("patchd is not running")

// Start runs the process on a free loopback port and waits until it
// logs that it is serving. It returns the address it listens on.
func (s *Server) Start() (string, error) {
	args := append([]string{"--addr", "127.0.0.1:0", "--db", s.DB}, s.Args...)
	name := s.Bin
	if len(s.Wrap) > 0 {
		name, args = s.Wrap[0], append(append(append([]string(nil), s.Wrap[1:]...), s.Bin), args...)
	}
	cmd := exec.Command(name, args...) // #nosec G204 -- the test's own binary, and the test's own wrapper
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	addrc := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Bytes()
			s.mu.Lock()
			s.log.Write(line)
			s.log.WriteByte('\n')
			s.mu.Unlock()
			var rec struct{ Msg, Addr string }
			if !sent && json.Unmarshal(line, &rec) == nil && rec.Msg == "serving" {
				addrc <- rec.Addr
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		err := cmd.Wait()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.starts++
	s.mu.Unlock()
	select {
	case addr := <-addrc:
		s.mu.Lock()
		s.addr = addr
		s.mu.Unlock()
		return addr, nil
	case <-done:
		return "", fmt.Errorf("patchd exited before serving: %v\n%s", s.exitErr(), s.Log())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return "", fmt.Errorf("patchd did not serve within 30s\n%s", s.Log())
	}
}

// Addr returns the address of the latest start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Log returns everything the process wrote to stderr so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *Server) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// running returns the process and its done channel, or ErrNotRunning.
func (s *Server) running() (*exec.Cmd, chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil, nil, ErrNotRunning
	}
	select {
	case <-s.done:
		return nil, nil, ErrNotRunning
	default:
	}
	return s.cmd, s.done, nil
}

// Signal sends sig to the process.
func (s *Server) Signal(sig syscall.Signal) error {
	cmd, _, err := s.running()
	if err != nil {
		return err
	}
	return cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Server) Kill() error {
	cmd, done, err := s.running()
	if err != nil {
		return err
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-done
	return nil
}

// Wait waits up to d for the process to exit and returns its exit error
// (nil for status 0).
func (s *Server) Wait(d time.Duration) error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return ErrNotRunning
	}
	select {
	case <-done:
		return s.exitErr()
	case <-time.After(d):
		return fmt.Errorf("patchd still running after %v", d)
	}
}

// Stop ends the process, whatever its state: SIGCONT (in case it was
// stopped), then SIGKILL. It is meant for test cleanup.
func (s *Server) Stop() {
	if cmd, done, err := s.running(); err == nil {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// Starts returns how many times the server was started.
func (s *Server) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// WriteLog saves the process log to path, for a failed test's artifacts.
func (s *Server) WriteLog(path string) error {
	return os.WriteFile(path, []byte(s.Log()), 0o600)
}
