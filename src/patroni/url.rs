//! The form of a `PATRONI_URLS` entry: `http://host[:port][/path]`. The settings rule
//! (`replica_router.E011`) and the poller parse it with this one function.

/// A Patroni REST base URL, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// As configured, without a trailing `/` (what `roles()` and the logs show).
    pub text: String,
    /// A host name or an IP address (an IPv6 one without its brackets).
    pub host: String,
    pub port: u16,
    /// The base path, without a trailing `/` (`""` for the root).
    pub path: String,
}

impl Url {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Url, String> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a URL holds no white space".into());
        }
        if text.starts_with("https://") {
            // No setting says which CA to trust for it, and an unverified TLS
            // connection would lend Patroni's word to whoever answers.
            return Err(
                "https:// is not supported: use http:// (Patroni's REST API \
                        on a trusted network, see docs/roles.md)"
                    .into(),
            );
        }
        let Some(rest) = text.strip_prefix("http://") else {
            return Err("it must start with http://".into());
        };
        let rest = rest.trim_end_matches('/');
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) if rest[i..].starts_with('/') && !rest[i..].contains(['?', '#']) => {
                (&rest[..i], &rest[i..])
            }
            Some(_) => return Err("a query or fragment is not supported".into()),
            None => (rest, ""),
        };
        if authority.contains('@') {
            // Patroni's GET /cluster needs no credentials; none can leak from here.
            return Err(
                "credentials in the URL are not supported (GET /cluster needs none)".into(),
            );
        }
        let (host, port) = split_host_port(authority)?;
        Ok(Url {
            text: text.trim_end_matches('/').to_string(),
            host,
            port,
            path: path.to_string(),
        })
    }

    /// The request target of `endpoint` (`"/cluster"`) under the base path.
    pub fn target(&self, endpoint: &str) -> String {
        format!("{}{endpoint}", self.path)
    }

    /// The `Host` header's value.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to 80.
fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err("an IPv6 address needs its closing ]".into());
        };
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if host.is_empty() || !host.chars().all(valid) {
        return Err("it needs a host name or an IP address".into());
    }
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{p:?} is not a port number")),
        },
    };
    Ok((host.to_string(), port))
}
