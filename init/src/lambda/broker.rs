//! The invocations, one at a time: the state both sides of the server share (callers on the
//! invoke endpoint, the runtime on the Runtime API), behind one lock, with one condition
//! variable for every wait.
//!
//! A call goes: [`Broker::enter`] (wait for the slot, in arrival order) → the caller reads its
//! event → [`Broker::submit`] → the runtime takes it with [`Broker::next`] (its deadline starts
//! there) → the runtime answers ([`Broker::begin_answer`], its body read,
//! [`Broker::finish_answer`]) → [`Broker::wait_outcome`] hands the caller its [`Outcome`] and
//! frees the slot. Past its deadline the caller gets [`Outcome::TimedOut`] and the init hears
//! [`LambdaEvent::TimedOut`] (it kills the runtime; [`Broker::runtime_ended`] then starts a new
//! generation: waits of the old runtime end, and a new runtime is ready when it asks for its
//! first invocation).

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::LambdaEvent;

/// How many answered request ids are remembered, to tell "answered twice" from "unknown".
pub const ANSWERED_KEPT: usize = 64;
/// The most events kept for the init between two reads (they are read within milliseconds;
/// this bounds memory if the init is stuck).
pub const MAX_EVENTS: usize = 64;
/// How often a runtime's waiting `GET …/next` checks that its connection is still open (a
/// client that gave up must not hold a connection, or take an event, forever).
pub const ALIVE_CHECK: Duration = Duration::from_secs(1);

/// What the runtime is told with an event (besides its id and deadline).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// `Lambda-Runtime-Trace-Id`.
    pub trace_id: String,
    /// `Lambda-Runtime-Client-Context` (decoded from the caller's `X-Amz-Client-Context`).
    pub client_context: Option<String>,
}

/// An event handed to the runtime.
#[derive(Debug)]
pub struct Handed {
    pub id: String,
    pub event: Vec<u8>,
    pub meta: Meta,
    /// The deadline, as a time of this process's clock.
    pub deadline: Instant,
}

/// How a call ended, for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `POST …/response`: the function's answer.
    Response { body: Vec<u8>, content_type: String },
    /// `POST …/error`: the error document as posted, and `Lambda-Runtime-Function-Error-Type`.
    Error { body: Vec<u8>, error_type: String },
    /// The answer was larger than the limit (its size when known).
    ResponseTooLarge { size: Option<u64> },
    /// The deadline passed: `taken` says whether the runtime had taken the event (else it never
    /// asked for it).
    TimedOut { taken: bool },
    /// The runtime ended while it held the event (how, as the init tells it).
    RuntimeExited { how: String },
}

/// Why the runtime's answer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerError {
    /// No such invocation (Lambda: 400 `InvalidRequestID`).
    Unknown,
    /// This invocation was answered already (Lambda: 403 `InvalidStateTransition`).
    AlreadyAnswered,
}

#[derive(Debug)]
enum Stage {
    /// The caller is reading its event.
    Reading,
    /// Waiting for the runtime to ask.
    Pending { event: Vec<u8>, meta: Meta },
    /// The runtime holds it.
    Running { deadline: Instant },
    /// The runtime is sending its answer.
    Answering { deadline: Instant },
    /// Over; the caller picks the outcome up.
    Done(Outcome),
}

#[derive(Debug)]
struct Slot {
    id: String,
    stage: Stage,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped each time the runtime ends: waits of an older runtime end.
    generation: u64,
    /// The generation that asked for an invocation (and was reported ready) last.
    ready_generation: Option<u64>,
    /// The end of the current runtime's init phase: until it first asks for an invocation,
    /// callers wait at least until then.
    init_until: Option<Instant>,
    /// When the current runtime first asked for an invocation: a caller that arrived before
    /// then gets its whole timeout from then (the init phase is not its time).
    ready_at: Option<Instant>,
    /// Some runtime asked for an invocation: `init/error` is over.
    initialised: bool,
    /// A call timed out and the runtime is about to be killed: nothing is handed out until it
    /// ended.
    doomed: bool,
    slot: Option<Slot>,
    /// Arrival order of the callers waiting for the slot.
    next_ticket: u64,
    serving: u64,
    /// Tickets whose callers gave up (or got the slot) before their turn was passed on.
    abandoned: BTreeSet<u64>,
    answered: VecDeque<String>,
    events: Vec<LambdaEvent>,
}

/// The shared state of the server.
pub struct Broker {
    state: Mutex<State>,
    changed: Condvar,
    timeout: Duration,
    init_timeout: Duration,
    /// Tells the init there are events (a signal to PID 1 in the VM).
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Broker {
    /// `timeout`: how long the runtime may hold an event; `init_timeout`: how long a runtime
    /// just started may take to ask for its first (callers wait for it that long). The first
    /// runtime's init phase starts now.
    pub fn new(
        timeout: Duration,
        init_timeout: Duration,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        let b = Broker {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            timeout,
            init_timeout,
            wake,
        };
        b.runtime_started();
        b
    }

    /// The function's timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How long a runtime just started may take to ask for its first invocation.
    pub fn init_timeout(&self) -> Duration {
        self.init_timeout
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock leaves consistent state behind (every
        // change is one assignment), and the init must keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `deadline` (or forever) for a change; returns the guard and whether time is
    /// up.
    fn wait<'a>(
        &self,
        g: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, State>, bool) {
        match deadline {
            None => (
                self.changed.wait(g).unwrap_or_else(|p| p.into_inner()),
                false,
            ),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return (g, true);
                }
                let (g, _) = self
                    .changed
                    .wait_timeout(g, d - now)
                    .unwrap_or_else(|p| p.into_inner());
                (g, Instant::now() >= d)
            }
        }
    }

    fn event(&self, s: &mut State, e: LambdaEvent) {
        // A timeout is never dropped: without it the stuck runtime would never be killed and
        // no invocation handed out again. Others (readiness, init errors) are bounded.
        if s.events.len() < MAX_EVENTS || matches!(e, LambdaEvent::TimedOut { .. }) {
            s.events.push(e);
        }
        (self.wake)();
    }

    /// How long a caller whose own bound is `queued` waits for the slot, or for the runtime to
    /// take its event: while the runtime has not asked for its first invocation (its init
    /// phase), until the init phase is over too (Lambda's function timeout does not cover
    /// the runtime's start-up).
    ///
    /// `queued` is the caller's arrival plus the function's timeout. A caller that arrived
    /// before the runtime became ready waits a whole timeout from then; no caller waits more
    /// than its timeout and one init phase (a runtime that keeps restarting cannot hold it).
    fn queue_bound(&self, s: &State, queued: Instant) -> Instant {
        let arrived = queued.checked_sub(self.timeout).unwrap_or(queued);
        let bound = match (s.init_until, s.ready_at) {
            (Some(init), _) if s.ready_generation != Some(s.generation) => queued.max(init),
            (_, Some(ready)) if ready > arrived => queued.max(ready + self.timeout),
            _ => queued,
        };
        bound.min(queued + self.init_timeout)
    }

    /// A caller waits for the slot, in arrival order, until `deadline` (or the end of the
    /// runtime's init phase, if later); then it holds the slot under a new request id (`id`),
    /// reading its event. `false` when time ran out.
    pub fn enter(&self, id: &str, deadline: Instant) -> bool {
        let mut s = self.lock();
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        loop {
            if s.slot.is_none() && s.serving == ticket {
                skip_ticket(&mut s, ticket);
                s.slot = Some(Slot {
                    id: id.to_owned(),
                    stage: Stage::Reading,
                });
                return true;
            }
            let bound = self.queue_bound(&s, deadline);
            let (g, late) = self.wait(s, Some(bound));
            s = g;
            let late = late && Instant::now() >= self.queue_bound(&s, deadline);
            if late && !(s.slot.is_none() && s.serving == ticket) {
                // Give the turn up: later tickets skip this one.
                skip_ticket(&mut s, ticket);
                self.changed.notify_all();
                return false;
            }
        }
    }

    /// The caller could not read its event: the slot is free again.
    pub fn abandon(&self, id: &str) {
        let mut s = self.lock();
        if s.slot.as_ref().is_some_and(|sl| sl.id == id) {
            s.slot = None;
            self.changed.notify_all();
        }
    }

    /// The caller's event is read: the runtime may take it.
    pub fn submit(&self, id: &str, event: Vec<u8>, meta: Meta) {
        let mut s = self.lock();
        if let Some(slot) = s.slot.as_mut().filter(|sl| sl.id == id) {
            slot.stage = Stage::Pending { event, meta };
            self.changed.notify_all();
        }
    }

    /// The caller waits for its outcome: until the runtime answers, or the deadline: `queued`
    /// (or the end of the runtime's init phase, if later) while the runtime has not taken the
    /// event, then the one set when it took it. Frees the slot.
    pub fn wait_outcome(&self, id: &str, queued: Instant) -> Outcome {
        let mut s = self.lock();
        loop {
            let Some(slot) = s.slot.as_mut().filter(|sl| sl.id == id) else {
                // Cannot happen (only this caller frees its slot); answer as if it timed out.
                return Outcome::TimedOut { taken: false };
            };
            let deadline = match &slot.stage {
                Stage::Done(_) => {
                    let Some(Slot {
                        stage: Stage::Done(o),
                        ..
                    }) = s.slot.take()
                    else {
                        unreachable!("matched just above")
                    };
                    self.changed.notify_all();
                    return o;
                }
                Stage::Reading | Stage::Pending { .. } => None,
                Stage::Running { deadline } | Stage::Answering { deadline } => Some(*deadline),
            };
            let deadline = deadline.unwrap_or_else(|| self.queue_bound(&s, queued));
            let (g, late) = self.wait(s, Some(deadline));
            s = g;
            if !late {
                continue;
            }
            let taken = match s.slot.as_ref().map(|sl| &sl.stage) {
                Some(Stage::Done(_)) => continue,
                Some(Stage::Running { deadline } | Stage::Answering { deadline }) => {
                    if Instant::now() < *deadline {
                        continue;
                    }
                    true
                }
                Some(Stage::Reading | Stage::Pending { .. }) => {
                    if Instant::now() < self.queue_bound(&s, queued) {
                        continue;
                    }
                    false
                }
                None => false,
            };
            s.slot = None;
            if taken {
                s.doomed = true;
                remember(&mut s, id);
                let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
                self.event(
                    &mut s,
                    LambdaEvent::TimedOut {
                        request_id: id.to_owned(),
                        timeout_ms,
                    },
                );
            }
            self.changed.notify_all();
            return Outcome::TimedOut { taken };
        }
    }

    /// The runtime asks for an invocation (`GET …/next`) and waits for one. The first request
    /// of each runtime reports it ready. `None` when the runtime that asked has ended, or
    /// `alive` (checked before an event is handed out, and every [`ALIVE_CHECK`] meanwhile)
    /// says its connection is gone: its connection is closed and no event is lost to it.
    pub fn next(&self, alive: &mut dyn FnMut() -> bool) -> Option<Handed> {
        let mut s = self.lock();
        let generation = s.generation;
        s.initialised = true;
        if s.ready_generation != Some(generation) {
            s.ready_generation = Some(generation);
            s.ready_at = Some(Instant::now());
            self.changed.notify_all();
            self.event(&mut s, LambdaEvent::Ready);
        }
        loop {
            if s.generation != generation {
                return None;
            }
            if !s.doomed {
                if let Some(slot) = s.slot.as_mut() {
                    if matches!(slot.stage, Stage::Pending { .. }) {
                        if !alive() {
                            return None;
                        }
                        let deadline = Instant::now() + self.timeout;
                        let Stage::Pending { event, meta } =
                            std::mem::replace(&mut slot.stage, Stage::Running { deadline })
                        else {
                            unreachable!("matched just above")
                        };
                        let id = slot.id.clone();
                        self.changed.notify_all();
                        return Some(Handed {
                            id,
                            event,
                            meta,
                            deadline,
                        });
                    }
                }
            }
            let (g, late) = self.wait(s, Some(Instant::now() + ALIVE_CHECK));
            s = g;
            if late && !alive() {
                return None;
            }
        }
    }

    /// The event could not be written to the runtime: it waits for the next request again
    /// (unless its caller gave up meanwhile).
    pub fn requeue(&self, h: Handed) {
        let mut s = self.lock();
        if let Some(slot) = s.slot.as_mut().filter(|sl| sl.id == h.id) {
            if matches!(slot.stage, Stage::Running { .. }) {
                slot.stage = Stage::Pending {
                    event: h.event,
                    meta: h.meta,
                };
                self.changed.notify_all();
            }
        }
    }

    /// The runtime starts to answer invocation `id` (its body not read yet).
    pub fn begin_answer(&self, id: &str) -> Result<(), AnswerError> {
        let mut s = self.lock();
        if let Some(slot) = s.slot.as_mut().filter(|sl| sl.id == id) {
            return match slot.stage {
                Stage::Running { deadline } => {
                    slot.stage = Stage::Answering { deadline };
                    Ok(())
                }
                Stage::Answering { .. } | Stage::Done(_) => Err(AnswerError::AlreadyAnswered),
                // Not handed out: the runtime cannot know this id.
                Stage::Reading | Stage::Pending { .. } => Err(AnswerError::Unknown),
            };
        }
        if s.answered.iter().any(|a| a == id) {
            Err(AnswerError::AlreadyAnswered)
        } else {
            Err(AnswerError::Unknown)
        }
    }

    /// The runtime's answer to `id` is read; `false` when its caller is gone (timed out).
    pub fn finish_answer(&self, id: &str, outcome: Outcome) -> bool {
        let mut s = self.lock();
        let Some(slot) = s.slot.as_mut().filter(|sl| sl.id == id) else {
            return false;
        };
        if !matches!(slot.stage, Stage::Answering { .. }) {
            return false;
        }
        slot.stage = Stage::Done(outcome);
        remember(&mut s, id);
        self.changed.notify_all();
        true
    }

    /// The runtime's answer broke off (its connection failed): it may answer again.
    pub fn abort_answer(&self, id: &str) {
        let mut s = self.lock();
        if let Some(slot) = s.slot.as_mut().filter(|sl| sl.id == id) {
            if let Stage::Answering { deadline } = slot.stage {
                slot.stage = Stage::Running { deadline };
            }
        }
    }

    /// `POST /2018-06-01/runtime/init/error`: reported to the init (which fails the boot) when
    /// no runtime has asked for an invocation yet; `false` (refused) after.
    pub fn init_error(&self, message: String) -> bool {
        let mut s = self.lock();
        if s.initialised {
            return false;
        }
        self.event(&mut s, LambdaEvent::InitError(message));
        true
    }

    /// A runtime process was started: its init phase (see [`Broker::queue_bound`]) starts.
    pub fn runtime_started(&self) {
        let mut s = self.lock();
        s.init_until = Some(Instant::now() + self.init_timeout);
        self.changed.notify_all();
    }

    /// The runtime process ended (`how`, for people): the event it held fails with
    /// [`Outcome::RuntimeExited`], its waits end, and the next runtime starts afresh.
    pub fn runtime_ended(&self, how: &str) {
        let mut s = self.lock();
        s.generation += 1;
        s.doomed = false;
        let held = s.slot.as_ref().and_then(|sl| match sl.stage {
            Stage::Running { .. } | Stage::Answering { .. } => Some(sl.id.clone()),
            _ => None,
        });
        if let (Some(id), Some(slot)) = (held, s.slot.as_mut()) {
            slot.stage = Stage::Done(Outcome::RuntimeExited {
                how: how.to_owned(),
            });
            remember(&mut s, &id);
        }
        self.changed.notify_all();
    }

    /// The events since the last call.
    pub fn take_events(&self) -> Vec<LambdaEvent> {
        std::mem::take(&mut self.lock().events)
    }
}

fn remember(s: &mut State, id: &str) {
    if s.answered.len() == ANSWERED_KEPT {
        s.answered.pop_front();
    }
    s.answered.push_back(id.to_owned());
}

/// A caller gave up its place in the queue (its deadline passed): the turn passes it by.
fn skip_ticket(s: &mut State, ticket: u64) {
    s.abandoned.insert(ticket);
    while s.abandoned.remove(&s.serving) {
        s.serving += 1;
    }
}
