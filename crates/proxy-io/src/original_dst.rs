//! Where a redirected connection was going (transparent mode): Linux's `SO_ORIGINAL_DST`
//! (IPv4) and `IP6T_SO_ORIGINAL_DST` (IPv6), which netfilter's NAT sets for a connection an
//! iptables or nftables `REDIRECT`/`DNAT` rule sent to the proxy. What only the OS knows; the
//! core decides what to do with it.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The destination the client connected to before netfilter redirected it; `None` where
/// nothing is known (not Linux, no NAT entry). A connection that was not redirected reports
/// the proxy's own address, which the core refuses as a loop.
#[cfg(target_os = "linux")]
pub(crate) fn original_dst(stream: &TcpStream, local: SocketAddr) -> Option<SocketAddr> {
    use std::os::fd::AsRawFd;
    // From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>.
    const SO_ORIGINAL_DST: libc::c_int = 80;
    const IP6T_SO_ORIGINAL_DST: libc::c_int = 80;
    let fd = stream.as_raw_fd();
    // SAFETY: getsockopt writes at most `len` bytes into the zeroed storage, which is large
    // enough for any socket address, and reports how many it wrote.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let (level, name) = match local {
        SocketAddr::V4(_) => (libc::SOL_IP, SO_ORIGINAL_DST),
        SocketAddr::V6(_) => (libc::SOL_IPV6, IP6T_SO_ORIGINAL_DST),
    };
    let result = unsafe { libc::getsockopt(fd, level, name, (&raw mut storage).cast(), &mut len) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "no original destination");
        return None;
    }
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET).
            let addr: libc::sockaddr_in = unsafe { *(&raw const storage).cast() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(addr.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6).
            let addr: libc::sockaddr_in6 = unsafe { *(&raw const storage).cast() };
            let ip = std::net::Ipv6Addr::from(addr.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(addr.sin6_port))))
        }
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn original_dst(_stream: &TcpStream, _local: SocketAddr) -> Option<SocketAddr> {
    None
}
