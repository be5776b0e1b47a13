//! The in-memory transport h2 runs over: a pipe whose input we fill and whose output we empty,
//! and a tracker of where its reads stand in the frames, so that reads end where frames do.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the two sides of the pipe hold. h2 owns one end (inside its connection), we the
/// other; the lock is never contended, as both ends are used from the one thread that
/// drives the engine.
pub(super) struct Pipe {
    pub(super) input: BytesMut,
    /// Where the input handed to h2 so far stands in its frames.
    read: Frames,
    pub(super) eof: bool,
    pub(super) output: BytesMut,
}

#[derive(Clone)]
pub(super) struct Io(Arc<Mutex<Pipe>>);

impl Io {
    /// The transport of a connection whose input starts with `first`.
    pub(super) fn new(first: Frames) -> Self {
        let pipe = Pipe { input: BytesMut::new(), read: first, eof: false, output: BytesMut::new() };
        Io(Arc::new(Mutex::new(pipe)))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Pipe> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, _: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut pipe = self.lock();
        if pipe.input.is_empty() {
            // Nothing to read: EOF is a read of nothing; otherwise wait for `receive`.
            return if pipe.eof { Poll::Ready(Ok(())) } else { Poll::Pending };
        }
        let Pipe { input, read, .. } = &mut *pipe;
        let n = read.take(input, buf.remaining());
        buf.put_slice(&input[..n]);
        input.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, _: &mut TaskContext<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.lock().output.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// HTTP/2's frame header: a 24-bit payload length, type, flags, stream id.
pub(super) const FRAME_HEADER: usize = 9;
/// What a client sends before its first frame.
pub(super) const PREFACE: usize = 24;

/// A position in the byte stream h2 reads: in the client's preface, in a frame's header, or in
/// its payload.
///
/// It lets reads end where frames do. h2 reads into a buffer that grows to the size of each
/// frame once it has seen the frame's header; a read that also carried part of the payload
/// makes that growth copy it, and a frame is up to 16 KiB. So a read hands over whole frames
/// while they fit, and a frame that does not fit gets its header alone, the payload after
/// the buffer has grown. Only the sizes of reads change: every byte is handed over in order,
/// and a read never waits while bytes are there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Frames {
    Preface { left: usize },
    Header { seen: usize, len: [u8; 3] },
    Payload { left: usize },
}

impl Frames {
    pub(super) const START: Frames = Frames::Header { seen: 0, len: [0; 3] };

    /// Hand over the start of `input` in a read of at most `room` bytes: how many, followed.
    fn take(&mut self, input: &[u8], room: usize) -> usize {
        let limit = room.min(input.len());
        let mut n = 0;
        while n < limit {
            // How much of the next unit to hand over, and whether the read ends with it.
            let (take, alone) = match *self {
                Frames::Preface { left } | Frames::Payload { left } => (left, false),
                Frames::Header { seen: 0, .. } => match input.get(n..n + FRAME_HEADER) {
                    Some(head) => {
                        let frame = FRAME_HEADER + payload_len([head[0], head[1], head[2]]);
                        if n + frame <= room {
                            (frame, false)
                        } else if n == 0 {
                            // Alone: the payload follows once h2 has made room for it.
                            (FRAME_HEADER, true)
                        } else {
                            break;
                        }
                    }
                    // Part of a header: it costs h2 a few bytes' copy at most.
                    None => (limit - n, false),
                },
                // The rest of a header handed over in part: alone, as above.
                Frames::Header { seen, .. } => (FRAME_HEADER - seen, true),
            };
            let take = take.min(limit - n);
            self.advance(&input[n..n + take]);
            n += take;
            if alone {
                break;
            }
        }
        n
    }

    /// Follow `bytes` up to the end of the frame under way: how many it took, if the frame
    /// ended among them.
    pub(super) fn finish_frame(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut n = 0;
        while n < bytes.len() {
            let step = match *self {
                Frames::Preface { left } | Frames::Payload { left } => left.min(bytes.len() - n),
                Frames::Header { .. } => 1,
            };
            self.advance(&bytes[n..n + step]);
            n += step;
            if *self == Frames::START {
                return Some(n);
            }
        }
        None
    }

    /// Follow `bytes`, the next ones handed over.
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self {
                Frames::Preface { left } | Frames::Payload { left } => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        *self = Frames::START;
                    }
                }
                Frames::Header { seen, len } => {
                    if let Some(b) = len.get_mut(*seen) {
                        *b = bytes[0];
                    }
                    *seen += 1;
                    bytes = &bytes[1..];
                    if *seen == FRAME_HEADER {
                        *self = match payload_len(*len) {
                            0 => Frames::START,
                            left => Frames::Payload { left },
                        };
                    }
                }
            }
        }
    }
}

fn payload_len(len: [u8; 3]) -> usize {
    usize::from(len[0]) << 16 | usize::from(len[1]) << 8 | usize::from(len[2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(payload: usize) -> Vec<u8> {
        let len = u32::try_from(payload).unwrap().to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], 0, 0, 0, 0, 0, 1];
        f.extend((0..payload).map(|i| (i % 251) as u8));
        f
    }

    /// Reads of `room` bytes from `at` over `input`, until it is all handed over.
    fn read_all(mut at: Frames, input: &[u8], rooms: &[usize]) -> Vec<usize> {
        let (mut reads, mut pos) = (Vec::new(), 0);
        for &room in rooms.iter().cycle() {
            if pos == input.len() {
                break;
            }
            let n = at.take(&input[pos..], room);
            assert!(n > 0 && n <= room, "a read of {n} with room {room} and bytes waiting");
            pos += n;
            reads.push(n);
        }
        reads
    }

    #[test]
    fn reads_end_where_frames_do() {
        let input: Vec<u8> = [frame(16_384), frame(100), frame(16_384), frame(0)].concat();
        // Whole frames while they fit; the next one waits for the next read.
        assert_eq!(read_all(Frames::START, &input, &[20_000]), [16_393 + 109, 16_393 + 9]);
        // A frame bigger than the room: its header alone, then its payload.
        assert_eq!(read_all(Frames::START, &input, &[8_192, 16_384]), [9, 16_384, 109, 9, 8_192, 8_192 + 9]);
        // The client's preface is a unit of its own.
        let mut server: Vec<u8> = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        server.extend(frame(6));
        assert_eq!(read_all(Frames::Preface { left: PREFACE }, &server, &[24, 100]), [24, 15]);
        // Part of a header is handed over as it is, and followed.
        let mut at = Frames::START;
        assert_eq!(at.take(&input[..5], 100), 5);
        assert_eq!(at.take(&input[5..], 100), 4);
        assert_eq!(at, Frames::Payload { left: 16_384 });
    }

    proptest! {
        /// Whatever the frames, the pieces they arrive in and the room of each read, every
        /// byte is handed over once and in order, and no read is empty while bytes wait.
        #[test]
        fn frame_aligned_reads_lose_nothing(
            payloads in proptest::collection::vec(0usize..40_000, 0..12),
            pieces in proptest::collection::vec(1usize..30_000, 1..8),
            rooms in proptest::collection::vec(1usize..40_000, 1..8),
            preface in any::<bool>(),
        ) {
            let mut stream: Vec<u8> = if preface { vec![b'P'; PREFACE] } else { Vec::new() };
            for &p in &payloads {
                stream.extend(frame(p));
            }
            let mut at = if preface { Frames::Preface { left: PREFACE } } else { Frames::START };
            let (mut input, mut out, mut fed) = (Vec::new(), Vec::new(), 0);
            let (mut piece, mut room) = (pieces.iter().cycle(), rooms.iter().cycle());
            while out.len() < stream.len() {
                if input.is_empty() || fed < stream.len() && input.len() < 100 {
                    let n = (*piece.next().unwrap()).min(stream.len() - fed);
                    input.extend_from_slice(&stream[fed..fed + n]);
                    fed += n;
                }
                let room = *room.next().unwrap();
                let n = at.take(&input, room);
                prop_assert!(n > 0 && n <= room.min(input.len()));
                out.extend(input.drain(..n));
            }
            prop_assert!(out == stream);
            prop_assert_eq!(at, if stream.is_empty() && preface { Frames::Preface { left: PREFACE } } else { Frames::START });
        }
    }

    #[test]
    fn a_frame_is_followed_to_its_end() {
        let input: Vec<u8> = [frame(6), frame(0)].concat();
        let mut at = Frames::START;
        assert_eq!(at.finish_frame(&input[..10]), None);
        assert_eq!(at.finish_frame(&input[10..]), Some(5));
        assert_eq!(at.finish_frame(&input[15..]), Some(9));
        assert_eq!(at.finish_frame(&[]), None);
    }
}
