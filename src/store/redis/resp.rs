//! A small blocking RESP2 client whose every operation has a deadline.
//!
//! Sync decisions on a single server (`redis://`, `unix://`) talk to Redis
//! from the calling thread. A socket timeout bounds one read, not an
//! operation: a server that trickles its reply a byte at a time, or stalls
//! after accepting, would hold the caller for a multiple of the timeout. Here
//! the operation has one deadline, and every wait (connect, each write, each
//! read) gets only what is left of it: the socket is non-blocking and each
//! wait is a `poll()` (`WSAPoll()` on Windows) for the time left. DNS resolution runs on a helper
//! thread the caller waits for until the deadline (an IP literal needs none).
//!
//! Commands are RESP arrays of bulk strings; replies are parsed
//! incrementally from a buffer, and a peer whose bytes are not RESP is told
//! apart from one that is merely slow.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::fd::{AsRawFd, RawFd as RawSock};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
#[cfg(windows)]
use std::os::windows::io::{AsRawSocket, RawSocket as RawSock};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use redis::ConnectionAddr;

/// Why an operation failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The deadline passed.
    TimedOut,
    /// Connecting failed.
    Connect(io::Error),
    /// The server closed the connection (before or in the middle of a reply).
    Closed,
    /// The peer's bytes are not RESP.
    NotResp,
    /// Reading or writing failed.
    Io(io::Error),
    /// The server answered an error, formatted as redis-rs formats it.
    Server(String),
    /// A well-formed reply of an unexpected shape.
    Unexpected(&'static str),
}

/// Where a single server listens, and how to log in; parsed by redis-rs from
/// the storage URL (so every URL it accepts means the same here).
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    target: Target,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    /// The address as messages show it.
    pub name: String,
}

#[derive(Debug, Clone)]
enum Target {
    Tcp(String, u16),
    #[cfg_attr(not(unix), allow(dead_code))]
    Unix(PathBuf),
}

/// A socket as the OS names it (a descriptor, or a Windows `SOCKET`), for
/// `wait` and for an event loop's `add_reader`.
pub(super) type Sock = RawSock;

impl Endpoint {
    /// The endpoint of `client`; `None` for TLS (`rediss://`), whose sync
    /// calls go through the runtime instead.
    pub(super) fn of(client: &redis::Client) -> Option<Self> {
        let info = client.get_connection_info();
        let (target, name) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let name = match host.parse::<IpAddr>() {
                    Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
                    _ => format!("{host}:{port}"),
                };
                (Target::Tcp(host.clone(), *port), name)
            }
            ConnectionAddr::Unix(path) => (
                Target::Unix(path.clone()),
                format!("unix:{}", path.display()),
            ),
            _ => return None,
        };
        let redis = info.redis_settings();
        Some(Self {
            target,
            username: redis.username().map(str::to_owned),
            password: redis.password().map(str::to_owned),
            db: redis.db(),
            name,
        })
    }
}

/// The instant an operation must be over by.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline(pub Instant);

impl Deadline {
    /// The time left, or `TimedOut` if none is.
    fn left(self) -> Result<Duration, Failure> {
        let now = Instant::now();
        if now >= self.0 {
            return Err(Failure::TimedOut);
        }
        Ok(self.0 - now)
    }
}

/// A script as sent: its SHA-1 and its body.
pub(super) struct Script {
    sha: String,
    body: String,
}

impl Script {
    pub(super) fn new(sha: &str, body: String) -> Self {
        Self {
            sha: sha.to_owned(),
            body,
        }
    }
}

/// The keys and arguments of a script call, encoded as bulk strings.
#[derive(Default)]
pub(super) struct Args {
    keys: Vec<u8>,
    key_count: usize,
    args: Vec<u8>,
    arg_count: usize,
}

impl Args {
    pub(super) fn key(&mut self, key: &[u8]) {
        bulk(&mut self.keys, key);
        self.key_count += 1;
    }

    pub(super) fn arg(&mut self, arg: &[u8]) {
        bulk(&mut self.args, arg);
        self.arg_count += 1;
    }

    pub(super) fn int(&mut self, n: u64) {
        self.arg(n.to_string().as_bytes());
    }
}

fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(parts.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for part in parts {
        bulk(out, part);
    }
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Nil,
    Int(i64),
    Text(Vec<u8>),
    Error(String),
    Array(Vec<Value>),
}

impl Value {
    /// An array of non-negative integers (or of bulk strings holding them).
    pub(super) fn into_u64s(self) -> Result<Vec<u64>, Failure> {
        let Value::Array(items) = self else {
            return Err(Failure::Unexpected("the script did not answer a list"));
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::Int(n) => u64::try_from(n).ok(),
                Value::Text(t) => std::str::from_utf8(&t).ok()?.parse().ok(),
                _ => None,
            })
            .collect::<Option<Vec<u64>>>()
            .ok_or(Failure::Unexpected(
                "the script answered something not a number",
            ))
    }
}

/// Longest line of a simple string or error accepted; a longer one is not
/// a Redis reply.
const MAX_LINE: usize = 64 * 1024;
/// Longest length or integer line (an i64 and its sign, with room).
const MAX_NUMBER: usize = 24;
/// Largest bulk string Redis sends.
const MAX_BULK: i64 = 512 * 1024 * 1024;
/// Deepest nesting of arrays accepted.
const MAX_DEPTH: usize = 8;

/// Parses one reply from the start of `buf`: the reply and the bytes it
/// took, `None` if `buf` holds only part of it, `NotResp` if it cannot be
/// RESP2.
pub(super) fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, Failure> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, Failure> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let limit = match kind {
        b'+' | b'-' => MAX_LINE,
        b':' | b'$' | b'*' => MAX_NUMBER,
        _ => return Err(Failure::NotResp),
    };
    let Some((line, next)) = line(buf, at + 1, limit)? else {
        return Ok(None);
    };
    match kind {
        b'+' => Ok(Some((Value::Text(line.to_vec()), next))),
        b'-' => Ok(Some((Value::Error(server_error(line)), next))),
        b':' => Ok(Some((Value::Int(number(line)?), next))),
        b'$' => {
            let len = number(line)?;
            if len == -1 {
                return Ok(Some((Value::Nil, next)));
            }
            if !(0..=MAX_BULK).contains(&len) {
                return Err(Failure::NotResp);
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(Failure::NotResp);
            }
            Ok(Some((Value::Text(buf[next..end].to_vec()), end + 2)))
        }
        _ => {
            let len = number(line)?;
            if len == -1 {
                return Ok(Some((Value::Nil, next)));
            }
            if len < 0 || depth >= MAX_DEPTH {
                return Err(Failure::NotResp);
            }
            let mut items = Vec::with_capacity((len as usize).min(64));
            let mut at = next;
            for _ in 0..len {
                match parse_at(buf, at, depth + 1)? {
                    Some((item, next)) => {
                        items.push(item);
                        at = next;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(items), at)))
        }
    }
}

/// The line starting at `from` (without its CRLF) and where the next one
/// starts; `None` if it is not complete yet.
fn line(buf: &[u8], from: usize, limit: usize) -> Result<Option<(&[u8], usize)>, Failure> {
    let rest = &buf[from..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(i) if i > limit => Err(Failure::NotResp),
        Some(0) => Err(Failure::NotResp),
        Some(i) if rest[i - 1] == b'\r' => Ok(Some((&rest[..i - 1], from + i + 1))),
        Some(_) => Err(Failure::NotResp),
        None if rest.len() > limit + 1 => Err(Failure::NotResp),
        None => Ok(None),
    }
}

fn number(line: &[u8]) -> Result<i64, Failure> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Failure::NotResp)
}

/// A server error line as redis-rs shows it (`ReadOnly: You can't...`), so
/// messages read the same on the sync and the awaitable paths.
fn server_error(line: &[u8]) -> String {
    let mut raw = Vec::with_capacity(line.len() + 3);
    raw.push(b'-');
    raw.extend_from_slice(line);
    raw.extend_from_slice(b"\r\n");
    match redis::parse_redis_value(&raw) {
        Ok(redis::Value::ServerError(err)) => err.to_string(),
        _ => String::from_utf8_lossy(line).into_owned(),
    }
}

enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Stream {
    fn fd(&self) -> Sock {
        match self {
            #[cfg(unix)]
            Stream::Tcp(s) => s.as_raw_fd(),
            #[cfg(windows)]
            Stream::Tcp(s) => s.as_raw_socket(),
            #[cfg(unix)]
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // std sends with MSG_NOSIGNAL on a TCP socket.
            Stream::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            Stream::Unix(s) => {
                // A peer gone would raise SIGPIPE on write(2): send(2)
                // with MSG_NOSIGNAL returns EPIPE instead.
                #[cfg(any(target_os = "linux", target_os = "android"))]
                {
                    let n = unsafe {
                        libc::send(
                            s.as_raw_fd(),
                            buf.as_ptr().cast(),
                            buf.len(),
                            libc::MSG_NOSIGNAL,
                        )
                    };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(n as usize)
                    }
                }
                #[cfg(not(any(target_os = "linux", target_os = "android")))]
                s.write(buf)
            }
        }
    }
}

/// What `wait` waits for.
#[derive(Clone, Copy)]
enum Ready {
    Read,
    Write,
}

/// Waits until `fd` is ready to read or write, or the deadline passes.
fn wait(fd: Sock, ready: Ready, deadline: Deadline) -> Result<(), Failure> {
    loop {
        let left = deadline.left()?;
        // poll() takes whole milliseconds: round up, so it never returns
        // before the deadline and spins.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let rc = poll_one(fd, ready, ms);
        if rc > 0 {
            return Ok(());
        }
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(Failure::Io(err));
            }
        }
    }
}

#[cfg(unix)]
fn poll_one(fd: Sock, ready: Ready, ms: i32) -> i32 {
    let events = match ready {
        Ready::Read => libc::POLLIN,
        Ready::Write => libc::POLLOUT,
    };
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one pollfd, alive for the call.
    unsafe { libc::poll(&mut pfd, 1, ms) }
}

#[cfg(windows)]
fn poll_one(fd: Sock, ready: Ready, ms: i32) -> i32 {
    use windows_sys::Win32::Networking::WinSock::{WSAPoll, POLLRDNORM, POLLWRNORM, WSAPOLLFD};
    let events = match ready {
        Ready::Read => POLLRDNORM,
        Ready::Write => POLLWRNORM,
    };
    let mut pfd = WSAPOLLFD {
        fd: fd as usize,
        events,
        revents: 0,
    };
    // SAFETY: one WSAPOLLFD, alive for the call; the socket is ours.
    unsafe { WSAPoll(&mut pfd, 1, ms) }
}

/// One connection to a server, logged in and on its database.
pub(super) struct Conn {
    stream: Stream,
    /// Bytes read and not parsed yet.
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Conn {
    /// Connects to `endpoint`, logs in and selects its database, all by
    /// `deadline`.
    pub(super) fn connect(endpoint: &Endpoint, deadline: Deadline) -> Result<Self, Failure> {
        let stream = match &endpoint.target {
            Target::Tcp(host, port) => Stream::Tcp(connect_tcp(host, *port, deadline)?),
            #[cfg(not(unix))]
            Target::Unix(path) => {
                return Err(Failure::Connect(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("no Unix sockets on this platform: {}", path.display()),
                )))
            }
            #[cfg(unix)]
            Target::Unix(path) => {
                // A local connect does not wait for the server to answer.
                let stream = UnixStream::connect(path).map_err(Failure::Connect)?;
                stream.set_nonblocking(true).map_err(Failure::Connect)?;
                Stream::Unix(stream)
            }
        };
        let mut conn = Self {
            stream,
            input: Vec::with_capacity(1024),
            output: Vec::with_capacity(1024),
        };
        let mut replies = 0;
        if let Some(password) = &endpoint.password {
            match &endpoint.username {
                Some(user) => command(
                    &mut conn.output,
                    &[b"AUTH", user.as_bytes(), password.as_bytes()],
                ),
                None => command(&mut conn.output, &[b"AUTH", password.as_bytes()]),
            }
            replies += 1;
        }
        if endpoint.db != 0 {
            let db = endpoint.db.to_string();
            command(&mut conn.output, &[b"SELECT", db.as_bytes()]);
            replies += 1;
        }
        if replies > 0 {
            conn.send(deadline)?;
            for _ in 0..replies {
                if let Value::Error(e) = conn.reply(deadline)? {
                    return Err(Failure::Server(e));
                }
            }
        }
        Ok(conn)
    }

    /// Runs `script` with `args` (EVALSHA; on NOSCRIPT, SCRIPT LOAD and
    /// EVALSHA again), by `deadline`.
    pub(super) fn eval(
        &mut self,
        script: &Script,
        args: &Args,
        deadline: Deadline,
    ) -> Result<Value, Failure> {
        self.evalsha(script, args);
        self.send(deadline)?;
        match self.reply(deadline)? {
            Value::Error(e) if e.starts_with("NoScript") || e.starts_with("NOSCRIPT") => {
                command(
                    &mut self.output,
                    &[b"SCRIPT", b"LOAD", script.body.as_bytes()],
                );
                self.evalsha(script, args);
                self.send(deadline)?;
                if let Value::Error(e) = self.reply(deadline)? {
                    return Err(Failure::Server(e));
                }
                self.value(deadline)
            }
            Value::Error(e) => Err(Failure::Server(e)),
            value => Ok(value),
        }
    }

    /// Whether queued output is still to be written.
    pub(super) fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The socket, for an event loop to watch.
    pub(super) fn fd(&self) -> Sock {
        self.stream.fd()
    }

    /// Queues an EVALSHA of `script` with `args` (with `reload`, a SCRIPT
    /// LOAD first: two replies) for `write_some`.
    pub(super) fn queue_eval(&mut self, script: &Script, args: &Args, reload: bool) {
        if reload {
            command(
                &mut self.output,
                &[b"SCRIPT", b"LOAD", script.body.as_bytes()],
            );
        }
        self.evalsha(script, args);
    }

    /// Writes what it can of the queued output without waiting; whether all
    /// of it went.
    pub(super) fn write_some(&mut self) -> Result<bool, Failure> {
        let mut sent = 0;
        let result = loop {
            if sent == self.output.len() {
                break Ok(true);
            }
            match self.stream.write(&self.output[sent..]) {
                Ok(0) => break Err(Failure::Closed),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if closed(&e) => break Err(Failure::Closed),
                Err(e) => break Err(Failure::Io(e)),
            }
        };
        self.output.drain(..sent);
        result
    }

    /// Reads what has arrived, without waiting.
    pub(super) fn read_some(&mut self) -> Result<(), Failure> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Failure::Closed),
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        return Ok(()); // drained: spare the EAGAIN read
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if closed(&e) => return Err(Failure::Closed),
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    }

    /// The next whole reply read so far, if any.
    pub(super) fn next_reply(&mut self) -> Result<Option<Value>, Failure> {
        match parse(&self.input)? {
            Some((value, used)) => {
                self.input.drain(..used);
                Ok(Some(value))
            }
            None => Ok(None),
        }
    }

    /// Whether nothing is left unread: only such a connection may serve
    /// another call.
    pub(super) fn is_clean(&self) -> bool {
        self.input.is_empty()
    }

    fn evalsha(&mut self, script: &Script, args: &Args) {
        evalsha(&mut self.output, script, args);
    }

    fn value(&mut self, deadline: Deadline) -> Result<Value, Failure> {
        match self.reply(deadline)? {
            Value::Error(e) => Err(Failure::Server(e)),
            value => Ok(value),
        }
    }

    /// Writes what is in `output`.
    fn send(&mut self, deadline: Deadline) -> Result<(), Failure> {
        let mut sent = 0;
        let result = loop {
            if sent == self.output.len() {
                break Ok(());
            }
            match self.stream.write(&self.output[sent..]) {
                Ok(0) => break Err(Failure::Closed),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = wait(self.stream.fd(), Ready::Write, deadline) {
                        break Err(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if closed(&e) => break Err(Failure::Closed),
                Err(e) => break Err(Failure::Io(e)),
            }
        };
        self.output.clear();
        result
    }

    /// Reads the next reply.
    fn reply(&mut self, deadline: Deadline) -> Result<Value, Failure> {
        loop {
            if let Some((value, used)) = parse(&self.input)? {
                self.input.drain(..used);
                return Ok(value);
            }
            wait(self.stream.fd(), Ready::Read, deadline)?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Failure::Closed),
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) if closed(&e) => return Err(Failure::Closed),
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    }
}

/// EVALSHA of `script` with `args`, appended to `out`.
fn evalsha(out: &mut Vec<u8>, script: &Script, args: &Args) {
    out.push(b'*');
    out.extend_from_slice((3 + args.key_count + args.arg_count).to_string().as_bytes());
    out.extend_from_slice(b"\r\n$7\r\nEVALSHA\r\n");
    bulk(out, script.sha.as_bytes());
    bulk(out, args.key_count.to_string().as_bytes());
    out.extend_from_slice(&args.keys);
    out.extend_from_slice(&args.args);
}

fn closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Connects to `host:port` by `deadline`, trying each address in turn.
fn connect_tcp(host: &str, port: u16, deadline: Deadline) -> Result<TcpStream, Failure> {
    let addrs = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => resolve(host, port, deadline)?,
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name resolved to nothing");
    for addr in addrs {
        let left = deadline.left()?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                stream.set_nonblocking(true).map_err(Failure::Connect)?;
                // One write per request: nothing gains from waiting to fill
                // a segment.
                stream.set_nodelay(true).map_err(Failure::Connect)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                deadline.left()?;
                last = e;
            }
            Err(e) => last = e,
        }
    }
    Err(Failure::Connect(last))
}

/// Resolves `host` on a helper thread, waiting for it until `deadline`
/// (getaddrinfo has no timeout of its own; a late answer is dropped).
fn resolve(host: &str, port: u16, deadline: Deadline) -> Result<Vec<SocketAddr>, Failure> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("rprl-resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs());
        })
        .map_err(Failure::Connect)?;
    match rx.recv_timeout(deadline.left()?) {
        Ok(Ok(addrs)) => Ok(addrs.collect()),
        Ok(Err(e)) => Err(Failure::Connect(e)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Failure::TimedOut),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Failure::Connect(
            io::Error::other("the host name lookup ended without an answer"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_parses_whole_and_not_before() {
        let reply = b"*5\r\n:1\r\n:10\r\n:9\r\n$2\r\n60\r\n:0\r\n";
        for cut in 0..reply.len() {
            assert!(parse(&reply[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let (value, used) = parse(reply).unwrap().unwrap();
        assert_eq!(used, reply.len());
        assert_eq!(value.into_u64s().unwrap(), [1, 10, 9, 60, 0]);
    }

    #[test]
    fn pipelined_replies_parse_one_at_a_time() {
        let buf = b"+OK\r\n$-1\r\n*-1\r\n";
        let (a, n) = parse(buf).unwrap().unwrap();
        assert_eq!(a, Value::Text(b"OK".to_vec()));
        let (b, m) = parse(&buf[n..]).unwrap().unwrap();
        assert_eq!(b, Value::Nil);
        assert_eq!(parse(&buf[n + m..]).unwrap().unwrap().0, Value::Nil);
    }

    #[test]
    fn errors_read_as_redis_rs_shows_them() {
        let (value, _) = parse(b"-NOSCRIPT No matching script.\r\n")
            .unwrap()
            .unwrap();
        let Value::Error(e) = value else { panic!() };
        assert!(e.starts_with("NoScript"), "{e}");
    }

    #[test]
    fn what_is_not_resp_is_told_at_once() {
        for bytes in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"\x00\x01\x02",
            b":12x\r\n",
            b"$3\r\nabcd\r\n",
            b"+OK\n",
            b"$-2\r\n",
            b"*1\r\n?\r\n",
        ] {
            assert!(matches!(parse(bytes), Err(Failure::NotResp)), "{bytes:?}");
        }
        // A line that never ends is not a Redis reply either.
        let mut long = b":".to_vec();
        long.extend(std::iter::repeat_n(b'1', 100));
        assert!(matches!(parse(&long), Err(Failure::NotResp)));
    }

    #[test]
    fn arrays_nest_within_bounds() {
        let mut deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        deep.extend_from_slice(b":1\r\n");
        assert!(matches!(parse(&deep), Err(Failure::NotResp)));
        let (v, _) = parse(b"*2\r\n*1\r\n:1\r\n+a\r\n").unwrap().unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Array(vec![Value::Int(1)]),
                Value::Text(b"a".to_vec())
            ])
        );
    }

    #[test]
    fn a_call_encodes_as_resp_bulk_strings() {
        let mut args = Args::default();
        args.key(b"k");
        args.int(42);
        args.arg(b"");
        let script = Script::new("abc", "return 1".into());
        let mut conn_output = Vec::new();
        evalsha(&mut conn_output, &script, &args);
        assert_eq!(
            conn_output,
            b"*6\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n1\r\n$1\r\nk\r\n$2\r\n42\r\n$0\r\n\r\n"
        );
        assert_eq!(
            redis::cmd("EVALSHA")
                .arg("abc")
                .arg(1)
                .arg("k")
                .arg(42u64)
                .arg("")
                .get_packed_command(),
            conn_output
        );
    }
}
