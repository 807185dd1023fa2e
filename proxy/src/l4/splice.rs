//! Zero-copy L4 forwarding: `splice(2)` socket → pipe → socket, so plaintext TCP bytes never
//! enter user space. Each direction owns a pipe; bytes are counted from splice's return values,
//! so `istio_tcp_*` byte counters stay exact. Where splice is unavailable (pipe creation fails,
//! or the kernel answers `EINVAL`/`ENOSYS` before a byte moved) that direction falls back to a
//! user-space copy on the same sockets.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Most bytes one splice call moves, and the pipe capacity asked for: bigger than the 64 KiB
/// default so a bulk transfer takes fewer wake-ups per megabyte (the kernel pins the pages
/// only while data is in flight, so idle connections cost nothing extra).
const CHUNK: usize = 256 * 1024;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the splice path on or off process-wide (`--l4-copy` forces the copy loop, for
/// comparison runs and for kernels where splice misbehaves).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether new connections try splice.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// How one direction moved its bytes, for the `isthmus_tcp_proxy_io_total{mode}` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kernel-side splice.
    Splice,
    /// User-space read/write.
    Copy,
}

impl Mode {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Splice => "splice",
            Mode::Copy => "copy",
        }
    }
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

#[cfg(target_os = "linux")]
fn pipe() -> io::Result<Pipe> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints, as pipe2 requires.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let [r, w] = fds;
    // A larger pipe is an optimisation; the default size works if the kernel refuses.
    // SAFETY: `w` is the pipe just created, still open.
    let _ = unsafe { libc::fcntl(w, libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { Pipe { read: OwnedFd::from_raw_fd(r), write: OwnedFd::from_raw_fd(w) } })
}

#[cfg(target_os = "linux")]
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both fds are open for the duration of the call; null offsets mean "current
    // position", which splice requires for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// splice(2) and pipe2(2) are Linux calls: elsewhere every connection takes the copy loop
/// (`pipe` fails, so `spliced` is never reached).
#[cfg(not(target_os = "linux"))]
fn pipe() -> io::Result<Pipe> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(not(target_os = "linux"))]
fn splice(_from: RawFd, _to: RawFd, _len: usize) -> io::Result<usize> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS))
}

fn is_close(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted)
}

/// Moves `from` → `to` until EOF, then half-closes `to`; through `splice(2)` when `try_splice`
/// and the kernel allows it, else a user-space copy. Returns the mode used and bytes moved.
pub async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    counter: &AtomicU64,
    activity: &AtomicU64,
    try_splice: bool,
) -> (Mode, io::Result<u64>) {
    let pipe = if try_splice { pipe().ok() } else { None };
    let (mode, result) = match pipe {
        Some(p) => match spliced(from, to, &p, counter, activity).await {
            Err(e) if unsupported(&e) && counter.load(Ordering::Relaxed) == 0 => {
                (Mode::Copy, copied(from, to, counter, activity).await)
            }
            other => (Mode::Splice, other),
        },
        None => (Mode::Copy, copied(from, to, counter, activity).await),
    };
    let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
    let result = match result {
        Err(e) if is_close(&e) => Ok(counter.load(Ordering::Relaxed)),
        other => other,
    };
    (mode, result)
}

async fn spliced(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    counter: &AtomicU64,
    activity: &AtomicU64,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read.
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || splice(from.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || splice(pipe.read.as_raw_fd(), to.as_raw_fd(), left)) {
                Ok(m) => left -= m.min(left),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
        activity.fetch_add(1, Ordering::Relaxed);
    }
}

/// The fallback: the same readiness loop through a user-space buffer that grows from 4 KiB to
/// 64 KiB while reads keep filling it.
async fn copied(from: &TcpStream, to: &TcpStream, counter: &AtomicU64, activity: &AtomicU64) -> io::Result<u64> {
    let mut buf = vec![0u8; 4096];
    let mut total = 0u64;
    loop {
        let n = loop {
            from.readable().await?;
            match from.try_read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(total);
        }
        let mut sent = 0;
        while sent < n {
            to.writable().await?;
            match to.try_write(buf.get(sent..n).unwrap_or_default()) {
                Ok(m) => sent += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
        activity.fetch_add(1, Ordering::Relaxed);
        if n == buf.len() && buf.len() < CHUNK {
            buf.resize(buf.len() * 2, 0);
        }
    }
}
