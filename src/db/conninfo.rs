//! libpq's connection options: connection URIs and `key=value` strings, the
//! `PG*` environment variables, service files (`PGSERVICE`,
//! `pg_service.conf`) and the password file (`.pgpass`), with libpq's
//! precedence: explicit options, then the service, then the environment,
//! then the defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// Option name → value, libpq keywords (`host`, `sslmode`, ...).
pub type Options = BTreeMap<String, String>;

/// The libpq keywords cdpctl understands, with their environment variables.
pub const KEYWORDS: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("dbname", Some("PGDATABASE")),
    ("service", Some("PGSERVICE")),
    ("options", Some("PGOPTIONS")),
    ("application_name", Some("PGAPPNAME")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("tcp_user_timeout", None),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
];

fn check_keyword(key: &str, origin: &str) -> Result<()> {
    if KEYWORDS.iter().any(|(k, _)| *k == key) {
        return Ok(());
    }
    bail!(
        "{origin}: unknown connection option {key:?}; known options: {}",
        KEYWORDS
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Parses a connection URI (`postgresql://...`) or a libpq `key=value` string.
pub fn parse(s: &str) -> Result<Options> {
    let s = s.trim();
    if let Some(rest) = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
    {
        parse_uri(rest)
    } else {
        parse_keywords(s, "connection string")
    }
}

fn decode(s: &str, what: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow!("database URL: invalid percent-encoding in the {what}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow!("database URL: the {what} is not UTF-8"))
}

/// `[user[:password]@][host][:port][,...][/dbname][?param=value&...]`
fn parse_uri(rest: &str) -> Result<Options> {
    let mut opts = Options::new();
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (main, None),
    };
    let hostspec = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, pw) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                opts.insert("user".into(), decode(user, "user name")?);
            }
            if let Some(pw) = pw {
                opts.insert("password".into(), decode(pw, "password")?);
            }
            hosts
        }
        None => authority,
    };
    if !hostspec.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for one in hostspec.split(',') {
            let (host, port) = if let Some(v6) = one.strip_prefix('[') {
                let (h, after) = v6
                    .split_once(']')
                    .ok_or_else(|| anyhow!("database URL: unterminated [ in the host {one:?}"))?;
                (h.to_string(), after.strip_prefix(':').unwrap_or(""))
            } else {
                match one.rsplit_once(':') {
                    Some((h, p)) => (decode(h, "host")?, p),
                    None => (decode(one, "host")?, ""),
                }
            };
            hosts.push(host);
            ports.push(port.to_string());
        }
        if hosts.iter().any(|h| !h.is_empty()) {
            opts.insert("host".into(), hosts.join(","));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            opts.insert("port".into(), ports.join(","));
        }
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        opts.insert("dbname".into(), decode(db, "database name")?);
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            anyhow!("database URL: parameter {pair:?} has no value; write key=value")
        })?;
        let k = decode(k, "parameter name")?;
        let k = if k == "ssl" && v == "true" {
            opts.insert("sslmode".into(), "require".into());
            continue;
        } else {
            k
        };
        check_keyword(&k, "database URL")?;
        opts.insert(k, decode(v, "parameter value")?);
    }
    Ok(opts)
}

/// `key=value key='quoted \' value'`
pub fn parse_keywords(s: &str, origin: &str) -> Result<Options> {
    let mut opts = Options::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            bail!("{origin}: missing \"=\" after {key:?}; write key=value");
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => bail!("{origin}: unterminated quoted value of {key:?}"),
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        check_keyword(&key, origin)?;
        opts.insert(key, value);
    }
    Ok(opts)
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// The home directory (`$HOME`, else the password database).
pub fn home_dir() -> Option<PathBuf> {
    env("HOME").map(PathBuf::from).or_else(|| {
        // SAFETY: getpwuid returns a pointer to static storage or NULL; we
        // copy the string out before any other call.
        unsafe {
            let pw = libc::getpwuid(libc::geteuid());
            if pw.is_null() || (*pw).pw_dir.is_null() {
                return None;
            }
            let dir = std::ffi::CStr::from_ptr((*pw).pw_dir);
            Some(PathBuf::from(dir.to_string_lossy().into_owned()))
        }
    })
}

/// The operating-system user name, libpq's default user.
pub fn os_user() -> Option<String> {
    // SAFETY: as in home_dir.
    let name = unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            None
        } else {
            Some(
                std::ffi::CStr::from_ptr((*pw).pw_name)
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    };
    name.or_else(|| env("USER"))
}

/// Fills what `opts` lacks from the service named by `service=` or
/// `PGSERVICE` (the user's `~/.pg_service.conf` or `PGSERVICEFILE` first,
/// then `pg_service.conf` in `PGSYSCONFDIR`), then from the `PG*`
/// environment variables.
pub fn add_service_and_env(opts: &mut Options) -> Result<()> {
    let service = opts.get("service").cloned().or_else(|| env("PGSERVICE"));
    if let Some(name) = service {
        let found = lookup_service(&name)?;
        for (k, v) in found {
            opts.entry(k).or_insert(v);
        }
    }
    for (key, var) in KEYWORDS {
        if let Some(var) = var {
            if !opts.contains_key(*key) {
                if let Some(v) = env(var) {
                    opts.insert((*key).into(), v);
                }
            }
        }
    }
    Ok(())
}

fn service_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    match env("PGSERVICEFILE") {
        Some(f) => files.push(PathBuf::from(f)),
        None => {
            if let Some(home) = home_dir() {
                files.push(home.join(".pg_service.conf"));
            }
        }
    }
    let sysconf = env("PGSYSCONFDIR").unwrap_or_else(|| "/etc/postgresql-common".into());
    files.push(Path::new(&sysconf).join("pg_service.conf"));
    files
}

fn lookup_service(name: &str) -> Result<Options> {
    let files = service_files();
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        if let Some(opts) = parse_service_file(&text, name, file)? {
            return Ok(opts);
        }
    }
    bail!(
        "service {name:?} is not defined in {}; add a [{name}] section or fix service=/PGSERVICE",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

/// The options of section `[name]`, `None` when the file lacks it.
pub fn parse_service_file(text: &str, name: &str, file: &Path) -> Result<Option<Options>> {
    let mut current: Option<String> = None;
    let mut found: Option<Options> = None;
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            let section = section.strip_suffix(']').ok_or_else(|| {
                anyhow!(
                    "{} line {}: unterminated section header",
                    file.display(),
                    no + 1
                )
            })?;
            if found.is_some() {
                break;
            }
            current = Some(section.to_string());
            if section == name {
                found = Some(Options::new());
            }
            continue;
        }
        if current.as_deref() != Some(name) {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| {
            anyhow!(
                "{} line {}: syntax error; write key=value",
                file.display(),
                no + 1
            )
        })?;
        let (k, v) = (k.trim(), v.trim());
        let origin = format!("{} line {}", file.display(), no + 1);
        if k == "service" {
            bail!("{origin}: nested service specifications are not supported");
        }
        check_keyword(k, &origin)?;
        if let Some(opts) = found.as_mut() {
            opts.insert(k.to_string(), v.to_string());
        }
    }
    Ok(found)
}

/// libpq's compiled-in socket directory: the host name `localhost` in a
/// password file also matches connections through it.
pub const DEFAULT_SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];

/// The password for (host, port, dbname, user) from the password file, as
/// libpq reads it: `host:port:dbname:user:password` lines, `*` matches
/// anything, `\` escapes `:` and `\`; a file readable by group or others is
/// ignored with a warning.
pub fn pgpass_lookup(
    file: &Path,
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if !meta.is_file() {
        eprintln!(
            "warning: password file \"{}\" is not a plain file",
            file.display()
        );
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "warning: password file \"{}\" has group or world access; permissions should be u=rw (0600) or less (chmod 0600 {})",
            file.display(),
            file.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let host = if host.is_empty() || DEFAULT_SOCKET_DIRS.contains(&host) {
        "localhost"
    } else {
        host
    };
    let wanted = [host, port, dbname, user];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() < 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(wanted)
            .all(|(f, w)| f == "*" || f == w)
        {
            return Some(fields[4..].join(":"));
        }
    }
    None
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut().unwrap().push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_with_socket_directory() {
        let o = parse("postgresql:///postgres?host=/tmp/sock&port=5499").unwrap();
        assert_eq!(o["host"], "/tmp/sock");
        assert_eq!(o["port"], "5499");
        assert_eq!(o["dbname"], "postgres");
        let o = parse("postgresql://%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(o["host"], "/var/run/postgresql");
    }

    #[test]
    fn uri_full() {
        let o = parse("postgres://u%40x:p%3Aw@h1:5433,[::1]:5434/d?sslmode=verify-ca&sslcert=/c")
            .unwrap();
        assert_eq!(o["user"], "u@x");
        assert_eq!(o["password"], "p:w");
        assert_eq!(o["host"], "h1,::1");
        assert_eq!(o["port"], "5433,5434");
        assert_eq!(o["sslmode"], "verify-ca");
        assert_eq!(o["sslcert"], "/c");
        assert!(parse("postgresql://h/d?bogus=1").is_err());
    }

    #[test]
    fn keyword_strings() {
        let o = parse("host=/tmp port = 5 password='it\\'s x' dbname=a\\ b").unwrap();
        assert_eq!(o["host"], "/tmp");
        assert_eq!(o["port"], "5");
        assert_eq!(o["password"], "it's x");
        assert_eq!(o["dbname"], "a b");
    }

    #[test]
    fn service_sections() {
        let text = "# c\n[a]\nhost=h1\n[b]\nhost = h2\nport=7\n";
        let o = parse_service_file(text, "b", Path::new("f"))
            .unwrap()
            .unwrap();
        assert_eq!(o["host"], "h2");
        assert_eq!(o["port"], "7");
        assert!(parse_service_file(text, "c", Path::new("f"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn pgpass_fields() {
        assert_eq!(
            split_pgpass(r"h\:x:*:db:u:pa\\ss:word"),
            vec!["h:x", "*", "db", "u", r"pa\ss:word"]
        );
    }
}
