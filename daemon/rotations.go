package daemon

import (
	"context"
	"sync"

	"github.com/openkps/kps"
	kpsservice "github.com/openkps/kps/service"
	"github.com/openkps/kps/tasks"
)

// rotationLoop runs the rotations' driver (service.Rotations.Run) for the life of the service.
// It exists before the driver does, so that the runner, built first, can already wake it.
type rotationLoop struct {
	svc    *kpsservice.Rotations
	cancel context.CancelFunc
	done   sync.WaitGroup
	mu     sync.Mutex
}

func (l *rotationLoop) start(svc *kpsservice.Rotations) {
	ctx, cancel := context.WithCancel(context.Background())
	l.mu.Lock()
	l.svc, l.cancel = svc, cancel
	l.mu.Unlock()
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		svc.Run(ctx)
	}()
}

// wake tells the driver that a task ended.
func (l *rotationLoop) wake() {
	if svc := l.service(); svc != nil {
		svc.Wake()
	}
}

func (l *rotationLoop) service() *kpsservice.Rotations {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.svc
}

// stop ends the driver before the runner stops: what it would submit waits for the next start,
// as its state is in the store.
func (l *rotationLoop) stop() {
	l.mu.Lock()
	cancel := l.cancel
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		l.done.Wait()
	}
}

// taskEnds is the runner's store, telling the rotations when a task ended: once their driver
// runs, a task's outcome is recorded by it, with the step of the task's rotation in the same
// transaction (service.Rotations.FinishTask).
type taskEnds struct {
	tasks.Store
	loop *rotationLoop
}

// FinishTask implements tasks.Store.
func (s taskEnds) FinishTask(ctx context.Context, t *kps.Task, o kps.TaskOutcome) error {
	if svc := s.loop.service(); svc != nil {
		return svc.FinishTask(ctx, t, o)
	}
	err := s.Store.FinishTask(ctx, t, o)
	s.loop.wake()
	return err
}

// FailExpiredTasks implements tasks.Store.
func (s taskEnds) FailExpiredTasks(ctx context.Context, all bool) (int, error) {
	n, err := s.Store.FailExpiredTasks(ctx, all)
	if n > 0 {
		s.loop.wake()
	}
	return n, err
}
