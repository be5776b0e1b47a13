//! [`WriteQueue`]: output the core has sent on one connection and the socket has not yet taken.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes};

/// Most buffers handed to one `writev`.
const MAX_IOVECS: usize = 64;

/// A queue of `Bytes` written with vectored writes, without copying or joining them.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    bufs: VecDeque<Bytes>,
    len: usize,
}

impl WriteQueue {
    pub(crate) fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.len += data.len();
            self.bufs.push_back(data);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Bytes still queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn clear(&mut self) {
        self.bufs.clear();
        self.len = 0;
    }

    /// Hand queued bytes to `write` (a non-blocking vectored write) until the queue is empty
    /// or `write` would block. Returns how many bytes were written; an error other than
    /// `WouldBlock` (or `Interrupted`, which is retried) is returned as is.
    pub(crate) fn flush(
        &mut self,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut total = 0;
        while !self.bufs.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.bufs.len().min(MAX_IOVECS);
            for (slot, buf) in slices.iter_mut().zip(self.bufs.iter()) {
                *slot = IoSlice::new(buf);
            }
            match write(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.consume(written);
                    total += written;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            // `n` never exceeds what was offered, which was taken from the queue.
            let front = self.bufs.front_mut().expect("wrote more than was queued");
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.bufs.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(parts: &[&'static str]) -> WriteQueue {
        let mut q = WriteQueue::default();
        for p in parts {
            q.push(Bytes::from_static(p.as_bytes()));
        }
        q
    }

    /// A writer taking at most `cap` bytes per call and `budget` bytes in all before blocking.
    fn writer(out: &mut Vec<u8>, cap: usize, mut budget: usize) -> impl FnMut(&[IoSlice<'_>]) -> io::Result<usize> + '_ {
        move |bufs| {
            if budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(cap - n).min(budget);
                out.extend_from_slice(&b[..take]);
                n += take;
                budget -= take;
                if take < b.len() {
                    break;
                }
            }
            Ok(n)
        }
    }

    #[test]
    fn writes_everything_in_order() {
        let mut q = queue(&["hello ", "", "world", "!"]);
        assert_eq!(q.len(), 12);
        let mut out = Vec::new();
        assert_eq!(q.flush(writer(&mut out, 5, usize::MAX)).unwrap(), 12);
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
        assert_eq!(out, b"hello world!");
    }

    #[test]
    fn keeps_the_rest_when_the_socket_blocks() {
        let mut q = queue(&["abcdef", "ghij"]);
        let mut out = Vec::new();
        assert_eq!(q.flush(writer(&mut out, 100, 8)).unwrap(), 8);
        assert!(!q.is_empty());
        assert_eq!(q.len(), 2);
        q.push(Bytes::from_static(b"kl"));
        assert_eq!(q.flush(writer(&mut out, 100, 100)).unwrap(), 4);
        assert!(q.is_empty());
        assert_eq!(out, b"abcdefghijkl");
    }

    #[test]
    fn more_buffers_than_one_writev_takes() {
        let mut q = WriteQueue::default();
        let mut want = Vec::new();
        for i in 0..200u8 {
            q.push(Bytes::from(vec![i; 3]));
            want.extend_from_slice(&[i; 3]);
        }
        let mut out = Vec::new();
        assert_eq!(q.flush(writer(&mut out, usize::MAX, usize::MAX)).unwrap(), 600);
        assert_eq!(out, want);
    }

    #[test]
    fn errors_and_interrupts() {
        let mut q = queue(&["abc"]);
        let mut calls = 0;
        let n = q
            .flush(|bufs| {
                calls += 1;
                if calls == 1 {
                    Err(io::ErrorKind::Interrupted.into())
                } else {
                    Ok(bufs[0].len())
                }
            })
            .unwrap();
        assert_eq!((n, calls), (3, 2));

        let mut q = queue(&["abc"]);
        let err = q.flush(|_| Err(io::ErrorKind::BrokenPipe.into())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(q.flush(|_| Ok(0)).unwrap_err().kind(), io::ErrorKind::WriteZero);
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.flush(|_| panic!("nothing to write")).unwrap(), 0);
    }
}
