//! The built-in guest (`lpar_mover::partition::guest::IMAGE`) under QEMU (`-kernel`,
//! TCG): boot line, growing heartbeats, SMP, the mailbox, the power button,
//! errors for bad command lines, and memory contents byte for byte equal to
//! a replay of `sim`'s program in Rust.
//!
//! Guest RAM is a shared file (`memory-backend-file,share=on`), so the test
//! reads the mailbox and the work area, and presses the power button, the
//! way a VMM does. Needs `qemu-system-x86_64` (Debian: qemu-system-x86);
//! without it every test says so on stderr and passes.

use lpar_mover::partition::guest::console::{self, Heartbeat, Line};
use lpar_mover::partition::guest::mailbox::{self, Mailbox};
use lpar_mover::partition::guest::{IMAGE, WORK_AREA_START};
use lpar_mover::partition::sim::program::{ProgramSpec, fill_page, next_write};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const QEMU: &str = "qemu-system-x86_64";
const RAM_MIB: u64 = 64;
/// Generous: TCG on a shared 2-core machine.
const WAIT: Duration = Duration::from_secs(120);

fn qemu_available() -> bool {
    let found = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        lpar_mover::skip::skip(
            "guest_qemu",
            &format!(
                "{QEMU} is not installed (Debian/Ubuntu: apt-get install qemu-system-x86); \
                 the built-in guest was not booted"
            ),
        );
    }
    found
}

/// One QEMU running the built-in guest; killed when dropped.
struct Guest {
    child: Child,
    dir: Arc<tempfile::TempDir>,
    /// Names this QEMU's RAM file, console and QMP socket in `dir`.
    name: String,
    ram: File,
}

impl Guest {
    fn boot(cmdline: &str, cpus: u32) -> Guest {
        Self::boot_with(cmdline, cpus, |_| {})
    }

    /// Boots after `prepare` has seen the (zeroed) RAM file.
    fn boot_with(cmdline: &str, cpus: u32, prepare: impl FnOnce(&File)) -> Guest {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        std::fs::write(dir.path().join("lpar-guest.elf"), IMAGE).unwrap();
        Self::spawn(dir, "first", cmdline, cpus, prepare, &[])
    }

    /// Starts QEMU `name` in `dir` (which holds the kernel) with `extra`
    /// arguments; its RAM is the file `dir/name.ram`.
    fn spawn(
        dir: Arc<tempfile::TempDir>,
        name: &str,
        cmdline: &str,
        cpus: u32,
        prepare: impl FnOnce(&File),
        extra: &[String],
    ) -> Guest {
        let kernel = dir.path().join("lpar-guest.elf");
        let ram_path = dir.path().join(format!("{name}.ram"));
        let ram = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&ram_path)
            .unwrap();
        ram.set_len(RAM_MIB << 20).unwrap();
        prepare(&ram);
        let mut cmd = Command::new(QEMU);
        cmd.args([
            "-accel",
            "tcg",
            "-nographic",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .args(["-m", &format!("{RAM_MIB}M"), "-smp", &cpus.to_string()])
        .arg("-object")
        .arg(format!(
            "memory-backend-file,id=ram,size={RAM_MIB}M,mem-path={},share=on",
            ram_path.display()
        ))
        .args(["-machine", "pc,memory-backend=ram"])
        .arg("-kernel")
        .arg(&kernel)
        .args(["-append", cmdline])
        .arg("-serial")
        .arg(format!("file:{}", console_path(dir.path(), name).display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        // qboot is much faster than SeaBIOS under TCG.
        if Path::new("/usr/share/qemu/qboot.rom").exists() {
            cmd.args(["-bios", "/usr/share/qemu/qboot.rom"]);
        }
        let child = cmd.spawn().expect("start qemu");
        Guest {
            child,
            dir,
            name: name.to_string(),
            ram,
        }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(console_path(self.dir.path(), &self.name)).unwrap_or_default()
    }

    fn lines(&self) -> Vec<Line> {
        console::parse_log(&self.console())
    }

    fn heartbeats(&self, cpu: u32) -> Vec<Heartbeat> {
        console::heartbeats(&self.console())
            .into_iter()
            .filter(|hb| hb.cpu == cpu)
            .collect()
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.ram.read_exact_at(&mut buf, addr).unwrap();
        buf
    }

    fn mailbox(&self) -> Option<Mailbox> {
        Mailbox::decode(&self.read(mailbox::ADDR, 4096))
    }

    fn press_power_button(&self) {
        let at = mailbox::ADDR + mailbox::OFF_POWER_BUTTON as u64;
        self.ram.write_all_at(&1u32.to_le_bytes(), at).unwrap();
    }

    /// Waits until `done` holds, failing with the console when QEMU exits
    /// or [`WAIT`] passes.
    fn wait_for(&mut self, what: &str, mut done: impl FnMut(&Guest) -> bool) {
        let start = Instant::now();
        loop {
            if done(self) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "qemu exited ({status}) before {what}; stderr: {err}\nconsole:\n{}",
                    self.console()
                );
            }
            assert!(
                start.elapsed() < WAIT,
                "no {what} within {WAIT:?}; console:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for_heartbeats(&mut self, cpu: u32, n: usize) -> Vec<Heartbeat> {
        self.wait_for(&format!("{n} heartbeats of cpu {cpu}"), |g| {
            g.heartbeats(cpu).len() >= n
        });
        self.heartbeats(cpu)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn console_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.console"))
}

fn boot_line(lines: &[Line]) -> Option<(u32, String)> {
    lines.iter().find_map(|l| match l {
        Line::Boot { cpus, program } => Some((*cpus, program.clone())),
        _ => None,
    })
}

/// Writes per second of guest TSC time between the first and last heartbeat.
fn rate(hbs: &[Heartbeat], tsc_hz: u64) -> f64 {
    let (a, b) = (hbs.first().unwrap(), hbs.last().unwrap());
    (b.writes - a.writes) as f64 * tsc_hz as f64 / (b.tsc - a.tsc) as f64
}

#[test]
fn boots_and_its_heartbeats_count_growing_writes() {
    if !qemu_available() {
        return;
    }
    let mut g = Guest::boot("hot:1MiB,content=zero", 1);
    let hbs = g.wait_for_heartbeats(0, 3);
    assert_eq!(
        boot_line(&g.lines()),
        Some((1, "hot:1MiB,content=zero".to_string()))
    );
    for pair in hbs.windows(2) {
        assert!(pair[1].writes > pair[0].writes, "writes grow: {hbs:?}");
        assert!(pair[1].tsc > pair[0].tsc, "tsc grows: {hbs:?}");
    }
    let mb = g.mailbox().expect("mailbox magic");
    assert_eq!(mb.cpus_online, 1);
    assert!(mb.tsc_hz > 100_000_000, "calibrated TSC {} Hz", mb.tsc_hz);
    assert_eq!(mb.flags & mailbox::FLAG_RUNNING, mailbox::FLAG_RUNNING);
    assert_eq!(mb.flags & mailbox::FLAG_PROGRAM_ERROR, 0);
    assert!(mb.total_writes >= hbs.last().unwrap().writes);
    assert!(mb.heartbeat_seq >= hbs.len() as u64);
    assert!(mb.last_tsc >= hbs.last().unwrap().tsc);
    assert_eq!(mb.region_start, WORK_AREA_START);
    assert_eq!(mb.region_bytes, 1 << 20);
    assert_eq!(mb.memory_end, RAM_MIB << 20);
    assert!(mb.max_gap > 0);
    // The slice is the whole 1 MiB working set from 4 MiB.
    assert_eq!(mb.cpus[0].start_page, WORK_AREA_START / 4096);
    assert_eq!(mb.cpus[0].pages, 256);
    eprintln!(
        "hot:1MiB,content=zero under QEMU TCG: {:.0} writes/s",
        rate(&hbs, mb.tsc_hz)
    );
}

#[test]
fn the_path_before_the_program_is_ignored_and_idle_does_not_write() {
    if !qemu_available() {
        return;
    }
    // QEMU itself puts the kernel's path first; a loader may too.
    let mut g = Guest::boot("/boot/lpar-guest.elf idle,rate=+5,content=text", 1);
    let hbs = g.wait_for_heartbeats(0, 2);
    assert_eq!(
        boot_line(&g.lines()),
        Some((1, "idle,rate=+5,content=text".to_string()))
    );
    assert!(ProgramSpec::parse("idle,rate=+5,content=text").is_ok());
    assert!(hbs.iter().all(|hb| hb.writes == 0), "{hbs:?}");
    assert_eq!(g.mailbox().unwrap().total_writes, 0);
}

#[test]
fn a_bad_command_line_prints_an_error_and_halts() {
    if !qemu_available() {
        return;
    }
    for (cmdline, expected) in [
        ("warm:1G", "unknown program 'warm:1G'"),
        (
            "hot:4MiB,content=purple",
            "content=purple: use zero, text or random",
        ),
        ("hot:4MiB,rate=fast", "rate=fast is not a number"),
        ("hot:12", "smaller than one page"),
        ("hot:1GiB", "larger than guest memory"),
        ("sweep,colour=red", "unknown option 'colour'"),
        ("hot:4MiB,writes=1,rate=-1", "rate=-1 is not a number"),
        ("hot:", "is not a size"),
    ] {
        // sim refuses the same text (all but the one too big for 64 MiB).
        if !expected.contains("guest memory") {
            assert!(
                ProgramSpec::parse(cmdline).is_err(),
                "sim accepts {cmdline}"
            );
        }
        let mut g = Guest::boot(cmdline, 1);
        g.wait_for("an error line", |g| {
            g.lines().iter().any(|l| matches!(l, Line::Error(_)))
        });
        let lines = g.lines();
        let error = lines
            .iter()
            .find_map(|l| match l {
                Line::Error(e) => Some(e.clone()),
                _ => None,
            })
            .unwrap();
        assert!(error.contains(expected), "{cmdline}: '{error}'");
        assert!(boot_line(&lines).is_none(), "{cmdline}: no boot line");
        let mb = g.mailbox().expect("the magic is set with the error flag");
        assert_eq!(mb.flags & mailbox::FLAG_PROGRAM_ERROR, 1, "{cmdline}");
        // Halted: no heartbeat follows.
        std::thread::sleep(Duration::from_millis(1500));
        assert!(console::heartbeats(&g.console()).is_empty(), "{cmdline}");
    }
}

/// What the work area (its first `len` bytes, poisoned with 0xAA) holds
/// after each of the mailbox's vCPUs made `writes` writes of `cmdline` as
/// `sim` makes them; checks each vCPU's slice and final state on the way.
fn replay(cmdline: &str, mb: &Mailbox, writes: u64, len: usize) -> Vec<u8> {
    let spec = ProgramSpec::parse(cmdline).unwrap();
    let cpus = mb.cpus.len() as u32;
    let mut expected = vec![0xAAu8; len];
    for cpu in 0..cpus {
        let mut regs = spec
            .initial_regs(cpu, cpus, mb.region_bytes / 4096)
            .unwrap();
        let state = &mb.cpus[cpu as usize];
        assert_eq!(state.start_page, WORK_AREA_START / 4096 + regs.gpr[0]);
        assert_eq!(state.pages, regs.gpr[1]);
        for _ in 0..writes {
            let (page, seed) = next_write(&mut regs);
            let mut bytes = [0u8; 4096];
            fill_page(regs.gpr[4], seed, &mut bytes);
            let at = page as usize * 4096;
            expected[at..at + 4096].copy_from_slice(&bytes);
        }
        assert_eq!(state.writes, writes);
        assert_eq!(state.rng, regs.gpr[3], "cpu {cpu} xorshift state");
        assert_eq!(state.cursor, regs.gpr[2], "cpu {cpu} cursor");
    }
    expected
}

/// Compares the work area with `expected`, page by page.
fn assert_work_area(g: &Guest, expected: &[u8], what: &str) {
    let actual = g.read(WORK_AREA_START, expected.len());
    for page in 0..actual.len() / 4096 {
        let r = page * 4096..(page + 1) * 4096;
        assert!(
            actual[r.clone()] == expected[r],
            "{what}: page {page} of the work area differs from sim's replay"
        );
    }
}

/// The guest's writes equal a replay of sim's program, byte for byte, on
/// two vCPUs, for each content; nothing outside the working set is written.
#[test]
fn memory_matches_a_replay_of_sim_byte_for_byte() {
    if !qemu_available() {
        return;
    }
    const WRITES: u64 = 40;
    const HOT: u64 = 64 << 10;
    for content in ["zero", "text", "random"] {
        let cmdline = format!("hot:64KiB,content={content},writes={WRITES}");
        // Poison the work area and a little past it: zero pages must be written.
        let mut g = Guest::boot_with(&cmdline, 2, |ram| {
            ram.write_all_at(&vec![0xAA; 2 * HOT as usize], WORK_AREA_START)
                .unwrap();
        });
        g.wait_for("both vCPUs done", |g| {
            g.mailbox()
                .is_some_and(|mb| mb.cpus.len() == 2 && mb.cpus.iter().all(|c| c.run_state == 2))
        });
        let mb = g.mailbox().unwrap();
        assert_eq!(mb.total_writes, 2 * WRITES, "{content}");
        let expected = replay(&cmdline, &mb, WRITES, 2 * HOT as usize);
        assert_work_area(&g, &expected, content);
        let hbs = g.wait_for_heartbeats(1, 1);
        assert_eq!(hbs.last().unwrap().writes, WRITES);
    }
}

#[test]
fn two_vcpus_share_a_sweep_at_the_requested_rate() {
    if !qemu_available() {
        return;
    }
    const RATE: u64 = 2000;
    let mut g = Guest::boot(&format!("sweep,content=zero,rate={RATE}"), 2);
    let hbs0 = g.wait_for_heartbeats(0, 4);
    let hbs1 = g.wait_for_heartbeats(1, 4);
    assert_eq!(boot_line(&g.lines()).unwrap().0, 2);
    let mb = g.mailbox().unwrap();
    assert_eq!(mb.cpus_online, 2);
    assert_eq!(mb.rate, RATE);
    // Sweep covers all RAM above 4 MiB, split in two.
    let pages = ((RAM_MIB << 20) - WORK_AREA_START) / 4096;
    assert_eq!(mb.cpus[0].pages + mb.cpus[1].pages, pages);
    assert_eq!(
        mb.cpus[1].start_page,
        mb.cpus[0].start_page + mb.cpus[0].pages
    );
    for hbs in [&hbs0, &hbs1] {
        let per_cpu = rate(&hbs[1..], mb.tsc_hz);
        eprintln!("sweep rate={RATE} on 2 vCPUs: {per_cpu:.0} writes/s on one vCPU");
        // The limiter never exceeds its share (1000/s); a busy host may
        // make it slower, so the lower bound only asks for progress.
        assert!(
            per_cpu <= 1.1 * (RATE / 2) as f64,
            "{per_cpu:.0}/s: {hbs:?}"
        );
        assert!(per_cpu > 0.0, "{hbs:?}");
    }
}

#[test]
fn the_power_button_stops_every_vcpu() {
    if !qemu_available() {
        return;
    }
    let mut g = Guest::boot("hot:256KiB,content=zero", 2);
    g.wait_for_heartbeats(1, 1);
    g.press_power_button();
    g.wait_for("the halted line", |g| g.lines().contains(&Line::Halted));
    let mb = g.mailbox().unwrap();
    assert_eq!(mb.flags & mailbox::FLAG_HALTED, mailbox::FLAG_HALTED);
    assert_eq!(mb.halted_cpus, 2);
    assert!(mb.cpus.iter().all(|c| c.run_state == 3));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        g.mailbox().unwrap().total_writes,
        mb.total_writes,
        "no write after the halt"
    );
}

/// Unbounded single-vCPU write rates per content, for the README (printed;
/// only progress is asserted).
#[test]
fn write_rates_per_content() {
    if !qemu_available() {
        return;
    }
    for content in ["zero", "text", "random"] {
        let mut g = Guest::boot(&format!("hot:4MiB,content={content}"), 1);
        let hbs = g.wait_for_heartbeats(0, 3);
        let per_s = rate(&hbs[1..], g.mailbox().unwrap().tsc_hz);
        eprintln!("hot:4MiB,content={content} under QEMU TCG, 1 vCPU: {per_s:.0} writes/s");
        assert!(per_s > 0.0);
    }
}

/// QEMU's QMP on a Unix socket: a command and its reply (events skipped).
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Qmp {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(start.elapsed() < WAIT, "QMP socket {}: {e}", path.display());
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        qmp.line(); // the greeting
        qmp.execute(r#"{"execute":"qmp_capabilities"}"#);
        qmp
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "QMP closed");
        line
    }

    fn execute(&mut self, command: &str) -> String {
        writeln!(self.writer, "{command}").unwrap();
        loop {
            let line = self.line();
            assert!(!line.contains("\"error\""), "{command}: {line}");
            if line.contains("\"return\"") {
                return line;
            }
        }
    }

    /// Repeats `command` until its reply contains `wanted`.
    fn wait_until(&mut self, command: &str, wanted: &str) {
        let start = Instant::now();
        loop {
            let reply = self.execute(command);
            if reply.contains(wanted) {
                return;
            }
            assert!(start.elapsed() < WAIT, "{command}: still {reply}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The guest's program state lives in its registers and memory, so a guest
/// saved mid-program (QEMU migration to a file) and restored in a second
/// QEMU carries on exactly: its heartbeats continue the counts, and the
/// work area ends byte for byte equal to an uninterrupted replay.
#[test]
fn a_saved_and_restored_guest_continues_its_writes_exactly() {
    if !qemu_available() {
        return;
    }
    const WRITES: u64 = 500;
    const HOT: usize = 64 << 10;
    // 150 writes/s per vCPU: the save lands mid-program.
    let cmdline = format!("hot:64KiB,content=random,rate=300,writes={WRITES}");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(dir.path().join("lpar-guest.elf"), IMAGE).unwrap();
    let qmp_arg = |name: &str| {
        vec![
            "-qmp".to_string(),
            format!(
                "unix:{},server=on,wait=off",
                dir.path().join(name).display()
            ),
        ]
    };
    let poison = |ram: &File| {
        ram.write_all_at(&vec![0xAA; 2 * HOT], WORK_AREA_START)
            .unwrap()
    };
    let mut first = Guest::spawn(
        dir.clone(),
        "first",
        &cmdline,
        2,
        poison,
        &qmp_arg("first.qmp"),
    );
    first.wait_for_heartbeats(1, 1);
    let mut qmp = Qmp::connect(&dir.path().join("first.qmp"));
    qmp.execute(r#"{"execute":"stop"}"#);
    let saved = first.mailbox().unwrap();
    assert!(
        saved.cpus.iter().all(|c| c.writes > 0 && c.writes < WRITES),
        "saved mid-program: {saved:?}"
    );
    let state = dir.path().join("state");
    qmp.execute(&format!(
        r#"{{"execute":"migrate","arguments":{{"uri":"exec:cat > {}"}}}}"#,
        state.display()
    ));
    qmp.wait_until(r#"{"execute":"query-migrate"}"#, "\"completed\"");
    drop(qmp);
    drop(first);

    let mut incoming = qmp_arg("second.qmp");
    incoming.extend([
        "-incoming".to_string(),
        format!("exec:cat {}", state.display()),
    ]);
    let mut second = Guest::spawn(dir.clone(), "second", &cmdline, 2, |_| {}, &incoming);
    let mut qmp = Qmp::connect(&dir.path().join("second.qmp"));
    qmp.wait_until(r#"{"execute":"query-status"}"#, "\"paused\"");
    let restored = second.mailbox().unwrap();
    assert_eq!(
        restored.cpus, saved.cpus,
        "the restored state is the saved state"
    );
    qmp.execute(r#"{"execute":"cont"}"#);
    second.wait_for("both vCPUs done", |g| {
        g.mailbox()
            .is_some_and(|mb| mb.cpus.iter().all(|c| c.run_state == 2))
    });
    let done = second.mailbox().unwrap();
    assert_eq!(done.total_writes, 2 * WRITES);
    for cpu in 0..2u32 {
        let hbs = second.wait_for_heartbeats(cpu, 1);
        assert!(
            hbs[0].writes >= saved.cpus[cpu as usize].writes,
            "cpu {cpu}: heartbeats continue from the saved count: {hbs:?}"
        );
    }
    let expected = replay(&cmdline, &done, WRITES, 2 * HOT);
    assert_work_area(&second, &expected, "after save and restore");
}
