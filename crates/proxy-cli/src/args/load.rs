//! The flags as the proxy takes them: the command line's, after the --config file's (so that
//! they win), with the file's routes and groups read.

use std::ffi::OsString;

use clap::Parser;

use crate::config_file::ConfigFile;
use super::Args;

impl Args {
    /// The command line, with the --config file's flags before it (so that it wins) and its
    /// routes read.
    pub(crate) fn load(cli: Vec<OsString>) -> Result<Args, String> {
        let args = Args::try_parse_from(&cli).unwrap_or_else(|e| e.exit());
        let Some(path) = args.config.clone() else { return Ok(args) };
        Args::with_file(&cli, &path)
    }

    /// `cli` combined with the file at `path`.
    pub(crate) fn with_file(cli: &[OsString], path: &std::path::Path) -> Result<Args, String> {
        let at = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {at}: {e}"))?;
        let file = ConfigFile::parse(&text).map_err(|e| format!("{at}: {e}"))?;
        let mut argv = vec![cli[0].clone()];
        // Where to listen is one setting, however given: the command line's replaces the
        // file's whole (--listen and -p, which exclude each other, would otherwise meet).
        match cli[1..].iter().any(is_listen_flag) {
            true => argv.extend(without_listen_flags(&file.args)),
            false => argv.extend(file.args.iter().cloned()),
        }
        argv.extend(cli[1..].iter().cloned());
        let mut args = Args::try_parse_from(argv)
            .map_err(|e| format!("{at}: {}", e.to_string().trim_end()))?;
        args.file_gateways = file
            .gateway_specs(&args.group_defaults())
            .map_err(|e| format!("{at}: {e}"))?;
        args.file_flags = file.args;
        Ok(args)
    }
}

/// Whether `arg` is --listen, --listen-host or -p (--listen-port), with its value or without.
fn is_listen_flag(arg: &OsString) -> bool {
    let Some(arg) = arg.to_str() else { return false };
    let name = arg.split_once('=').map_or(arg, |(name, _)| name);
    matches!(name, "--listen" | "--listen-host" | "--listen-port")
        || arg.strip_prefix("-p").is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

/// The --config file's flags without those saying where to listen (each is a flag and its
/// value there).
fn without_listen_flags(args: &[OsString]) -> Vec<OsString> {
    let mut kept = Vec::with_capacity(args.len());
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        if !is_listen_flag(arg) {
            kept.push(arg.clone());
        } else if args.peek().is_some_and(|v| !v.to_string_lossy().starts_with("--")) {
            args.next();
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_listens_as_the_flags_do() {
        let path = std::env::temp_dir().join(format!("sansproxy-listen-{}.toml", std::process::id()));
        std::fs::write(&path, "listen = 8081\n[[route]]\nlisten = \"localhost:8443\"\nupstreams = [\"http://127.0.0.1:9\"]\n").unwrap();
        let cli = |argv: &[&str]| ["sansproxy"].iter().chain(argv).map(OsString::from).collect::<Vec<_>>();
        let args = Args::with_file(&cli(&[]), &path).unwrap();
        assert_eq!(args.listen_at(), ("127.0.0.1".into(), 8081));
        let route = &args.listeners().unwrap()[0];
        assert!(route.addrs.contains(&"127.0.0.1:8443".parse().unwrap()), "{route:?}");
        assert_eq!(route.port_from, "the route's `listen`");
        // The command line's -p replaces the file's --listen rather than clashing with it.
        let args = Args::with_file(&cli(&["-p", "9090"]), &path).unwrap();
        assert_eq!(args.listen_at(), ("127.0.0.1".into(), 9090));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_command_lines_listening_address_replaces_the_files() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let file = os(&["--max-fails", "3", "--listen", "127.0.0.1:1", "--listen-host", "::1", "--no-http2"]);
        assert_eq!(without_listen_flags(&file), os(&["--max-fails", "3", "--no-http2"]));
        for flag in ["--listen", "--listen=1", "-p", "-p8080", "--listen-port", "--listen-host=::1"] {
            assert!(is_listen_flag(&OsString::from(flag)), "{flag}");
        }
        for other in ["--listen-tls", "-q", "-pq", "--metrics"] {
            assert!(!is_listen_flag(&OsString::from(other)), "{other}");
        }
    }
}
