//! The client's pace through its request body: when its silence times out, and the minimum rate.

use std::time::{Duration, Instant};

use crate::config::MinRate;
use crate::context::Context;
use super::{HttpStream, Input, RateWindow};

impl HttpStream {
    /// When the client's silence in the middle of its request body times out, if it owes one.
    pub(crate) fn body_deadline(&self) -> Option<Instant> {
        self.body_deadline
    }

    /// The client's silence was the proxy's doing (it was not reading): count afresh.
    pub(crate) fn rearm_body_deadline(&mut self, at: Instant) {
        if self.body_deadline.is_some() {
            self.body_deadline = Some(at);
        }
    }

    /// Whether the client is still sending this request's body.
    pub(crate) fn awaits_request_body(&self) -> bool {
        self.body_deadline.is_some()
    }

    /// Track the client's progress through the request body, whether or not the input is
    /// handled now or waits for a hook.
    pub(super) fn note_progress(&mut self, cx: &Context, now: Instant, input: &Input) {
        let again = Some(now + cx.config.body_timeout);
        match input {
            Input::RequestHeaders { end_stream: false, .. } | Input::RequestData(_) | Input::RequestForwarded(_) => {
                self.body_deadline = again;
            }
            Input::RequestHeaders { end_stream: true, .. }
            | Input::RequestEnd(_)
            | Input::ClientClosed
            | Input::ClientReset
            | Input::ClientError(_)
            | Input::ClientTimeout(_) => {
                self.body_deadline = None;
                self.rate_window = None;
            }
            _ => {}
        }
        match (input, cx.config.body_min_rate) {
            (Input::RequestHeaders { end_stream: false, .. }, Some(rate)) => self.restart_rate(now, rate.window),
            (Input::RequestData(data), _) => self.count_body(data.len() as u64),
            (Input::RequestForwarded(len), _) => self.count_body(*len),
            _ => {}
        }
    }

    fn count_body(&mut self, len: u64) {
        if let Some(rate) = &mut self.rate_window {
            rate.bytes += len;
        }
    }

    /// Measure the request body's rate afresh from `now` (its start, or the end of a time
    /// the proxy held it back), the first check a `window` away.
    pub(crate) fn restart_rate(&mut self, now: Instant, window: Duration) {
        self.rate_window = Some(RateWindow { since: now, check: now + window, bytes: 0 });
    }

    /// When the request body's rate is checked next, if it is measured.
    pub(crate) fn rate_deadline(&self) -> Option<Instant> {
        self.rate_window.map(|r| r.check)
    }

    /// The check at `now`: the bytes and seconds measured if the body came slower than
    /// `rate`; otherwise the next check is a window away.
    pub(crate) fn check_rate(&mut self, now: Instant, rate: MinRate) -> Option<(u64, f64)> {
        let r = self.rate_window.as_mut()?;
        let secs = now.saturating_duration_since(r.since).as_secs_f64();
        if (r.bytes as f64) < rate.bytes_per_sec as f64 * secs {
            return Some((r.bytes, secs));
        }
        r.check = now + rate.window;
        None
    }
}
