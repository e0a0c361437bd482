/*
 * Shared definitions of the built-in guest (see README.md).
 * Freestanding 32-bit C: no libc, no libgcc, paging off, IF=0 forever.
 */
#ifndef LPAR_GUEST_H
#define LPAR_GUEST_H

#define MAX_CPUS 32
#define PAGE_SIZE 4096u
#define MAILBOX_ADDR 0x1000u
#define TRAMPOLINE_ADDR 0x8000u
#define WORK_AREA_START (4u << 20)
#define MAILBOX_MAGIC 0x4c50415247554553ull /* "LPARGUES" */
#define STACK_SIZE 8192

#ifndef __ASSEMBLER__

typedef unsigned char u8;
typedef signed char s8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef u32 usize;


/* Mailbox page at guest-physical 0x1000; every field little-endian. */
struct cpu_state {            /* per vCPU, at 256 + 64 * index */
    u64 start_page;           /* first page frame of this vCPU's slice */
    u64 pages;                /* pages in the slice (0: nothing to write) */
    u64 cursor;               /* next page index (hot, sweep) */
    u64 rng;                  /* xorshift64* state */
    u64 writes;               /* writes done by this vCPU */
    u64 last_write_tsc;       /* TSC of the last write */
    u64 max_gap;              /* longest gap between two of its writes, TSC ticks */
    u32 run_state;            /* RUN_* below */
    u32 index;                /* this vCPU's index */
};

struct mailbox {
    u64 magic;                /*  0 */
    u64 total_writes;         /*  8: all vCPUs */
    u64 last_tsc;             /* 16: last TSC read by any vCPU's loop */
    u64 heartbeat_seq;        /* 24 */
    u64 cpus_online;          /* 32 */
    u64 tsc_hz;               /* 40: kvmclock's if offered, else PIT channel 2 */
    u64 max_gap;              /* 48: longest gap between consecutive writes of a vCPU */
    u32 flags;                /* 56: FLAG_* below */
    u32 power_button;         /* 60: written by the VMM; nonzero = shut down */
    u64 region_start;         /* 64: work area start, bytes */
    u64 region_bytes;         /* 72: work area size, bytes (hot: the working set) */
    u64 memory_end;           /* 80: end of guest RAM seen at boot, bytes */
    u64 boot_tsc;             /* 88: TSC at entry */
    u64 write_limit;          /* 96: writes= per vCPU, 0 = none */
    u64 rate;                 /* 104: rate= pages/s over all vCPUs, 0 = unbounded */
    u32 opcode;               /* 112: OP_* below */
    u32 content;              /* 116: CONTENT_* below */
    u32 halted_cpus;          /* 120: vCPUs that obeyed the power button */
    u32 ignore_shutdown;      /* 124: shutdown=ignore */
    u64 pit_tsc_hz;           /* 128: TSC Hz from PIT channel 2 */
    u64 kvmclock_tsc_hz;      /* 136: TSC Hz from kvmclock, 0 = none */
    u8 reserved[256 - 144];
    struct cpu_state cpu[MAX_CPUS];
};

/* The layout src/partition/guest/mailbox.rs decodes. */
_Static_assert(__builtin_offsetof(struct mailbox, flags) == 56, "mailbox layout");
_Static_assert(__builtin_offsetof(struct mailbox, power_button) == 60, "mailbox layout");
_Static_assert(__builtin_offsetof(struct mailbox, ignore_shutdown) == 124, "mailbox layout");
_Static_assert(__builtin_offsetof(struct mailbox, kvmclock_tsc_hz) == 136, "mailbox layout");
_Static_assert(__builtin_offsetof(struct mailbox, cpu) == 256, "mailbox layout");
_Static_assert(sizeof(struct cpu_state) == 64, "mailbox layout");
_Static_assert(sizeof(struct mailbox) <= 4096, "mailbox layout");

#define FLAG_PROGRAM_ERROR 1u
#define FLAG_RUNNING 2u       /* set once the boot line is out */
#define FLAG_HALTED 4u        /* every vCPU obeyed the power button */

enum { RUN_STARTING = 0, RUN_WRITING = 1, RUN_DONE = 2, RUN_HALTED = 3 };
enum { OP_IDLE = 0, OP_HOT = 1, OP_SWEEP = 2, OP_SKEWED = 3 };
enum { CONTENT_ZERO = 0, CONTENT_TEXT = 1, CONTENT_RANDOM = 2 };

#define MAILBOX ((volatile struct mailbox *)MAILBOX_ADDR)

struct program {
    u32 opcode;
    u32 content;
    u64 hot_pages;
    u64 rate;
    u64 writes;
    u32 ignore_shutdown;
};

/* io.c */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline u32 mmio_read32(u32 addr) { return *(volatile u32 *)addr; }
static inline void mmio_write32(u32 addr, u32 v) { *(volatile u32 *)addr = v; }

/* 64-bit atomics for 32-bit mode (lock cmpxchg8b). */
static inline u64 cas64(volatile u64 *p, u64 old, u64 new_value)
{
    u64 prev;
    __asm__ volatile("lock cmpxchg8b %1"
                     : "=A"(prev), "+m"(*p)
                     : "b"((u32)new_value), "c"((u32)(new_value >> 32)), "0"(old)
                     : "memory");
    return prev;
}
static inline u64 atomic_load64(volatile u64 *p) { return cas64(p, 0, 0); }
static inline void atomic_store64(volatile u64 *p, u64 v)
{
    u64 seen = *p;
    for (;;) {
        u64 prev = cas64(p, seen, v);
        if (prev == seen)
            return;
        seen = prev;
    }
}
static inline u64 atomic_add64(volatile u64 *p, u64 v)
{
    u64 seen = *p;
    for (;;) {
        u64 prev = cas64(p, seen, seen + v);
        if (prev == seen)
            return seen + v;
        seen = prev;
    }
}
static inline void atomic_max64(volatile u64 *p, u64 v)
{
    u64 seen = *p;
    while (seen < v) {
        u64 prev = cas64(p, seen, v);
        if (prev == seen)
            return;
        seen = prev;
    }
}
static inline u32 atomic_add32(volatile u32 *p, u32 v)
{
    __asm__ volatile("lock xaddl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
    return v; /* the old value */
}
static inline u32 atomic_xchg32(volatile u32 *p, u32 v)
{
    __asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
    return v;
}

/* lib.c */
void *memset(void *dst, int c, usize n);
void *memcpy(void *dst, const void *src, usize n);
usize strlen(const char *s);
u64 udiv64_32(u64 n, u32 d, u32 *rem);
void serial_init(void);
void console_lock(void);
void console_unlock(void);
void put_str(const char *s);
void put_u64(u64 v);
void put_hex(u64 v);
void put_line(const char *s); /* locked, with newline */

/* program.c */
int parse_program(const char *text, struct program *out, const char **why, const char **what);
void program_init_cpu(const struct program *p, u32 index, u32 cpus, u64 region_pages);
void program_write(volatile struct cpu_state *cpu, u32 content, u32 opcode);

/* main.c */
void run_cpu(u32 index);

/* boot.S */
void halt_forever(void) __attribute__((noreturn));
extern const u8 trampoline_start[], trampoline_end[];
extern volatile u32 ap_next_index;

#endif /* __ASSEMBLER__ */
#endif
