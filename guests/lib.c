/* Freestanding helpers: memory, division, the COM1 console. */
#include "guest.h"

void *memset(void *dst, int c, usize n)
{
    void *d = dst;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

void *memcpy(void *dst, const void *src, usize n)
{
    void *d = dst;
    const void *s = src;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return dst;
}

usize strlen(const char *s)
{
    usize n = 0;
    while (s[n])
        n++;
    return n;
}

/* n / d for a 64-bit n and 32-bit d without libgcc: two DIVs. */
u64 udiv64_32(u64 n, u32 d, u32 *rem)
{
    u32 hi = (u32)(n >> 32), lo = (u32)n;
    u32 qhi = hi / d, r = hi % d, qlo;
    __asm__("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(d));
    if (rem)
        *rem = r;
    return ((u64)qhi << 32) | qlo;
}

/* COM1, polled. A port that never reports "transmitter empty" (a VMM's
 * minimal stub) costs a bounded wait per byte, not a hang. */
#define COM1 0x3f8

void serial_init(void)
{
    outb(COM1 + 1, 0x00); /* no interrupts, ever */
    outb(COM1 + 3, 0x80); /* DLAB */
    outb(COM1 + 0, 0x01); /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1 */
    outb(COM1 + 2, 0xC7); /* FIFO on, cleared */
    outb(COM1 + 4, 0x03); /* DTR, RTS; OUT2 off: no IRQ line */
}

static void put_char(char c)
{
    for (u32 tries = 0; tries < 100000; tries++)
        if (inb(COM1 + 5) & 0x20)
            break;
    outb(COM1, (u8)c);
}

static volatile u32 console_busy;

void console_lock(void)
{
    while (atomic_xchg32(&console_busy, 1))
        cpu_relax();
}

void console_unlock(void)
{
    __asm__ volatile("" ::: "memory");
    console_busy = 0;
}

void put_str(const char *s)
{
    while (*s)
        put_char(*s++);
}

void put_u64(u64 v)
{
    char buf[21];
    int at = 20;
    buf[at] = 0;
    do {
        u32 digit;
        v = udiv64_32(v, 10, &digit);
        buf[--at] = (char)('0' + digit);
    } while (v);
    put_str(buf + at);
}

void put_hex(u64 v)
{
    static const char digits[] = "0123456789abcdef";
    char buf[19];
    buf[0] = '0';
    buf[1] = 'x';
    for (int i = 0; i < 16; i++)
        buf[2 + i] = digits[(v >> (60 - 4 * i)) & 15];
    buf[18] = 0;
    put_str(buf);
}

void put_line(const char *s)
{
    console_lock();
    put_str(s);
    put_str("\n");
    console_unlock();
}
