//! Proxy modes: what the client connection speaks first.
use std::time::Instant;
use crate::context::Context;
use crate::event::Event;
use crate::layer::Layer;

pub(crate) struct RegularMode {}
impl RegularMode { pub(crate) fn new() -> Self { Self {} } }
impl Layer for RegularMode {
    fn handle(&mut self, _cx: &mut Context, _now: Instant, _event: Event) { unimplemented!() }
}
