//! The numbers the recorder and the preload library (`preload.c`) share. `build.rs`
//! compiles the library with these as `-D` flags, so they are stated once, here.

/// The page the recorder maps at every exec (record and replay) holding the untraced
/// entry: `syscall; ret` at its start. Between the replay stub and the scratch area.
pub const ENTRY_PAGE: u64 = 0x2080_0000_0000;
/// The library `call`s this address to make an untraced call.
pub const ENTRY: u64 = ENTRY_PAGE;
/// The instruction pointer the seccomp filter sees for a call made at [`ENTRY`] (the
/// address just after the 2-byte `syscall`).
pub const ENTRY_IP: u64 = ENTRY + 2;
/// The page's code: `syscall; ret`.
pub const ENTRY_CODE: [u8; 3] = [0x0f, 0x05, 0xc3];
/// The quiet entry, in the same page: `syscall; ret` again, for the calls that arm and
/// disarm the desched event around a call that may block (`ioctl` on its fd, the only
/// call the filter lets through here). They are not recorded: replay's code there
/// answers 0 without a stop (`replay::feed`).
pub const QUIET_ENTRY: u64 = ENTRY_PAGE + 0xf00;
/// The instruction pointer the seccomp filter sees for a call made at [`QUIET_ENTRY`].
pub const QUIET_IP: u64 = QUIET_ENTRY + 2;
/// The result the engine gives a buffered call that blocked (the desched event's signal
/// interrupted it): no call returns it (below -4095 is no errno). The library records
/// it like any result and makes the call again, traced (the `Blocked` path).
pub const DESCHED_RET: i64 = -4096;
/// The lowest fd number a thread's desched event gets in the program (moved there with
/// `F_DUPFD_CLOEXEC`, out of the way of the program's own low numbers).
pub const DESCHED_FD_FLOOR: u64 = 900;
/// The registration call (`chaos_syscallbuf_init(buffer, length)`): the engine answers
/// with the first budget, or `-ENOSYS` when buffering is off. Bits 32 and up of a
/// positive answer say how the thread gets a desched event: 0 never (calls that may
/// block are traced), [`DESCHED_LAZY`] when it first needs one (see [`ASK_MARK`]), or
/// the event's fd, opened at the registration (recorders of trace format 12 and
/// older, `CARGO_CHAOS_DESCHED=1`; the library still follows it, for their traces).
pub const INIT_SYSCALL: u64 = 1001;
/// The flush call (`chaos_syscallbuf_flush(buffer)`): the engine has read the buffer and
/// answers with the next budget.
pub const FLUSH_SYSCALL: u64 = 1002;
/// The sixth argument register (r9) of every buffered call: no buffered call has more
/// than four arguments, and the mark shows in the trace (`cargo chaos dump`) which calls
/// ran without a stop.
pub const MARK: u64 = 0x5b5b_b0ff;
/// Bits 32 and up of a registration's answer: the thread's desched event is opened at
/// its first read that may block (no event fd is ever 1: they start at
/// [`DESCHED_FD_FLOOR`]).
pub const DESCHED_LAZY: u64 = 1;
/// The sixth argument register (r9) of the library's traced `read` that asks for the
/// thread's desched event (a read on a pipe, socket or terminal while the buffer's
/// [`H_DESCHED`] word is 0): at that read's exit the engine opens the event and writes
/// its fd, or -1 when it cannot, into [`H_DESCHED`] as a memory write of the read's
/// event, so replay writes the same.
pub const ASK_MARK: u64 = 0x5b5b_de5c;
/// Bytes of one thread's buffer (header included).
pub const BUFFER_SIZE: u64 = 256 << 10;
/// The largest record; a call that would need more takes the traced path.
pub const MAX_RECORD: u64 = 64 << 10;
/// The largest read or write the library buffers.
pub const MAX_IO: u64 = 16 << 10;
/// Words (u64) of the buffer header; see `preload.c` for their meaning.
pub const HEADER_WORDS: u64 = 8;
/// Header word: bytes of complete records after the header.
pub const H_CURSOR: u64 = 0;
/// Header word: buffered calls left before the library makes its flush call; the
/// engine writes 0 to retire a buffer (the flush is then answered `-ENOSYS`).
pub const H_CALLS_LEFT: u64 = 1;
/// Header word: 1 from just before a buffered call (and its desched event's arming), 2
/// once the call returned, 0 when its record is complete.
pub const H_IN_CALL: u64 = 2;
/// Header word: when non-zero the library takes the traced path for writes.
pub const H_NO_WRITES: u64 = 3;
/// Header word: with [`DESCHED_LAZY`], the thread's desched event fd once the engine
/// opened it (0: not asked yet, -1: refused; see [`ASK_MARK`]). A forked child's copy
/// names its own event (the engine opens it under the same number).
pub const H_DESCHED: u64 = 5;
/// Words (u64) of a record before its data: size, nr, args\[6\], ret, in_len, out_addr,
/// out_len.
pub const RECORD_WORDS: u64 = 12;
