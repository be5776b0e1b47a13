//! A deterministic [`CryptoProvider`] for playbooks, so that running a TLS scenario twice gives
//! the same bytes on the wire: every `SendData` the core emits and every record a test peer
//! writes. **Test only: it provides no security and must never be used outside tests.**
//!
//! What rustls would draw from the operating system, and what we hand it instead:
//!
//! - **Randomness** ([`CryptoProvider::secure_random`]: client and server randoms, session ids,
//!   ticket ids, ticket age offsets) comes from a splitmix64 stream. Every [`provider`] starts
//!   its own stream from the same seed, so a scenario that makes its providers in the same
//!   order draws the same bytes every run, and scenarios running on other threads do not
//!   disturb it.
//! - **Key exchange** is fake. ring's X25519 and ECDHE take their ephemeral keys from ring's
//!   own `SystemRandom`, past the provider, so [`provider`] offers only [`TEST_KX_GROUP`]: a
//!   key share is 32 bytes from the stream, and the shared secret is the two shares
//!   concatenated in sorted order. Anyone who sees the handshake knows the secret. That is
//!   acceptable here because both ends of every playbook connection use this provider, the
//!   bytes never leave the process, and what playbooks test is the proxy's handling of TLS,
//!   not TLS's secrecy. The group's code point is from the private-use range, so no real
//!   peer offers it, and a real peer would refuse a handshake with these configurations.
//! - **Signatures** are Ed25519, which is deterministic, with keys from [`ed25519_key`]
//!   derived from a name. rcgen then makes identical certificates too: its serial number
//!   is a hash of the public key and its validity is fixed (1975 to 4096) unless set.
//! - **Time** is fixed at [`NOW`] through [`client_config`] and [`server_config`], so
//!   certificate checks and ticket ages do not depend on the clock.
//!
//! Cipher suites, the AEADs, hashes, signature checks and key loading are ring's real ones:
//! they are deterministic once the keys are.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rustls::crypto::{ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret, SupportedKxGroup};
use rustls::pki_types::{PrivatePkcs8KeyDer, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, ConfigBuilder, NamedGroup, PeerMisbehaved, ServerConfig, WantsVerifier};

/// The fake key exchange of [`provider`], with a code point from TLS's private-use range
/// (RFC 8446, section 4.2.7) that no real peer offers.
pub const TEST_KX_GROUP: NamedGroup = NamedGroup::Unknown(0xfe5a);

/// The wall time rustls sees through [`client_config`] and [`server_config`]:
/// 2025-01-01T00:00:00Z, inside the validity of rcgen's default certificates.
pub const NOW: Duration = Duration::from_secs(1_735_689_600);

/// Where every [`provider`]'s random stream starts.
const SEED: u64 = 0x5eed_5eed_5eed_5eed;

/// The length of a [`TEST_KX_GROUP`] key share.
const SHARE_LEN: usize = 32;

/// The DER of a PKCS#8 v1 Ed25519 private key up to its 32-byte seed (RFC 8410, section 7).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// ring's cipher suites, signature checks and key loading, with a seeded random stream and
/// the fake [`TEST_KX_GROUP`] as its only key exchange.
///
/// rustls wants the generator and the group as `&'static`, so they are leaked, but only
/// once per provider alive at a time: a pair whose provider has been dropped is reset to the
/// seed and serves the next one. A fuzz target makes a provider per input, and millions of
/// inputs must not mean millions of leaks.
pub fn provider() -> Arc<CryptoProvider> {
    let mut leaked = LEAKED.lock().unwrap_or_else(PoisonError::into_inner);
    let slot = match leaked.iter().position(|(_, user)| user.strong_count() == 0) {
        Some(slot) => {
            leaked[slot].0 .0.reset(SEED);
            slot
        }
        None => {
            let stream: &'static Stream = Box::leak(Box::new(Stream::new(SEED)));
            leaked.push((Box::leak(Box::new(TestKx(stream))), Weak::new()));
            leaked.len() - 1
        }
    };
    let group = leaked[slot].0;
    let provider = Arc::new(CryptoProvider {
        kx_groups: vec![group],
        secure_random: group.0,
        ..rustls::crypto::ring::default_provider()
    });
    leaked[slot].1 = Arc::downgrade(&provider);
    provider
}

/// Every stream and group leaked for [`provider`], with the provider using each now. A static,
/// so they stay reachable (and leak checkers quiet) until the process ends.
static LEAKED: Mutex<Vec<(&'static TestKx, Weak<CryptoProvider>)>> = Mutex::new(Vec::new());

/// A client configuration on a fresh [`provider`] and the fixed clock, with TLS 1.2 and 1.3.
pub fn client_config() -> ConfigBuilder<ClientConfig, WantsVerifier> {
    ClientConfig::builder_with_details(provider(), Arc::new(FixedTime))
        .with_safe_default_protocol_versions()
        .expect("ring's suites cover TLS 1.2 and 1.3")
}

/// A server configuration on a fresh [`provider`] and the fixed clock, with TLS 1.2 and 1.3.
pub fn server_config() -> ConfigBuilder<ServerConfig, WantsVerifier> {
    ServerConfig::builder_with_details(provider(), Arc::new(FixedTime))
        .with_safe_default_protocol_versions()
        .expect("ring's suites cover TLS 1.2 and 1.3")
}

/// An Ed25519 private key (PKCS#8 v1) whose seed is derived from `name`: one name, one key,
/// every run. Different names give different keys.
pub fn ed25519_key(name: &str) -> PrivatePkcs8KeyDer<'static> {
    let mut seed = [0; 32];
    Stream::new(fnv1a(name.as_bytes())).fill_bytes(&mut seed);
    PrivatePkcs8KeyDer::from([&ED25519_PKCS8_PREFIX[..], &seed].concat())
}

/// The 64-bit FNV-1a hash, to turn a name into a seed.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A splitmix64 generator: statistically fine and entirely predictable, which is the point.
/// Atomic so that it is `Sync`, as rustls requires.
#[derive(Debug)]
struct Stream(AtomicU64);

impl Stream {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    fn reset(&self, seed: u64) {
        self.0.store(seed, Ordering::Relaxed);
    }

    fn next_u64(&self) -> u64 {
        let mut z = self.0.fetch_add(Self::GAMMA, Ordering::Relaxed).wrapping_add(Self::GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..chunk.len()]);
        }
    }
}

impl SecureRandom for Stream {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        self.fill_bytes(buf);
        Ok(())
    }
}

/// The fake key exchange: see the module documentation.
#[derive(Debug)]
struct TestKx(&'static Stream);

impl SupportedKxGroup for TestKx {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let mut share = [0; SHARE_LEN];
        self.0.fill_bytes(&mut share);
        Ok(Box::new(TestShare(share)))
    }

    fn name(&self) -> NamedGroup {
        TEST_KX_GROUP
    }
}

/// Our key share of one [`TestKx`] exchange.
struct TestShare([u8; SHARE_LEN]);

impl ActiveKeyExchange for TestShare {
    /// Both shares, the smaller first, so that both ends get the same secret; a share of the
    /// wrong length is refused as a real group would.
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        if peer.len() != SHARE_LEN {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        let ours = &self.0[..];
        let (low, high) = if ours <= peer { (ours, peer) } else { (peer, ours) };
        Ok(SharedSecret::from([low, high].concat()))
    }

    fn pub_key(&self) -> &[u8] {
        &self.0
    }

    fn group(&self) -> NamedGroup {
        TEST_KX_GROUP
    }
}

/// A clock stopped at [`NOW`].
#[derive(Debug)]
struct FixedTime;

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(NOW))
    }
}

#[cfg(test)]
mod tests {
    use rustls::version::{TLS12, TLS13};
    use rustls::{ClientConnection, Connection, ProtocolVersion, ServerConnection, SupportedProtocolVersion};

    use super::*;
    use crate::tls::{Leaf, TestCa};

    /// A handshake between a client and a server on [`provider`], allowing only `version`.
    fn handshake(version: &'static SupportedProtocolVersion) -> (Connection, Connection) {
        let ca = TestCa::new("handshake CA");
        let Leaf(cert, key) = ca.leaf(&["a.test"]);
        let client = ClientConfig::builder_with_details(provider(), Arc::new(FixedTime))
            .with_protocol_versions(&[version])
            .expect("version")
            .with_root_certificates(ca.roots())
            .with_no_client_auth();
        let server = server_config().with_no_client_auth().with_single_cert(vec![cert], key).expect("cert");
        let name = "a.test".try_into().expect("name");
        let mut client = Connection::from(ClientConnection::new(Arc::new(client), name).expect("client"));
        let mut server = Connection::from(ServerConnection::new(Arc::new(server)).expect("server"));
        for _ in 0..10 {
            transfer(&mut client, &mut server);
            transfer(&mut server, &mut client);
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        (client, server)
    }

    /// Everything `from` wants to write, read by `to`.
    fn transfer(from: &mut Connection, to: &mut Connection) {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).expect("write");
        }
        if !wire.is_empty() {
            to.read_tls(&mut &wire[..]).expect("read");
            to.process_new_packets().expect("a good handshake");
        }
    }

    #[test]
    fn tls12_and_tls13_handshakes_use_the_fake_exchange() {
        for (version, expected) in [(&TLS12, ProtocolVersion::TLSv1_2), (&TLS13, ProtocolVersion::TLSv1_3)] {
            let (client, server) = handshake(version);
            for end in [&client, &server] {
                assert_eq!(end.protocol_version(), Some(expected));
                assert_eq!(end.negotiated_key_exchange_group().map(|g| g.name()), Some(TEST_KX_GROUP));
            }
        }
    }

    #[test]
    fn providers_draw_the_same_stream_and_names_give_their_own_keys() {
        let draw = || {
            let mut buf = [0; 40];
            provider().secure_random.fill(&mut buf).expect("fill");
            buf
        };
        assert_eq!(draw(), draw());
        assert_ne!(draw()[..8], draw()[8..16], "the stream moves on");
        assert_eq!(ed25519_key("a").secret_pkcs8_der(), ed25519_key("a").secret_pkcs8_der());
        assert_ne!(ed25519_key("a").secret_pkcs8_der(), ed25519_key("b").secret_pkcs8_der());
    }

    #[test]
    fn a_dropped_provider_s_stream_serves_the_next_one_from_the_seed() {
        let random = |p: &CryptoProvider| std::ptr::from_ref(p.secure_random).cast::<()>();
        let first = provider();
        let mut buf = [0; 8];
        first.secure_random.fill(&mut buf).expect("fill");
        let alive = provider();
        assert_ne!(random(&first), random(&alive), "providers alive together have their own streams");
        drop(first);
        // Many providers made and dropped in turn leak nothing more: each takes a freed pair,
        // which starts from the seed again.
        for _ in 0..1000 {
            let next = provider();
            let mut again = [0; 8];
            next.secure_random.fill(&mut again).expect("fill");
            assert_eq!(again, buf, "a reused stream starts from the seed");
        }
        drop(alive);
        let leaked = LEAKED.lock().expect("not poisoned").len();
        // Tests on other threads make providers too, at most a few at once each.
        assert!(leaked < 64, "{leaked} pairs leaked");
    }

    #[test]
    fn both_ends_of_the_fake_exchange_agree() {
        let p = provider();
        let (a, b) = (p.kx_groups[0].start().expect("a"), p.kx_groups[0].start().expect("b"));
        let (a_pub, b_pub) = (a.pub_key().to_vec(), b.pub_key().to_vec());
        assert_ne!(a_pub, b_pub);
        let a_secret = a.complete(&b_pub).expect("a completes");
        let b_secret = b.complete(&a_pub).expect("b completes");
        assert_eq!(a_secret.secret_bytes(), b_secret.secret_bytes());
        assert!(p.kx_groups[0].start().expect("c").complete(&[0; 5]).is_err(), "a short share is refused");
    }
}
