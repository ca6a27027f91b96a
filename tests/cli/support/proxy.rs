//! [`Proxy`]: a fault-injecting TCP proxy on a free loopback port in front of a real server (a
//! `redis-server` started by [`super::Redis`]), for the faults a real network and a real server
//! produce and a test cannot otherwise time: a reply that comes late, a command that never
//! arrives, a connection cut after the server acted, a server that stops answering (SIGSTOP), a
//! server gone between two runs. It also runs hooks just before a command is forwarded (a
//! concurrent writer landing between WATCH and EXEC).
//!
//! It speaks just enough RESP to split the client's bytes into commands and the server's into
//! replies (Redis answers each command exactly once, in order), so a fault hits exactly the
//! command it names, however the bytes were batched. Nothing else is interpreted: bytes are
//! forwarded as they came.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What to do to a command (and its reply) when its rule matches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Forward the command; hold its reply (and what follows on that connection) this long.
    DelayReply(Duration),
    /// Swallow the command: the server never sees it, the connection stays open and silent.
    Drop,
    /// Close the connection instead of forwarding the command: the server never sees it.
    CutBefore,
    /// Forward the command; when its reply comes, drop it and close the connection: the server
    /// acted, the client never learns it.
    CutAfter,
    /// Forward the command, then stop forwarding anything on every connection, new ones too,
    /// until [`Proxy::resume`]: a server that stopped answering right after acting (SIGSTOP).
    PauseAfter,
}

type Hook = Arc<Mutex<dyn FnMut() + Send>>;

enum Action {
    Fault(Fault),
    Hook(Hook),
}

/// Which occurrences of a command a rule applies to: the nth (1-based, counted over every
/// connection) or each.
struct Rule {
    command: String,
    nth: Option<usize>,
    action: Action,
}

#[derive(Default)]
struct State {
    /// Commands seen, forwarded or not, by upper-case name.
    counts: HashMap<String, usize>,
    /// Connections accepted so far; each is numbered by its order (1-based).
    connections: usize,
    /// Every command seen, forwarded or not, in order: its connection's number and its name.
    log: Vec<(usize, String)>,
    rules: Vec<Rule>,
    /// Nothing is forwarded while set ([`Fault::PauseAfter`], [`Proxy::pause`]).
    paused: bool,
    /// Every connection is closed at once while set ([`Proxy::cut`]).
    down: bool,
    stopping: bool,
    /// Both sockets of every connection, to close them on [`Proxy::cut`] and on drop.
    sockets: Vec<TcpStream>,
}

struct Shared {
    upstream: u16,
    state: Mutex<State>,
    resumed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits while the proxy is paused; false once it is stopping.
    fn gate(&self) -> bool {
        let mut state = self.lock();
        while state.paused && !state.stopping {
            state = self.resumed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        !state.stopping
    }

    fn close_all(state: &mut State) {
        for s in state.sockets.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A TCP proxy on a free loopback port in front of `127.0.0.1:<upstream>`. Configure it with
/// [`Proxy::fault`] and [`Proxy::before`] before the first client connects; steer it with
/// [`Proxy::pause`], [`Proxy::cut`] and [`Proxy::resume`]. Stops (closing every connection) on
/// drop.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State::default()),
            resumed: Condvar::new(),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.lock().stopping {
                    break;
                }
                if let Ok(client) = client {
                    serve(&accepting, client);
                }
            }
        });
        Proxy { port, shared }
    }

    /// Applies `fault` to the `nth` (1-based) `command` (`"EXEC"`, `"HGET"`...) going through.
    pub fn fault(self, command: &str, nth: usize, fault: Fault) -> Proxy {
        self.rule(command, Some(nth), Action::Fault(fault))
    }

    /// Runs `hook` just before the `nth` `command` is forwarded.
    pub fn before(self, command: &str, nth: usize, hook: impl FnMut() + Send + 'static) -> Proxy {
        self.rule(command, Some(nth), Action::Hook(Arc::new(Mutex::new(hook))))
    }

    /// Runs `hook` just before each `command` is forwarded.
    pub fn before_each(self, command: &str, hook: impl FnMut() + Send + 'static) -> Proxy {
        self.rule(command, None, Action::Hook(Arc::new(Mutex::new(hook))))
    }

    fn rule(self, command: &str, nth: Option<usize>, action: Action) -> Proxy {
        self.shared.lock().rules.push(Rule {
            command: command.to_ascii_uppercase(),
            nth,
            action,
        });
        self
    }

    /// Stops forwarding anything, on every connection, new ones too (they are accepted and held):
    /// a server that stopped answering.
    pub fn pause(&self) {
        self.shared.lock().paused = true;
    }

    /// Closes every connection, and each new one as soon as it is accepted: a server gone.
    pub fn cut(&self) {
        let mut state = self.shared.lock();
        state.down = true;
        Shared::close_all(&mut state);
    }

    /// Forwards again after [`Proxy::pause`], [`Fault::PauseAfter`] or [`Proxy::cut`].
    pub fn resume(&self) {
        let mut state = self.shared.lock();
        state.paused = false;
        state.down = false;
        self.shared.resumed.notify_all();
    }

    /// How many `command`s clients sent (forwarded or not).
    pub fn count(&self, command: &str) -> usize {
        let state = self.shared.lock();
        state
            .counts
            .get(&command.to_ascii_uppercase())
            .copied()
            .unwrap_or(0)
    }

    /// How many connections clients opened (accepted, whether or not forwarded).
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// Every command clients sent (forwarded or not), in order: the number of its connection
    /// (1-based, in the order they were opened) and its upper-case name.
    pub fn log(&self) -> Vec<(usize, String)> {
        self.shared.lock().log.clone()
    }

    /// The proxy's URL, to put in the overrides file.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stopping = true;
            Shared::close_all(&mut state);
            self.shared.resumed.notify_all();
        }
        // Wakes the accept loop so it sees `stopping` and closes the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Faults waiting for the reply to a command, by the command's position on its connection.
type ReplyFaults = Arc<Mutex<BTreeMap<usize, Fault>>>;

/// Connects `client` to the upstream server and forwards both ways on two threads.
fn serve(shared: &Arc<Shared>, client: TcpStream) {
    let (server, number) = {
        let mut state = shared.lock();
        state.connections += 1;
        let number = state.connections;
        let server = match state.down {
            true => None,
            false => TcpStream::connect(("127.0.0.1", shared.upstream)).ok(),
        };
        let Some(server) = server else {
            let _ = client.shutdown(Shutdown::Both);
            return;
        };
        state.sockets.push(client.try_clone().unwrap());
        state.sockets.push(server.try_clone().unwrap());
        (server, number)
    };
    let faults: ReplyFaults = Arc::default();
    let (to_client, from_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (s, f) = (shared.clone(), faults.clone());
    std::thread::spawn(move || replies(&s, from_server, to_client, &f));
    let s = shared.clone();
    std::thread::spawn(move || commands(&s, number, client, server, &faults));
}

/// Client to server, command by command, applying the rules.
fn commands(
    shared: &Shared,
    number: usize,
    mut client: TcpStream,
    mut server: TcpStream,
    faults: &ReplyFaults,
) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut forwarded = 0usize;
    let cut = |a: &TcpStream, b: &TcpStream| {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    };
    while let Ok(n) = client.read(&mut buf) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(len) = resp_len(&pending) {
            let command: Vec<u8> = pending.drain(..len).collect();
            let fault = decide(shared, number, &command_name(&command));
            let mut pause = false;
            match fault {
                Some(Fault::Drop) => continue,
                Some(Fault::CutBefore) => return cut(&client, &server),
                Some(f @ (Fault::DelayReply(_) | Fault::CutAfter)) => {
                    faults.lock().unwrap().insert(forwarded, f);
                }
                Some(Fault::PauseAfter) => pause = true,
                None => {}
            }
            if pause {
                // Paused before the command leaves, so its reply cannot slip through first.
                shared.lock().paused = true;
            } else if !shared.gate() {
                return cut(&client, &server);
            }
            forwarded += 1;
            if server.write_all(&command).is_err() {
                return cut(&client, &server);
            }
        }
        // Not RESP (an inline command): forward as it is.
        if !pending.is_empty() && pending[0] != b'*' {
            if !shared.gate() || server.write_all(&pending).is_err() {
                return cut(&client, &server);
            }
            pending.clear();
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

/// Counts `name`, runs the hooks due for it (outside the lock: a hook may take its time), and
/// returns the fault due for it, if any.
fn decide(shared: &Shared, connection: usize, name: &str) -> Option<Fault> {
    let (hooks, fault) = {
        let mut state = shared.lock();
        state.log.push((connection, name.to_owned()));
        let count = state.counts.entry(name.to_owned()).or_default();
        *count += 1;
        let count = *count;
        let due = state
            .rules
            .iter()
            .filter(|r| r.command == name && r.nth.is_none_or(|n| n == count));
        let mut hooks = Vec::new();
        let mut fault = None;
        for rule in due {
            match &rule.action {
                Action::Fault(f) => fault = fault.or(Some(*f)),
                Action::Hook(h) => hooks.push(h.clone()),
            }
        }
        (hooks, fault)
    };
    for hook in hooks {
        (hook.lock().unwrap_or_else(|e| e.into_inner()))();
    }
    fault
}

/// Server to client, reply by reply, applying the faults armed for them.
fn replies(shared: &Shared, mut server: TcpStream, mut client: TcpStream, faults: &ReplyFaults) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut seen = 0usize;
    while let Ok(n) = server.read(&mut buf) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        let mut out = Vec::new();
        while let Some(len) = resp_len(&pending) {
            let fault = faults.lock().unwrap().remove(&seen);
            seen += 1;
            match fault {
                Some(Fault::DelayReply(d)) => {
                    if !flush(shared, &mut client, &mut out) {
                        return;
                    }
                    std::thread::sleep(d);
                }
                Some(Fault::CutAfter) => {
                    let _ = flush(shared, &mut client, &mut out);
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                    return;
                }
                _ => {}
            }
            out.extend(pending.drain(..len));
        }
        if !flush(shared, &mut client, &mut out) {
            return;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Writes `out` to `client` once the proxy is not paused; false when it cannot.
fn flush(shared: &Shared, client: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    if out.is_empty() {
        return true;
    }
    let ok = shared.gate() && client.write_all(out).is_ok();
    out.clear();
    ok
}

/// The upper-case name of a RESP command (the first element of its array).
fn command_name(command: &[u8]) -> String {
    // *<n>\r\n$<len>\r\n<name>\r\n
    let mut lines = command.split(|&b| b == b'\n');
    let name = lines.nth(2).unwrap_or_default();
    String::from_utf8_lossy(name.strip_suffix(b"\r").unwrap_or(name)).to_ascii_uppercase()
}

/// The length of the complete RESP value at the start of `buf` (RESP2 and RESP3), or `None`
/// when more bytes are needed.
fn resp_len(buf: &[u8]) -> Option<usize> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let header = std::str::from_utf8(&buf[1..line_end]).ok()?;
    let after = line_end + 2;
    let count = || header.parse::<i64>().ok();
    match buf[0] {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after),
        b'$' | b'!' | b'=' => match count()? {
            n if n < 0 => Some(after),
            n => (buf.len() >= after + n as usize + 2).then_some(after + n as usize + 2),
        },
        kind @ (b'*' | b'~' | b'>' | b'%' | b'|') => {
            let n = count()?;
            let items = if matches!(kind, b'%' | b'|') { n * 2 } else { n };
            let mut at = after;
            for _ in 0..items.max(0) {
                at += resp_len(&buf[at..])?;
            }
            // An attribute precedes the value it describes.
            Some(if kind == b'|' {
                at + resp_len(&buf[at..])?
            } else {
                at
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::resp_len;

    #[test]
    fn resp_values_are_measured_whole_or_not_at_all() {
        assert_eq!(resp_len(b"+OK\r\n+QUEUED\r\n"), Some(5));
        assert_eq!(resp_len(b"$-1\r\n"), Some(5));
        assert_eq!(resp_len(b"$3\r\nabc\r\n"), Some(9));
        assert_eq!(resp_len(b"$3\r\nab"), None);
        let exec = b"*1\r\n$4\r\nEXEC\r\n";
        assert_eq!(resp_len(exec), Some(exec.len()));
        assert_eq!(resp_len(b"*2\r\n:1\r\n*1\r\n$-1\r\n"), Some(17));
        assert_eq!(resp_len(b"*2\r\n:1\r\n"), None);
        assert_eq!(super::command_name(exec), "EXEC");
    }
}
