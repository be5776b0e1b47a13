//! The CA, minting and both rustls configurations, down to in-memory handshakes.
//!
//! `testdata/` holds throwaway CAs made with OpenSSL 3.0 (valid 2020 to 2120), so that the
//! tests need no `openssl` on the machine:
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` (PKCS#8), a P-384 key from
//! `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384`, each self-signed with
//! `openssl ca -selfsign` (basicConstraints critical CA:TRUE, keyUsage keyCertSign, cRLSign),
//! and `openssl genrsa -traditional` for a PKCS#1 key.

use std::path::Path;
use std::sync::Arc;

use proxy_core::tls::{CertIssuer, CertRequest, TlsCause, TlsPeer};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, Connection, HandshakeKind, RootCertStore, ServerConfig, ServerConnection,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;

const RSA_CERT: &str = include_str!("testdata/rsa-ca-cert.pem");
const RSA_KEY: &str = include_str!("testdata/rsa-ca-key.pem");
const P384_CERT: &str = include_str!("testdata/p384-ca-cert.pem");
const P384_KEY: &str = include_str!("testdata/p384-ca-key.pem");
const RSA_PKCS1_KEY: &str = include_str!("testdata/rsa-pkcs1-key.pem");

#[test]
fn ca_is_made_once_with_a_private_key_file_and_then_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("not/yet/there");
    let ca = CertAuthority::load_or_create(&dir).unwrap();
    assert!(ca.is_new() && ca.is_root());

    let key_file = std::fs::read_to_string(dir.join(CA_KEY_FILE)).unwrap();
    assert!(key_file.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{key_file}");
    assert!(key_file.ends_with(ca.cert_pem()));
    let cert_file = std::fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap();
    assert_eq!(cert_file, ca.cert_pem());
    assert!(!cert_file.contains("PRIVATE"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
        // Readable for users to install, writable by the owner only (the umask may narrow it).
        assert_eq!(mode(&dir.join(CA_CERT_FILE)) & !0o644, 0);
        assert_eq!(mode(&dir.join(CA_CERT_FILE)) & 0o600, 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "temporary files left behind: {left:?}");

    let (_, x509) = X509Certificate::from_der(ca.cert_der()).unwrap();
    let cn = x509.subject().iter_common_name().next().unwrap().as_str().unwrap();
    let org = x509.subject().iter_organization().next().unwrap().as_str().unwrap();
    assert_eq!((cn, org), ("sansproxy CA", "sansproxy"));
    assert!(x509.basic_constraints().unwrap().unwrap().value.ca);
    let usage = x509.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign() && !usage.digital_signature());
    let days = (x509.validity().not_after.timestamp() - x509.validity().not_before.timestamp()) / 86400;
    assert_eq!(days, 3652);
    assert_eq!(x509.signature_algorithm.algorithm, x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256);

    let again = CertAuthority::load_or_create(&dir).unwrap();
    assert!(!again.is_new());
    assert_eq!(again.cert_der(), ca.cert_der());

    // The file for users comes back if it is lost; the CA stays.
    std::fs::remove_file(dir.join(CA_CERT_FILE)).unwrap();
    let third = CertAuthority::load_or_create(&dir).unwrap();
    assert_eq!(third.cert_der(), ca.cert_der());
    assert_eq!(std::fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap(), ca.cert_pem());
}

#[test]
fn processes_starting_together_agree_on_one_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let certs: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..8).map(|_| s.spawn(|| CertAuthority::load_or_create(&dir).unwrap())).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(certs.iter().filter(|ca| ca.is_new()).count(), 1);
    assert!(certs.iter().all(|ca| ca.cert_der() == certs[0].cert_der()));
    let stored = CertAuthority::load_or_create(&dir).unwrap();
    assert_eq!(stored.cert_der(), certs[0].cert_der());
}

#[test]
fn rsa_and_p384_cas_from_pem_sign_leaves_that_verify() {
    for (cert, key) in [(RSA_CERT, RSA_KEY), (P384_CERT, P384_KEY)] {
        let ca = CertAuthority::from_pem(cert, key).unwrap();
        assert!(ca.is_root() && !ca.is_new());
        // Re-encoded the way OpenSSL wrote it.
        assert_eq!(ca.cert_pem(), cert);
        let minter = Minter::new(ca, 10).unwrap();
        let leaf = minter.issue(&request(Some("example.test"), "example.test")).unwrap();
        assert_eq!(leaf.cert.len(), 1, "a root CA stays out of the chain");
        verify(&leaf, &pem_cert(cert), "example.test").unwrap();
    }
}

#[test]
fn one_file_may_hold_key_and_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let both = tmp.path().join("ca.pem");
    std::fs::write(&both, format!("{RSA_KEY}{RSA_CERT}")).unwrap();
    let ca = CertAuthority::from_files(&both, &both).unwrap();
    assert_eq!(ca.cert_der(), &pem_cert(RSA_CERT));

    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, RSA_CERT).unwrap();
    std::fs::write(&key, RSA_KEY).unwrap();
    assert_eq!(CertAuthority::from_files(&cert, &key).unwrap().cert_der(), ca.cert_der());
}

#[test]
fn bad_ca_files_are_named_with_their_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (cert, key) = (file("cert.pem", RSA_CERT), file("key.pem", RSA_KEY));
    let pkcs1 = file("pkcs1.pem", RSA_PKCS1_KEY);
    let p384_key = file("p384.pem", P384_KEY);
    let missing = tmp.path().join("missing.pem");

    let fails = |c: &Path, k: &Path| CertAuthority::from_files(c, k).unwrap_err();
    let e = fails(&cert, &pkcs1);
    assert!(matches!(e, TlsSetupError::KeyNotPkcs8 { ref path, .. } if path == &pkcs1), "{e:?}");
    assert!(e.to_string().contains("pkcs1.pem: the key is a PKCS#1 RSA key"), "{e}");
    let e = fails(&cert, &p384_key);
    assert!(matches!(e, TlsSetupError::KeyMismatch { .. }), "{e:?}");
    let e = fails(&key, &key);
    assert!(matches!(e, TlsSetupError::NoCertificate { ref path } if path == &key), "{e:?}");
    let e = fails(&cert, &cert);
    assert!(matches!(e, TlsSetupError::NoPrivateKey { ref path } if path == &cert), "{e:?}");
    let e = fails(&missing, &key);
    assert!(matches!(e, TlsSetupError::Read { ref path, .. } if path == &missing), "{e:?}");
    assert!(e.to_string().starts_with(&format!("cannot read {}: ", missing.display())), "{e}");

    // A leaf certificate cannot be the CA.
    let key_pair = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["a.test".to_string()]).unwrap().self_signed(&key_pair).unwrap();
    let e = CertAuthority::from_pem(&leaf.pem(), &key_pair.serialize_pem()).unwrap_err();
    assert!(e.to_string().contains("not a CA certificate"), "{e}");
}

#[test]
fn leaf_carries_the_sni_and_the_target_ip() {
    let (minter, ca) = test_minter(10);
    let leaf = minter.issue(&request(Some("sni.example.test"), "10.0.0.7")).unwrap();
    verify(&leaf, &ca, "sni.example.test").unwrap();
    verify(&leaf, &ca, "10.0.0.7").unwrap();
    let e = verify(&leaf, &ca, "other.test").unwrap_err();
    assert_eq!(
        words(&e),
        "certificate not valid for this host name (name mismatch: it is for sni.example.test, 10.0.0.7)"
    );

    // No SNI: an IP target alone, and it is the common name.
    let leaf = minter.issue(&request(None, "[2001:db8::1]")).unwrap();
    verify(&leaf, &ca, "2001:db8::1").unwrap();
    let (_, x509) = X509Certificate::from_der(&leaf.cert[0]).unwrap();
    assert_eq!(x509.subject().iter_common_name().next().unwrap().as_str().unwrap(), "2001:db8::1");

    // Trusting another CA, the same leaf fails: the successes above mean something.
    let e = verify(&leaf, &TestCa::new("another CA").cert, "2001:db8::1").unwrap_err();
    assert_eq!(words(&e), "certificate signed by an unknown issuer (a CA the proxy does not trust)");
}

#[test]
fn leaf_copies_the_upstream_certificate_names() {
    let (minter, ca) = test_minter(10);
    let mut params = CertificateParams::new(vec![
        "alt.example.test".to_string(),
        "*.wild.example.test".to_string(),
        "192.0.2.9".to_string(),
    ])
    .unwrap();
    params.distinguished_name.push(DnType::CommonName, "cn.example.test");
    let upstream = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
    let mut req = request(Some("sni.example.test"), "sni.example.test");
    req.upstream_cert = Some(upstream.der().clone());
    let leaf = minter.issue(&req).unwrap();
    for name in
        ["sni.example.test", "alt.example.test", "x.wild.example.test", "192.0.2.9", "cn.example.test"]
    {
        verify(&leaf, &ca, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(verify(&leaf, &ca, "example.test").is_err());

    let (_, x509) = X509Certificate::from_der(&leaf.cert[0]).unwrap();
    assert_eq!(x509.subject().iter_common_name().next().unwrap().as_str().unwrap(), "sni.example.test");
    let validity = x509.validity();
    let now = UnixTime::now().as_secs() as i64;
    assert!((validity.not_before.timestamp() - (now - 2 * 86400)).abs() < 60);
    assert!((validity.not_after.timestamp() - (now + 365 * 86400)).abs() < 60);
    let eku = x509.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(!x509.is_ca());
}

#[test]
fn a_ca_below_a_root_goes_along_in_the_chain() {
    let root_key = KeyPair::generate().unwrap();
    let mut root_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    root_params.distinguished_name.push(DnType::CommonName, "test root");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let mid_key = KeyPair::generate().unwrap();
    let mut mid_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    mid_params.distinguished_name.push(DnType::CommonName, "test intermediate");
    mid_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    mid_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let mid = mid_params.signed_by(&mid_key, &root_issuer).unwrap();

    let ca = CertAuthority::from_pem(&mid.pem(), &mid_key.serialize_pem()).unwrap();
    assert!(!ca.is_root());
    let leaf = Minter::new(ca, 1).unwrap().issue(&request(Some("a.test"), "a.test")).unwrap();
    assert_eq!(leaf.cert.len(), 2);
    assert_eq!(&leaf.cert[1], mid.der());
    verify(&leaf, root.der(), "a.test").unwrap();
}

#[test]
fn cached_leaves_are_shared_and_the_cache_is_bounded() {
    let (minter, _) = test_minter(2);
    let a = request(Some("a.test"), "a.test");
    let b = request(Some("b.test"), "b.test");
    let c = request(Some("c.test"), "c.test");
    let first = minter.issue(&a).unwrap();
    assert!(Arc::ptr_eq(&first, &minter.issue(&a).unwrap()));
    // The same names reached another way share the certificate too.
    assert!(Arc::ptr_eq(&first, &minter.issue(&request(Some("A.TEST."), "a.test")).unwrap()));
    let second = minter.issue(&b).unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    // Every leaf has the one leaf key.
    assert_eq!(first.key.public_key(), second.key.public_key());
    assert_ne!(first.cert[0], second.cert[0]);

    minter.issue(&a).unwrap(); // a is now the most recent, b the least
    minter.issue(&c).unwrap(); // evicts b
    assert!(Arc::ptr_eq(&first, &minter.issue(&a).unwrap()));
    assert!(!Arc::ptr_eq(&second, &minter.issue(&b).unwrap()));

    let (uncached, _) = test_minter(0);
    assert!(!Arc::ptr_eq(&uncached.issue(&a).unwrap(), &uncached.issue(&a).unwrap()));
}

#[test]
fn a_request_without_any_usable_name_fails() {
    let (minter, _) = test_minter(1);
    let e = minter.issue(&request(Some("bad name"), "")).unwrap_err();
    assert!(e.contains("no name to issue a certificate for"), "{e}");
}

#[test]
fn upstream_failures_are_told_in_words() {
    let trusted = TestCa::new("trusted CA");
    let untrusted = TestCa::new("untrusted CA");
    let config = upstream_client_config(vec![trusted.cert.clone()], false).unwrap();
    let insecure = upstream_client_config(Vec::new(), true).unwrap();

    let good = trusted.leaf("good.test", false);
    let expired = trusted.leaf("good.test", true);
    let stranger = untrusted.leaf("good.test", false);
    let key = KeyPair::generate().unwrap();
    let own = CertificateParams::new(vec!["good.test".to_string()]).unwrap().self_signed(&key).unwrap();
    let self_signed = certified(vec![own.der().clone()], &key);
    // As `openssl req -x509` makes them: self-signed, and saying it is a CA.
    let (ca_own, ca_self_signed) = self_signed_ca_leaf("good.test", false);

    handshake(&config, server_with(good.clone()), "good.test").unwrap();
    for (server, name, said) in [
        (expired.clone(), "good.test", "certificate expired"),
        (good.clone(), "other.test", "certificate not valid for this host name (name mismatch: it is for good.test)"),
        (stranger.clone(), "good.test", "certificate signed by an unknown issuer (a CA the proxy does not trust)"),
        (self_signed.clone(), "good.test", "self-signed certificate"),
        (ca_self_signed.clone(), "good.test", "self-signed certificate"),
    ] {
        let e = handshake(&config, server_with(server.clone()), name).unwrap_err();
        assert_eq!(words(&e), said);
        handshake(&insecure, server_with(server), name).unwrap_or_else(|e| panic!("insecure, {said}: {e}"));
    }

    // A self-signed certificate the user chose to trust is fine, CA or not, for its own name
    // and in its dates.
    let trusting = upstream_client_config(vec![own.der().clone()], false).unwrap();
    handshake(&trusting, server_with(self_signed), "good.test").unwrap();
    let trusting = upstream_client_config(vec![ca_own.clone()], false).unwrap();
    handshake(&trusting, server_with(ca_self_signed.clone()), "good.test").unwrap();
    let e = handshake(&trusting, server_with(ca_self_signed), "other.test").unwrap_err();
    assert!(words(&e).starts_with("certificate not valid for this host name"), "{e:?}");
    let (old, old_key) = self_signed_ca_leaf("good.test", true);
    let trusting = upstream_client_config(vec![old], false).unwrap();
    let e = handshake(&trusting, server_with(old_key), "good.test").unwrap_err();
    assert_eq!(words(&e), "certificate expired");
}

#[test]
fn options_name_their_fields_in_remedies() {
    let tmp = tempfile::tempdir().unwrap();
    let (tls, info) = TlsOptions::new(CaSource::Dir(tmp.path().join("ca"))).build().unwrap();
    let cert = info.unwrap().cert_path;
    assert_eq!(tls.remedies.trust_ca, format!("the CA certificate {}", cert.display()));
    let remedy = TlsCause::UnknownIssuer.remedy(TlsPeer::Server, &tls.remedies).unwrap();
    assert_eq!(
        remedy,
        "trust the CA certificate that signed it (TlsOptions::upstream_roots) or skip verification \
         (TlsOptions::insecure_upstream)"
    );
}

#[test]
fn insecure_upstream_still_checks_handshake_signatures() {
    let insecure = upstream_client_config(Vec::new(), true).unwrap();
    let ca = TestCa::new("some CA");
    let good = ca.leaf("good.test", false);
    // The certificate of one key, the signatures of another.
    let impostor = Arc::new(CertifiedKey::new(good.cert.clone(), ca.leaf("good.test", false).key.clone()));
    let e = handshake(&insecure, server_with(impostor), "good.test").unwrap_err();
    assert!(matches!(e, rustls::Error::InvalidCertificate(_) | rustls::Error::PeerMisbehaved(_)), "{e:?}");
}

#[test]
fn minted_leaves_pass_the_upstream_verifier_and_clients_resume() {
    let (minter, ca) = test_minter(10);
    let minter = Arc::new(minter);
    let client = upstream_client_config(vec![ca.clone()], false).unwrap();
    let base = server_base_config().unwrap();
    let per_connection = || {
        let mut config = base.clone();
        config.cert_resolver = Arc::new(Minted(minter.clone()));
        config
    };
    let (c, _) = handshake(&client, per_connection(), "example.test").unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    let (c, _) = handshake(&client, per_connection(), "example.test").unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Resumed));

    let copy = base.clone();
    assert!(Arc::ptr_eq(&copy.ticketer, &base.ticketer) && base.ticketer.enabled());
    assert!(Arc::ptr_eq(&copy.session_storage, &base.session_storage));

    // TLS 1.2 clients are served, and resume too.
    let mut roots = RootCertStore::empty();
    roots.add(ca).unwrap();
    let tls12 = ClientConfig::builder_with_provider(Arc::new(minter::provider()))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (c, _) = handshake(&tls12, per_connection(), "example.test").unwrap();
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    let (c, _) = handshake(&tls12, per_connection(), "example.test").unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Resumed));

    // Until the core sets a resolver, there is no certificate to show.
    assert!(handshake(&client, base.clone(), "example.test").is_err());
}

#[test]
fn upstream_roots_come_from_pem_files() {
    let tmp = tempfile::tempdir().unwrap();
    let two = tmp.path().join("two.pem");
    std::fs::write(&two, format!("junk before\n{RSA_CERT}{P384_KEY}{P384_CERT}")).unwrap();
    let certs = load_certs_pem(&two).unwrap();
    assert_eq!(certs, vec![pem_cert(RSA_CERT), pem_cert(P384_CERT)]);
    let none = tmp.path().join("none.pem");
    std::fs::write(&none, RSA_KEY).unwrap();
    assert!(matches!(load_certs_pem(&none), Err(TlsSetupError::NoCertificate { path }) if path == none));
}

#[test]
fn options_build_a_core_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let roots = tmp.path().join("roots.pem");
    std::fs::write(&roots, P384_CERT).unwrap();
    let mut options = TlsOptions::new(CaSource::Dir(dir.clone()));
    options.upstream_roots = vec![roots.clone()];
    options.ignore_hosts = vec![r"^example\.test:443$".into()];
    let (tls, info) = options.clone().build().unwrap();
    assert_eq!(info, Some(CaInfo { cert_path: dir.join(CA_CERT_FILE), created: true }));
    assert!(tls.ignore_hosts[0].is_match("example.test:443"));
    tls.issuer.issue(&request(Some("a.test"), "a.test")).unwrap();
    assert!(!options.clone().build().unwrap().1.unwrap().created);

    let mut bad = options.clone();
    bad.ignore_hosts.push("(".into());
    bad.ca = CaSource::Dir(tmp.path().join("never"));
    let e = bad.build().unwrap_err();
    assert!(e.to_string().starts_with("bad --ignore-hosts pattern \"(\": "), "{e}");
    assert!(!tmp.path().join("never").exists(), "a failed setup made a CA");

    let mut bad = options.clone();
    bad.upstream_roots.push(tmp.path().join("nope.pem"));
    assert!(matches!(bad.build(), Err(TlsSetupError::Read { .. })));

    let files = TlsOptions::new(CaSource::Files { cert: roots.clone(), key: roots.clone() });
    assert!(matches!(files.build(), Err(TlsSetupError::NoPrivateKey { .. })));
}

#[test]
fn serial_numbers_are_random_positive_and_full_length() {
    let a = random_serial().unwrap().to_bytes();
    let b = random_serial().unwrap().to_bytes();
    assert_ne!(a, b);
    assert_eq!(a.len(), 16);
    assert_eq!(a[0] & 0xc0, 0x40);
}

fn request(sni: Option<&str>, target: &str) -> CertRequest {
    CertRequest { server_name: sni.map(str::to_string), target_host: target.to_string(), upstream_cert: None }
}

fn pem_cert(pem: &str) -> CertificateDer<'static> {
    load_certs_from(pem).remove(0)
}

fn load_certs_from(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().unwrap()
}

/// A minter with a fresh CA, and that CA's certificate.
fn test_minter(cache_size: usize) -> (Minter, CertificateDer<'static>) {
    let ca = TestCa::new("minting CA");
    let authority = CertAuthority::from_pem(&ca.pem, &ca.key.serialize_pem()).unwrap();
    (Minter::new(authority, cache_size).unwrap(), ca.cert)
}

/// Verifies `leaf` as rustls's WebPKI verifier would for a server called `name`, trusting `root`.
fn verify(leaf: &CertifiedKey, root: &CertificateDer<'static>, name: &str) -> Result<(), rustls::Error> {
    let mut store = RootCertStore::empty();
    store.add(root.clone()).unwrap();
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), Arc::new(minter::provider()))
        .build()
        .unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    verifier.verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &name, &[], UnixTime::now()).map(|_| ())
}

/// A failure told in words, as the core tells an upstream's.
fn words(error: &rustls::Error) -> String {
    TlsCause::from_rustls(error, TlsPeer::Server).to_string()
}

/// A certificate for `name` that signed itself and says it is a CA, as `openssl req -x509`
/// makes them (`expired`: valid in 2020 only), and its key.
fn self_signed_ca_leaf(name: &str, expired: bool) -> (CertificateDer<'static>, Arc<CertifiedKey>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.self_signed(&key).unwrap();
    (cert.der().clone(), certified(vec![cert.der().clone()], &key))
}

/// A CA made with rcgen, for upstream servers.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    key: KeyPair,
    cert: CertificateDer<'static>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let issuer_key = KeyPair::from_pem(&key.serialize_pem()).unwrap();
        Self { issuer: Issuer::new(params, issuer_key), key, cert: cert.der().clone(), pem: cert.pem() }
    }

    /// A server certificate for `name`, with a key of its own.
    fn leaf(&self, name: &str, expired: bool) -> Arc<CertifiedKey> {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        certified(vec![cert.der().clone()], &key)
    }
}

fn certified(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> Arc<CertifiedKey> {
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let key = minter::provider().key_provider.load_private_key(der).unwrap();
    Arc::new(CertifiedKey::new(chain, key))
}

fn server_with(key: Arc<CertifiedKey>) -> ServerConfig {
    let mut config = server_base_config().unwrap();
    config.cert_resolver = Arc::new(Fixed(key));
    config
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Mints per client hello, as the core will.
#[derive(Debug)]
struct Minted(Arc<Minter>);

impl ResolvesServerCert for Minted {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name()?;
        self.0.issue(&request(Some(sni), sni)).ok()
    }
}

/// Runs a handshake in memory, then lets the server's session tickets reach the client.
/// Returns the first error either side hits.
fn handshake(
    client: &ClientConfig,
    server: ServerConfig,
    name: &str,
) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut c = Connection::Client(ClientConnection::new(Arc::new(client.clone()), name)?);
    let mut s = Connection::Server(ServerConnection::new(Arc::new(server))?);
    for _ in 0..32 {
        let moved = transfer(&mut c, &mut s)? + transfer(&mut s, &mut c)?;
        if moved == 0 && !c.is_handshaking() && !s.is_handshaking() {
            let (Connection::Client(c), Connection::Server(s)) = (c, s) else { unreachable!() };
            return Ok((c, s));
        }
    }
    panic!("handshake did not finish");
}

fn transfer(from: &mut Connection, to: &mut Connection) -> Result<usize, rustls::Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets()?;
    }
    Ok(bytes.len())
}
