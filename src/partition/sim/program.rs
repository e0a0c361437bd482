//! Guest programs: what the vCPUs of a `sim` LPAR run.
//!
//! A program's whole state lives in its vCPU registers (plus guest memory),
//! so a vCPU saved on one host and restored on another continues bit-exactly:
//! every write is a pure function of the registers before it.
//!
//! Specification: `idle`, `hot:<size>`, `sweep` or `skewed`, then options
//! `rate=<pages/s>` (total over all vCPUs; unbounded by default),
//! `content=zero|text|random` (default random), `writes=<n>` (each vCPU
//! halts after n writes; for reproducible runs), `shutdown=honour|ignore`
//! (whether the guest obeys a shutdown request; default honour) and
//! `resident=<size>` (data the guest loads once when it first runs, as fast
//! as it can, beyond a hot working set: memory that is populated but stays
//! clean). Example: `hot:256MiB,content=random,rate=60000`.
//!
//! Register use (x86 names in brackets):
//!
//! | reg      | meaning |
//! |----------|---------|
//! | `rip` | opcode: 0 idle, 1 hot, 2 sweep, 3 skewed |
//! | `gpr[0]` | first page of this vCPU's region (rax) |
//! | `gpr[1]` | pages in the region (rcx) |
//! | `gpr[2]` | cursor: next page index for hot/sweep (rdx) |
//! | `gpr[3]` | PRNG state, xorshift64* (rbx) |
//! | `gpr[4]` | content: 0 zero, 1 text, 2 random (rsp) |
//! | `gpr[5]` | rate for this vCPU in pages/s, 0 = unbounded (rbp) |
//! | `gpr[6]` | writes done (rsi) |
//! | `gpr[7]` | time of the last write, CLOCK_MONOTONIC ns (rdi) |
//! | `gpr[8]` | longest gap seen between consecutive writes, ns (r8) |
//! | `gpr[9]` | write limit, 0 = none (r9) |
//! | `gpr[10]` | shutdown policy: 0 honour a shutdown request, 1 ignore it (r10) |
//! | `gpr[11]` | next resident page to load (r11) |
//! | `gpr[12]` | end of this vCPU's resident pages, exclusive (r12) |

use crate::partition::{PAGE_SIZE, PartitionError};
use crate::units::parse_size;

/// gpr index: first page of this vCPU's region.
pub const GPR_REGION_START: usize = 0;
/// gpr index: pages in the region.
pub const GPR_REGION_PAGES: usize = 1;
/// gpr index: next page index for hot/sweep.
pub const GPR_CURSOR: usize = 2;
/// gpr index: PRNG state (xorshift64*).
pub const GPR_RNG: usize = 3;
/// gpr index: content code.
pub const GPR_CONTENT: usize = 4;
/// gpr index: this vCPU's rate, pages/s (0 = unbounded).
pub const GPR_RATE: usize = 5;
/// gpr index: writes done.
pub const GPR_WRITES: usize = 6;
/// gpr index: time of the last write, CLOCK_MONOTONIC ns.
pub const GPR_LAST_WRITE_NS: usize = 7;
/// gpr index: longest gap between consecutive writes, ns.
pub const GPR_MAX_GAP_NS: usize = 8;
/// gpr index: write limit (0 = none).
pub const GPR_WRITE_LIMIT: usize = 9;
/// gpr index: 0 honour a shutdown request, 1 ignore it.
pub const GPR_SHUTDOWN_POLICY: usize = 10;
/// gpr index: next resident page to load.
pub const GPR_RESIDENT_NEXT: usize = 11;
/// gpr index: end of this vCPU's resident pages (exclusive).
pub const GPR_RESIDENT_END: usize = 12;

/// The register file a guest program runs on: 16 GPRs, rip, rflags; the
/// same registers the device state carries to the destination.
pub use crate::state::Registers as Regs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// What a vCPU's loop does (the `rip` of a sim vCPU).
pub enum Opcode {
    /// Writes nothing.
    Idle = 0,
    /// Rewrites a working set of `hot_pages` pages.
    Hot = 1,
    /// Writes every page of its region in turn.
    Sweep = 2,
    /// Writes pages at random, 90% of them in the first tenth of its region.
    Skewed = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// What a written page holds.
pub enum Content {
    /// Zeros.
    Zero = 0,
    /// Words of text (compresses well).
    Text = 1,
    /// Random bytes (does not compress).
    Random = 2,
}

/// A parsed program specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    /// The loop every vCPU runs.
    pub opcode: Opcode,
    /// Working-set size in pages (hot only).
    pub hot_pages: u64,
    /// Pages per second over all vCPUs; 0 = unbounded.
    pub rate: u64,
    /// What the pages are filled with.
    pub content: Content,
    /// Writes per vCPU before it halts; 0 = never halts.
    pub writes: u64,
    /// The guest ignores shutdown requests (`shutdown=ignore`).
    pub ignore_shutdown: bool,
    /// Pages loaded once at first run, after the working set
    /// (`resident=<size>`).
    pub resident_pages: u64,
}

impl ProgramSpec {
    /// Parses a specification such as `hot,pages=4096,rate=20000,content=text`.
    pub fn parse(spec: &str) -> Result<Self, PartitionError> {
        let bad = |why: String| PartitionError::BadProgram {
            spec: spec.to_string(),
            why,
        };
        let mut parts = spec.split(',');
        let head = parts.next().unwrap_or_default().trim();
        let (opcode, hot_pages) = match head.split_once(':') {
            None if head == "idle" => (Opcode::Idle, 0),
            None if head == "sweep" => (Opcode::Sweep, 0),
            None if head == "skewed" => (Opcode::Skewed, 0),
            Some(("hot", size)) => {
                let bytes = parse_size(size).map_err(bad)?;
                if bytes < PAGE_SIZE as u64 {
                    return Err(bad(format!("working set {size} is smaller than one page")));
                }
                (Opcode::Hot, bytes / PAGE_SIZE as u64)
            }
            _ => return Err(bad(format!("unknown program '{head}'"))),
        };
        let mut program = ProgramSpec {
            opcode,
            hot_pages,
            rate: 0,
            content: Content::Random,
            writes: 0,
            ignore_shutdown: false,
            resident_pages: 0,
        };
        for option in parts {
            let (key, value) = option
                .trim()
                .split_once('=')
                .ok_or_else(|| bad(format!("option '{option}' is not key=value")))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| bad(format!("{key}={value} is not a number")))
            };
            match key {
                "rate" => program.rate = number()?,
                "writes" => program.writes = number()?,
                "resident" => {
                    program.resident_pages = parse_size(value).map_err(bad)? / PAGE_SIZE as u64
                }
                "shutdown" => {
                    program.ignore_shutdown = match value {
                        "honour" | "honor" => false,
                        "ignore" => true,
                        _ => return Err(bad(format!("shutdown={value}: use honour or ignore"))),
                    }
                }
                "content" => {
                    program.content = match value {
                        "zero" => Content::Zero,
                        "text" => Content::Text,
                        "random" => Content::Random,
                        _ => return Err(bad(format!("content={value}: use zero, text or random"))),
                    }
                }
                _ => return Err(bad(format!("unknown option '{key}'"))),
            }
        }
        Ok(program)
    }

    /// Initial registers of vCPU `index` of `vcpus` on a guest of
    /// `memory_pages` pages: each vCPU gets its own slice of the region.
    pub fn initial_regs(
        &self,
        index: u32,
        vcpus: u32,
        memory_pages: u64,
    ) -> Result<Regs, PartitionError> {
        let region = match self.opcode {
            Opcode::Hot => self.hot_pages,
            _ => memory_pages,
        };
        if region > memory_pages {
            return Err(PartitionError::BadProgram {
                spec: format!("hot:{} pages", self.hot_pages),
                why: format!("the working set is larger than guest memory ({memory_pages} pages)"),
            });
        }
        // Resident data lies after a hot working set (elsewhere the region
        // is all of memory, and it starts at page 0).
        let resident_base = match self.opcode {
            Opcode::Hot => self.hot_pages,
            _ => 0,
        };
        if resident_base + self.resident_pages > memory_pages {
            return Err(PartitionError::BadProgram {
                spec: format!("resident={} pages", self.resident_pages),
                why: format!(
                    "the resident data ends past guest memory ({memory_pages} pages, {resident_base} \
                     of them the working set)"
                ),
            });
        }
        let (i, n) = (u64::from(index), u64::from(vcpus));
        let start = region * i / n;
        let end = region * (i + 1) / n;
        let mut regs = Regs {
            rip: self.opcode as u64,
            rflags: 0x2,
            ..Regs::default()
        };
        regs.gpr[GPR_REGION_START] = start;
        regs.gpr[GPR_REGION_PAGES] = end - start;
        // Distinct, non-zero seeds per vCPU (xorshift must not start at 0).
        regs.gpr[GPR_RNG] = 0x9E37_79B9_7F4A_7C15 ^ (i + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        regs.gpr[GPR_CONTENT] = self.content as u64;
        regs.gpr[GPR_RATE] = self.rate.div_ceil(n);
        regs.gpr[GPR_WRITE_LIMIT] = self.writes;
        regs.gpr[GPR_SHUTDOWN_POLICY] = u64::from(self.ignore_shutdown);
        let resident = self.resident_pages;
        regs.gpr[GPR_RESIDENT_NEXT] = resident_base + resident * i / n;
        regs.gpr[GPR_RESIDENT_END] = resident_base + resident * (i + 1) / n;
        if end == start {
            regs.rip = Opcode::Idle as u64;
        }
        Ok(regs)
    }
}

/// xorshift64*: small, fast, and its whole state is one register.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Whether the guest program obeys a shutdown request.
pub fn honours_shutdown(regs: &Regs) -> bool {
    regs.gpr[GPR_SHUTDOWN_POLICY] == 0
}

/// True while the guest is still loading its resident data: its writes are
/// not paced and do not count as the program's.
pub fn loading(regs: &Regs) -> bool {
    regs.gpr[GPR_RESIDENT_NEXT] < regs.gpr[GPR_RESIDENT_END]
}

/// True when the program has nothing to do: idle, or its write limit reached.
pub fn halted(regs: &Regs) -> bool {
    !loading(regs)
        && (regs.rip == Opcode::Idle as u64
            || regs.rip > Opcode::Skewed as u64
            || regs.gpr[GPR_REGION_PAGES] == 0
            || (regs.gpr[GPR_WRITE_LIMIT] != 0
                && regs.gpr[GPR_WRITES] >= regs.gpr[GPR_WRITE_LIMIT]))
}

/// Which page the next write goes to, and the seed of its content.
/// Advances the registers as the write's effect on the vCPU.
pub fn next_write(regs: &mut Regs) -> (u64, u64) {
    if loading(regs) {
        let page = regs.gpr[GPR_RESIDENT_NEXT];
        regs.gpr[GPR_RESIDENT_NEXT] += 1;
        return (page, next_random(&mut regs.gpr[GPR_RNG]));
    }
    let start = regs.gpr[GPR_REGION_START];
    let pages = regs.gpr[GPR_REGION_PAGES];
    let page = if regs.rip == Opcode::Skewed as u64 {
        // 90% of writes land in the first tenth of the region.
        let hot = (pages / 10).max(1);
        let pick = next_random(&mut regs.gpr[GPR_RNG]);
        let offset = next_random(&mut regs.gpr[GPR_RNG]);
        if !pick.is_multiple_of(10) {
            start + offset % hot
        } else {
            start + offset % pages
        }
    } else {
        let cursor = regs.gpr[GPR_CURSOR] % pages;
        regs.gpr[GPR_CURSOR] = (cursor + 1) % pages;
        start + cursor
    };
    let seed = next_random(&mut regs.gpr[GPR_RNG]);
    regs.gpr[GPR_WRITES] += 1;
    (page, seed)
}

/// Records a write at `now_ns` in the stall registers.
pub fn record_write_time(regs: &mut Regs, now_ns: u64) {
    let last = regs.gpr[GPR_LAST_WRITE_NS];
    if last != 0 && now_ns > last {
        regs.gpr[GPR_MAX_GAP_NS] = regs.gpr[GPR_MAX_GAP_NS].max(now_ns - last);
    }
    regs.gpr[GPR_LAST_WRITE_NS] = now_ns;
}

const WORDS: [&[u8]; 32] = [
    b"the ",
    b"partition ",
    b"memory ",
    b"page ",
    b"guest ",
    b"host ",
    b"migration ",
    b"of ",
    b"and ",
    b"to ",
    b"round ",
    b"dirty ",
    b"copy ",
    b"vcpu ",
    b"a ",
    b"is ",
    b"with ",
    b"source ",
    b"destination ",
    b"path ",
    b"in ",
    b"suspend ",
    b"state ",
    b"device ",
    b"switch ",
    b"over ",
    b"log ",
    b"frame ",
    b"stream ",
    b"for ",
    b"time ",
    b"\n",
];

/// Fills `page` with the content a write with this seed produces.
pub fn fill_page(content: u64, seed: u64, page: &mut [u8; PAGE_SIZE]) {
    let mut state = seed | 1;
    match content {
        0 => page.fill(0),
        1 => {
            let mut at = 0;
            while at < PAGE_SIZE {
                let word = WORDS[(next_random(&mut state) % WORDS.len() as u64) as usize];
                let n = word.len().min(PAGE_SIZE - at);
                page[at..at + n].copy_from_slice(&word[..n]);
                at += n;
            }
        }
        _ => {
            for chunk in page.chunks_exact_mut(8) {
                chunk.copy_from_slice(&next_random(&mut state).to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_options() {
        let p = ProgramSpec::parse("hot:256MiB,content=random,rate=60000").unwrap();
        assert_eq!(p.opcode, Opcode::Hot);
        assert_eq!(p.hot_pages, 65536);
        assert_eq!(p.rate, 60000);
        assert_eq!(
            ProgramSpec::parse("sweep,content=text").unwrap().content,
            Content::Text
        );
        assert_eq!(ProgramSpec::parse("idle").unwrap().opcode, Opcode::Idle);
        assert_eq!(ProgramSpec::parse("skewed,writes=10").unwrap().writes, 10);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let msg = |s: &str| ProgramSpec::parse(s).unwrap_err().to_string();
        assert!(msg("warm:1G").contains("unknown program 'warm:1G'"));
        assert!(msg("hot:1G,content=purple").contains("use zero, text or random"));
        assert!(msg("hot:1G,rate=fast").contains("rate=fast is not a number"));
        assert!(msg("hot:12").contains("smaller than one page"));
        let p = ProgramSpec::parse("hot:2GiB").unwrap();
        assert!(
            p.initial_regs(0, 1, 1000)
                .unwrap_err()
                .to_string()
                .contains("larger than guest")
        );
    }

    #[test]
    fn vcpus_split_the_region_without_overlap() {
        let p = ProgramSpec::parse("hot:1MiB").unwrap();
        let regs: Vec<Regs> = (0..3)
            .map(|i| p.initial_regs(i, 3, 1 << 20).unwrap())
            .collect();
        let mut next = 0;
        for r in &regs {
            assert_eq!(r.gpr[GPR_REGION_START], next);
            next += r.gpr[GPR_REGION_PAGES];
        }
        assert_eq!(next, 256);
    }

    #[test]
    fn writes_are_a_pure_function_of_the_registers() {
        let p = ProgramSpec::parse("skewed").unwrap();
        let mut a = p.initial_regs(0, 1, 1000).unwrap();
        let mut b = a;
        for _ in 0..100 {
            assert_eq!(next_write(&mut a), next_write(&mut b));
        }
        let (mut x, mut y) = ([0u8; PAGE_SIZE], [0u8; PAGE_SIZE]);
        fill_page(1, 42, &mut x);
        fill_page(1, 42, &mut y);
        assert_eq!(x, y);
        assert!(x.iter().all(|c| c.is_ascii()));
    }

    #[test]
    fn skewed_writes_favour_the_hot_tenth() {
        let p = ProgramSpec::parse("skewed").unwrap();
        let mut r = p.initial_regs(0, 1, 10_000).unwrap();
        let hot = (0..10_000).filter(|_| next_write(&mut r).0 < 1000).count();
        assert!(
            (8_800..9_300).contains(&hot),
            "{hot} of 10000 writes were hot"
        );
    }

    #[test]
    fn write_limit_halts_the_program() {
        let p = ProgramSpec::parse("hot:8KiB,writes=3").unwrap();
        let mut r = p.initial_regs(0, 1, 10).unwrap();
        for _ in 0..3 {
            assert!(!halted(&r));
            next_write(&mut r);
        }
        assert!(halted(&r));
    }

    #[test]
    fn resident_data_loads_once_after_the_working_set_then_the_program_runs() {
        let p = ProgramSpec::parse("hot:8KiB,resident=12KiB,writes=2").unwrap();
        let mut regs: Vec<Regs> = (0..2).map(|i| p.initial_regs(i, 2, 10).unwrap()).collect();
        let mut loaded = Vec::new();
        for r in &mut regs {
            while loading(r) {
                assert!(!halted(r));
                loaded.push(next_write(r).0);
            }
            assert_eq!(r.gpr[GPR_WRITES], 0, "loading is not the program's writes");
        }
        assert_eq!(loaded, vec![2, 3, 4]);
        for r in &mut regs {
            assert_eq!(next_write(r).0, r.gpr[GPR_REGION_START]);
        }
        let past = ProgramSpec::parse("hot:8KiB,resident=40KiB").unwrap();
        let e = past.initial_regs(0, 1, 10).unwrap_err().to_string();
        assert!(e.contains("resident data ends past guest memory"), "{e}");
        let idle = ProgramSpec::parse("idle,resident=8KiB").unwrap();
        let mut r = idle.initial_regs(0, 1, 10).unwrap();
        assert_eq!(next_write(&mut r).0, 0);
        assert_eq!(next_write(&mut r).0, 1);
        assert!(halted(&r));
    }

    #[test]
    fn stall_register_keeps_the_longest_gap() {
        let mut r = Regs::default();
        record_write_time(&mut r, 1_000);
        record_write_time(&mut r, 1_500);
        record_write_time(&mut r, 4_500);
        record_write_time(&mut r, 4_600);
        assert_eq!(r.gpr[GPR_MAX_GAP_NS], 3_000);
    }
}
