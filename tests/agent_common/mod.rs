//! Agents as real processes for the agent tests: `moverd serve` started
//! from the built binary, killed (SIGKILL) when dropped, and a raw
//! management connection to talk the protocol line by line.

#![allow(dead_code)] // each test file uses a different subset

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-0123456789";

/// The agent names the tests use: every test agent may authenticate to
/// these (the configuration's `peers`) and to no other.
pub const PEERS: &[&str] = &["hostA", "hostB", "hostC", "hostR", "hostS"];

/// `--peer <name>` for each of [`PEERS`].
pub fn peer_args() -> Vec<String> {
    PEERS
        .iter()
        .flat_map(|p| ["--peer".to_string(), p.to_string()])
        .collect()
}

/// A scratch directory under /dev/shm (guest memory lives on tmpfs), removed
/// when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = PathBuf::from(format!(
            "/dev/shm/lpar-mover-agent-test-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        // The agent refuses a token file others can read.
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        Scratch(dir)
    }

    pub fn token_file(&self) -> PathBuf {
        self.0.join("token")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The last octet of the next agent's migration path address (2..=254).
pub fn next_path_octet() -> u8 {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(2);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    2 + (n - 2) % 253
}

/// The arguments of a test agent's `moverd serve`: listening on an
/// ephemeral loopback port, its state in `state_dir`, its token in
/// `token_file`, trusting the other test agents.
pub fn serve_args(name: &str, state_dir: &Path, token_file: &Path) -> Vec<String> {
    // Each agent its own loopback address for the migration path: the
    // validation wants distinct path addresses, apart from the management
    // address (127.0.0.1).
    let path = format!("mig=127.0.0.{}", next_path_octet());
    let mut args: Vec<String> = [
        "serve",
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        "--path",
        &path,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["--state-dir".into(), state_dir.display().to_string()]);
    args.extend(["--token-file".into(), token_file.display().to_string()]);
    args.extend(peer_args());
    // The test agents run without identities (tests/agent_identity.rs has
    // those): plaintext management, explicitly.
    args.push("--insecure-plaintext-management".into());
    args
}

/// One `moverd serve` process.
pub struct Agent {
    pub name: String,
    pub child: Child,
    /// The management address it printed (`LISTENING <addr>`).
    pub addr: String,
    pub state_dir: PathBuf,
    pub token_file: PathBuf,
    args: Vec<String>,
}

impl Agent {
    /// Starts agent `name` with its state in `<scratch>/<name>`, listening on
    /// an ephemeral loopback port, plus `extra` flags.
    pub fn start(scratch: &Scratch, name: &str, extra: &[&str]) -> Agent {
        Agent::start_at(scratch, name, scratch.0.join(name), extra)
    }

    /// [`Agent::start`] with its state in `state_dir`.
    pub fn start_at(scratch: &Scratch, name: &str, state_dir: PathBuf, extra: &[&str]) -> Agent {
        let mut args = serve_args(name, &state_dir, &scratch.token_file());
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(name, args, state_dir, scratch.token_file())
    }

    /// [`Agent::start`] with extra environment variables (fault injection:
    /// `MOVERD_FAULT_KILL_AT`). A restart drops them.
    pub fn start_with_env(
        scratch: &Scratch,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let plain = Agent::start(scratch, name, extra);
        let (args, state_dir, token_file) = (
            plain.args.clone(),
            plain.state_dir.clone(),
            plain.token_file.clone(),
        );
        drop(plain);
        let mut program = Command::new(env!("CARGO_BIN_EXE_moverd"));
        program.envs(env.iter().copied());
        Self::spawn_via(name, program, args, state_dir, token_file)
    }

    /// Starts `moverd` with exactly `args` (they must make it listen).
    pub fn spawn(name: &str, args: Vec<String>, state_dir: PathBuf, token_file: PathBuf) -> Agent {
        let program = Command::new(env!("CARGO_BIN_EXE_moverd"));
        Self::spawn_via(name, program, args, state_dir, token_file)
    }

    /// Like [`Agent::spawn`], `program` being `moverd` or a command that runs
    /// it (e.g. `ip netns exec <ns> moverd`).
    pub fn spawn_via(
        name: &str,
        mut program: Command,
        args: Vec<String>,
        state_dir: PathBuf,
        token_file: PathBuf,
    ) -> Agent {
        std::fs::create_dir_all(&state_dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_dir.with_extension("log"))
            .unwrap();
        let mut child = program
            .args(&args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("moverd starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("moverd {name} printed {line:?}; see its log"))
            .trim()
            .to_string();
        Agent {
            name: name.to_string(),
            child,
            addr,
            state_dir,
            token_file,
            args,
        }
    }

    /// SIGKILL, as a crash would; the LPARs' files stay.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same agent again (same flags; a TCP agent gets a new port).
    pub fn restart(&mut self) {
        self.kill9();
        let again = Agent::spawn(
            &self.name,
            self.args.clone(),
            self.state_dir.clone(),
            self.token_file.clone(),
        );
        *self = again;
    }

    /// [`Agent::restart`] with extra environment variables.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.kill9();
        let mut program = Command::new(env!("CARGO_BIN_EXE_moverd"));
        program.envs(env.iter().copied());
        let again = Agent::spawn_via(
            &self.name,
            program,
            self.args.clone(),
            self.state_dir.clone(),
            self.token_file.clone(),
        );
        *self = again;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.with_extension("log")).unwrap_or_default()
    }

    /// Runs `moverctl --agent <this> --token-file <…> args`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_moverctl"))
            .args(["--agent", &self.addr, "--token-file"])
            .arg(&self.token_file)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("moverctl runs")
    }

    /// `moverctl --json args`, expecting success; the parsed output.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all);
        assert!(
            out.status.success(),
            "moverctl {args:?} failed ({:?}): {}{}\nagent log:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).expect("moverctl --json prints JSON")
    }

    /// An authenticated raw connection.
    pub fn connect(&self) -> Conn {
        let mut c = Conn::open(&self.addr);
        c.greeting();
        let r =
            c.request(json!({"id": 0, "execute": "authenticate", "arguments": {"token": TOKEN}}));
        assert!(r.get("return").is_some(), "{r}");
        c
    }

    pub fn lpar(&self, name: &str) -> Value {
        self.ctl_json(&["lpar", "show", name])
    }

    pub fn lpar_names(&self) -> Vec<String> {
        self.ctl_json(&["lpar", "list"])["lpars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates LPAR `name` on `agent` and activates it (its guest runs).
pub fn define_running(agent: &Agent, name: &str, memory: &str, program: &str) {
    agent.ctl_json(&[
        "lpar",
        "create",
        name,
        "--memory",
        memory,
        "--program",
        program,
    ]);
    agent.ctl_json(&["lpar", "activate", name]);
}

/// One management connection, read and written line by line.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Conn {
    pub fn open(addr: &str) -> Conn {
        Conn::over(TcpStream::connect(addr).unwrap())
    }

    /// A connection over `s`, already connected.
    pub fn over(s: TcpStream) -> Conn {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    pub fn greeting(&mut self) -> Value {
        let g = self.recv().expect("a greeting");
        assert!(g.get("greeting").is_some(), "{g}");
        g
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// The next line, or None when the agent closed the connection.
    pub fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("the agent sends JSON lines")),
        }
    }

    /// Sends `request` and returns the reply with its id (events skipped).
    pub fn request(&mut self, request: Value) -> Value {
        let id = request["id"].clone();
        let mut line = request.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes()).unwrap();
        self.reply_to(&id)
    }

    pub fn reply_to(&mut self, id: &Value) -> Value {
        loop {
            let v = self.recv().expect("a reply before the connection closes");
            if v.get("event").is_none() && &v["id"] == id {
                return v;
            }
        }
    }
}

/// A migration held at stage 0x4050 by the test-only pause
/// (`MOVERD_FAULT_PAUSE_AT`): start the source agent with [`Hold::env`];
/// the hold ends when [`Hold::release`] is called or it is dropped (the
/// agent gives up holding after 60 s on its own).
pub struct Hold {
    file: PathBuf,
    file_s: String,
}

impl Hold {
    pub fn new(scratch: &Scratch, tag: &str) -> Hold {
        let file = scratch.0.join(format!("hold-{tag}"));
        let file_s = file.display().to_string();
        Hold { file, file_s }
    }

    /// The environment that makes an agent hold its migrations at 0x4050.
    pub fn env(&self) -> [(&str, &str); 2] {
        [
            ("MOVERD_FAULT_PAUSE_AT", "0x4050"),
            ("MOVERD_FAULT_PAUSE_FILE", self.file_s.as_str()),
        ]
    }

    /// Waits until a migration is held, and for its stage to show 0x4050.
    pub fn wait_held(&self, agent: &Agent, id: &str) {
        wait_for(
            "the migration held at 0x4050",
            Duration::from_secs(30),
            || self.file.exists(),
        );
        wait_for("stage 0x4050", Duration::from_secs(10), || {
            agent.ctl_json(&["status", id])["stage"] == 0x4050
        });
    }

    /// Lets the held migration carry on.
    pub fn release(&self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
    }
}

/// Runs `moverd` with `args`, expecting it to refuse to start: returns its
/// standard error. Fails the test if it starts listening instead.
pub fn refused_start(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moverd"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moverd starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.starts_with("LISTENING") {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "moverd {args:?} started ({line:?}) but should have refused; its log:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "moverd {args:?} exited 0");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Ends, when dropped, the `moverd lpar-vmm` processes serving LPARs under
/// `scratch` (they outlive their agents by design): found by the scratch
/// directory in their command line, killed by pid.
pub struct Reaper(String);

impl Reaper {
    pub fn new(scratch: &Scratch) -> Reaper {
        Reaper(scratch.0.display().to_string())
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("lpar-vmm") && cmdline.contains(&self.0) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}
