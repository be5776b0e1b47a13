//! Moving bytes from one socket to another through a kernel pipe with `splice(2)`, so that a
//! body the core hands over with `Command::Forward` never enters user space.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// How much one pipe holds; asked of the kernel, which may grant less.
const PIPE_SIZE: libc::c_int = 1024 * 1024;

/// A non-blocking pipe and how many bytes sit in it.
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet spliced out.
    pub(crate) len: usize,
    /// How much it holds.
    pub(crate) capacity: usize,
}

impl Pipe {
    pub(crate) fn new() -> io::Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A bigger pipe means fewer system calls per megabyte; the default (64 KiB) still works.
        // SAFETY: F_SETPIPE_SZ on a pipe we own; failure leaves the pipe as it was.
        let granted = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        // Linux's default when the kernel refuses: sixteen pages.
        let capacity = usize::try_from(granted).ok().filter(|&n| n > 0).unwrap_or(64 * 1024);
        Ok(Self { read, write, len: 0, capacity })
    }

    /// Move up to `max` bytes from the socket `from` into the pipe. `Ok(0)`: the peer closed.
    pub(crate) fn fill(&mut self, from: RawFd, max: usize) -> io::Result<usize> {
        let n = splice(from, self.write.as_raw_fd(), max)?;
        self.len += n;
        Ok(n)
    }

    /// Move what the pipe holds into the socket `to`, as far as it takes it.
    pub(crate) fn drain(&mut self, to: RawFd) -> io::Result<usize> {
        let n = splice(self.read.as_raw_fd(), to, self.len)?;
        self.len -= n;
        Ok(n)
    }
}

/// Have the kernel report `socket` readable only once `bytes` wait in it (or it reached its
/// end), so that a fast sender is read in a few big pieces rather than many small wakeups.
/// TCP still reports readable below the mark when its receive window is all but shut, so a
/// sender is never stalled by it; and lowering the mark reports the bytes already there.
/// A mark over half the receive buffer makes the kernel grow the buffer, and kernels before
/// late 2025 then clamp the window to the mark: callers stay below that.
pub(crate) fn set_read_mark(socket: RawFd, bytes: usize) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX).max(1);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `socket` is open (the caller holds it); the option value is a c_int that lives
    // across the call, and `len` is its size.
    let set = unsafe {
        libc::setsockopt(socket, libc::SOL_SOCKET, libc::SO_RCVLOWAT, (&bytes as *const libc::c_int).cast(), len)
    };
    if set == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: both descriptors are open for the duration of the call (the caller holds the
    // sockets and the pipe); null offsets are what splice expects for sockets and pipes.
    let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        // A non-negative ssize_t fits in usize.
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn moves_bytes_between_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a_out = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (a_in, _) = listener.accept().unwrap();
        let b_out = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut b_in, _) = listener.accept().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        a_out.write_all(&data).unwrap();
        drop(a_out);
        let mut pipe = Pipe::new().unwrap();
        let mut moved = 0;
        loop {
            match pipe.fill(a_in.as_raw_fd(), 1 << 20) {
                Ok(0) if pipe.len == 0 => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            moved += pipe.drain(b_out.as_raw_fd()).unwrap();
        }
        drop(b_out);
        let mut got = Vec::new();
        b_in.read_to_end(&mut got).unwrap();
        assert_eq!(moved, data.len());
        assert!(got == data);
    }
}
