//! Progress of a long import on a terminal: a reader that counts the bytes
//! and lines it passes on and draws rows/s, bytes read and the ETA with
//! indicatif. Not a terminal: the reader is returned as it was, nothing drawn.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Wraps `inner` (of `len` bytes) with a progress bar on stderr when stdout
/// and stderr are terminals; the bar is cleared when the reader is dropped.
pub fn on_terminal<'a>(inner: Box<dyn Read + 'a>, len: u64) -> Box<dyn Read + 'a> {
    if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
        return inner;
    }
    Box::new(Progress::new(inner, len, ProgressDrawTarget::stderr()))
}

/// Counts bytes and newlines (≈ rows) read through it.
pub struct Progress<R> {
    inner: R,
    bar: ProgressBar,
    lines: u64,
    started: std::time::Instant,
}

impl<R: Read> Progress<R> {
    pub fn new(inner: R, len: u64, target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(len), target);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress {
            inner,
            bar,
            lines: 0,
            started: std::time::Instant::now(),
        }
    }

    /// Rows (lines) read so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        self.bar.inc(n as u64);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} rows, {:.0} rows/s",
            self.lines,
            self.lines as f64 / secs
        ));
        Ok(n)
    }
}

impl<R> Drop for Progress<R> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn passes_every_byte_on_and_counts_lines() {
        let text = b"id,name\na,A\nb,B\n";
        let mut p = super::Progress::new(&text[..], 16, indicatif::ProgressDrawTarget::hidden());
        let mut out = Vec::new();
        p.read_to_end(&mut out).unwrap();
        assert_eq!(out, text);
        assert_eq!(p.lines(), 3);
    }
}
