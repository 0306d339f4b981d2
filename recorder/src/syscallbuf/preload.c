/* The syscall-buffering preload library (issue 17; see docs/architecture.md, "Syscall
 * buffering"). Injected with LD_PRELOAD into recorded programs. It defines read, write,
 * pread64, pwrite64, lseek, fstat, clock_gettime, getrandom and syscall (for private
 * futex wakes; everything else it makes traced). Each wrapper either makes
 * the call through the untraced `syscall` instruction the recorder maps at CHAOS_SB_ENTRY (the
 * recorder's seccomp filter lets it through without a stop) and appends the call, its
 * result and the bytes it moved to this thread's buffer, or makes an ordinary (traced)
 * call. The recorder reads the buffer at the thread's next stop and writes each call into
 * the trace as an ordinary syscall event. At replay the library runs unchanged: the
 * engine maps its own code at CHAOS_SB_ENTRY, which answers each call from the recorded
 * ones without a stop (recorder/src/replay/feed.rs) or makes a real `syscall` that stops
 * and is emulated from its event.
 *
 * The library's behaviour depends only on the results of the calls it makes (all
 * recorded), so its memory is the same at replay as at record. The recorder never
 * writes into a buffer except as a recorded memory effect of an event.
 *
 * Reads on pipes, sockets and terminals may block. They are buffered only in a thread
 * the engine gave a desched event (a perf event counting the thread's context
 * switches, whose signal interrupts the call if it blocks): the library arms it just
 * before the call and disarms it after, through the quiet entry (CHAOS_SB_QUIET, not
 * recorded). A call that blocked comes back with CHAOS_SB_DESCHED_RET, which is
 * recorded like any result; the library then makes the call again, traced. The event is
 * opened when the thread first needs it: its first such read is traced and carries
 * CHAOS_SB_ASK in r9, and at its exit the engine writes the event's fd (or -1) into the
 * buffer's H_DESCHED word, a memory effect of that read's event.
 *
 * Built by recorder/build.rs with the C compiler (cc crate), -fPIC -shared, no libc
 * calls except __errno_location. Constants come from -D flags (recorder/src/syscallbuf.rs). */
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>

extern int *__errno_location(void);

#define HDR_WORDS 8
/* Header words (u64). */
#define H_CURSOR 0     /* bytes of records after the header */
#define H_CALLS_LEFT 1 /* buffered calls before the next flush call (the engine's budget) */
#define H_IN_CALL 2    /* 1 from just before a buffered call (and arming), 2 once it returned,
                        * 0 when its record is complete */
#define H_NO_WRITES 3  /* set by the engine (a recorded memory effect): writes are traced */
#define H_CAPACITY 4   /* bytes of record space */
#define H_DESCHED 5    /* the lazily opened desched event's fd (0: not asked, -1: none) */
/* Record words before the data (u64): size, nr, args[6], ret, in_len, out_addr, out_len. */
#define R_WORDS 12

struct sb {
    uint64_t h[HDR_WORDS];
    unsigned char data[];
};

static __thread struct sb *tls_buf __attribute__((tls_model("initial-exec")));
/* 0: not tried yet in this thread, 1: buffering on, 2: off (registration refused). */
static __thread int tls_state __attribute__((tls_model("initial-exec")));
/* Which fds are regular files (0 unknown, 1 regular, 2 not), for fds below FD_CACHE,
 * valid while `fd_gen` equals `cache_gen`. The engine writes a new `fd_gen` (a memory
 * effect of the event, so replay writes it too) after every call that may create, close
 * or replace fds (`changes_fds` in syscalls.toml); all such calls are traced. The cache
 * is per thread: a thread may have an fd table of its own (unshare(CLONE_FILES)). */
#define FD_CACHE 1024
static volatile uint64_t fd_gen;
static __thread uint64_t cache_gen __attribute__((tls_model("initial-exec")));
static __thread unsigned char fd_kind[FD_CACHE] __attribute__((tls_model("initial-exec")));

/* This thread's desched event fd (0: none; reads that may block are traced), or
 * CHAOS_SB_DESCHED_LAZY: the fd is in the buffer's H_DESCHED word once asked for. Writes on
 * anything but regular files are always traced: the engine orders the writes to one
 * file at their entries (record/ordering.rs), which a buffered write would bypass. A forked
 * child keeps the number: the engine puts the child's own event under it. */
static __thread int tls_desched __attribute__((tls_model("initial-exec")));
/* From the kernel's uapi (linux/perf_event.h): _IO('$', 0) and _IO('$', 1). */
#define PERF_IOC_ENABLE 0x2400
#define PERF_IOC_DISABLE 0x2401

/* A wrapper of this thread is using the buffer: a signal handler that runs inside it
 * (delivered at the exit of one of its traced calls) makes its calls traced. */
static __thread int tls_busy __attribute__((tls_model("initial-exec")));

/* A traced call; r8 and r9 are zero so that no traced call carries the mark. */
static inline long traced(long nr, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = 0;
    register long r9 __asm__("r9") = 0;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static inline long traced6(long nr, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

/* The untraced call: `call` to the recorder's `syscall; ret` at a fixed address. */
static inline long untraced(long nr, long a, long b, long c, long d) {
    long ret;
    /* r8 is zero and r9 the buffered-call mark, as the record says (replay compares all
     * six registers; no buffered call has more than four arguments). */
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = 0;
    register long r9 __asm__("r9") = CHAOS_SB_MARK;
    __asm__ volatile("call *%[entry]"
                     : "=a"(ret), "+D"(a), "+S"(b), "+d"(c), "+r"(r10), "+r"(r8), "+r"(r9)
                     : "a"(nr), [entry] "r"((long)CHAOS_SB_ENTRY)
                     : "rcx", "r11", "memory", "cc");
    return ret;
}

/* A call through the quiet entry (arming and disarming the desched event): let through
 * without a stop and not recorded; at replay the engine's code there answers 0. Its
 * result is never used. */
static inline void quiet(long nr, long a, long b) {
    long ret;
    long c = 0;
    __asm__ volatile("call *%[entry]"
                     : "=a"(ret), "+D"(a), "+S"(b), "+d"(c)
                     : "a"(nr), [entry] "r"((long)CHAOS_SB_QUIET)
                     : "rcx", "r11", "memory", "cc");
    (void)ret;
}

static long set_errno(long ret) {
    if (ret < 0 && ret > -4096) {
        *__errno_location() = (int)-ret;
        return -1;
    }
    return ret;
}

static void copy(unsigned char *to, const unsigned char *from, size_t n) {
    /* Not memcpy: the library calls nothing it could intercept itself. */
    for (size_t i = 0; i < n; i++) to[i] = from[i];
}

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

/* This thread's buffer, registering it on first use; NULL when buffering is off. */
static struct sb *buffer(void) {
    if (tls_state == 1) return tls_buf;
    if (tls_state == 2) return NULL;
    tls_state = 2;
    long len = CHAOS_SB_SIZE;
    long p = traced6(SYS_mmap, 0, len, 3 /* PROT_READ|PROT_WRITE */, 0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */, -1, 0);
    if (p < 0 && p > -4096) return NULL;
    struct sb *b = (struct sb *)p;
    b->h[H_CAPACITY] = len - sizeof(b->h);
    long answer = traced(CHAOS_SB_INIT, p, len, (long)&fd_gen, 0);
    if (answer <= 0) {
        traced(SYS_munmap, p, len, 0, 0);
        return NULL;
    }
    /* The budget, and above it the thread's desched event fd (0: none, or
     * CHAOS_SB_DESCHED_LAZY: opened at the thread's first read that may block). */
    long budget = answer & 0xffffffffL;
    tls_desched = (int)(answer >> 32);
    b->h[H_CALLS_LEFT] = (uint64_t)budget;
    tls_buf = b;
    tls_state = 1;
    return b;
}

/* The buffer for one wrapper call, marked busy; NULL when the call must be traced. */
static struct sb *enter(void) {
    if (tls_busy) return NULL;
    struct sb *b = buffer();
    if (b) tls_busy = 1;
    return b;
}

static long leave(struct sb *b, long ret) {
    if (b) tls_busy = 0;
    return set_errno(ret);
}

/* Room for a record with `in` and `out` data bytes, flushing first when the buffer is
 * full or the budget spent; NULL if the call must take the traced path. */
/* The flush call: the engine reads the records (and may run another thread) and
 * answers with the next budget. 0 when buffering is over for this thread. */
static int flush(struct sb *b) {
    long budget = traced(CHAOS_SB_FLUSH, (long)b, 0, 0, 0);
    b->h[H_CURSOR] = 0; /* the engine did so at the call's exit already */
    if (budget <= 0) {
        tls_state = 2;
        return 0;
    }
    b->h[H_CALLS_LEFT] = (uint64_t)budget;
    return 1;
}

static uint64_t *reserve(struct sb *b, size_t in, size_t out) {
    size_t need = R_WORDS * 8 + pad8(in) + pad8(out);
    if (need > CHAOS_SB_MAX_RECORD) return NULL;
    if (b->h[H_CALLS_LEFT] == 0 || b->h[H_CURSOR] + need > b->h[H_CAPACITY]) {
        if (!flush(b)) return NULL;
    }
    return (uint64_t *)(b->data + b->h[H_CURSOR]);
}

/* Makes the call through the untraced entry and appends its record: `in` bytes at
 * `in_ptr` (copied after the call, which only reads them), `out` bytes at `out_addr` as
 * far as the result says (`out_by_ret`) or whole. With `arm` (a call that may block)
 * (the desched event's fd) it is armed around the call; a call that blocked comes back with
 * CHAOS_SB_DESCHED_RET (the engine's doing) and is made again, traced, after its record. */
static long buffered(struct sb *b, uint64_t *r, long nr, long a0, long a1, long a2, long a3,
                     const void *in_ptr, size_t in, void *out_addr, size_t out, int out_by_ret,
                     int arm) {
    b->h[H_IN_CALL] = 1;
    __asm__ volatile("" ::: "memory");
    if (arm) quiet(SYS_ioctl, arm, PERF_IOC_ENABLE);
    long ret = untraced(nr, a0, a1, a2, a3);
    /* The call is over (the engine's desched handling tells "still ahead" by 1). */
    b->h[H_IN_CALL] = 2;
    __asm__ volatile("" ::: "memory");
    if (arm) quiet(SYS_ioctl, arm, PERF_IOC_DISABLE);
    r[1] = (uint64_t)nr;
    r[2] = (uint64_t)a0;
    r[3] = (uint64_t)a1;
    r[4] = (uint64_t)a2;
    r[5] = (uint64_t)a3;
    r[6] = 0;
    r[7] = CHAOS_SB_MARK;
    r[8] = (uint64_t)ret;
    /* The input as the engine would hash it at a traced call's entry (after EFAULT it
     * cannot be read). */
    size_t in_len = ret == -14 /* EFAULT */ ? 0 : in;
    size_t out_len = ret < 0 ? 0 : out_by_ret ? (size_t)ret : out;
    if (out_len > out) out_len = out;
    r[9] = in_len;
    r[10] = (uint64_t)out_addr;
    r[11] = out_len;
    unsigned char *d = (unsigned char *)(r + R_WORDS);
    if (in_len) copy(d, in_ptr, in_len);
    d += pad8(in_len);
    if (out_len) copy(d, out_addr, out_len);
    size_t size = R_WORDS * 8 + pad8(in_len) + pad8(out_len);
    r[0] = size;
    __asm__ volatile("" ::: "memory");
    b->h[H_CURSOR] += size;
    b->h[H_CALLS_LEFT] -= 1;
    __asm__ volatile("" ::: "memory");
    b->h[H_IN_CALL] = 0;
    if (ret == CHAOS_SB_DESCHED_RET) ret = traced(nr, a0, a1, a2, a3);
    return ret;
}

/* Whether fd is a regular file (reads and writes on it do not block), asked with a
 * buffered fstat that is itself recorded. */
static int regular(struct sb *b, int fd) {
    int cached = fd >= 0 && fd < FD_CACHE;
    if (cached) {
        uint64_t gen = fd_gen;
        if (cache_gen != gen) {
            for (int i = 0; i < FD_CACHE; i++) fd_kind[i] = 0;
            cache_gen = gen;
        }
        if (fd_kind[fd]) return fd_kind[fd] == 1;
    }
    struct stat st;
    uint64_t *r = reserve(b, 0, sizeof st);
    if (!r) return 0;
    long ret = buffered(b, r, SYS_fstat, fd, (long)&st, 0, 0, NULL, 0, &st, sizeof st, 0, 0);
    if (ret != 0) return 0;
    if (cached) fd_kind[fd] = S_ISREG(st.st_mode) ? 1 : 2;
    return S_ISREG(st.st_mode);
}

/* This thread's desched event fd: 0 none (yet), -1 the engine could not open one. */
static int desched(struct sb *b) {
    if (tls_desched != CHAOS_SB_DESCHED_LAZY) return tls_desched;
    return (int)(long)b->h[H_DESCHED];
}

ssize_t read(int fd, void *buf, size_t n) {
    struct sb *b = enter();
    uint64_t *r;
    long ret;
    int ev;
    if (b && n <= CHAOS_SB_MAX_IO && regular(b, fd) && (r = reserve(b, 0, n)))
        ret = buffered(b, r, SYS_read, fd, (long)buf, (long)n, 0, NULL, 0, buf, n, 1, 0);
    else if (b && tls_state == 1 && n <= CHAOS_SB_MAX_IO && (ev = desched(b)) > 0 &&
             (r = reserve(b, 0, n)))
        /* A pipe, socket or terminal (or a bad fd): it may block. */
        ret = buffered(b, r, SYS_read, fd, (long)buf, (long)n, 0, NULL, 0, buf, n, 1, ev);
    else if (b && tls_state == 1 && n <= CHAOS_SB_MAX_IO && tls_desched == CHAOS_SB_DESCHED_LAZY &&
             b->h[H_DESCHED] == 0)
        /* The thread's first read that may block: traced, asking for its event. */
        ret = traced6(SYS_read, fd, (long)buf, (long)n, 0, 0, CHAOS_SB_ASK);
    else
        ret = traced(SYS_read, fd, (long)buf, (long)n, 0);
    return leave(b, ret);
}

ssize_t write(int fd, const void *buf, size_t n) {
    struct sb *b = enter();
    uint64_t *r;
    long ret;
    if (b && !b->h[H_NO_WRITES] && n <= CHAOS_SB_MAX_IO && regular(b, fd) && (r = reserve(b, n, 0)))
        ret = buffered(b, r, SYS_write, fd, (long)buf, (long)n, 0, buf, n, NULL, 0, 0, 0);
    else
        ret = traced(SYS_write, fd, (long)buf, (long)n, 0);
    return leave(b, ret);
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off) {
    struct sb *b = enter();
    uint64_t *r;
    long ret;
    /* pread needs a seekable file: on pipes, sockets and terminals it fails at once. */
    if (b && n <= CHAOS_SB_MAX_IO && (r = reserve(b, 0, n)))
        ret = buffered(b, r, SYS_pread64, fd, (long)buf, (long)n, off, NULL, 0, buf, n, 1, 0);
    else
        ret = traced(SYS_pread64, fd, (long)buf, (long)n, off);
    return leave(b, ret);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    struct sb *b = enter();
    uint64_t *r;
    long ret;
    if (b && !b->h[H_NO_WRITES] && n <= CHAOS_SB_MAX_IO && (r = reserve(b, n, 0)))
        ret = buffered(b, r, SYS_pwrite64, fd, (long)buf, (long)n, off, buf, n, NULL, 0, 0, 0);
    else
        ret = traced(SYS_pwrite64, fd, (long)buf, (long)n, off);
    return leave(b, ret);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off) __attribute__((alias("pread64")));
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) __attribute__((alias("pwrite64")));

off_t lseek(int fd, off_t off, int whence) {
    struct sb *b = enter();
    uint64_t *r;
    long ret;
    if (b && (r = reserve(b, 0, 0)))
        ret = buffered(b, r, SYS_lseek, fd, off, whence, 0, NULL, 0, NULL, 0, 0, 0);
    else
        ret = traced(SYS_lseek, fd, off, whence, 0);
    return leave(b, ret);
}
off_t lseek64(int fd, off_t off, int whence) __attribute__((alias("lseek")));

int fstat(int fd, struct stat *st) {
    struct sb *b = enter();
    uint64_t *r;
    long ret;
    if (b && (r = reserve(b, 0, sizeof *st)))
        ret = buffered(b, r, SYS_fstat, fd, (long)st, 0, 0, NULL, 0, st, sizeof *st, 0, 0);
    else
        ret = traced(SYS_fstat, fd, (long)st, 0, 0);
    return (int)leave(b, ret);
}
int fstat64(int fd, struct stat *st) __attribute__((alias("fstat")));

int clock_gettime(clockid_t clk, struct timespec *ts) {
    struct sb *b = enter();
    uint64_t *r;
    long ret;
    if (b && (r = reserve(b, 0, sizeof *ts)))
        ret = buffered(b, r, SYS_clock_gettime, clk, (long)ts, 0, 0, NULL, 0, ts, sizeof *ts, 0, 0);
    else
        ret = traced(SYS_clock_gettime, clk, (long)ts, 0, 0);
    return (int)leave(b, ret);
}

/* syscall(2), which Rust's std calls for its futexes (Mutex, Condvar, thread parking,
 * channels): a private FUTEX_WAKE, which never blocks, is buffered by
 * chaos_futex_wake; every other call is made here exactly as libc's wrapper makes it,
 * traced. In assembly: a call that returns twice (vfork, clone) must find nothing of
 * this function on the stack, which a C body cannot promise. */
__asm__(".text\n"
        ".globl syscall\n"
        ".type syscall, @function\n"
        "syscall:\n"
        "    cmpq $202, %rdi\n" /* SYS_futex */
        "    jne 1f\n"
        "    cmpl $0x81, %edx\n" /* FUTEX_WAKE | FUTEX_PRIVATE_FLAG (an int) */
        "    je chaos_futex_wake\n"
        "1:  movq %rdi, %rax\n"
        "    movq %rsi, %rdi\n"
        "    movq %rdx, %rsi\n"
        "    movq %rcx, %rdx\n"
        "    movq %r8, %r10\n"
        "    movq %r9, %r8\n"
        "    movq 8(%rsp), %r9\n"
        "    syscall\n"
        "    cmpq $-4095, %rax\n"
        "    jae 2f\n"
        "    ret\n"
        "2:  movq %rax, %rdi\n"
        "    jmp chaos_syscall_failed\n"
        ".size syscall, .-syscall\n");

/* Tail of syscall(2) for a failed call: errno, and -1. */
__attribute__((used, visibility("hidden"))) long chaos_syscall_failed(long ret) {
    return set_errno(ret);
}

/* syscall(SYS_futex, uaddr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n): the op and the count
 * are ints (what is above them in the registers is not the caller's). */
__attribute__((used, visibility("hidden"))) long chaos_futex_wake(long nr, long uaddr, int op,
                                                                 int n) {
    (void)nr;
    struct sb *b = enter();
    uint64_t *r;
    long ret;
    if (b && (r = reserve(b, 0, 0))) {
        ret = buffered(b, r, SYS_futex, uaddr, op, n, 0, NULL, 0, NULL, 0, 0, 0);
        /* It woke a waiter: a scheduling point now, as the kernel's wakeup preemption
         * gives the woken thread the CPU natively. (Left for the next flush, the waker
         * ran on and usually held its lock again by the time the woken thread ran: a
         * convoy the serialized scheduler made, in which a waiter's timeout fired.) */
        if (ret > 0) flush(b);
    } else {
        ret = traced(SYS_futex, uaddr, op, n, 0);
    }
    return leave(b, ret);
}

/* getrandom blocks only before the kernel's entropy pool is initialised, except with
 * GRND_RANDOM on kernels before 5.6 (the blocking /dev/random pool): that one is traced
 * unless GRND_NONBLOCK. */
#define GRND_NONBLOCK_FLAG 1
#define GRND_RANDOM_FLAG 2
ssize_t getrandom(void *buf, size_t n, unsigned int flags) {
    struct sb *b = enter();
    uint64_t *r;
    long ret;
    int may_block = (flags & GRND_RANDOM_FLAG) && !(flags & GRND_NONBLOCK_FLAG);
    if (b && !may_block && n <= CHAOS_SB_MAX_IO && (r = reserve(b, 0, n)))
        ret = buffered(b, r, SYS_getrandom, (long)buf, (long)n, flags, 0, NULL, 0, buf, n, 1, 0);
    else
        ret = traced(SYS_getrandom, (long)buf, (long)n, flags, 0);
    return leave(b, ret);
}
