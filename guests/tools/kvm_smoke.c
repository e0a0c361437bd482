/*
 * kvm_smoke: boots a multiboot v1 image (flat, from its header's address
 * fields) on /dev/kvm in the machine state the built-in guest expects, for
 * a few seconds, and prints its COM1 output on stdout and a mailbox summary
 * on stderr. A reference for the KVM backend and a check of the guest on
 * this machine's KVM (tests/guest_kvm_smoke.rs builds and runs it); not the
 * backend itself.
 *
 *     kvm_smoke IMAGE CMDLINE CPUS SECONDS    (SECONDS = 0: until killed)
 *
 * What it shows a VMM must do: in-kernel irqchip and PIT created before
 * the vCPUs, the PIT with KVM_PIT_SPEAKER_DUMMY (else port 0x61 exits and
 * PIT calibration fails), every vCPU created before vCPU 0 runs (the BSP
 * sends INIT-SIPI-SIPI soon after entry), KVM_SET_CPUID2 from
 * KVM_GET_SUPPORTED_CPUID (the KVM leaves announce kvmclock), flat 4 GiB
 * segments with CR0 = PE|ET, EAX = 0x2BADB002, EBX = multiboot info.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEM_BYTES (64u << 20)
#define MBI_ADDR 0x9000u
#define CMDLINE_ADDR 0x9800u
#define MAX_VCPUS 8

static int kvm, vm, vcpu_fd[MAX_VCPUS];
static uint8_t *mem;
static uint32_t entry;
static long run_size;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
/* With LCR bit 7 set, port 0x3f8 is the baud divisor, not data. */
static volatile int dlab;

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void setup_bsp(int fd)
{
    struct kvm_sregs s;
    if (ioctl(fd, KVM_GET_SREGS, &s) < 0)
        die("KVM_GET_SREGS");
    struct kvm_segment seg = {.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 3,
                              .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
    s.ds = s.es = s.fs = s.gs = s.ss = seg;
    seg.type = 11;
    seg.selector = 0x08;
    s.cs = seg;
    s.cr0 = 0x11;
    if (ioctl(fd, KVM_SET_SREGS, &s) < 0)
        die("KVM_SET_SREGS");
    struct kvm_regs r = {0};
    r.rip = entry;
    r.rax = 0x2BADB002;
    r.rbx = MBI_ADDR;
    r.rflags = 2;
    if (ioctl(fd, KVM_SET_REGS, &r) < 0)
        die("KVM_SET_REGS");
}

static void *vcpu_thread(void *arg)
{
    long id = (long)arg;
    int fd = vcpu_fd[id];
    struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");
    for (;;) {
        if (ioctl(fd, KVM_RUN, 0) < 0)
            continue; /* EINTR */
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3fb) {
                dlab = data[0] & 0x80; /* LCR: divisor latch access */
            } else if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3f8 && !dlab) {
                pthread_mutex_lock(&out_lock);
                fwrite(data, 1, (size_t)run->io.size * run->io.count, stdout);
                fflush(stdout);
                pthread_mutex_unlock(&out_lock);
            } else if (run->io.direction == KVM_EXIT_IO_IN) {
                /* COM1 LSR: transmitter empty; anything else reads 0. */
                memset(data, run->io.port == 0x3fd ? 0x20 : 0, (size_t)run->io.size * run->io.count);
            }
            break;
        }
        case KVM_EXIT_MMIO:
            break;
        case KVM_EXIT_HLT:
            return 0;
        default:
            fprintf(stderr, "kvm_smoke: vCPU %ld stopped: exit reason %u (internal suberror %u)\n", id,
                    run->exit_reason, run->internal.suberror);
            return 0;
        }
    }
}

static uint64_t u64_at(uint32_t addr) { uint64_t v; memcpy(&v, mem + addr, 8); return v; }
static uint32_t u32_at(uint32_t addr) { uint32_t v; memcpy(&v, mem + addr, 4); return v; }

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: kvm_smoke IMAGE CMDLINE CPUS SECONDS\n");
        return 2;
    }
    int cpus = atoi(argv[3]), seconds = atoi(argv[4]);
    if (cpus < 1 || cpus > MAX_VCPUS)
        return 2;
    if ((kvm = open("/dev/kvm", O_RDWR)) < 0)
        die("/dev/kvm");
    if ((vm = ioctl(kvm, KVM_CREATE_VM, 0)) < 0)
        die("KVM_CREATE_VM");
    if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000) < 0)
        die("KVM_SET_TSS_ADDR");
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
        die("KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0)
        die("KVM_CREATE_PIT2");
    mem = mmap(0, MEM_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap guest memory");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_BYTES, .userspace_addr = (uint64_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION");
    run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

    int f = open(argv[1], O_RDONLY);
    struct stat st;
    if (f < 0 || fstat(f, &st) < 0)
        die(argv[1]);
    uint8_t *image = malloc(st.st_size);
    if (read(f, image, st.st_size) != st.st_size)
        die("read image");
    uint32_t *h = 0;
    for (long at = 0; at + 32 <= st.st_size && at < 8192; at += 4) {
        uint32_t *w = (uint32_t *)(image + at);
        if (w[0] == 0x1BADB002 && w[0] + w[1] + w[2] == 0 && (w[1] & 0x10000)) {
            h = w;
            break;
        }
    }
    if (!h) {
        fprintf(stderr, "kvm_smoke: no multiboot header with address fields\n");
        return 2;
    }
    long file_start = (uint8_t *)h - image - (long)(h[3] - h[4]);
    long length = (long)(h[5] - h[4]);
    if (file_start < 0 || file_start + length > st.st_size || h[6] > MEM_BYTES) {
        fprintf(stderr, "kvm_smoke: bad multiboot address fields\n");
        return 2;
    }
    memcpy(mem + h[4], image + file_start, length);
    entry = h[7];
    uint32_t mbi[5] = {1 | 4, 640, (MEM_BYTES >> 10) - 1024, 0, CMDLINE_ADDR};
    memcpy(mem + MBI_ADDR, mbi, sizeof mbi);
    snprintf((char *)mem + CMDLINE_ADDR, 1024, "%s", argv[2]);

    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + 128 * sizeof(struct kvm_cpuid_entry2));
    cpuid->nent = 128;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
        die("KVM_GET_SUPPORTED_CPUID");
    for (long i = 0; i < cpus; i++) {
        if ((vcpu_fd[i] = ioctl(vm, KVM_CREATE_VCPU, i)) < 0)
            die("KVM_CREATE_VCPU");
        if (ioctl(vcpu_fd[i], KVM_SET_CPUID2, cpuid) < 0)
            die("KVM_SET_CPUID2");
    }
    setup_bsp(vcpu_fd[0]);
    pthread_t threads[MAX_VCPUS];
    for (long i = 0; i < cpus; i++)
        pthread_create(&threads[i], 0, vcpu_thread, (void *)i);
    /* A mailbox summary on stderr every second; SECONDS = 0 runs until killed. */
    for (int elapsed = 0; seconds == 0 || elapsed < seconds; elapsed++) {
        sleep(1);
        pthread_mutex_lock(&out_lock);
        fprintf(stderr, "mailbox magic=%#llx total_writes=%llu tsc_hz=%llu pit_tsc_hz=%llu "
                "kvmclock_tsc_hz=%llu cpus=%llu flags=%u\n",
                (unsigned long long)u64_at(0x1000), (unsigned long long)u64_at(0x1008),
                (unsigned long long)u64_at(0x1028), (unsigned long long)u64_at(0x1080),
                (unsigned long long)u64_at(0x1088), (unsigned long long)u64_at(0x1020),
                u32_at(0x1038));
        fflush(stderr);
        pthread_mutex_unlock(&out_lock);
    }
    fflush(stdout);
    _exit(0);
}
