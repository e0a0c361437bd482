//! The client side of the management protocol: used by `moverctl` and by a
//! source agent to drive the destination agent.

use super::line::{Line, LineReader};
use super::secure::{self, ClientTls};
use super::{
    Address, Command, Event, Greeting, MAX_LINE, PROTOCOL_VERSION, Request, RequestLine,
    ServerMessage, Stream, cause, decode_server_message, reply, request,
};
use crate::emg::{Emg, Module, phase};
use crate::engine::stage::Stage;
use crate::transport::identity::Fingerprint;
use serde_json::Value;
use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

/// How long a client waits to connect and for the greeting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Client::wait_for_migration`] waits for an event before it
/// asks for the migration's status instead.
const STATUS_POLL: Duration = Duration::from_secs(2);

/// An open, possibly authenticated, management connection.
pub struct Client {
    address: Address,
    reader: LineReader<Stream>,
    writer: Stream,
    greeting: Greeting,
    next_id: u64,
    /// Events that arrived while a reply was awaited.
    events: VecDeque<Event>,
    module: Module,
    /// The agent's key, when the connection is TLS (checked against the
    /// client's trust before anything was sent).
    peer_key: Option<Fingerprint>,
}

fn client_error(module: Module, address: &Address, message: String) -> Emg {
    Emg::new(
        module,
        phase::CONNECT,
        cause::CONNECTION,
        format!("Connection refused (management path, agent {address}): {message}"),
        "Check that moverd runs there and listens on that address (moverd --listen), \
         and that the management network is up; then retry.",
    )
}

impl Client {
    /// Connects to the agent at `address` and reads its greeting. `module`
    /// names who is the client in errors (`Client` for moverctl,
    /// `MoverSource` for a source agent). Over TCP it speaks TLS when the
    /// process has TLS settings ([`secure::set_default_client_tls`]),
    /// plaintext otherwise.
    pub fn connect(address: &Address, module: Module) -> Result<Client, Emg> {
        Client::connect_with(address, module, secure::default_client_tls())
    }

    /// [`Client::connect`] with these TLS settings (`None`: plaintext on
    /// TCP). A Unix socket is always plain: its file mode protects it.
    pub fn connect_with(
        address: &Address,
        module: Module,
        tls: Option<&ClientTls>,
    ) -> Result<Client, Emg> {
        let err = |m: String| client_error(module, address, m);
        let stream = address
            .connect(CONNECT_TIMEOUT)
            .map_err(|e| err(e.to_string()))?;
        stream
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(|e| err(e.to_string()))?;
        let mut peer_cert = None;
        let (stream, peer_key) = match (stream, tls) {
            (Stream::Tcp(tcp), Some(tls)) => {
                let (s, key, cert) = tls.handshake(tcp, module, &address.to_string())?;
                peer_cert = Some((tls, cert));
                (Stream::Tls(s), Some(key))
            }
            (Stream::Tcp(mut tcp), None) => {
                // A blank line, ignored by a plaintext agent, lets a TLS-only
                // one tell us why it refuses (see `secure`).
                tcp.write_all(b"\n").map_err(|e| err(e.to_string()))?;
                (Stream::Tcp(tcp), None)
            }
            (s, _) => (s, None),
        };
        let writer = stream.try_clone().map_err(|e| err(e.to_string()))?;
        let mut client = Client {
            address: address.clone(),
            reader: LineReader::new(stream, MAX_LINE),
            writer,
            greeting: Greeting {
                agent: String::new(),
                build: crate::build_identity::BuildIdentity::current(),
                protocol: 0,
            },
            next_id: 1,
            events: VecDeque::new(),
            module,
            peer_key,
        };
        match client.read_message()? {
            ServerMessage::Greeting(g) => client.greeting = g,
            ServerMessage::Reply { result: Err(e), .. } => return Err(e),
            other => return Err(err(format!("expected a greeting, got {other:?}"))),
        }
        if let Some((tls, cert)) = peer_cert {
            tls.check_name(&cert, &client.greeting.agent, module, &address.to_string())?;
        }
        if client.greeting.protocol != PROTOCOL_VERSION {
            let found = format!(
                "the agent speaks management protocol {}, this client {PROTOCOL_VERSION}",
                client.greeting.protocol
            );
            if module == Module::Client {
                // The manual's MMC `0x00 00000000 0006 01`.
                return Err(Emg::new(
                    module,
                    phase::VERSION_MISMATCH,
                    0,
                    format!(
                        "The version isn't matched between MMC and MMS. ({found}; agent \
                         {address})"
                    ),
                    "Install the same lpar-mover release on the management client and the \
                     agent.",
                ));
            }
            return Err(err(found));
        }
        client
            .reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(|e| err(e.to_string()))?;
        Ok(client)
    }

    /// [`Client::connect`] then `authenticate`.
    pub fn open(address: &Address, token: &str, module: Module) -> Result<Client, Emg> {
        let mut c = Client::connect(address, module)?;
        c.authenticate(token)?;
        Ok(c)
    }

    /// Presents `token` (check [`Client::greeting`] first: it says who
    /// would receive it).
    pub fn authenticate(&mut self, token: &str) -> Result<(), Emg> {
        self.call(Command::Authenticate {
            token: token.to_string(),
        })
        .map(drop)
    }

    /// The agent's key fingerprint, when the connection is TLS.
    pub fn peer_key(&self) -> Option<Fingerprint> {
        self.peer_key
    }

    /// The agent's greeting.
    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// Makes every wait for the agent's next line give up after `timeout`
    /// (`None`: wait as long as it takes).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Emg> {
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .map_err(|e| client_error(self.module, &self.address, e.to_string()))
    }

    /// Sends `command` and waits for its reply; events that arrive
    /// meanwhile are kept for [`Client::next_event`].
    pub fn call(&mut self, command: Command) -> Result<Value, Emg> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = RequestLine { id, command }.encode();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| client_error(self.module, &self.address, e.to_string()))?;
        loop {
            match self.read_message()? {
                ServerMessage::Reply {
                    id: Some(r),
                    result,
                } if r == id => return result,
                ServerMessage::Reply {
                    id: None,
                    result: Err(e),
                } => return Err(e),
                ServerMessage::Event(e) => self.events.push_back(e),
                _ => {}
            }
        }
    }

    /// Sends `request` and waits for its typed reply (see
    /// [`Client::call`]).
    pub fn request<R: Request>(&mut self, request: R) -> Result<R::Reply, Emg> {
        let (module, address) = (self.module, self.address.clone());
        self.request_or(request, |m| client_error(module, &address, m))
    }

    /// [`Client::request`], with `unreadable` making the error for a reply
    /// that does not parse into the command's reply type.
    pub fn request_or<R: Request>(
        &mut self,
        request: R,
        unreadable: impl FnOnce(String) -> Emg,
    ) -> Result<R::Reply, Emg> {
        let value = self.call(request.into())?;
        serde_json::from_value(value)
            .map_err(|e| unreadable(format!("unreadable reply to '{}': {e}", R::NAME)))
    }

    /// The next event, waiting at most `timeout` (None: no event came).
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, Emg> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(|e| client_error(self.module, &self.address, e.to_string()))?;
            let msg = self.read_message();
            let _ = self.reader.get_ref().set_read_timeout(None);
            match msg {
                Ok(ServerMessage::Event(e)) => return Ok(Some(e)),
                Ok(_) => {}
                Err(e) if e.cause == cause::CONNECTION && e.message.contains("timed out") => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until migration `id` ends: its report when it completed, its
    /// EMG when it failed. Every event of that migration goes to `on_event`
    /// first. Without events (a connection that fell behind the event bus)
    /// it polls `status`.
    pub fn wait_for_migration(
        &mut self,
        id: u64,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Value, Emg> {
        loop {
            match self.next_event(STATUS_POLL)? {
                Some(e) if e.migration() == id => {
                    on_event(&e);
                    match e {
                        Event::MigrationCompleted { report, .. } => return Ok(report),
                        Event::MigrationFailed { error, .. } => return Err(error),
                        _ => {}
                    }
                }
                Some(_) => {}
                None => {
                    let reply::Status::One(s) = self.request(request::Status { id: Some(id) })?
                    else {
                        continue;
                    };
                    if Stage::from_code(s.stage).is_some_and(Stage::is_final) {
                        return match s.error {
                            Some(e) => Err(e),
                            None => Ok(s.report.flatten().unwrap_or(Value::Null)),
                        };
                    }
                }
            }
        }
    }

    fn read_message(&mut self) -> Result<ServerMessage, Emg> {
        let module = self.module;
        let address = self.address.clone();
        let err = |m: String| client_error(module, &address, m);
        match self.reader.read_line() {
            Ok(Line::Complete) => decode_server_message(self.reader.line())
                .map_err(|m| err(format!("unreadable message from the agent: {m}"))),
            Ok(Line::Oversized) => Err(err("the agent sent a line over 1 MiB".into())),
            Ok(Line::Eof) => Err(err("the agent closed the connection".into())),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(err("timed out waiting for the agent".into()))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }
}
