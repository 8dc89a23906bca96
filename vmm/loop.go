package vmm

// eventLoop is the one goroutine that owns device state. Everything that
// touches a device (a vCPU's port or MMIO exit, an ioeventfd kick, a tap
// becoming readable, an API request) is a function posted here and run in
// order, so devices need no locks.
type eventLoop struct {
	work chan func()
	quit chan struct{}
	done chan struct{}
}

func newEventLoop() *eventLoop {
	return &eventLoop{work: make(chan func(), 1024), quit: make(chan struct{}), done: make(chan struct{})}
}

func (l *eventLoop) run() {
	defer close(l.done)
	for {
		select {
		case fn := <-l.work:
			fn()
		case <-l.quit:
			return
		}
	}
}

// Post queues fn to run on the loop. It drops fn if the loop has stopped.
// Safe from any goroutine except the loop itself when the queue is full.
func (l *eventLoop) Post(fn func()) {
	select {
	case l.work <- fn:
	case <-l.quit:
	}
}

// call runs fn on the loop and waits for it. It reports false if the loop
// stopped first. Never call it from the loop goroutine.
func (l *eventLoop) call(fn func(), done chan struct{}) bool {
	select {
	case l.work <- func() { fn(); done <- struct{}{} }:
	case <-l.quit:
		return false
	}
	select {
	case <-done:
		return true
	case <-l.quit:
		return false
	}
}

// stop ends the loop after the function it is running and waits for it.
func (l *eventLoop) stop() {
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	<-l.done
}
