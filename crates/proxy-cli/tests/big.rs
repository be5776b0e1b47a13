//! 100 MiB each way through the proxy, compared byte for byte without holding it twice.

use crate::support;

use std::time::Duration;

use support::checks::{self, Via};
use support::*;

const BIG: u64 = 100 << 20;
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn download_100_mib_byte_exact() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::download(Via::Proxy(&proxy), &origin, BIG, LIMIT);
}

#[test]
fn upload_100_mib_with_content_length() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::upload_file(Via::Proxy(&proxy), &origin, BIG, LIMIT);
}

#[test]
fn upload_chunked_from_stdin() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::upload_chunked(Via::Proxy(&proxy), &origin, 16 << 20, LIMIT);
}
