/*
 * The program vocabulary of the `sim` backend (src/partition/sim/program.rs),
 * and its writes, byte for byte the same: `idle`, `hot:<size>`, `sweep`,
 * `skewed`, then `rate=`, `content=zero|text|random`, `writes=`,
 * `shutdown=honour|ignore`, separated by commas.
 */
#include "guest.h"

/* ---- parsing --------------------------------------------------------- */

static char err_buf[160];
static usize err_len;

static void err_add(const char *s, usize n)
{
    while (n-- && *s && err_len + 1 < sizeof err_buf)
        err_buf[err_len++] = *s++;
    err_buf[err_len] = 0;
}

static int fail(const char *a, const char *b, usize bn, const char *c)
{
    err_len = 0;
    err_add(a, ~0u);
    err_add(b, bn);
    err_add(c, ~0u);
    return -1;
}

static int eq(const char *s, usize n, const char *lit)
{
    usize i = 0;
    for (; i < n; i++)
        if (lit[i] != s[i])
            return 0;
    return lit[i] == 0;
}

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

static int eq_nocase(const char *s, usize n, const char *lit)
{
    usize i = 0;
    for (; i < n; i++)
        if (lit[i] != lower(s[i]))
            return 0;
    return lit[i] == 0;
}

/* Decimal digits at s[0..n); returns how many digits were read (0: none,
 * -1: overflow). */
static int parse_digits(const char *s, usize n, u64 *out)
{
    u64 v = 0;
    usize i = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        u32 d = (u32)(s[i] - '0');
        if (v > (0xFFFFFFFFFFFFFFFFull - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return (int)i;
}

static int parse_size(const char *s, usize n, u64 *bytes)
{
    u64 v;
    int digits = parse_digits(s, n, &v);
    if (digits == 0)
        return fail("'", s, n, "' is not a size: expected a number such as 64MiB or 4G");
    if (digits < 0)
        return fail("'", s, n, "' is too large");
    const char *u = s + digits;
    usize un = n - (usize)digits;
    u32 shift;
    if (eq_nocase(u, un, "") || eq_nocase(u, un, "b"))
        shift = 0;
    else if (eq_nocase(u, un, "k") || eq_nocase(u, un, "kb") || eq_nocase(u, un, "kib"))
        shift = 10;
    else if (eq_nocase(u, un, "m") || eq_nocase(u, un, "mb") || eq_nocase(u, un, "mib"))
        shift = 20;
    else if (eq_nocase(u, un, "g") || eq_nocase(u, un, "gb") || eq_nocase(u, un, "gib"))
        shift = 30;
    else if (eq_nocase(u, un, "t") || eq_nocase(u, un, "tb") || eq_nocase(u, un, "tib"))
        shift = 40;
    else
        return fail("'", s, n, "': unknown size unit; use K, M, G or T (binary, e.g. 64MiB)");
    if (shift && v > (0xFFFFFFFFFFFFFFFFull >> shift))
        return fail("'", s, n, "' is too large");
    *bytes = v << shift;
    return 0;
}

static int parse_number(const char *key, usize kn, const char *v, usize vn, u64 *out)
{
    /* As Rust's u64::from_str (sim's parser): one optional leading '+'. */
    usize plus = vn > 1 && v[0] == '+';
    int digits = parse_digits(v + plus, vn - plus, out);
    if (digits <= 0 || (usize)digits != vn - plus) {
        fail("", key, kn, "=");
        err_add(v, vn);
        err_add(" is not a number", ~0u);
        return -1;
    }
    return 0;
}

/* Parses `text`; on error returns -1 and *why is the message. */
int parse_program(const char *text, struct program *p, const char **why, const char **unused)
{
    (void)unused;
    *why = err_buf;
    const char *s = text;
    const char *comma = s;
    while (*comma && *comma != ',')
        comma++;
    usize hn = (usize)(comma - s);
    p->opcode = OP_IDLE;
    p->content = CONTENT_RANDOM;
    p->hot_pages = 0;
    p->rate = 0;
    p->writes = 0;
    p->ignore_shutdown = 0;
    if (eq(s, hn, "idle"))
        p->opcode = OP_IDLE;
    else if (eq(s, hn, "sweep"))
        p->opcode = OP_SWEEP;
    else if (eq(s, hn, "skewed"))
        p->opcode = OP_SKEWED;
    else if (hn >= 4 && eq(s, 4, "hot:")) {
        u64 bytes = 0;
        if (parse_size(s + 4, hn - 4, &bytes))
            return -1;
        if (bytes < PAGE_SIZE)
            return fail("working set ", s + 4, hn - 4, " is smaller than one page");
        p->opcode = OP_HOT;
        p->hot_pages = bytes >> 12;
    } else
        return fail("unknown program '", s, hn, "'");

    while (*comma == ',') {
        const char *o = comma + 1;
        comma = o;
        while (*comma && *comma != ',')
            comma++;
        usize on = (usize)(comma - o);
        const char *eqs = o;
        while (eqs < comma && *eqs != '=')
            eqs++;
        if (eqs == comma)
            return fail("option '", o, on, "' is not key=value");
        usize kn = (usize)(eqs - o);
        const char *v = eqs + 1;
        usize vn = (usize)(comma - v);
        if (eq(o, kn, "rate")) {
            if (parse_number(o, kn, v, vn, &p->rate))
                return -1;
        } else if (eq(o, kn, "writes")) {
            if (parse_number(o, kn, v, vn, &p->writes))
                return -1;
        } else if (eq(o, kn, "content")) {
            if (eq(v, vn, "zero"))
                p->content = CONTENT_ZERO;
            else if (eq(v, vn, "text"))
                p->content = CONTENT_TEXT;
            else if (eq(v, vn, "random"))
                p->content = CONTENT_RANDOM;
            else
                return fail("content=", v, vn, ": use zero, text or random");
        } else if (eq(o, kn, "shutdown")) {
            if (eq(v, vn, "honour") || eq(v, vn, "honor"))
                p->ignore_shutdown = 0;
            else if (eq(v, vn, "ignore"))
                p->ignore_shutdown = 1;
            else
                return fail("shutdown=", v, vn, ": use honour or ignore");
        } else
            return fail("unknown option '", o, kn, "'");
    }
    return 0;
}

/* ---- writes ------------------------------------------------------------ */

/* xorshift64*: the same generator as sim's. */
static u64 next_random_local(u64 *state)
{
    u64 x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* vCPU `index` of `cpus` takes its share of `region_pages` pages starting
 * at the work area, as sim's initial_regs does. */
void program_init_cpu(const struct program *p, u32 index, u32 cpus, u64 region_pages)
{
    volatile struct cpu_state *c = &MAILBOX->cpu[index];
    u64 start = udiv64_32(region_pages * index, cpus, 0);
    u64 end = udiv64_32(region_pages * (index + 1), cpus, 0);
    c->start_page = (WORK_AREA_START >> 12) + start;
    c->pages = end - start;
    c->cursor = 0;
    c->rng = 0x9E3779B97F4A7C15ull ^ ((u64)(index + 1) * 0xD1B54A32D192ED03ull);
    c->writes = 0;
    c->last_write_tsc = 0;
    c->max_gap = 0;
    c->index = index;
    c->run_state = (p->opcode == OP_IDLE || c->pages == 0) ? RUN_DONE : RUN_WRITING;
}

/* sim's WORDS, each padded to 12 bytes so it is copied with three dword
 * stores instead of a byte loop (the padding a short word leaves past its
 * end is overwritten by the next word, which stores at least 4 bytes). */
static const char words[32][12] __attribute__((aligned(4))) = {
    "the ", "partition ", "memory ", "page ", "guest ", "host ", "migration ", "of ",
    "and ", "to ", "round ", "dirty ", "copy ", "vcpu ", "a ", "is ",
    "with ", "source ", "destination ", "path ", "in ", "suspend ", "state ", "device ",
    "switch ", "over ", "log ", "frame ", "stream ", "for ", "time ", "\n",
};
static const u8 word_len[32] = {
    4, 10, 7, 5, 6, 5, 10, 3, 4, 3, 6, 6, 5, 5, 2, 3,
    5, 7, 12, 5, 3, 8, 6, 7, 7, 5, 4, 6, 7, 4, 5, 1,
};

static void fill_page(u32 content, u64 seed, u8 *page, int zero_already)
{
    u64 state = seed | 1;
    if (content == CONTENT_ZERO && zero_already) {
        /* The page holds zeros from this vCPU's earlier write: storing one
         * zero word dirties it and leaves the same bytes, at 1/1024 of the
         * cost under instruction emulation. */
        *(volatile u32 *)page = 0;
    } else if (content == CONTENT_ZERO) {
        u32 *d = (u32 *)page;
        u32 n = PAGE_SIZE / 4;
        __asm__ volatile("rep stosl" : "+D"(d), "+c"(n) : "a"(0) : "memory");
    } else if (content == CONTENT_TEXT) {
        u32 at = 0;
        while (at + 12 <= PAGE_SIZE) {
            u32 w = (u32)next_random_local(&state) & 31;
            const u32 *src = (const u32 *)words[w];
            u32 *dst = (u32 *)(page + at); /* unaligned stores are fine on x86 */
            dst[0] = src[0];
            dst[1] = src[1];
            dst[2] = src[2];
            at += word_len[w];
        }
        while (at < PAGE_SIZE) { /* the last words, cut at the page end */
            u32 w = (u32)next_random_local(&state) & 31;
            u32 n = word_len[w];
            if (n > PAGE_SIZE - at)
                n = PAGE_SIZE - at;
            memcpy(page + at, words[w], n);
            at += n;
        }
    } else {
        u32 *d = (u32 *)page;
        for (u32 i = 0; i < PAGE_SIZE / 8; i++) {
            u64 r = next_random_local(&state);
            d[2 * i] = (u32)r;
            d[2 * i + 1] = (u32)(r >> 32);
        }
    }
}

/* One write: which page (sim's next_write), then its content. The state is
 * read once and written back once (each volatile access costs an emulated
 * instruction). */
void program_write(volatile struct cpu_state *c, u32 content, u32 opcode)
{
    u64 start = c->start_page, page, rng = c->rng, writes = c->writes;
    u32 np = (u32)c->pages; /* slices stay below 4 GiB of pages */
    if (opcode == OP_SKEWED) {
        u32 hot = np / 10 ? np / 10 : 1, r;
        u64 pick = next_random_local(&rng);
        u64 offset = next_random_local(&rng);
        udiv64_32(pick, 10, &r);
        u32 off;
        if (r != 0)
            udiv64_32(offset, hot, &off);
        else
            udiv64_32(offset, np, &off);
        page = start + off;
    } else {
        u64 cursor64 = c->cursor;
        u32 cursor = (u32)cursor64;
        if (cursor64 >= np) /* never, unless the state was edited */
            udiv64_32(cursor64, np, &cursor);
        c->cursor = cursor + 1 == np ? 0 : cursor + 1;
        page = start + cursor;
    }
    u64 seed = next_random_local(&rng);
    c->rng = rng;
    /* hot and sweep visit the slice in order from page 0: after `pages`
     * writes every page has been zeroed whole once. */
    int zero_already = opcode != OP_SKEWED && writes >= np;
    fill_page(content, seed, (u8 *)(usize)(page << 12), zero_already);
    c->writes = writes + 1;
}
