//! Playbooks: scenario tests of [`proxy_core`] that read top to bottom, events in (`>>`) and
//! commands out (`<<`), after mitmproxy's `test/mitmproxy/proxy/tutils.py`.
//!
//! ```
//! use playbooks::*;
//!
//! Playbook::new(http_proxy())
//!     .recv(CLIENT, "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
//!     .expect(hook(F1, HookKind::RequestHeaders)).expect(pause(CLIENT))
//!     .reply(F1, HookReply::Continue)
//!     .expect(hook(F1, HookKind::Request))
//!     .reply(F1, HookReply::Continue)
//!     .expect(open(S1, "a.test:80")).expect(resume(CLIENT))
//!     .opened(S1)
//!     .expect(send(S1, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
//!     .run();
//! ```
//!
//! # How a script runs
//!
//! A [`Playbook`] is a list of steps. [`Playbook::run`] builds a fresh [`Connection`], feeds it
//! [`Event::Start`] (every playbook begins with it, as in mitmproxy) and then walks the steps:
//!
//! - An **event** step (`recv`, `closed`, `opened`, `open_failed`, `drained`, `wakeup`, `shutdown`,
//!   `reply`, `reply_with`, `update`) first checks that every command produced so far has been
//!   expected, then hands the event to the core at the current virtual time and collects all
//!   the commands it yields.
//! - An **expectation** step ([`Playbook::expect`] with [`send`], [`open`], [`close`],
//!   [`half_close`], [`pause`], [`resume`], [`hook`], [`log`]) takes the next collected
//!   command and compares it. So the expectations written after an event are exactly the
//!   commands that event produced, in order.
//! - [`Playbook::advance`] moves the virtual clock (which starts at one `Instant::now()` taken
//!   when the run begins and moves only when the script says so); [`Playbook::wakeup`] then
//!   delivers [`Event::Wakeup`]. Check steps ([`Playbook::expect_timeout`],
//!   [`Playbook::expect_finished`]) look at `poll_timeout` and `is_closed` at that point.
//! - At the end, every collected command must have been expected.
//!
//! ## Rules that make scripts short
//!
//! - **Sends are joined.** Consecutive [`Command::SendData`] to the same connection (within the
//!   output of one event) count as one command whose data is the concatenation, and
//!   consecutive `send` expectations to the same connection are joined the same way. A script
//!   asserts the bytes that leave, not how the core happened to slice them.
//! - **Logs are ignored unless asked for.** [`Command::Log`] never takes part in the order
//!   comparison and is shown in the transcript only. A [`log`] expectation asserts that one of
//!   the log lines produced by the latest event (not yet claimed by another `log`
//!   expectation) contains the given substring; it does not care where among that event's
//!   commands the line was. [`Playbook::strict_logs`] additionally fails on log lines that no
//!   `log` expectation claimed.
//! - **Pauses are asserted** by default; [`Playbook::ignore_pauses`] drops `PauseReading` and
//!   `ResumeReading` from the comparison for scenarios about something else.
//! - **The driver contract is enforced on the script**: data may not be delivered to a
//!   connection the core has paused (unless [`Playbook::allow_reads_while_paused`]), and a
//!   `reply` must answer a blocking hook that is still unanswered.
//!
//! On any mismatch, on a panic inside the core, or on a failing `inspect` closure, the run
//! panics with a transcript of everything so far (`>>` events in, `<<` commands out, bytes as
//! escaped strings), the point of divergence marked `!!`, and the rest of the script.
//!
//! [`Playbook::run_split`] runs the script normally, then replays it with every
//! `DataReceived` fed one byte at a time, and with each `DataReceived` split in two at every
//! byte boundary; each replay must produce the same (joined) commands. This proves the
//! parsers are incremental. The pieces of one `DataReceived` go in back to back (bytes a
//! driver has read are delivered even if the first piece makes the core pause), and the
//! commands of all of them are compared as the output of the one scripted event. Output that
//! legitimately depends on how input was sliced (a streamed body re-chunked as it arrives, a
//! request rejected before or after its head was routed) does not fit `run_split`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use proxy_core::{
    ClientInfo, Command, Config, ConnId, Connection, Event, FlowError, FlowId, Headers, Hook, HookKind, HookReply,
    HookSet, HttpFlow, LogLevel, Mode, OpenError, Request, Response, Scheme, ServerAddr, Version,
};
pub use proxy_core::testing::Alone;
// `Peer` stays at `proxy_core::websocket::Peer`: `pump::Peer` is another.
pub use proxy_core::websocket::{MaskKeys, MessageKind, Oversize, WebSocketEnd, WebSocketLimits, WebSocketMessage};

/// The client connection.
pub const CLIENT: ConnId = ConnId::CLIENT;
/// Upstream connections, in the order the core opens them.
pub const S1: ConnId = ConnId(1);
pub const S2: ConnId = ConnId(2);
pub const S3: ConnId = ConnId(3);
/// Flows (and connection-level hooks), in the order the core issues them.
pub const F1: FlowId = FlowId(1);
pub const F2: FlowId = FlowId(2);
pub const F3: FlowId = FlowId(3);
pub const F4: FlowId = FlowId(4);
pub const F5: FlowId = FlowId(5);
pub const F6: FlowId = FlowId(6);

/// The hooks about HTTP flows.
pub const HTTP_HOOKS: [HookKind; 6] = [
    HookKind::HttpConnect,
    HookKind::RequestHeaders,
    HookKind::Request,
    HookKind::ResponseHeaders,
    HookKind::Response,
    HookKind::Error,
];

/// A regular proxy raising every HTTP hook but no connection-level ones, so that the first
/// request is `F1` and the first server `S1`.
pub fn http_proxy() -> Config {
    Config { hooks: HTTP_HOOKS.into_iter().collect(), ..Config::default() }
}

/// A regular proxy raising no hooks at all.
pub fn no_hooks() -> Config {
    Config { hooks: HookSet::NONE, ..Config::default() }
}

/// A regular proxy raising exactly `hooks`.
pub fn with_hooks(hooks: impl IntoIterator<Item = HookKind>) -> Config {
    Config { hooks: hooks.into_iter().collect(), ..Config::default() }
}

/// The upstream proxy of [`upstream_mode`] configurations.
pub const UPSTREAM: &str = "127.0.0.1:3128";

/// `config` in upstream mode: everything goes on through the proxy at [`UPSTREAM`].
pub fn upstream_mode(config: Config) -> Config {
    let proxy = ServerAddr::new("127.0.0.1", 3128);
    Config { mode: Mode::Upstream { proxy, tls: false, auth: None }, ..config }
}

/// The client every playbook's connection belongs to.
pub fn client_info() -> ClientInfo {
    ClientInfo::new(SocketAddr::from(([127, 0, 0, 1], 50000)), SocketAddr::from(([127, 0, 0, 1], 8080)))
}

/// The bytes of an error response the proxy makes itself (`Response::text`): `status reason`,
/// a plain-text body `"<reason in lower case>: <message>\n"`, and `Connection: close` when the
/// connection ends after it.
pub fn proxy_error(status: u16, reason: &str, message: &str, close: bool) -> String {
    let body = format!("{}: {message}\n", reason.to_ascii_lowercase());
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "connection: close\r\n" } else { "" },
    )
}

// ---------------------------------------------------------------------------------------------
// Expectations

type Inspect = Rc<dyn Fn(&Hook)>;
type MakeReply = Rc<dyn Fn(&HttpFlow) -> HookReply>;

/// One expected command. Build with [`send`], [`open`], [`close`], [`half_close`], [`pause`],
/// [`resume`], [`hook`] or [`log`].
#[derive(Clone)]
pub struct Expect(Exp);

#[derive(Clone)]
enum Exp {
    Send { conn: ConnId, data: Vec<u8> },
    Open { conn: ConnId, addr: String },
    Reuse { conn: ConnId, key: String },
    Park { conn: ConnId, key: String },
    Close { conn: ConnId, half: bool },
    Pause(ConnId),
    Resume(ConnId),
    Forward { from: ConnId, to: ConnId, len: u64 },
    Hook { flow: FlowId, kind: HookKind, inspect: Option<Inspect> },
    Log { level: Option<LogLevel>, text: String },
}

/// `SendData` of exactly `data` to `conn` (consecutive sends to one connection are joined).
pub fn send(conn: ConnId, data: impl AsRef<[u8]>) -> Expect {
    Expect(Exp::Send { conn, data: data.as_ref().to_vec() })
}

/// `OpenConnection` of `conn` to `addr`, written `host:port` (`[v6]:port` for IPv6).
pub fn open(conn: ConnId, addr: &str) -> Expect {
    Expect(Exp::Open { conn, addr: addr.to_owned() })
}

/// `Reuse` of `conn` for the pool key `key` (as `PoolKey` displays it: `http://host:port`).
pub fn reuse(conn: ConnId, key: &str) -> Expect {
    Expect(Exp::Reuse { conn, key: key.to_owned() })
}

/// `Park` of `conn`, its pool key `key`.
pub fn park(conn: ConnId, key: &str) -> Expect {
    Expect(Exp::Park { conn, key: key.to_owned() })
}

/// A full `CloseConnection` of `conn`.
pub fn close(conn: ConnId) -> Expect {
    Expect(Exp::Close { conn, half: false })
}

/// A half `CloseConnection` of `conn` (shut down our writing side only).
pub fn half_close(conn: ConnId) -> Expect {
    Expect(Exp::Close { conn, half: true })
}

pub fn pause(conn: ConnId) -> Expect {
    Expect(Exp::Pause(conn))
}

pub fn resume(conn: ConnId) -> Expect {
    Expect(Exp::Resume(conn))
}

/// A `Forward` of `len` bytes from `from` to `to`: the driver is to move them by itself.
pub fn forward(from: ConnId, to: ConnId, len: u64) -> Expect {
    Expect(Exp::Forward { from, to, len })
}

/// A `Hook` of kind `kind` for `flow`. Add [`Expect::inspect`] to look at the flow it carries.
pub fn hook(flow: FlowId, kind: HookKind) -> Expect {
    Expect(Exp::Hook { flow, kind, inspect: None })
}

/// A log line of the latest event containing `text` (see the crate docs: logs are otherwise
/// ignored, and never ordered).
pub fn log(text: &str) -> Expect {
    Expect(Exp::Log { level: None, text: text.to_owned() })
}

/// [`log`] at a given level.
pub fn log_at(level: LogLevel, text: &str) -> Expect {
    Expect(Exp::Log { level: Some(level), text: text.to_owned() })
}

impl Expect {
    /// For a [`hook`] expectation: run `f` on the flow the hook carries (assert on it). A panic
    /// in `f` fails the playbook with its transcript.
    pub fn inspect(self, f: impl Fn(&HttpFlow) + 'static) -> Self {
        self.inspect_hook(move |hook| match hook.flow() {
            Some(flow) => f(flow),
            None => panic!("inspect() on a hook that carries no flow"),
        })
    }

    /// For a [`hook`] expectation of [`HookKind::WebSocketMessage`]: run `f` on the message.
    pub fn inspect_message(self, f: impl Fn(&WebSocketMessage) + 'static) -> Self {
        self.inspect_hook(move |hook| match hook {
            Hook::WebSocketMessage(m) => f(m),
            _ => panic!("inspect_message() on a hook that carries no WebSocket message"),
        })
    }

    /// For a [`hook`] expectation of [`HookKind::WebSocketEnd`]: run `f` on how it ended.
    pub fn inspect_end(self, f: impl Fn(&WebSocketEnd) + 'static) -> Self {
        self.inspect_hook(move |hook| match hook {
            Hook::WebSocketEnd(e) => f(e),
            _ => panic!("inspect_end() on a hook that is not WebSocketEnd"),
        })
    }

    /// For a [`hook`] expectation: run `f` on the hook itself.
    pub fn inspect_hook(self, f: impl Fn(&Hook) + 'static) -> Self {
        match self.0 {
            Exp::Hook { flow, kind, .. } => Expect(Exp::Hook { flow, kind, inspect: Some(Rc::new(f)) }),
            _ => panic!("inspect() applies to hook() expectations only"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Steps

#[derive(Clone)]
enum Ev {
    Start,
    Recv(ConnId, Bytes),
    Closed(ConnId),
    Opened(ConnId),
    OpenFailed(ConnId, OpenError),
    Drained(ConnId),
    Forwarded(ConnId, u64, u64),
    Wakeup,
    Reply(FlowId, ReplySpec),
    Inject(FlowId, proxy_core::websocket::Peer, MessageKind, Bytes),
    Shutdown,
}

#[derive(Clone)]
enum ReplySpec {
    Fixed(HookReply),
    With(MakeReply),
}

#[derive(Clone)]
enum Check {
    /// `poll_timeout()` is this far from now (`None`: no timeout).
    Timeout(Option<Duration>),
    Finished(bool),
}

#[derive(Clone)]
enum Step {
    Event(Ev),
    Expect(Exp),
    Advance(Duration),
    Check(Check),
}

/// A scenario: events to feed, commands to expect. See the crate docs.
#[must_use = "a playbook does nothing until .run()"]
pub struct Playbook {
    config: Arc<Config>,
    steps: Vec<Step>,
    strict_logs: bool,
    ignore_pauses: bool,
    allow_paused_reads: bool,
    split_limit: usize,
    alone: Option<Alone>,
    client: ClientInfo,
}

impl Playbook {
    /// A playbook for a fresh connection with `config`. It begins with `>> Start`.
    pub fn new(config: Config) -> Self {
        Self {
            config: Arc::new(config),
            steps: vec![Step::Event(Ev::Start)],
            strict_logs: false,
            ignore_pauses: false,
            allow_paused_reads: false,
            split_limit: 512,
            alone: None,
            client: client_info(),
        }
    }

    /// The connection's client is `client` rather than [`client_info`]'s.
    pub fn client(mut self, client: ClientInfo) -> Self {
        self.client = client;
        self
    }

    /// A playbook for one layer driven alone (see [`Alone`]): no mode admits the client, and a
    /// hand-over shows as a debug log line instead of a new layer.
    pub fn alone(layer: Alone, config: Config) -> Self {
        Self { alone: Some(layer), ..Self::new(config) }
    }

    /// Fail on log lines that no [`log`] expectation claimed.
    pub fn strict_logs(mut self) -> Self {
        self.strict_logs = true;
        self
    }

    /// Leave `PauseReading`/`ResumeReading` out of the comparison (they still show in the
    /// transcript).
    pub fn ignore_pauses(mut self) -> Self {
        self.ignore_pauses = true;
        self
    }

    /// Allow the script to deliver data to a connection the core has paused, which a real
    /// driver never does.
    pub fn allow_reads_while_paused(mut self) -> Self {
        self.allow_paused_reads = true;
        self
    }

    /// In [`run_split`](Self::run_split), split only within the first `n` bytes of each
    /// `DataReceived` (default 512); the rest arrives in one piece.
    pub fn split_limit(mut self, n: usize) -> Self {
        self.split_limit = n.max(1);
        self
    }

    fn event(mut self, ev: Ev) -> Self {
        self.steps.push(Step::Event(ev));
        self
    }

    /// `>> DataReceived`: `data` arrives on `conn`.
    pub fn recv(self, conn: ConnId, data: impl AsRef<[u8]>) -> Self {
        self.event(Ev::Recv(conn, Bytes::copy_from_slice(data.as_ref())))
    }

    /// `>> ConnectionClosed`: the peer of `conn` sends nothing more.
    pub fn closed(self, conn: ConnId) -> Self {
        self.event(Ev::Closed(conn))
    }

    /// `>> Opened`: the connection the core asked to open is up.
    pub fn opened(self, conn: ConnId) -> Self {
        self.event(Ev::Opened(conn))
    }

    pub fn open_failed(self, conn: ConnId, error: OpenError) -> Self {
        self.event(Ev::OpenFailed(conn, error))
    }

    /// `>> WriteDrained`: everything sent on `conn` has left.
    pub fn drained(self, conn: ConnId) -> Self {
        self.event(Ev::Drained(conn))
    }

    /// `>> Forwarded`: the driver moved `len` more bytes of a `Forward` from `from`, and
    /// holds none: the forward waits for `from`.
    pub fn forwarded(self, from: ConnId, len: u64) -> Self {
        self.event(Ev::Forwarded(from, len, 0))
    }

    /// `>> Forwarded` with `pending` bytes taken from `from` that the destination has not
    /// taken yet: the forward waits for the destination.
    pub fn forwarded_held(self, from: ConnId, len: u64, pending: u64) -> Self {
        self.event(Ev::Forwarded(from, len, pending))
    }

    /// `>> Wakeup` at the current virtual time.
    pub fn wakeup(self) -> Self {
        self.event(Ev::Wakeup)
    }

    /// Move the virtual clock forward. No event is delivered.
    pub fn advance(mut self, by: Duration) -> Self {
        self.steps.push(Step::Advance(by));
        self
    }

    /// `>> Shutdown`: the proxy began a graceful shutdown.
    pub fn shutdown(self) -> Self {
        self.event(Ev::Shutdown)
    }

    /// `>> HookReply` for `flow`.
    pub fn reply(self, flow: FlowId, reply: HookReply) -> Self {
        self.event(Ev::Reply(flow, ReplySpec::Fixed(reply)))
    }

    /// `>> HookReply` for `flow`, built by `f` from the flow carried by the latest hook for it.
    pub fn reply_with(self, flow: FlowId, f: impl Fn(&HttpFlow) -> HookReply + 'static) -> Self {
        self.event(Ev::Reply(flow, ReplySpec::With(Rc::new(f))))
    }

    /// `>> Inject`: user code sends a WebSocket message on `flow` to `to`.
    pub fn inject(self, flow: FlowId, to: proxy_core::websocket::Peer, kind: MessageKind, payload: impl AsRef<[u8]>) -> Self {
        self.event(Ev::Inject(flow, to, kind, Bytes::copy_from_slice(payload.as_ref())))
    }

    /// `>> HookReply::Update` with the flow of the latest hook for `flow`, changed by `f`.
    pub fn update(self, flow: FlowId, f: impl Fn(&mut HttpFlow) + 'static) -> Self {
        self.reply_with(flow, move |current| {
            let mut changed = current.clone();
            f(&mut changed);
            HookReply::Update(Box::new(changed))
        })
    }

    /// `<<`: the next command is `e`.
    pub fn expect(mut self, e: Expect) -> Self {
        if let (Exp::Send { conn, data }, Some(Step::Expect(Exp::Send { conn: prev, data: joined }))) =
            (&e.0, self.steps.last_mut())
        {
            if prev == conn {
                joined.extend_from_slice(data);
                return self;
            }
        }
        self.steps.push(Step::Expect(e.0));
        self
    }

    /// `poll_timeout()` is `in_` from the current virtual time (`None`: no timer wanted).
    pub fn expect_timeout(mut self, in_: Option<Duration>) -> Self {
        self.steps.push(Step::Check(Check::Timeout(in_)));
        self
    }

    /// `is_closed()` is true: every connection is closed and nothing is left to do.
    pub fn expect_finished(mut self) -> Self {
        self.steps.push(Step::Check(Check::Finished(true)));
        self
    }

    /// `is_closed()` is false.
    pub fn expect_not_finished(mut self) -> Self {
        self.steps.push(Step::Check(Check::Finished(false)));
        self
    }

    /// Run the script once; panic with a transcript on the first divergence.
    pub fn run(self) {
        Runner::new(&self, Split::None).run();
    }

    /// [`run`](Self::run), then replay the script with every `DataReceived` fed one byte at a
    /// time, then once per byte boundary of each `DataReceived` with that one event split in
    /// two there (within the first [`split_limit`](Self::split_limit) bytes). Every replay
    /// must produce the same joined commands.
    pub fn run_split(self) {
        Runner::new(&self, Split::None).run();
        Runner::new(&self, Split::Bytewise).run();
        let recvs: Vec<usize> = self
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Event(Ev::Recv(_, data)) => Some(data.len()),
                _ => None,
            })
            .collect();
        for (i, len) in recvs.into_iter().enumerate() {
            for at in 1..len.min(self.split_limit + 1) {
                Runner::new(&self, Split::At { recv: i, at }).run();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running

#[derive(Clone, Copy)]
enum Split {
    None,
    /// Every `DataReceived` one byte at a time (up to the split limit, then the rest).
    Bytewise,
    /// `DataReceived` number `recv` (0-based) in two pieces, at byte `at`.
    At { recv: usize, at: usize },
}

/// A command collected from the core, waiting to be matched.
struct Got {
    cmd: Cmd,
    /// Its line in the transcript.
    line: usize,
}

/// A command in comparable form (sends joined, hooks kept whole).
enum Cmd {
    Send { conn: ConnId, data: Vec<u8> },
    Open { conn: ConnId, addr: ServerAddr },
    Reuse { conn: ConnId, key: String },
    Park { conn: ConnId, key: String },
    Close { conn: ConnId, half: bool },
    Pause(ConnId),
    Resume(ConnId),
    Forward { from: ConnId, to: ConnId, len: u64 },
    Hook { flow: FlowId, hook: Hook },
    /// A carrier's message, or its capacity: what a playbook of one connection never expects.
    Carrier(String),
}

struct LogLine {
    level: LogLevel,
    message: String,
    claimed: bool,
}

struct Runner<'a> {
    pb: &'a Playbook,
    split: Split,
    conn: Connection,
    start: Instant,
    now: Instant,
    transcript: Vec<String>,
    got: VecDeque<Got>,
    logs: Vec<LogLine>,
    /// The flow carried by the latest hook for each flow id.
    flows: BTreeMap<FlowId, HttpFlow>,
    /// Blocking hooks not answered yet.
    unanswered: BTreeMap<FlowId, usize>,
    paused: BTreeSet<ConnId>,
    recv_index: usize,
    step: usize,
    /// The first step not yet carried out, for the failure report.
    rest_from: usize,
}

impl<'a> Runner<'a> {
    fn new(pb: &'a Playbook, split: Split) -> Self {
        let start = Instant::now();
        Self {
            pb,
            split,
            conn: match &pb.alone {
                None => Connection::new(pb.config.clone(), pb.client.clone()),
                Some(layer) => Connection::alone(pb.config.clone(), pb.client.clone(), layer.clone()),
            },
            start,
            now: start,
            transcript: Vec::new(),
            got: VecDeque::new(),
            logs: Vec::new(),
            flows: BTreeMap::new(),
            unanswered: BTreeMap::new(),
            paused: BTreeSet::new(),
            recv_index: 0,
            step: 0,
            rest_from: 0,
        }
    }

    fn run(mut self) {
        let steps = &self.pb.steps[..];
        while self.step < steps.len() {
            self.rest_from = self.step;
            match &steps[self.step] {
                Step::Event(ev) => {
                    self.settle();
                    self.rest_from = self.step + 1;
                    self.apply(ev);
                }
                Step::Expect(exp) => {
                    self.rest_from = self.step + 1;
                    self.expect(exp);
                }
                Step::Advance(by) => {
                    self.now += *by;
                    let t = self.elapsed();
                    self.transcript.push(format!("-- advance {} (now t={})", fmt_dur(*by), t));
                }
                Step::Check(check) => {
                    self.rest_from = self.step + 1;
                    self.check(check);
                }
            }
            self.step += 1;
        }
        self.rest_from = steps.len();
        self.settle();
    }

    fn elapsed(&self) -> String {
        fmt_dur(self.now - self.start)
    }

    /// Before an event (and at the end): every command so far must have been expected.
    fn settle(&mut self) {
        if let Some(got) = self.got.front() {
            let line = got.line;
            let what = format!("unexpected command {}", fmt_cmd(&got.cmd));
            self.fail(Some(line), &what, None);
        }
        if self.pb.strict_logs {
            if let Some(l) = self.logs.iter().find(|l| !l.claimed) {
                let what = format!("unexpected log line {:?} (strict_logs)", l.message);
                self.fail(None, &what, None);
            }
        }
        self.logs.clear();
    }

    fn apply(&mut self, ev: &Ev) {
        match ev {
            Ev::Recv(conn, data) => {
                if self.paused.contains(conn) && !self.pb.allow_paused_reads {
                    let what = format!(
                        "the script delivers data to {} while the core has paused reading it \
                         (a driver never does; see allow_reads_while_paused)",
                        fmt_conn(*conn)
                    );
                    self.fail(None, &what, None);
                }
                let pieces = self.pieces(data);
                self.recv_index += 1;
                if pieces.len() > 1 {
                    let sizes: Vec<String> = pieces.iter().map(|p| p.len().to_string()).collect();
                    let sizes = if sizes.len() > 8 {
                        format!("{} pieces: {}+…+{}", sizes.len(), sizes[..6].join("+"), sizes[sizes.len() - 1])
                    } else {
                        format!("{} pieces: {}", sizes.len(), sizes.join("+"))
                    };
                    self.transcript.push(format!(">> DataReceived({}, {}) as {sizes}", fmt_conn(*conn), fmt_bytes(data)));
                }
                for piece in &pieces {
                    let event = Event::DataReceived { conn: *conn, data: piece.clone() };
                    self.feed(event, pieces.len() == 1);
                }
            }
            Ev::Reply(flow, spec) => {
                match self.unanswered.get_mut(flow) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => {
                        let what = format!("the script replies to {} but no blocking hook of it is waiting", fmt_flow(*flow));
                        self.fail(None, &what, None);
                    }
                }
                let reply = match spec {
                    ReplySpec::Fixed(reply) => reply.clone(),
                    ReplySpec::With(make) => {
                        let Some(current) = self.flows.get(flow).cloned() else {
                            let what = format!("reply_with/update for {}: no hook has carried that flow", fmt_flow(*flow));
                            self.fail(None, &what, None);
                        };
                        match catch_unwind(AssertUnwindSafe(|| make(&current))) {
                            Ok(reply) => reply,
                            Err(e) => {
                                let what = format!("the reply closure panicked: {}", panic_text(&e));
                                self.fail(None, &what, None);
                            }
                        }
                    }
                };
                self.feed_shown(Event::HookReply { flow: *flow, reply });
            }
            Ev::Start => self.feed_shown(Event::Start),
            Ev::Closed(conn) => self.feed_shown(Event::ConnectionClosed { conn: *conn }),
            Ev::Opened(conn) => self.feed_shown(Event::Opened { conn: *conn }),
            Ev::OpenFailed(conn, error) => self.feed_shown(Event::OpenFailed { conn: *conn, error: error.clone() }),
            Ev::Drained(conn) => self.feed_shown(Event::WriteDrained { conn: *conn }),
            Ev::Forwarded(from, len, pending) => {
                self.feed_shown(Event::Forwarded { from: *from, len: *len, pending: *pending })
            }
            Ev::Wakeup => self.feed_shown(Event::Wakeup),
            Ev::Inject(flow, to, kind, payload) => {
                self.feed_shown(Event::Inject { flow: *flow, to: *to, kind: *kind, payload: payload.clone() })
            }
            Ev::Shutdown => self.feed_shown(Event::Shutdown),
        }
    }

    /// How this run slices `data` (the next `DataReceived` of the script).
    fn pieces(&self, data: &Bytes) -> Vec<Bytes> {
        match self.split {
            Split::None => vec![data.clone()],
            Split::At { recv, at } if recv == self.recv_index && at < data.len() => {
                vec![data.slice(..at), data.slice(at..)]
            }
            Split::At { .. } => vec![data.clone()],
            Split::Bytewise => {
                let n = data.len().min(self.pb.split_limit);
                let mut pieces: Vec<Bytes> = (0..n).map(|i| data.slice(i..i + 1)).collect();
                if n < data.len() {
                    pieces.push(data.slice(n..));
                }
                pieces
            }
        }
    }

    fn feed_shown(&mut self, event: Event) {
        self.feed(event, true);
    }

    /// Hand one event to the core and collect what it asks for.
    fn feed(&mut self, event: Event, shown: bool) {
        if shown {
            self.transcript.push(format!(">> {}", fmt_event(&event)));
        }
        let now = self.now;
        let conn = &mut self.conn;
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| conn.handle(now, event))) {
            let what = format!("the core panicked: {}", panic_text(&e));
            self.fail(None, &what, None);
        }
        loop {
            let conn = &mut self.conn;
            let cmd = match catch_unwind(AssertUnwindSafe(|| conn.poll_command())) {
                Ok(Some(cmd)) => cmd,
                Ok(None) => break,
                Err(e) => {
                    let what = format!("the core panicked in poll_command: {}", panic_text(&e));
                    self.fail(None, &what, None);
                }
            };
            self.collect(cmd);
        }
    }

    fn collect(&mut self, cmd: Command) {
        let cmd = match cmd {
            Command::Log { level, message } => {
                self.transcript.push(format!("<< Log({level:?}, {message:?})"));
                self.logs.push(LogLine { level, message, claimed: false });
                return;
            }
            Command::SendData { conn, data } => {
                if let Some(Got { cmd: Cmd::Send { conn: prev, data: joined }, line }) = self.got.back_mut() {
                    if *prev == conn {
                        joined.extend_from_slice(&data);
                        let text = format!("<< SendData({}, {})", fmt_conn(conn), fmt_bytes(joined));
                        self.transcript[*line] = text;
                        return;
                    }
                }
                Cmd::Send { conn, data: data.to_vec() }
            }
            Command::OpenConnection { conn, server } => Cmd::Open { conn, addr: server },
            Command::Reuse { conn, key, .. } => Cmd::Reuse { conn, key: key.to_string() },
            Command::Park { conn, parked } => {
                self.paused.remove(&conn);
                Cmd::Park { conn, key: parked.key().to_string() }
            }
            Command::CloseConnection { conn, half } => {
                if !half {
                    self.paused.remove(&conn);
                }
                Cmd::Close { conn, half }
            }
            Command::PauseReading { conn } => {
                self.paused.insert(conn);
                Cmd::Pause(conn)
            }
            Command::ResumeReading { conn } => {
                self.paused.remove(&conn);
                Cmd::Resume(conn)
            }
            Command::Forward { from, to, len } => Cmd::Forward { from, to, len },
            Command::Carry { .. } | Command::StreamOut { .. } | Command::Capacity { .. } => Cmd::Carrier(format!("{cmd:?}")),
            Command::Hook { flow, hook } => {
                if hook.is_blocking() {
                    *self.unanswered.entry(flow).or_default() += 1;
                }
                if let Some(f) = hook.flow() {
                    self.flows.insert(flow, f.clone());
                }
                Cmd::Hook { flow, hook }
            }
        };
        self.transcript.push(format!("<< {}", fmt_cmd(&cmd)));
        let ignored = self.pb.ignore_pauses && matches!(cmd, Cmd::Pause(_) | Cmd::Resume(_));
        if !ignored {
            let line = self.transcript.len() - 1;
            self.got.push_back(Got { cmd, line });
        }
    }

    fn expect(&mut self, exp: &Exp) {
        if let Exp::Log { level, text } = exp {
            let found = self
                .logs
                .iter_mut()
                .find(|l| !l.claimed && (level.is_none() || *level == Some(l.level)) && l.message.contains(text.as_str()));
            match found {
                Some(l) => l.claimed = true,
                None => {
                    let what = "no log line of the latest event matches".to_owned();
                    self.fail(None, &what, Some(exp));
                }
            }
            return;
        }
        let Some(got) = self.got.pop_front() else {
            self.fail(None, "the core emitted nothing more", Some(exp));
        };
        if let Some(detail) = mismatch(exp, &got.cmd) {
            self.fail(Some(got.line), &detail, Some(exp));
        }
        if let (Exp::Hook { inspect: Some(f), .. }, Cmd::Hook { hook, .. }) = (exp, &got.cmd) {
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(hook))) {
                let what = format!("inspect() failed: {}", panic_text(&e));
                self.fail(Some(got.line), &what, Some(exp));
            }
        }
    }

    fn check(&mut self, check: &Check) {
        match check {
            Check::Timeout(want) => {
                let got = self.conn.poll_timeout();
                let want_at = want.map(|d| self.now + d);
                if got != want_at {
                    let fmt = |t: Option<Instant>| match t {
                        None => "None".to_owned(),
                        Some(t) if t >= self.now => format!("in {}", fmt_dur(t - self.now)),
                        Some(t) => format!("{} ago", fmt_dur(self.now - t)),
                    };
                    let what = format!("poll_timeout() is {}, expected {}", fmt(got), fmt(want_at));
                    self.fail(None, &what, None);
                }
            }
            Check::Finished(want) => {
                if self.conn.is_closed() != *want {
                    let what = format!("is_closed() is {}, expected {}", !want, want);
                    self.fail(None, &what, None);
                }
            }
        }
    }

    /// Panic with the transcript so far, `line` marked, and the rest of the script.
    fn fail(&self, line: Option<usize>, what: &str, exp: Option<&Exp>) -> ! {
        let mut msg = String::new();
        let _ = write!(msg, "playbook mismatch");
        match self.split {
            Split::None => {}
            Split::Bytewise => msg.push_str(" (replay: every DataReceived one byte at a time)"),
            Split::At { recv, at } => {
                let _ = write!(msg, " (replay: DataReceived #{} split at byte {at})", recv + 1);
            }
        }
        let _ = writeln!(msg, " at step {} (t={}): {what}", self.step, self.elapsed());
        if let Some(exp) = exp {
            let _ = writeln!(msg, "  expected: << {}", fmt_exp(exp));
        }
        let _ = writeln!(msg, "\ntranscript (>> events in, << commands out):");
        for (i, text) in self.transcript.iter().enumerate() {
            let marked = line == Some(i);
            let _ = writeln!(msg, "{} {}", if marked { "!!" } else { "  " }, text);
            if marked {
                if let Some(exp) = exp {
                    let _ = writeln!(msg, "   ^^ expected << {}", fmt_exp(exp));
                }
            }
        }
        if line.is_none() {
            let _ = writeln!(msg, "!! <diverged here>");
        }
        let rest = &self.pb.steps[self.rest_from.min(self.pb.steps.len())..];
        if !rest.is_empty() {
            let _ = writeln!(msg, "\nrest of the script (not run):");
            for step in rest {
                let _ = writeln!(msg, "   {}", fmt_step(step));
            }
        }
        panic!("{msg}");
    }
}

/// Why `got` does not meet `exp`, or `None` if it does.
fn mismatch(exp: &Exp, got: &Cmd) -> Option<String> {
    let ok = match (exp, got) {
        (Exp::Send { conn, data }, Cmd::Send { conn: c, data: d }) => {
            if conn == c && data != d {
                return Some(bytes_diff(data, d));
            }
            conn == c
        }
        (Exp::Open { conn, addr }, Cmd::Open { conn: c, addr: a }) => conn == c && *addr == a.to_string(),
        (Exp::Reuse { conn, key }, Cmd::Reuse { conn: c, key: k }) | (Exp::Park { conn, key }, Cmd::Park { conn: c, key: k }) => {
            conn == c && key == k
        }
        (Exp::Close { conn, half }, Cmd::Close { conn: c, half: h }) => conn == c && half == h,
        (Exp::Pause(conn), Cmd::Pause(c)) | (Exp::Resume(conn), Cmd::Resume(c)) => conn == c,
        (Exp::Forward { from, to, len }, Cmd::Forward { from: f, to: t, len: l }) => from == f && to == t && len == l,
        (Exp::Hook { flow, kind, .. }, Cmd::Hook { flow: f, hook }) => flow == f && *kind == hook.kind(),
        _ => false,
    };
    (!ok).then(|| format!("got << {}", fmt_cmd(got)))
}

/// Where two byte strings part, with some context of each.
fn bytes_diff(want: &[u8], got: &[u8]) -> String {
    let at = want.iter().zip(got).take_while(|(a, b)| a == b).count();
    let from = at.saturating_sub(40);
    let window = |b: &[u8]| {
        let end = (at + 60).min(b.len());
        let mut s = String::new();
        if from > 0 {
            s.push('…');
        }
        s.push_str(&escape(&b[from.min(b.len())..end]));
        if end < b.len() {
            s.push('…');
        }
        s
    };
    format!(
        "sent bytes differ at byte {at} (expected {} bytes, got {}):\n    expected: \"{}\"\n    got:      \"{}\"",
        want.len(),
        got.len(),
        window(want),
        window(got)
    )
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn escape(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Bytes as an escaped string, shortened when long.
fn fmt_bytes(b: &[u8]) -> String {
    const MAX: usize = 320;
    if b.len() <= MAX {
        format!("\"{}\"", escape(b))
    } else {
        format!("\"{}\"…\"{}\" ({} bytes)", escape(&b[..240]), escape(&b[b.len() - 60..]), b.len())
    }
}

fn fmt_conn(c: ConnId) -> String {
    if c == CLIENT {
        "client".into()
    } else {
        format!("S{}", c.0)
    }
}

fn fmt_flow(f: FlowId) -> String {
    format!("F{}", f.0)
}

fn fmt_dur(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn fmt_reply(r: &HookReply) -> String {
    match r {
        HookReply::Continue => "Continue".into(),
        HookReply::Kill => "Kill".into(),
        HookReply::Passthrough => "Passthrough".into(),
        HookReply::Respond(resp) => format!("Respond({} {})", resp.status, resp.reason),
        HookReply::Update(flow) => format!("Update({})", fmt_flow_summary(flow)),
        HookReply::Message(m) => format!("Message({:?} {})", m.kind, fmt_bytes(&m.payload)),
        HookReply::Drop => "Drop".into(),
    }
}

fn fmt_flow_summary(f: &HttpFlow) -> String {
    let mut s = format!("{} {}", f.request.method, f.request.url());
    if let Some(r) = &f.response {
        let _ = write!(s, " -> {}", r.status);
    }
    if f.buffer_request {
        s.push_str(" buffer_request");
    }
    if f.buffer_response {
        s.push_str(" buffer_response");
    }
    if let Some(e) = &f.error {
        let _ = write!(s, " error={:?}", e.message);
    }
    s
}

fn fmt_event(e: &Event) -> String {
    match e {
        Event::Start => "Start".into(),
        Event::DataReceived { conn, data } => format!("DataReceived({}, {})", fmt_conn(*conn), fmt_bytes(data)),
        Event::ConnectionClosed { conn } => format!("ConnectionClosed({})", fmt_conn(*conn)),
        Event::Opened { conn } => format!("Opened({})", fmt_conn(*conn)),
        Event::OpenFailed { conn, error } => format!("OpenFailed({}, {error:?})", fmt_conn(*conn)),
        Event::Adopted { conn, parked } => format!("Adopted({}, {parked:?})", fmt_conn(*conn)),
        Event::WriteDrained { conn } => format!("WriteDrained({})", fmt_conn(*conn)),
        Event::Forwarded { from, len, pending } => format!("Forwarded({}, {len}, pending {pending})", fmt_conn(*from)),
        Event::Wakeup => "Wakeup".into(),
        Event::HookReply { flow, reply } => format!("HookReply({}, {})", fmt_flow(*flow), fmt_reply(reply)),
        Event::Inject { flow, to, kind, payload } => {
            format!("Inject({}, to {}, {kind:?} {})", fmt_flow(*flow), to.as_str(), fmt_bytes(payload))
        }
        Event::Joined { conn } => format!("Joined({})", fmt_conn(*conn)),
        Event::Carried { messages } => {
            let messages: Vec<String> = messages.iter().map(|(conn, message)| format!("{}: {message:?}", fmt_conn(*conn))).collect();
            format!("Carried({})", messages.join(", "))
        }
        Event::Streams { messages } => {
            let messages: Vec<String> = messages
                .iter()
                .map(|(stream, message)| match message {
                    Some(message) => format!("{}: {message:?}", stream.0),
                    None => format!("{}: gone", stream.0),
                })
                .collect();
            format!("Streams({})", messages.join(", "))
        }
        Event::Shutdown => "Shutdown".into(),
    }
}

fn fmt_hook(h: &Hook) -> String {
    match h {
        Hook::ClientConnected(c) | Hook::ClientDisconnected(c) => format!("{:?} {}", h.kind(), c.peer),
        Hook::ServerConnected { conn, server } | Hook::ServerDisconnected { conn, server } => {
            format!("{:?} {} {}", h.kind(), fmt_conn(*conn), server)
        }
        Hook::WebSocketMessage(m) => format!(
            "WebSocketMessage from {} {:?} {}{}",
            m.from.as_str(),
            m.kind,
            fmt_bytes(&m.payload),
            if m.last { "" } else { " (piece)" }
        ),
        Hook::WebSocketEnd(e) => format!(
            "WebSocketEnd code {:?} {:?} by {:?}{} messages {:?}",
            e.code,
            e.reason,
            e.closed_by.map(|p| p.as_str()),
            e.error.as_ref().map(|e| format!(" error {e:?}")).unwrap_or_default(),
            e.messages
        ),
        _ => match h.flow() {
            Some(f) => format!("{:?}: {}", h.kind(), fmt_flow_summary(f)),
            None => format!("{:?}", h.kind()),
        },
    }
}

fn fmt_cmd(c: &Cmd) -> String {
    match c {
        Cmd::Send { conn, data } => format!("SendData({}, {})", fmt_conn(*conn), fmt_bytes(data)),
        Cmd::Open { conn, addr } => format!("OpenConnection({}, {})", fmt_conn(*conn), addr),
        Cmd::Reuse { conn, key } => format!("Reuse({}, {key})", fmt_conn(*conn)),
        Cmd::Park { conn, key } => format!("Park({}, {key})", fmt_conn(*conn)),
        Cmd::Close { conn, half: false } => format!("CloseConnection({})", fmt_conn(*conn)),
        Cmd::Close { conn, half: true } => format!("CloseConnection({}, half)", fmt_conn(*conn)),
        Cmd::Pause(conn) => format!("PauseReading({})", fmt_conn(*conn)),
        Cmd::Resume(conn) => format!("ResumeReading({})", fmt_conn(*conn)),
        Cmd::Forward { from, to, len } => format!("Forward({} -> {}, {len})", fmt_conn(*from), fmt_conn(*to)),
        Cmd::Hook { flow, hook } => format!("Hook({}, {})", fmt_flow(*flow), fmt_hook(hook)),
        Cmd::Carrier(text) => text.clone(),
    }
}

fn fmt_exp(e: &Exp) -> String {
    match e {
        Exp::Send { conn, data } => format!("SendData({}, {})", fmt_conn(*conn), fmt_bytes(data)),
        Exp::Open { conn, addr } => format!("OpenConnection({}, {})", fmt_conn(*conn), addr),
        Exp::Reuse { conn, key } => format!("Reuse({}, {key})", fmt_conn(*conn)),
        Exp::Park { conn, key } => format!("Park({}, {key})", fmt_conn(*conn)),
        Exp::Close { conn, half: false } => format!("CloseConnection({})", fmt_conn(*conn)),
        Exp::Close { conn, half: true } => format!("CloseConnection({}, half)", fmt_conn(*conn)),
        Exp::Pause(conn) => format!("PauseReading({})", fmt_conn(*conn)),
        Exp::Resume(conn) => format!("ResumeReading({})", fmt_conn(*conn)),
        Exp::Forward { from, to, len } => format!("Forward({} -> {}, {len})", fmt_conn(*from), fmt_conn(*to)),
        Exp::Hook { flow, kind, inspect } => {
            format!("Hook({}, {kind:?}){}", fmt_flow(*flow), if inspect.is_some() { " + inspect" } else { "" })
        }
        Exp::Log { level: None, text } => format!("Log(_, containing {text:?})"),
        Exp::Log { level: Some(l), text } => format!("Log({l:?}, containing {text:?})"),
    }
}

fn fmt_step(s: &Step) -> String {
    match s {
        Step::Event(ev) => {
            let text = match ev {
                Ev::Start => "Start".into(),
                Ev::Recv(conn, data) => format!("DataReceived({}, {})", fmt_conn(*conn), fmt_bytes(data)),
                Ev::Closed(conn) => format!("ConnectionClosed({})", fmt_conn(*conn)),
                Ev::Opened(conn) => format!("Opened({})", fmt_conn(*conn)),
                Ev::OpenFailed(conn, error) => format!("OpenFailed({}, {error:?})", fmt_conn(*conn)),
                Ev::Drained(conn) => format!("WriteDrained({})", fmt_conn(*conn)),
                Ev::Forwarded(from, len, pending) => format!("Forwarded({}, {len}, pending {pending})", fmt_conn(*from)),
                Ev::Wakeup => "Wakeup".into(),
                Ev::Reply(flow, ReplySpec::Fixed(r)) => format!("HookReply({}, {})", fmt_flow(*flow), fmt_reply(r)),
                Ev::Reply(flow, ReplySpec::With(_)) => format!("HookReply({}, <built from the flow>)", fmt_flow(*flow)),
                Ev::Inject(flow, to, kind, payload) => {
                    fmt_event(&Event::Inject { flow: *flow, to: *to, kind: *kind, payload: payload.clone() })
                }
                Ev::Shutdown => "Shutdown".into(),
            };
            format!(">> {text}")
        }
        Step::Expect(e) => format!("<< {}", fmt_exp(e)),
        Step::Advance(d) => format!("-- advance {}", fmt_dur(*d)),
        Step::Check(Check::Timeout(None)) => "?? poll_timeout() is None".into(),
        Step::Check(Check::Timeout(Some(d))) => format!("?? poll_timeout() in {}", fmt_dur(*d)),
        Step::Check(Check::Finished(b)) => format!("?? is_closed() is {b}"),
    }
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".into()
    }
}

#[cfg(test)]
mod tests;

pub mod crypto;
pub mod fuzz;
pub mod h2;
pub mod pump;
pub mod tls;
pub mod ws;
