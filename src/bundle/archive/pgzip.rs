//! Parallel gzip that produces one ordinary gzip member, whatever the
//! number of threads (the pigz method).
//!
//! The input is cut into fixed [`CHUNK`]-byte chunks. Each chunk is
//! deflated on its own as raw deflate, primed with the last 32 KiB of the
//! previous chunk as dictionary (so the ratio barely suffers) and ended
//! with a sync flush (an empty stored block, which byte-aligns it).
//! Concatenated, the chunks form one valid deflate stream; a final empty
//! block closes it and the CRC-32 of the whole input is combined from the
//! chunks' CRCs. Every chunk's output depends only on the input bytes and
//! the level, never on which thread compressed it or on how many there
//! are, so the output is byte-identical for any thread count.
//!
//! Memory is bounded: at most [`in_flight`] chunks (input and output) are
//! held at once.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Uncompressed bytes per chunk. Part of the output format: changing it
/// changes the compressed bytes (not the content).
pub const CHUNK: usize = 512 << 10;
/// The deflate window: the dictionary carried from one chunk to the next.
const WINDOW: usize = 32 << 10;
/// Gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS Unix.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
/// A final, empty, fixed-Huffman deflate block.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// Chunks held at once for `threads` threads.
fn in_flight(threads: usize) -> usize {
    threads * 3
}

struct Done {
    index: u64,
    result: io::Result<(Vec<u8>, Crc)>,
}

/// A gzip writer compressing on `threads` threads (1: on the caller's).
pub struct ParGzWriter<W: Write> {
    out: W,
    level: u32,
    pool: Option<rayon::ThreadPool>,
    buf: Vec<u8>,
    /// The last `WINDOW` bytes of the previous chunk.
    dict: Vec<u8>,
    next_index: u64,
    next_to_write: u64,
    crc: Crc,
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
    ready: BTreeMap<u64, (Vec<u8>, Crc)>,
    max_in_flight: usize,
    started: bool,
}

impl<W: Write> ParGzWriter<W> {
    pub fn new(out: W, level: u32, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("bundlegen-gzip-{i}"))
                    .build()
                    .map_err(io::Error::other)?,
            )
        } else {
            None
        };
        let (tx, rx) = mpsc::channel();
        Ok(ParGzWriter {
            out,
            level,
            pool,
            buf: Vec::with_capacity(CHUNK),
            dict: Vec::new(),
            next_index: 0,
            next_to_write: 0,
            crc: Crc::new(),
            tx,
            rx,
            ready: BTreeMap::new(),
            max_in_flight: in_flight(threads),
            started: false,
        })
    }

    fn start(&mut self) -> io::Result<()> {
        if !self.started {
            self.started = true;
            self.out.write_all(&HEADER)?;
        }
        Ok(())
    }

    /// Hands the full buffer to a worker (or compresses it here).
    fn dispatch(&mut self) -> io::Result<()> {
        self.start()?;
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let dict = std::mem::take(&mut self.dict);
        self.dict = data[data.len().saturating_sub(WINDOW)..].to_vec();
        let index = self.next_index;
        self.next_index += 1;
        let level = self.level;
        match &self.pool {
            None => {
                let (out, crc) = deflate_chunk(&data, &dict, level)?;
                self.ready.insert(index, (out, crc));
            }
            Some(pool) => {
                let tx = self.tx.clone();
                pool.spawn(move || {
                    let result = deflate_chunk(&data, &dict, level);
                    let _ = tx.send(Done { index, result });
                });
            }
        }
        self.drain(false)?;
        while self.pending() >= self.max_in_flight {
            self.receive_one()?;
            self.drain(false)?;
        }
        Ok(())
    }

    fn pending(&self) -> usize {
        (self.next_index - self.next_to_write) as usize
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let done = self
            .rx
            .recv()
            .map_err(|_| io::Error::other("a gzip worker thread died"))?;
        let (out, crc) = done.result?;
        self.ready.insert(done.index, (out, crc));
        Ok(())
    }

    /// Writes the finished chunks that are next in order; with `all`, waits
    /// for every chunk in flight.
    fn drain(&mut self, all: bool) -> io::Result<()> {
        loop {
            if let Some((out, crc)) = self.ready.remove(&self.next_to_write) {
                self.out.write_all(&out)?;
                self.crc.combine(&crc);
                self.next_to_write += 1;
            } else if all && self.next_to_write < self.next_index {
                self.receive_one()?;
            } else {
                return Ok(());
            }
        }
    }

    /// Compresses what is left, writes the trailer and returns the inner
    /// writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() {
            self.dispatch()?;
        }
        self.start()?;
        self.drain(true)?;
        self.out.write_all(&FINAL_BLOCK)?;
        self.out.write_all(&self.crc.sum().to_le_bytes())?;
        self.out.write_all(&self.crc.amount().to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing mid-stream would change the output: only `finish` ends
        // chunks early.
        Ok(())
    }
}

/// Raw deflate of one chunk, primed with `dict`, ended with a sync flush.
fn deflate_chunk(data: &[u8], dict: &[u8], level: u32) -> io::Result<(Vec<u8>, Crc)> {
    let mut crc = Crc::new();
    crc.update(data);
    let mut c = Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        // Done once all input is in and the flush left spare room.
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        if status == Status::BufError && out.len() < out.capacity() {
            return Err(io::Error::other("deflate made no progress"));
        }
    }
    Ok((out, crc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial.
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 7 == 0 {
                    (x >> 24) as u8
                } else {
                    b"bundlegen "[i % 10]
                }
            })
            .collect()
    }

    fn gz(data: &[u8], threads: usize, write_size: usize) -> Vec<u8> {
        let mut w = ParGzWriter::new(Vec::new(), 6, threads).unwrap();
        for part in data.chunks(write_size.max(1)) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_and_is_thread_count_independent() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 777] {
            let data = sample(len);
            let one = gz(&data, 1, 4096);
            assert_eq!(gz(&data, 2, 100_000), one, "len {len}");
            assert_eq!(gz(&data, 4, 7), one, "len {len}");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&one[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "len {len}");
        }
    }
}
