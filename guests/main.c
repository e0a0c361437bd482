/*
 * The built-in guest: boot, TSC calibration, SMP bring-up, and the loop
 * every vCPU runs (writes, heartbeats, the power button). See README.md.
 */
#include "guest.h"

#define MULTIBOOT_LOADER_MAGIC 0x2BADB002u
#define LAPIC_BASE 0xFEE00000u
#define LAPIC_SVR 0xF0u
#define LAPIC_ICR_LO 0x300u
#define LAPIC_ICR_HI 0x310u
#define PIT_HZ 1193182u
#define CALIBRATION_LATCH 23864u /* 20 ms of PIT channel 2 */
#define CALIBRATION_RUNS 5

struct multiboot_info {
    u32 flags;
    u32 mem_lower;
    u32 mem_upper;
    u32 boot_device;
    u32 cmdline;
};

static char cmdline[1024];
static const char *program_text;
static struct program program;
static u64 tsc_hz;
volatile u32 ap_next_index = 1;
static volatile u32 aps_arrived;
static volatile u32 cpus_released; /* 0 until the BSP lets the APs run; then the vCPU count */

static void set_flag(u32 flag)
{
    __asm__ volatile("lock orl %1, %0" : "+m"(MAILBOX->flags) : "r"(flag) : "memory");
}

static void error_halt(const char *what, const char *detail)
{
    console_lock();
    put_str("lpar-guest error: ");
    put_str(what);
    put_str(detail);
    put_str("\n");
    console_unlock();
    set_flag(FLAG_PROGRAM_ERROR);
    halt_forever();
}

static u64 ticks_for_us(u32 us) { return udiv64_32(tsc_hz * us, 1000000u, 0); }

static void delay_us(u32 us)
{
    u64 end = rdtsc() + ticks_for_us(us);
    while (rdtsc() < end)
        cpu_relax();
}

/* TSC ticks in one countdown of PIT channel 2 (mode 0, gate on, speaker
 * off), or 0 when OUT2 never rises: a PIT without the in-kernel speaker
 * port (create it with KVM_PIT_SPEAKER_DUMMY) gives up after 2^33 ticks,
 * at least 0.8 s on any TSC up to 10 GHz. */
static u64 pit_countdown_ticks(void)
{
    outb(0x61, (u8)((inb(0x61) & ~0x02) | 0x01));
    outb(0x43, 0xB0);
    outb(0x42, CALIBRATION_LATCH & 0xff);
    outb(0x42, CALIBRATION_LATCH >> 8);
    u64 t0 = rdtsc(), t1 = t0;
    u32 polls = 0;
    while (!(inb(0x61) & 0x20)) {
        polls++;
        t1 = rdtsc();
        if (t1 - t0 >= (1ull << 33))
            return 0;
    }
    t1 = rdtsc();
    return polls ? t1 - t0 : 0;
}

/* The median of five 20 ms countdowns: a vCPU preempted in one of them
 * (a busy host, an emulated KVM) skews that one only. */
static u64 calibrate_tsc(void)
{
    u64 runs[CALIBRATION_RUNS];
    for (u32 i = 0; i < CALIBRATION_RUNS; i++) {
        runs[i] = pit_countdown_ticks();
        if (runs[i] == 0) {
            put_line("lpar-guest warning: PIT channel 2 calibration failed (port 0x61 OUT2 "
                     "never rose); assuming a 1 GHz TSC");
            return 1000000000ull;
        }
        for (u32 j = i; j > 0 && runs[j - 1] > runs[j]; j--) {
            u64 t = runs[j];
            runs[j] = runs[j - 1];
            runs[j - 1] = t;
        }
    }
    u64 hz = udiv64_32(runs[CALIBRATION_RUNS / 2] * PIT_HZ, CALIBRATION_LATCH, 0);
    if (hz < 10000000ull) {
        put_line("lpar-guest warning: PIT channel 2 calibration gave under 10 MHz; "
                 "assuming a 1 GHz TSC");
        hz = 1000000000ull;
    }
    return hz;
}

/* The TSC frequency KVM itself uses, from the kvmclock page: exact where
 * the PIT is not (under this machine's emulated KVM, 20 ms PIT countdowns
 * read a 2.6 GHz TSC as 2.6 to 4 GHz). 0 when the hypervisor offers no
 * kvmclock (CPUID 0x40000000 "KVMKVMKVM" and feature bit 3 of 0x40000001
 * are checked first: WRMSR to an unknown MSR would fault, and a fault here
 * is fatal). The clock is switched off again after one read. */
#define KVMCLOCK_PAGE 0x2000u
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01u

static void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d)
{
    u32 eax = leaf, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    *a = eax, *b = ebx, *c = ecx, *d = edx;
}

static u64 kvmclock_tsc_hz(void)
{
    u32 a, b, c, d;
    cpuid(0x40000000u, &a, &b, &c, &d);
    if (b != 0x4b4d564bu || c != 0x564b4d56u || d != 0x4du || a < 0x40000001u)
        return 0;
    cpuid(0x40000001u, &a, &b, &c, &d);
    if (!(a & (1u << 3)))
        return 0;
    volatile u32 *page = (volatile u32 *)KVMCLOCK_PAGE;
    memset((void *)KVMCLOCK_PAGE, 0, 32);
    __asm__ volatile("wrmsr" : : "c"(MSR_KVM_SYSTEM_TIME_NEW), "a"(KVMCLOCK_PAGE | 1u), "d"(0u) : "memory");
    u32 mul = 0;
    s8 shift = 0;
    for (u32 tries = 0; tries < 1000000u && !mul; tries++) {
        u32 version = page[0];
        if (version & 1)
            continue;
        mul = page[6];
        shift = (s8)(page[7] & 0xff);
        if (page[0] != version)
            mul = 0;
    }
    __asm__ volatile("wrmsr" : : "c"(MSR_KVM_SYSTEM_TIME_NEW), "a"(0u), "d"(0u) : "memory");
    if (!mul)
        return 0;
    /* ns = ((tsc << shift) * mul) >> 32, so Hz = 2^32 * 10^9 / mul / 2^shift. */
    u64 hz = udiv64_32(1000000000ull << 32, mul, 0);
    if (shift > 0)
        hz >>= shift;
    else if (shift < 0)
        hz <<= -shift;
    return hz;
}

static void lapic_send(u32 icr_lo)
{
    for (u32 i = 0; i < 1000000u && (mmio_read32(LAPIC_BASE + LAPIC_ICR_LO) & (1u << 12)); i++)
        cpu_relax();
    mmio_write32(LAPIC_BASE + LAPIC_ICR_HI, 0);
    mmio_write32(LAPIC_BASE + LAPIC_ICR_LO, icr_lo);
}

/* INIT-SIPI-SIPI to all but self; the APs count themselves in. Waits until
 * CPUID's logical-processor count is reached, or 500 ms. */
static u32 start_aps(void)
{
    u32 eax = 1, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    u32 expected = (edx & (1u << 28)) ? (ebx >> 16) & 0xff : 1;
    memcpy((void *)TRAMPOLINE_ADDR, trampoline_start, (usize)(trampoline_end - trampoline_start));
    mmio_write32(LAPIC_BASE + LAPIC_SVR, 0x1FF); /* software-enable; IF stays 0 */
    lapic_send(0x000C4500);                      /* INIT, all excluding self */
    delay_us(10000);
    for (int i = 0; i < 2; i++) {
        lapic_send(0x000C4600 | (TRAMPOLINE_ADDR >> 12)); /* SIPI */
        delay_us(200);
    }
    u64 end = rdtsc() + ticks_for_us(500000);
    while (rdtsc() < end && 1 + aps_arrived < expected)
        cpu_relax();
    u32 cpus = 1 + aps_arrived;
    return cpus > MAX_CPUS ? MAX_CPUS : cpus;
}

static void shutdown_cpu(volatile struct cpu_state *c)
{
    c->run_state = RUN_HALTED;
    u32 halted = atomic_add32(&MAILBOX->halted_cpus, 1) + 1;
    if (halted == (u32)MAILBOX->cpus_online) {
        set_flag(FLAG_HALTED);
        put_line("lpar-guest halted");
    }
    halt_forever();
}

static void heartbeat(u32 index, volatile struct cpu_state *c, u64 now)
{
    atomic_add64(&MAILBOX->heartbeat_seq, 1);
    console_lock();
    put_str("hb cpu=");
    put_u64(index);
    put_str(" writes=");
    put_u64(c->writes);
    put_str(" tsc=");
    put_u64(now);
    put_str("\n");
    console_unlock();
}

void run_cpu(u32 index)
{
    volatile struct mailbox *mb = MAILBOX;
    volatile struct cpu_state *c = &mb->cpu[index];
    u32 cpus = (u32)mb->cpus_online;
    u64 per_cpu_rate = mb->rate ? udiv64_32(mb->rate + cpus - 1, cpus, 0) : 0;
    u64 interval = 0;
    if (per_cpu_rate && per_cpu_rate < tsc_hz)
        interval = udiv64_32(tsc_hz, (u32)per_cpu_rate, 0);
    u64 limit = mb->write_limit;
    u32 opcode = mb->opcode, content = mb->content, honour = !mb->ignore_shutdown;
    u64 now = rdtsc();
    u64 next_hb = now + tsc_hz, next_due = now;
    for (;;) {
        now = rdtsc();
        atomic_store64(&mb->last_tsc, now);
        if (mb->power_button && honour)
            shutdown_cpu(c);
        if (now >= next_hb) {
            heartbeat(index, c, now);
            next_hb = now - next_hb > tsc_hz ? now + tsc_hz : next_hb + tsc_hz;
        }
        if (c->run_state != RUN_WRITING) {
            cpu_relax();
            continue;
        }
        if (limit && c->writes >= limit) {
            c->run_state = RUN_DONE;
            continue;
        }
        if (interval) {
            if (now < next_due) {
                cpu_relax();
                continue;
            }
            /* Behind by more than a second (a pause, a move): no burst. */
            next_due = now - next_due > tsc_hz ? now + interval : next_due + interval;
        }
        program_write(c, content, opcode);
        u64 last = c->last_write_tsc;
        if (last && now > last) {
            u64 gap = now - last;
            if (gap > c->max_gap)
                c->max_gap = gap;
            atomic_max64(&mb->max_gap, gap);
        }
        c->last_write_tsc = now;
        atomic_add64(&mb->total_writes, 1);
    }
}

void ap_main(u32 index)
{
    atomic_add32(&aps_arrived, 1);
    while (!cpus_released)
        cpu_relax();
    if (index >= cpus_released) /* arrived after the count was taken */
        halt_forever();
    run_cpu(index);
}

/* The program is the last space-separated word: QEMU and GRUB put the
 * kernel's path first. An empty command line means `idle`. */
static const char *program_word(const char *s)
{
    const char *word = s;
    for (const char *p = s; *p; p++)
        if (*p == ' ' && p[1] && p[1] != ' ')
            word = p + 1;
    while (*word == ' ')
        word++;
    usize n = strlen(word);
    while (n && word[n - 1] == ' ')
        n--;
    ((char *)word)[n] = 0;
    return *word ? word : "idle";
}

void bsp_main(u32 magic, const struct multiboot_info *mbi)
{
    u64 boot_tsc = rdtsc();
    serial_init();
    if (magic != MULTIBOOT_LOADER_MAGIC)
        error_halt("not started by a multiboot loader: EAX is not 0x2BADB002", "");
    /* Copy what we need from the boot info before touching low memory. */
    u64 memory_end = 0;
    if (mbi->flags & 1)
        memory_end = (1ull << 20) + ((u64)mbi->mem_upper << 10);
    if ((mbi->flags & 4) && mbi->cmdline) {
        const char *src = (const char *)mbi->cmdline;
        usize n = 0;
        while (src[n] && n + 1 < sizeof cmdline) {
            cmdline[n] = src[n];
            n++;
        }
        cmdline[n] = 0;
    }
    volatile struct mailbox *mb = MAILBOX;
    memset((void *)MAILBOX_ADDR, 0, PAGE_SIZE);
    mb->boot_tsc = boot_tsc;
    mb->memory_end = memory_end;
    program_text = program_word(cmdline);
    const char *why = 0;
    if (parse_program(program_text, &program, &why, 0)) {
        mb->magic = MAILBOX_MAGIC;
        error_halt(why, "");
    }
    u64 region_pages = 0;
    if (program.opcode != OP_IDLE) {
        if (memory_end == 0)
            error_halt("the boot loader gave no memory size (multiboot flags bit 0)", "");
        u64 available = memory_end > WORK_AREA_START ? (memory_end - WORK_AREA_START) >> 12 : 0;
        region_pages = program.opcode == OP_HOT ? program.hot_pages : available;
        if (region_pages > available || region_pages == 0) {
            mb->magic = MAILBOX_MAGIC;
            error_halt("the working set is larger than guest memory above 4 MiB", "");
        }
    }
    u64 pit_hz = calibrate_tsc();
    u64 kvm_hz = kvmclock_tsc_hz();
    tsc_hz = kvm_hz ? kvm_hz : pit_hz;
    mb->tsc_hz = tsc_hz;
    mb->pit_tsc_hz = pit_hz;
    mb->kvmclock_tsc_hz = kvm_hz;
    u32 cpus = start_aps();
    mb->cpus_online = cpus;
    mb->region_start = WORK_AREA_START;
    mb->region_bytes = region_pages << 12;
    mb->write_limit = program.writes;
    mb->rate = program.rate;
    mb->opcode = program.opcode;
    mb->content = program.content;
    mb->ignore_shutdown = program.ignore_shutdown;
    for (u32 i = 0; i < cpus; i++)
        program_init_cpu(&program, i, cpus, region_pages);
    mb->magic = MAILBOX_MAGIC;
    console_lock();
    put_str("lpar-guest boot cpus=");
    put_u64(cpus);
    put_str(" program=");
    put_str(program_text);
    put_str("\nlpar-guest info tsc_hz=");
    put_u64(tsc_hz);
    put_str(" memory_end=");
    put_u64(memory_end);
    put_str(" region_start=");
    put_u64(WORK_AREA_START);
    put_str(" region_bytes=");
    put_u64(region_pages << 12);
    put_str("\n");
    console_unlock();
    set_flag(FLAG_RUNNING);
    cpus_released = cpus;
    run_cpu(0);
}
